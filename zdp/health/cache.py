"""The health-state cache: the latest probe result per endpoint, for a few seconds, shared.

Gates, `zdp status` and the CLI read an endpoint's last known health from here instead of
probing it again. Entries expire `ttl_seconds` after they are written; an expired or missing
entry reads as None, never as healthy. Two backends behind one protocol: `MemoryHealthCache`
(one process) and `RedisHealthCache` (several workers share what each one probed: SET with a
PX expiry, MGET for many endpoints, JSON values). `health_cache_from_env()` picks Redis when
`ZDP_REDIS_URL` is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
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
    """HealthCache in Redis, shared by every worker and CLI that uses the same URL and prefix."""

    def __init__(
        self,
        url: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        prefix: str = "zdp:health:",
        socket_timeout: float = 1.0,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.ttl_seconds = _check_ttl(ttl_seconds)
        self.prefix = prefix
        try:
            # One quick retry, no backoff: a cache that is down must not stall a gate for seconds.
            self._redis: Any = Redis.from_url(
                url,
                socket_connect_timeout=socket_timeout,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise PlatformError(f"health cache URL {redact_url(url)!r} is invalid: {exc}") from exc

    def key(self, endpoint: str) -> str:
        return f"{self.prefix}{endpoint}"

    async def put(self, result: ProbeResult, at: datetime | None = None) -> None:
        value = _entry(result, at).model_dump_json()
        ttl_ms = max(1, round(self.ttl_seconds * 1000))
        await self._call("SET", self._redis.set(self.key(result.endpoint), value, px=ttl_ms))

    async def get(self, endpoint: str) -> CachedHealth | None:
        raw = await self._call("GET", self._redis.get(self.key(endpoint)))
        return self._decode(endpoint, raw)

    async def get_many(self, endpoints: Iterable[str]) -> dict[str, CachedHealth]:
        wanted: Sequence[str] = list(dict.fromkeys(endpoints))
        if not wanted:
            return {}
        raws = await self._call("MGET", self._redis.mget([self.key(e) for e in wanted]))
        found: dict[str, CachedHealth] = {}
        for endpoint, raw in zip(wanted, raws, strict=True):
            entry = self._decode(endpoint, raw)
            if entry is not None:
                found[endpoint] = entry
        return found

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: str, pending: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return await pending
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
            raise PlatformError(
                f"health cache at {redact_url(self.url)} unavailable: {reason}; start Redis "
                f"or unset {REDIS_URL_ENV} to use the in-memory cache"
            ) from exc
        except RedisError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise PlatformError(
                f"health cache at {redact_url(self.url)} refused {command}: {reason}"
            ) from exc

    def _decode(self, endpoint: str, raw: bytes | str | None) -> CachedHealth | None:
        if raw is None:
            return None
        try:
            return CachedHealth.model_validate_json(raw)
        except pydantic.ValidationError:
            # Written by another version or by hand: treat it as unknown health, not healthy.
            log.warning("health cache entry for %s is not readable; ignoring it", endpoint)
            return None


def health_cache_from_env(ttl_seconds: float = DEFAULT_TTL_SECONDS) -> HealthCache:
    """RedisHealthCache when `ZDP_REDIS_URL` is set (and not empty), else MemoryHealthCache."""
    url = settings().REDIS_URL or ""
    if url:
        return RedisHealthCache(url, ttl_seconds=ttl_seconds)
    return MemoryHealthCache(ttl_seconds=ttl_seconds)
