"""RedisHealthCache against a real redis-server (Debian package): one started once per session,
and one per test that the test stops mid-gate and starts again."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.kit import Harness
from tests.ports import free_port
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


class RedisProcess:
    """A redis-server of this test's own on a fixed loopback port: stopped and started again
    by pid, on the same port, so a client's URL stays valid across the outage."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary, self.port = binary, port
        self.server: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not answers_ping(self.port):
            if self.server.poll() is not None:
                pytest.fail(f"redis-server exited with {self.server.returncode} before PING")
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server not installed: {INSTALL_HINT}")
    return binary


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = RedisProcess(_redis_binary(), free_port())
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A server for one test, which the test may stop and start again."""
    server = RedisProcess(_redis_binary(), free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


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
        await writer.flush()  # written in the background
        entry = await reader.get("http://10.0.0.7:8080")
        assert entry is not None and entry.result.ok
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_unreadable_entry_reads_as_unknown(cache: RedisHealthCache) -> None:
    await cache._redis.set(cache.key("garbled"), b"not json")
    assert await cache.get("garbled") is None


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


def cache_warnings(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "zdp.health.cache" and words in r.getMessage()
    ]


async def test_redis_stopped_mid_gate_degrades_to_memory_and_the_deployment_goes_on(
    own_redis: RedisProcess,
    kit: Harness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stops while a gate bakes: one warning, the gates go on from memory and pass; Redis
    is started again: one warning more, and the worker writes to it again."""
    caplog.set_level(logging.WARNING, logger="zdp.health.cache")
    monkeypatch.setenv("ZDP_REDIS_URL", own_redis.url)

    async def logged(words: str) -> None:
        deadline = time.monotonic() + 60
        while not cache_warnings(caplog, words):
            assert time.monotonic() < deadline, f"no warning with {words!r} within 60 s"
            await asyncio.sleep(0.05)

    async with kit.worker():
        # Four steps of 3 s: gates still run after each change below.
        handle = await kit.start(kit.request("2.0.0", bake_seconds=3.0))
        await kit.wait_for(handle, lambda s: s.weights.get("canary", 0) > 0, timeout=60)
        own_redis.stop()  # mid-gate
        await logged("unavailable (")
        own_redis.start()  # empty: nothing the worker wrote before survived
        await logged("answers again")
        result = await asyncio.wait_for(handle.result(), timeout=120)

    assert result.outcome.value == "promoted"
    verdicts = [e.data["result"] for e in result.timeline if e.kind == "gate_verdict"]
    assert verdicts and set(verdicts) == {"pass"}
    # One warning per outage and one per return, in turn. (On a very busy machine a call can
    # time out once more: that is another outage, told once too.)
    said = [
        "down" if "unavailable (" in w else "back"
        for w in cache_warnings(caplog, "health cache at ")
    ]
    assert said[:2] == ["down", "back"]
    assert all(a != b for a, b in itertools.pairwise(said)), said
    reader = RedisHealthCache(own_redis.url)
    try:
        keys = await reader._redis.keys("zdp:health:*")
    finally:
        await reader.aclose()
    assert keys, "the worker did not write to Redis once it was back"


async def test_a_sweep_cancelled_as_redis_stalls_and_resumes_always_ends(
    own_redis: RedisProcess,
) -> None:
    """A gate cancels its sweep when it ends. redis-py can hang a task cancelled in the middle of
    a command as its answer arrives; puts never make one, so every cancelled sweep ends."""
    assert own_redis.server is not None
    pid = own_redis.server.pid
    cache = RedisHealthCache(own_redis.url, call_timeout=0.25, recheck_seconds=0.1)
    results = [result(f"e{i}") for i in range(8)]

    async def sweep() -> None:
        while True:
            for each in results:
                await cache.put(each)
            await asyncio.sleep(0.005)

    try:
        for attempt in range(20):
            os.kill(pid, signal.SIGSTOP)  # Redis stalls mid-sweep...
            task = asyncio.create_task(sweep())
            await asyncio.sleep(0.05 + 0.03 * (attempt % 13))
            os.kill(pid, signal.SIGCONT)  # ...answers again, and the gate ends now
            await asyncio.sleep(0.01 * (attempt % 7))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done == {task}, f"a cancelled sweep did not end (attempt {attempt})"
    finally:
        os.kill(pid, signal.SIGCONT)
        await cache.aclose()
