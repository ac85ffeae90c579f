"""Refuse a second delivery of the same signed Slack request within its validity window.

A captured request verifies again for as long as its timestamp is within five minutes of the
clock, so the signature alone does not stop a replay. The guard remembers each verified
(timestamp, signature) pair until its timestamp leaves the window and answers a repeat with an
empty 200: Slack sees success, nothing is done twice.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

# Slack's window (slack_sdk.signature.SignatureVerifier accepts |now - timestamp| <= 300 s).
WINDOW_SECONDS = 300
DEFAULT_MAX_ENTRIES = 10_000

log = logging.getLogger(__name__)


class ReplayCache:
    """Bounded memory of seen keys, each kept until its own expiry time.

    When full, the oldest entry is dropped first: the bound keeps a flood of genuine requests
    from growing memory without limit, at the price of forgetting the oldest of them early.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._expiry: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def first_sighting(self, key: tuple[str, str], expires_at: float, now: float) -> bool:
        """True the first time `key` is seen (and remember it until `expires_at`)."""
        self._forget_expired(now)
        if key in self._expiry:
            return False
        self._expiry[key] = expires_at
        while len(self._expiry) > self.max_entries:
            self._expiry.popitem(last=False)
        return True

    def _forget_expired(self, now: float) -> None:
        expired = [key for key, at in self._expiry.items() if at < now]
        for key in expired:
            del self._expiry[key]


class ReplayGuard(AsyncMiddleware):
    """Bolt middleware placed after signature verification: only verified requests count."""

    def __init__(
        self, cache: ReplayCache | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.cache = cache or ReplayCache()
        self.clock = clock

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        timestamp = req.headers.get("x-slack-request-timestamp", [""])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        try:
            # A timestamp up to WINDOW_SECONDS ahead of the clock still verifies, so the pair
            # is remembered until the timestamp itself is out of the window.
            expires_at = int(timestamp) + WINDOW_SECONDS + 1
        except ValueError:
            return await next()  # unsigned (socket mode): nothing to deduplicate on
        if self.cache.first_sighting((timestamp, signature), expires_at, self.clock()):
            return await next()
        log.warning("replayed Slack request ignored (timestamp %s)", timestamp)
        return BoltResponse(status=200, body="")
