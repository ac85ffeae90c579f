"""RedisHealthCache against a real redis-server (Debian package), started once per session."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.kit import Harness
from tests.ports import free_port
from zdp.errors import PlatformError
from zdp.health.cache import HealthCache, RedisHealthCache
from zdp.models import ProbeResult

INSTALL_HINT = "apt-get install -y redis-server (Debian/Ubuntu), or put redis-server on PATH"


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server not installed: {INSTALL_HINT}")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not answers_ping(port):
            if server.poll() is not None:
                pytest.fail(f"redis-server exited with {server.returncode} before answering PING")
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 10 s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


@pytest_asyncio.fixture
async def cache(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[RedisHealthCache]:
    # A prefix per test: tests share one server but never each other's keys.
    store = RedisHealthCache(redis_url, ttl_seconds=5.0, prefix=f"zdp:test:{request.node.name}:")
    try:
        yield store
    finally:
        await store.aclose()


def result(endpoint: str, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        endpoint=endpoint,
        ok=ok,
        latency_ms=2.25,
        status_code=200 if ok else 503,
        error=None if ok else "HTTP 503",
    )


async def test_redis_cache_is_a_health_cache(cache: RedisHealthCache) -> None:
    assert isinstance(cache, HealthCache)


async def test_put_then_get_round_trips_the_result(cache: RedisHealthCache) -> None:
    await cache.put(result("http://127.0.0.1:18102", ok=False))
    entry = await cache.get("http://127.0.0.1:18102")
    assert entry is not None
    assert entry.result == result("http://127.0.0.1:18102", ok=False)
    assert entry.at.tzinfo is not None
    assert await cache.get("http://127.0.0.1:1") is None


async def test_entries_expire_after_the_ttl(redis_url: str) -> None:
    short = RedisHealthCache(redis_url, ttl_seconds=0.2, prefix="zdp:test:ttl:")
    try:
        await short.put(result("a"))
        assert await short.get("a") is not None
        await asyncio.sleep(0.4)
        assert await short.get("a") is None
        assert await short.get_many(["a"]) == {}
    finally:
        await short.aclose()


async def test_get_many_returns_only_endpoints_with_health(cache: RedisHealthCache) -> None:
    await cache.put(result("a"))
    await cache.put(result("c", ok=False))
    found = await cache.get_many(["a", "b", "c", "a"])
    assert sorted(found) == ["a", "c"]
    assert found["c"].result.error == "HTTP 503"
    assert await cache.get_many([]) == {}


async def test_one_worker_reads_what_another_wrote(redis_url: str) -> None:
    writer = RedisHealthCache(redis_url, prefix="zdp:test:shared:")
    reader = RedisHealthCache(redis_url, prefix="zdp:test:shared:")
    try:
        await writer.put(result("http://10.0.0.7:8080"))
        entry = await reader.get("http://10.0.0.7:8080")
        assert entry is not None and entry.result.ok
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_unreadable_entry_reads_as_unknown(cache: RedisHealthCache) -> None:
    await cache._redis.set(cache.key("garbled"), b"not json")
    assert await cache.get("garbled") is None


async def test_unavailable_server_is_a_one_line_platform_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        down = RedisHealthCache(f"redis://127.0.0.1:{port}/0", ttl_seconds=1.0)
        try:
            with pytest.raises(PlatformError) as caught:
                await down.get("a")
            with pytest.raises(PlatformError):
                await down.put(result("a"))
        finally:
            await down.aclose()
    message = str(caught.value)
    assert message.startswith(f"health cache at redis://127.0.0.1:{port}/0 unavailable: ")
    assert "\n" not in message


async def test_status_reads_the_gates_health_from_the_shared_cache(
    redis_url: str, kit: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's gates write to Redis; `zdp status` (another process) reads it, no probing."""
    from zdp import deployments

    monkeypatch.setenv("ZDP_REDIS_URL", redis_url)
    async with kit.worker():  # its gates now cache into Redis
        result = await kit.deploy(kit.request("2.0.0"))
    assert result.outcome.value == "promoted"
    health = await deployments.cached_health(kit.client, "deploy-webshop-dev")
    canary = [e for e in health if "/canary/2.0.0/" in e]
    assert canary, health
    assert all(health[e].result.endpoint == e for e in canary)
