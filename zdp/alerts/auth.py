"""Who may call the receiver, and who the receiver is when it acts.

- Callers: Alertmanager presents a bearer token (`http_config.authorization.credentials_file`
  in its webhook config). The token lives in a file (ZDP_ALERT_RECEIVER_TOKEN_FILE, default
  $ZDP_HOME/alert-receiver.token), made on first start (mode 0600) when missing; it is compared
  in constant time.
- The receiver itself: a registered identity (ZDP_ALERT_RECEIVER_IDENTITY, default
  alert-receiver) with its own Ed25519 key (ZDP_ALERT_RECEIVER_KEY, default
  $ZDP_HOME/keys/<identity>.key, made on first start when missing). Every pause and abort it
  sends is signed with that key, so a deployment knows who asked, as it does for a person. It
  does not start unless the identity registry holds that identity with that key.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zdp.compliance.registry import load_registry, registry_dir
from zdp.errors import ConfigError, SigningKeyError, ZdpError
from zdp.settings import Settings
from zdp.signing import (
    PRIVATE_KEY_SUFFIX,
    PUBLIC_KEY_SUFFIX,
    fingerprint,
    generate_key_pair,
    load_private_key,
)

TOKEN_FILE_NAME = "alert-receiver.token"
MIN_TOKEN_LENGTH = 16


def token_path(found: Settings) -> Path:
    """ZDP_ALERT_RECEIVER_TOKEN_FILE, else $ZDP_HOME/alert-receiver.token."""
    return found.ALERT_RECEIVER_TOKEN_FILE or found.home / TOKEN_FILE_NAME


def ensure_token(path: Path) -> tuple[str, bool]:
    """The bearer token in `path`, made there (0600, 256 random bits) when the file is
    missing: (token, made now). ConfigError (one line) when it cannot be read or is too short
    to be a secret."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        made = False
    except OSError as err:
        raise ConfigError(
            f"cannot create the alert receiver's token {path}: {err.strerror}"
        ) from None
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        made = True
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the alert receiver's token {path}: {err}") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"{path}: the token must be one line of at least {MIN_TOKEN_LENGTH} characters "
            "without spaces (delete the file to have a new one made)"
        )
    return token, made


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as its bearer token (constant time)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@dataclass(frozen=True)
class ReceiverIdentity:
    """The identity the receiver acts as, and the key it signs with."""

    user: str
    key: Ed25519PrivateKey
    key_path: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key.public_key())


def receiver_identity(found: Settings) -> tuple[ReceiverIdentity, bool]:
    """The receiver's identity and key (the key made on first start where none is given):
    (identity, key made now). SigningKeyError or ConfigError, one line, when the key cannot
    be read or the registry does not hold this identity with this key."""
    user = found.ALERT_RECEIVER_IDENTITY
    path = found.ALERT_RECEIVER_KEY or found.home / "keys" / f"{user}{PRIVATE_KEY_SUFFIX}"
    made = False
    if found.ALERT_RECEIVER_KEY is None and not path.exists():
        try:
            generate_key_pair(path.parent, user)
            made = True
        except SigningKeyError:
            if not path.exists():  # not another process's key made meanwhile
                raise
    key = load_private_key(path)
    identity = ReceiverIdentity(user, key, path)
    check_registered(identity, registry_dir(found.home))
    return identity, made


def check_registered(identity: ReceiverIdentity, registry: Path) -> None:
    """ConfigError (one line, with the command that fixes it) unless `registry` holds
    `identity.user` with exactly this key: its controls would be refused everywhere."""
    registered = load_registry(registry).get(identity.user)
    public = identity.key_path.with_suffix(PUBLIC_KEY_SUFFIX)
    shown = str(public) if public.exists() else f"the public key of {identity.key_path}"
    if registered is None:
        raise ConfigError(
            f"{identity.user} is not a registered identity in {registry}, so every deployment "
            "would refuse its controls: an administrator registers its key "
            f"({identity.fingerprint}) with `zdp keys register {identity.user} "
            f"--public-key {shown} --kind bot "
            '--printed-name "Alertmanager webhook receiver"`'
        )
    if registered.fingerprint != identity.fingerprint:
        raise ConfigError(
            f"{identity.user} is registered in {registry} with key {registered.fingerprint}, "
            f"not with {identity.key_path} ({identity.fingerprint}): give the registered key "
            "(ZDP_ALERT_RECEIVER_KEY), or have an administrator remove and register it again"
        )


def operated_environments(user: str) -> list[str] | None:
    """The app/environment pairs whose `operators` in the engine configuration (as found here:
    the worker's may differ) list `user`; None when no configuration loads here."""
    from zdp.config import load_config

    try:
        config = load_config()
    except ZdpError:
        return None
    return [
        f"{app}/{name}"
        for app, app_config in sorted(config.apps.items())
        for name, env in sorted(app_config.environments.items())
        if user in env.operators
    ]
