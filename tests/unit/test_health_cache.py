"""The health cache without a Redis server: TTL on a fake clock, many endpoints at once, choice
by env, and a Redis that refuses or never answers (the cache degrades to memory)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
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


# --------------------------------------------------------------------------- Redis unreachable


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A Redis URL whose port is bound and never listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "zdp.health.cache"]


async def test_unreachable_redis_degrades_to_memory_with_one_warning(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zdp.health.cache")
    cache = RedisHealthCache(refused_url, ttl_seconds=5.0, recheck_seconds=3600)
    try:
        for i in range(20):
            await cache.put(healthy(f"e{i}"))
        entry = await cache.get("e3")
        found = await cache.get_many(["e1", "e2", "nowhere"])
    finally:
        await cache.aclose()
    assert entry is not None and entry.result == healthy("e3")
    assert sorted(found) == ["e1", "e2"]
    (warning,) = warnings_of(caplog)
    assert warning.startswith(f"health cache at {refused_url} unavailable (")
    assert "using this process's memory" in warning and "\n" not in warning
    assert cache.unavailable is not None


async def test_a_hung_redis_never_holds_up_a_put(
    silent_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Puts keep to memory and leave Redis to the background writer: 100 of them are not held
    up by a Redis that never answers (the bound is loose on purpose: one wait each would take
    25 s), gets are bounded by the call timeout, and the outage is one warning."""
    caplog.set_level(logging.WARNING, logger="zdp.health.cache")
    cache = RedisHealthCache(silent_url, call_timeout=0.25, recheck_seconds=0.05)
    started = time.monotonic()
    try:
        for i in range(100):
            await cache.put(healthy(f"e{i}"))
            await asyncio.sleep(0)  # the writer and its rechecks run meanwhile
        assert await cache.get("e99") is not None
    finally:
        await cache.aclose()
    assert time.monotonic() - started < 10.0
    assert len(warnings_of(caplog)) == 1


async def test_a_sweep_cancelled_while_redis_hangs_ends_at_once(silent_url: str) -> None:
    """A gate cancels its sweep when it ends; a sweep putting into a hung Redis must end too
    (redis-py can hang a task cancelled in the middle of a command: puts never make one)."""
    cache = RedisHealthCache(silent_url, call_timeout=0.25)

    async def sweep() -> None:
        while True:
            await cache.put(healthy("e"))
            await asyncio.sleep(0.01)

    try:
        task = asyncio.create_task(sweep())
        await asyncio.sleep(0.1)  # the writer is waiting on the silent server now
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done == {task}
    finally:
        await cache.aclose()


async def test_an_unreachable_redis_never_fails_a_call(refused_url: str) -> None:
    cache = RedisHealthCache(refused_url, recheck_seconds=0.0)
    try:
        await cache.put(healthy("a"))
        assert await cache.get("b") is None
        assert await cache.get_many([]) == {}
        await asyncio.sleep(0.2)  # a background recheck fails quietly
        await cache.put(healthy("b"))
    finally:
        await cache.aclose()
