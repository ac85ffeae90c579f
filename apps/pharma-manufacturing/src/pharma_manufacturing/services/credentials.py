"""Users from config, salted scrypt password hashes, and short-lived session tokens.

A password hash reads `scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>`. Make one with
`python -m pharma_manufacturing.services.credentials` (it asks for the password).

A session token (POST /api/session) is `<user>.<expiry>.<HMAC>`, keyed with a key derived from
the signing key, so every process that shares the signing key accepts it: no session store.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pharma_manufacturing.services.errors import AuthenticationError, PermissionDeniedError

ROLES = frozenset({"operator", "supervisor", "qa"})
SESSION_TTL_S = 8 * 3600  # one shift

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
# Spent on an unknown user id too, so the answer time does not tell which ids exist.
_DUMMY_HASH = "scrypt$16384$8$1$" + "A" * 22 + "==$" + "A" * 86 + "=="


@dataclass(frozen=True)
class User:
    user_id: str
    printed_name: str  # what a signature shows, Part 11 section 11.50
    roles: frozenset[str]
    password_hash: str

    def __repr__(self) -> str:  # keep the hash out of logs and tracebacks
        return f"User({self.user_id!r}, {self.printed_name!r}, roles={sorted(self.roles)})"

    def require_role(self, allowed: Iterable[str], action: str) -> None:
        if not self.roles & set(allowed):
            raise PermissionDeniedError(
                f"{self.user_id} may not {action}: that needs the role "
                f"{' or '.join(sorted(allowed))}, and {self.user_id} has "
                f"{', '.join(sorted(self.roles)) or 'none'}"
            )


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash in the format the config files use."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=64
    )
    salt_text, digest_text = (base64.b64encode(v).decode() for v in (salt, digest))
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt_text}${digest_text}"


def password_matches(password: str, stored: str) -> bool:
    """Recompute the scrypt hash with the stored salt and cost; compare in constant time."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        expected_bytes = base64.b64decode(expected)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected_bytes),
            maxmem=256 * 1024 * 1024,
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected_bytes)


def check_password_hash_format(stored: str) -> bool:
    """Whether `stored` looks like a hash this module made (checked when config loads)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(v) for v in parts[1:4])
        base64.b64decode(parts[4], validate=True)
        base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    return n >= 2**10 and n & (n - 1) == 0 and r > 0 and p > 0


class UsersConfigError(ValueError):
    """A user entry in config cannot be used; the message names the source and the entry."""


_USER_ID = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


def parse_users(entries: object, source: str) -> tuple[User, ...]:
    """Users from config: a list of {user_id, printed_name, roles, password_hash}."""
    if not isinstance(entries, list):
        raise UsersConfigError(f"{source}: 'users' must be a list of users")
    users: dict[str, User] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: users[{index}]"
        if not isinstance(entry, dict):
            raise UsersConfigError(f"{where} must be a mapping")
        unknown = set(entry) - {"user_id", "printed_name", "roles", "password_hash"}
        if unknown:
            raise UsersConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        user_id = str(entry.get("user_id", ""))
        if not _USER_ID.match(user_id):
            raise UsersConfigError(
                f"{where}: user_id must match {_USER_ID.pattern}, got {user_id!r}"
            )
        if user_id in users:
            raise UsersConfigError(f"{where}: user_id {user_id!r} appears twice")
        printed_name = str(entry.get("printed_name", "")).strip()
        if not printed_name:
            raise UsersConfigError(
                f"{where} ({user_id}): printed_name is required (signatures show it)"
            )
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise UsersConfigError(
                f"{where} ({user_id}): roles must be a non-empty list of {', '.join(sorted(ROLES))}"
            )
        password_hash = str(entry.get("password_hash", ""))
        if not check_password_hash_format(password_hash):
            raise UsersConfigError(
                f"{where} ({user_id}): password_hash is not a scrypt hash; make one with "
                "python -m pharma_manufacturing.services.credentials"
            )
        users[user_id] = User(user_id, printed_name, frozenset(roles), password_hash)
    return tuple(users.values())


class UserDirectory:
    """The users from config: who may sign in, and check a password or a session token."""

    def __init__(self, users: Iterable[User], signing_key: bytes) -> None:
        self._users: Mapping[str, User] = {user.user_id: user for user in users}
        self._token_key = hmac.new(signing_key, b"pharma-manufacturing session", "sha256").digest()

    def authenticate(self, user_id: str, password: str) -> User:
        """The user, if the password is theirs; AuthenticationError otherwise."""
        user = self._users.get(user_id)
        if not password_matches(password, user.password_hash if user else _DUMMY_HASH) or not user:
            raise AuthenticationError(f"wrong user id or password for '{user_id}'")
        return user

    def issue_token(self, user: User, now: float | None = None) -> tuple[str, float]:
        expires = int((now or time.time()) + SESSION_TTL_S)
        payload = f"{user.user_id}.{expires}"
        return f"{payload}.{self._token_mac(payload)}", float(expires)

    def authenticate_token(self, token: str, now: float | None = None) -> User:
        user_id, _, rest = token.partition(".")
        expires, _, mac = rest.partition(".")
        payload = f"{user_id}.{expires}"
        if not mac or not hmac.compare_digest(mac.encode(), self._token_mac(payload).encode()):
            raise AuthenticationError("the session token is not valid: sign in again")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            raise AuthenticationError("the session token has expired: sign in again")
        user = self._users.get(user_id)
        if user is None:
            raise AuthenticationError(f"user '{user_id}' no longer exists")
        return user

    def _token_mac(self, payload: str) -> str:
        return hmac.new(self._token_key, payload.encode(), "sha256").hexdigest()


if __name__ == "__main__":
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("the two passwords differ")
    print(hash_password(first))
