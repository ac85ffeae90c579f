"""The in-memory health cache: TTL on a fake clock, many endpoints at once, choice by env."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zdp.errors import PlatformError
from zdp.health.cache import (
    CachedHealth,
    HealthCache,
    MemoryHealthCache,
    RedisHealthCache,
    health_cache_from_env,
    redact_url,
)
from zdp.models import ProbeResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def healthy(endpoint: str) -> ProbeResult:
    return ProbeResult(endpoint=endpoint, ok=True, latency_ms=1.5, status_code=200)


async def test_put_then_get_returns_the_result_and_its_time() -> None:
    cache = MemoryHealthCache(ttl_seconds=5.0, clock=FakeClock())
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    await cache.put(healthy("a"), at=at)
    assert await cache.get("a") == CachedHealth(result=healthy("a"), at=at)
    assert await cache.get("b") is None


async def test_put_without_time_stamps_it_now_in_utc() -> None:
    cache = MemoryHealthCache()
    await cache.put(healthy("a"))
    entry = await cache.get("a")
    assert entry is not None and entry.at.tzinfo is not None
    assert abs((datetime.now(UTC) - entry.at).total_seconds()) < 60


async def test_entry_expires_after_the_ttl() -> None:
    clock = FakeClock()
    cache = MemoryHealthCache(ttl_seconds=2.0, clock=clock)
    await cache.put(healthy("a"))
    clock.now += 1.999
    assert await cache.get("a") is not None
    clock.now += 0.001
    assert await cache.get("a") is None


async def test_a_newer_result_replaces_the_old_one_and_restarts_the_ttl() -> None:
    clock = FakeClock()
    cache = MemoryHealthCache(ttl_seconds=2.0, clock=clock)
    await cache.put(healthy("a"))
    clock.now += 1.5
    down = ProbeResult(endpoint="a", ok=False, latency_ms=50.0, error="timeout after 50 ms")
    await cache.put(down)
    clock.now += 1.5
    entry = await cache.get("a")
    assert entry is not None and entry.result == down


async def test_get_many_leaves_out_missing_and_expired_endpoints() -> None:
    clock = FakeClock()
    cache = MemoryHealthCache(ttl_seconds=2.0, clock=clock)
    await cache.put(healthy("old"))
    clock.now += 1.0
    await cache.put(healthy("a"))
    await cache.put(healthy("b"))
    clock.now += 1.0
    found = await cache.get_many(["a", "old", "missing", "b"])
    assert sorted(found) == ["a", "b"]
    assert found["a"].result == healthy("a")
    assert await cache.get_many([]) == {}


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        MemoryHealthCache(ttl_seconds=0)


def test_memory_cache_without_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZDP_REDIS_URL", raising=False)
    cache = health_cache_from_env()
    assert isinstance(cache, MemoryHealthCache)
    assert isinstance(cache, HealthCache)


async def test_redis_cache_when_redis_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDP_REDIS_URL", "redis://127.0.0.1:1/0")
    cache = health_cache_from_env(ttl_seconds=1.0)
    assert isinstance(cache, RedisHealthCache)
    assert cache.ttl_seconds == 1.0
    await cache.aclose()


def test_invalid_redis_url_is_a_platform_error() -> None:
    with pytest.raises(PlatformError, match="invalid"):
        RedisHealthCache("http://not-redis")


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("redis://user:s3cret@cache:6379/0") == "redis://user:***@cache:6379/0"
    assert redact_url("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
