"""API-key authentication for the business API: every /api route but quotes, all of /graphql.

A key is sent in `X-API-Key` and configured only as its SHA-256 digest mapped to an account.
The account lands in the request state (`request.state.account`); a request without a key
or with an unknown one is answered 401 with a JSON error and `WWW-Authenticate`.
Health, metrics and version stay open, and so do quotes: public delayed market data that the
engine's probes and load generator read without a key.

Drills (/drill/*, see api/operations.py) take the same header but their own keys, the
configured `drill_keys`: `drill_holder` answers who may run one, or raises DrillRefused (401
without a key or with an unknown one, 403 with a trading key). A drill key cannot trade.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = b"x-api-key"
CHALLENGE = b'APIKey realm="finance-trading", header="X-API-Key"'
PUBLIC_PREFIXES = ("/api/quote/",)  # for GET and HEAD only
PROTECTED_PREFIXES = ("/api/", "/graphql")
_MAX_KEY_BYTES = 256


class ApiKeys:
    """Configured keys as SHA-256 digests -> account; a key is only ever compared hashed."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        self._digests = [(bytes.fromhex(digest), account) for digest, account in digests.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def account_for(self, key: bytes) -> str | None:
        """The key's account, or None. Compares against every digest in constant time."""
        if not key or len(key) > _MAX_KEY_BYTES:
            return None
        candidate = hashlib.sha256(key).digest()
        found = None
        for digest, account in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = account
        return found


class DrillRefused(Exception):
    """A drill call without a drill key: 401 (no key, unknown key) or 403 (a trading key)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def drill_holder(key: str | None, drill_keys: ApiKeys, api_keys: ApiKeys) -> str:
    """Who holds the drill key `key`; DrillRefused otherwise, saying what to send instead."""
    if key is None:
        raise DrillRefused(
            401,
            "UNAUTHENTICATED",
            "drills need a drill key: send it in the X-API-Key header",
        )
    raw = key.encode()
    holder = drill_keys.account_for(raw)
    if holder is not None:
        return holder
    account = api_keys.account_for(raw)
    if account is not None:
        raise DrillRefused(
            403,
            "FORBIDDEN",
            f"the key of account {account!r} may trade, not run drills: drills need a drill key",
        )
    raise DrillRefused(
        401, "UNAUTHENTICATED", "the key in X-API-Key is not a drill key here: check the key"
    )


def requires_api_key(method: str, path: str) -> bool:
    if method in ("GET", "HEAD") and path.startswith(PUBLIC_PREFIXES):
        return False
    return path.startswith(PROTECTED_PREFIXES)


class ApiKeyMiddleware:
    """Pure ASGI middleware; inside telemetry, so refused requests are counted and logged."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # WebSockets too: GraphQL over a WebSocket could run mutations without this check.
        if scope["type"] not in ("http", "websocket") or not requires_api_key(
            scope.get("method", "GET"), scope["path"]
        ):
            await self.app(scope, receive, send)
            return
        key = next((value for name, value in scope["headers"] if name == HEADER), None)
        account = self.keys.account_for(key) if key is not None else None
        if account is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # policy violation
            else:
                await _refuse(send, missing=key is None)
            return
        scope.setdefault("state", {})["account"] = account
        await self.app(scope, receive, send)


async def _refuse(send: Send, *, missing: bool) -> None:
    message = (
        "this endpoint needs an API key: send it in the X-API-Key header"
        if missing
        else "the API key in X-API-Key is not valid here: check the key, or ask for one"
    )
    body = json.dumps({"error": {"code": "UNAUTHENTICATED", "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", CHALLENGE),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
