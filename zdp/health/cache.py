"""The health-state cache: the latest probe result per endpoint, for a few seconds, shared.

Gates, `zdp status` and the CLI read an endpoint's last known health from here instead of
probing it again. Entries expire `ttl_seconds` after they are written; an expired or missing
entry reads as None, never as healthy. Two backends behind one protocol: `MemoryHealthCache`
(one process) and `RedisHealthCache` (several workers share what each one probed: SET with a
PX expiry, MGET for many endpoints, JSON values; while Redis is unreachable it degrades to
memory, with one warning). `health_cache_from_env()` picks Redis when `ZDP_REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import pydantic
from pydantic import BaseModel, ConfigDict

from zdp.errors import PlatformError
from zdp.models import ProbeResult
from zdp.settings import settings

log = logging.getLogger("zdp.health.cache")

REDIS_URL_ENV = "ZDP_REDIS_URL"
DEFAULT_TTL_SECONDS = 5.0
# Redis is local or near: a call that takes longer counts as Redis being unavailable.
DEFAULT_CALL_TIMEOUT_SECONDS = 0.25
DEFAULT_RECHECK_SECONDS = 2.0


class CachedHealth(BaseModel):
    """An endpoint's last probe result and when it was taken."""

    model_config = ConfigDict(extra="forbid")

    result: ProbeResult
    at: datetime


@runtime_checkable
class HealthCache(Protocol):
    """The latest `ProbeResult` per endpoint, each forgotten `ttl_seconds` after it was put."""

    async def put(self, result: ProbeResult, at: datetime | None = None) -> None:
        """Remember `result` as the endpoint's latest health, taken at `at` (default: now)."""
        ...

    async def get(self, endpoint: str) -> CachedHealth | None:
        """The endpoint's latest health, or None when there is none or it expired."""
        ...

    async def get_many(self, endpoints: Iterable[str]) -> dict[str, CachedHealth]:
        """The latest health of each endpoint that has one; missing and expired ones left out."""
        ...

    async def aclose(self) -> None:
        """Release connections; the cache may not be used afterwards."""
        ...


def _entry(result: ProbeResult, at: datetime | None) -> CachedHealth:
    return CachedHealth(result=result, at=at if at is not None else datetime.now(UTC))


def _check_ttl(ttl_seconds: float) -> float:
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    return ttl_seconds


class MemoryHealthCache:
    """HealthCache in this process's memory; the TTL runs on `clock` from the time of `put`."""

    def __init__(
        self, ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = _check_ttl(ttl_seconds)
        self._clock = clock
        self._entries: dict[str, tuple[float, CachedHealth]] = {}

    async def put(self, result: ProbeResult, at: datetime | None = None) -> None:
        self._entries[result.endpoint] = (self._clock() + self.ttl_seconds, _entry(result, at))

    async def get(self, endpoint: str) -> CachedHealth | None:
        found = self._entries.get(endpoint)
        if found is None:
            return None
        expires, entry = found
        if self._clock() >= expires:
            del self._entries[endpoint]
            return None
        return entry

    async def get_many(self, endpoints: Iterable[str]) -> dict[str, CachedHealth]:
        found: dict[str, CachedHealth] = {}
        for endpoint in endpoints:
            entry = await self.get(endpoint)
            if entry is not None:
                found[endpoint] = entry
        return found

    async def aclose(self) -> None:
        self._entries.clear()


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisHealthCache:
    """HealthCache in Redis, shared by every worker and CLI that uses the same URL and prefix;
    while Redis does not answer, this process's memory.

    A gate's sweep awaits `put`, so no call here may hold it up: every Redis call is bounded
    by `call_timeout`, and the first one that fails (refused, timed out, refused by Redis) logs
    one warning and switches this process to memory. From then on calls go to memory at once;
    every `recheck_seconds` one PING, in the background and never awaited by a caller, looks
    for Redis again, and when it answers one more warning says so and calls go back to Redis.
    Every put is also kept in memory, so the switch loses nothing this process probed.
    """

    def __init__(
        self,
        url: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        prefix: str = "zdp:health:",
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS,
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.ttl_seconds = _check_ttl(ttl_seconds)
        self.prefix = prefix
        self.call_timeout = call_timeout
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._memory = MemoryHealthCache(ttl_seconds, clock)
        self.unavailable: str | None = None  # why Redis is not used now; None: it is
        self._next_check = 0.0
        self._recheck: asyncio.Task[None] | None = None
        try:
            # One quick retry (a pooled connection Redis closed), no backoff.
            self._redis: Any = Redis.from_url(
                url,
                socket_connect_timeout=call_timeout,
                socket_timeout=call_timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise PlatformError(f"health cache URL {redact_url(url)!r} is invalid: {exc}") from exc

    def key(self, endpoint: str) -> str:
        return f"{self.prefix}{endpoint}"

    async def put(self, result: ProbeResult, at: datetime | None = None) -> None:
        entry = _entry(result, at)
        await self._memory.put(result, entry.at)
        if not self._use_redis():
            return
        ttl_ms = max(1, round(self.ttl_seconds * 1000))
        value = entry.model_dump_json()
        await self._call(self._redis.set(self.key(result.endpoint), value, px=ttl_ms))

    async def get(self, endpoint: str) -> CachedHealth | None:
        if self._use_redis():
            raw = await self._call(self._redis.get(self.key(endpoint)))
            if raw is not _FAILED:
                return self._decode(endpoint, raw)
        return await self._memory.get(endpoint)

    async def get_many(self, endpoints: Iterable[str]) -> dict[str, CachedHealth]:
        wanted: Sequence[str] = list(dict.fromkeys(endpoints))
        if not wanted:
            return {}
        if self._use_redis():
            raws = await self._call(self._redis.mget([self.key(e) for e in wanted]))
            if raws is not _FAILED:
                found: dict[str, CachedHealth] = {}
                for endpoint, raw in zip(wanted, raws, strict=True):
                    entry = self._decode(endpoint, raw)
                    if entry is not None:
                        found[endpoint] = entry
                return found
        return await self._memory.get_many(wanted)

    async def aclose(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recheck
        await self._memory.aclose()
        await self._redis.aclose()

    def _use_redis(self) -> bool:
        """Whether calls go to Redis now; while they do not, start a recheck when one is due."""
        if self.unavailable is None:
            return True
        running = self._recheck is not None and not self._recheck.done()
        if not running and self._clock() >= self._next_check:
            self._next_check = self._clock() + self.recheck_seconds
            self._recheck = asyncio.get_running_loop().create_task(self._ping())
        return False

    async def _call(self, pending: Awaitable[Any]) -> Any:
        """The Redis call's answer, or _FAILED (and memory from now on) within call_timeout."""
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(pending, self.call_timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._switch_to_memory(_reason(exc))
            return _FAILED

    def _switch_to_memory(self, reason: str) -> None:
        if self.unavailable is not None:
            return  # one warning per outage
        self.unavailable = reason
        self._next_check = self._clock() + self.recheck_seconds
        log.warning(
            "health cache at %s unavailable (%s): using this process's memory until Redis is "
            "reachable again (gates go on; other processes do not see this one's probes meanwhile)",
            redact_url(self.url),
            reason,
        )

    async def _ping(self) -> None:
        from redis.exceptions import RedisError

        try:
            await asyncio.wait_for(self._redis.ping(), self.call_timeout)
        except (RedisError, OSError, TimeoutError):
            return
        self.unavailable = None
        log.warning("health cache at %s answers again: back to Redis", redact_url(self.url))

    def _decode(self, endpoint: str, raw: bytes | str | None) -> CachedHealth | None:
        if raw is None:
            return None
        try:
            return CachedHealth.model_validate_json(raw)
        except pydantic.ValidationError:
            # Written by another version or by hand: treat it as unknown health, not healthy.
            log.warning("health cache entry for %s is not readable; ignoring it", endpoint)
            return None


_FAILED = object()  # a Redis call that did not answer in time or failed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def health_cache_from_env(ttl_seconds: float = DEFAULT_TTL_SECONDS) -> HealthCache:
    """RedisHealthCache when `ZDP_REDIS_URL` is set (and not empty), else MemoryHealthCache."""
    url = settings().REDIS_URL or ""
    if url:
        return RedisHealthCache(url, ttl_seconds=ttl_seconds)
    return MemoryHealthCache(ttl_seconds=ttl_seconds)
