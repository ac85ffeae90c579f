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
# Redis is local or near: a call that takes longer counts as Redis being unavailable. No gate
# waits on it (writes go in the background), so it may allow for a busy machine.
DEFAULT_CALL_TIMEOUT_SECONDS = 1.0
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

    A gate's sweep awaits `put`, so `put` never waits on Redis: it keeps the result in this
    process's memory and leaves the write to one background writer, which sends what is
    pending (the latest result per endpoint) in one pipeline. No gate's task ever awaits or
    cancels a Redis call (redis-py's asyncio client can hang a task cancelled in the middle of
    a command). Every Redis call is bounded by redis-py's own socket timeouts, `call_timeout`
    (connect and read). The first call that fails (refused, timed out, refused by Redis) logs
    one warning and switches this process to memory; every `recheck_seconds` the writer PINGs,
    and when Redis answers one more warning says so and Redis is used again. `get` returns the
    newer of Redis's entry and this process's own, so a process reads what it just put.
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
        # Results waiting for the writer: endpoint -> (JSON value, when it was put).
        self._pending: dict[str, tuple[str, float]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
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
        if self.unavailable is not None or self._closing:
            return
        self._pending[result.endpoint] = (entry.model_dump_json(), self._clock())
        self._idle.clear()
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def get(self, endpoint: str) -> CachedHealth | None:
        own = await self._memory.get(endpoint)
        if self.unavailable is not None:
            return own
        raw = await self._call(self._redis.get(self.key(endpoint)))
        if raw is _FAILED:
            return own
        return _newer(self._decode(endpoint, raw), own)

    async def get_many(self, endpoints: Iterable[str]) -> dict[str, CachedHealth]:
        wanted: Sequence[str] = list(dict.fromkeys(endpoints))
        if not wanted:
            return {}
        own = await self._memory.get_many(wanted)
        if self.unavailable is not None:
            return own
        raws = await self._call(self._redis.mget([self.key(e) for e in wanted]))
        if raws is _FAILED:
            return own
        found: dict[str, CachedHealth] = {}
        for endpoint, raw in zip(wanted, raws, strict=True):
            entry = _newer(self._decode(endpoint, raw), own.get(endpoint))
            if entry is not None:
                found[endpoint] = entry
        return found

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (up to `timeout` s) until what was put is written, or Redis is given up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def aclose(self) -> None:
        """Stop the writer (after its write in flight, bounded) and close the connections."""
        self._closing = True
        self._wake.set()
        pending = [t for t in (self._writer,) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=4 * self.call_timeout + 1)
            for task in pending:
                task.cancel()  # not awaited: a cancelled redis call may never finish
        await self._memory.aclose()
        closing = asyncio.get_running_loop().create_task(self._redis.aclose())
        await asyncio.wait({closing}, timeout=4 * self.call_timeout + 1)

    async def _write_loop(self) -> None:
        """The writer: pending results to Redis in one pipeline; while Redis is unavailable,
        a PING every recheck_seconds until it answers."""
        while not self._closing:
            if self.unavailable is not None:
                self._idle.set()
                await self._sleep(self.recheck_seconds)
                if not self._closing and await self._call(self._redis.ping()) is not _FAILED:
                    self.unavailable = None
                    log.warning(
                        "health cache at %s answers again: back to Redis", redact_url(self.url)
                    )
                continue
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending, {}
            try:
                await self._write(batch)
            except Exception as exc:  # never let the writer die: memory, and one warning
                self._switch_to_memory(f"{type(exc).__name__}: {_reason(exc)}")

    async def _write(self, batch: dict[str, tuple[str, float]]) -> None:
        """One pipeline: SET each value with what is left of its TTL (expired ones not sent)."""
        now = self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint, (value, put_at) in batch.items():
                left_ms = round((self.ttl_seconds - (now - put_at)) * 1000)
                if left_ms > 0:
                    pipe.set(self.key(endpoint), value, px=left_ms)
            await self._call(pipe.execute())

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less when the cache is being closed."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _call(self, pending: Awaitable[Any]) -> Any:
        """The Redis call's answer, or _FAILED (and memory from now on); bounded by the
        client's socket timeouts, never cancelled from here."""
        from redis.exceptions import RedisError

        try:
            return await pending
        except (RedisError, OSError) as exc:
            self._switch_to_memory(_reason(exc))
            return _FAILED

    def _switch_to_memory(self, reason: str) -> None:
        if self.unavailable is not None:
            return  # one warning per outage
        self.unavailable = reason
        self._pending.clear()
        self._wake.set()  # the writer moves on to rechecking
        log.warning(
            "health cache at %s unavailable (%s): using this process's memory until Redis is "
            "reachable again (gates go on; other processes do not see this one's probes meanwhile)",
            redact_url(self.url),
            reason,
        )

    def _decode(self, endpoint: str, raw: bytes | str | None) -> CachedHealth | None:
        if raw is None:
            return None
        try:
            return CachedHealth.model_validate_json(raw)
        except pydantic.ValidationError:
            # Written by another version or by hand: treat it as unknown health, not healthy.
            log.warning("health cache entry for %s is not readable; ignoring it", endpoint)
            return None


_FAILED = object()  # a Redis call that failed or did not answer in time


def _newer(a: CachedHealth | None, b: CachedHealth | None) -> CachedHealth | None:
    if a is None or b is None:
        return a or b
    return a if a.at >= b.at else b


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def health_cache_from_env(ttl_seconds: float = DEFAULT_TTL_SECONDS) -> HealthCache:
    """RedisHealthCache when `ZDP_REDIS_URL` is set (and not empty), else MemoryHealthCache."""
    url = settings().REDIS_URL or ""
    if url:
        return RedisHealthCache(url, ttl_seconds=ttl_seconds)
    return MemoryHealthCache(ttl_seconds=ttl_seconds)
