"""The `envoy` TrafficRouter: weights written to Envoy's watched route files, read back from it.

`set_weights` replaces the app's route file atomically (temp file in the same folder, fsync,
rename; in this process, because spawning one costs ~20 ms) and then polls the admin API
(`/config_dump?resource=dynamic_route_configs`) until Envoy serves exactly the requested split.
Envoy keeps the last good routes when it rejects a file, so nothing is assumed: a split that is
not confirmed within `confirm_timeout` is a PlatformError naming what is still applied.

`slot_stats` gives the gates what each slot's cluster served, read from `/stats` in one request.
Layout of clusters and routes: see `zdp.platforms.envoy.config`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from zdp.errors import PlatformError
from zdp.platforms.base import validate_weights
from zdp.platforms.envoy.config import (
    cluster_name,
    route_config_name,
    route_text,
    routes_path,
    write_atomically,
)
from zdp.platforms.layout import (
    SLOTS,
    LocalApp,
    environment_block,
    envoy_admin_port,
    envoy_dir,
    local_app,
    port_base,
)
from zdp.settings import zdp_home

POLL_INTERVAL_S = 0.002
NOT_RUNNING = "envoy is not running (start it with `zdp up`)"
# Counter (after `cluster.<app>|<slot>.`) -> SlotStats field.
COUNTERS = {
    "upstream_rq_total": "requests",
    "upstream_rq_2xx": "responses_2xx",
    "upstream_rq_5xx": "responses_5xx",
    "retry.upstream_rq_5xx": "retried_5xx",
    "upstream_cx_connect_fail": "connect_failures",
    "outlier_detection.ejections_enforced_total": "ejections",
}
LATENCY = "upstream_rq_time"
QUANTILES = {50.0: "latency_p50_ms", 95.0: "latency_p95_ms", 99.0: "latency_p99_ms"}


@dataclass(frozen=True)
class SlotStats:
    """What one slot's cluster counted since Envoy started (counters are cumulative).

    Fallback makes the canary's 2xx misleading: a request the canary failed and that stable
    answered on retry counts as a canary 2xx. A slot's real failures are therefore read from
    the counters that record the failed attempts themselves; see `failures`.
    """

    # upstream_rq_total: attempts sent on a connection (retries and fallback answers included;
    # an attempt whose connect failed is not counted here, only in connect_failures)
    requests: int = 0
    responses_2xx: int = 0  # upstream_rq_2xx: 2xx the client got (fallback answers included)
    responses_5xx: int = 0  # upstream_rq_5xx: 5xx passed on to the client (not retried)
    retried_5xx: int = 0  # retry.upstream_rq_5xx: 5xx attempts Envoy retried (users never saw)
    connect_failures: int = 0  # upstream_cx_connect_fail: refused or timed-out connects
    ejections: int = 0  # outlier_detection.ejections_enforced_total
    # upstream_rq_time quantiles since start, refreshed at each stats flush (1 s); Envoy's
    # histograms have 1 ms resolution, so loopback latencies mostly read 0. None: no samples.
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None

    @property
    def failures(self) -> int:
        """responses_5xx + retried_5xx + connect_failures: every failed attempt in the slot.

        A connect failure that no retry rescued is counted twice (the failed connect and the
        503 Envoy answers); one that a retry rescued is counted once. As failed connects are
        not in `requests`, an empty slot with weight can show more failures than requests.
        """
        return self.responses_5xx + self.retried_5xx + self.connect_failures


def _weights_text(weights: dict[str, int]) -> str:
    return ", ".join(f"{slot}={w}" for slot, w in weights.items()) or "no route"


def _nonzero(weights: dict[str, int]) -> dict[str, int]:
    return {slot: w for slot, w in weights.items() if w}


class EnvoyRouter:
    """TrafficRouter over the embedded Envoy of `home` (ZDP_HOME) and port base (ZDP_PORT_BASE)."""

    def __init__(
        self,
        home: Path | None = None,
        base: int | None = None,
        confirm_timeout: float = 2.0,
        environment: str | None = None,
    ) -> None:
        self.home = home if home is not None else zdp_home()
        # The environment whose listener and clusters this router steers (None: block 0).
        self.environment = environment
        self._scoped: dict[str, EnvoyRouter] = {}
        self.base = port_base(base)
        self.confirm_timeout = confirm_timeout
        self.admin_url = f"http://127.0.0.1:{envoy_admin_port(self.base)}"
        # Seconds from the rename of the last route file to Envoy serving it (for benchmarks).
        self.last_confirm_seconds: float | None = None
        self._client: httpx.AsyncClient | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    def for_environment(self, environment: str) -> EnvoyRouter:
        """The router of `environment`'s own listener and clusters on this Envoy."""
        environment_block(environment)  # an environment the stack has no place for: refused
        scoped = self._scoped.get(environment)
        if scoped is None:
            scoped = EnvoyRouter(self.home, self.base, self.confirm_timeout, environment)
            self._scoped[environment] = scoped
        return scoped

    def _target(self, app: str) -> LocalApp:
        return local_app(app).in_environment(self.environment)

    # ------------------------------------------------------------------ TrafficRouter

    async def set_weights(self, app: str, weights: dict[str, int]) -> dict[str, int]:
        """Apply `weights` (slot -> int >= 0, summing to 100) and return them as read back.

        Every slot named in `weights` is in the result, a zero-weight one as 0. Idempotent:
        when Envoy already serves the split, it returns at once.
        """
        target = self._target(app)
        requested = validate_weights(weights)
        wanted = _nonzero(requested)
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:  # two writers of one app's file must not confirm each other's split
            path = routes_path(self.home, target)
            text = route_text(target, requested)
            splits = await self._applied_splits(target)
            if splits and all(applied == wanted for applied in splits):
                if not await asyncio.to_thread(self._file_holds, path, text):
                    # Served but not on file (a rejected hand edit?): make the file agree.
                    await asyncio.to_thread(write_atomically, path, text)
                return self._result(requested, wanted)
            await asyncio.to_thread(write_atomically, path, text)
            renamed = time.perf_counter()
            deadline = time.monotonic() + self.confirm_timeout
            while True:
                splits = await self._applied_splits(target)
                if splits and all(applied == wanted for applied in splits):
                    self.last_confirm_seconds = time.perf_counter() - renamed
                    return self._result(requested, wanted)
                if time.monotonic() >= deadline:
                    still = " / ".join(dict.fromkeys(map(_weights_text, splits))) or "no route"
                    raise PlatformError(
                        f"envoy did not apply weights {_weights_text(wanted)} for {app} within "
                        f"{self.confirm_timeout:g} s (still {still}); Envoy keeps the last "
                        f"good routes when it rejects a file: see "
                        f"{envoy_dir(self.home) / 'envoy.log'}"
                    )
                await asyncio.sleep(POLL_INTERVAL_S)

    async def get_weights(self, app: str) -> dict[str, int]:
        """The split Envoy serves now (slots with a non-zero weight); empty without a route."""
        return await self._applied(self._target(app))

    # ------------------------------------------------------------------ stats for gates

    async def slot_stats(self, app: str) -> dict[str, SlotStats]:
        """Cumulative counters of each of the app's slots (all four; unused ones are zeros)."""
        target = self._target(app)
        prefix = re.escape(f"cluster.{cluster_name(target, '')}")
        wanted = "|".join(re.escape(name) for name in [*COUNTERS, LATENCY])
        data = await self._admin_json(
            "/stats",
            {"format": "json", "usedonly": "", "filter": f"^{prefix}[a-z]+\\.({wanted})$"},
        )
        fields: dict[str, dict[str, Any]] = {slot: {} for slot in SLOTS}
        for entry in data.get("stats", []):
            if "histograms" in entry:
                self._read_quantiles(target, entry["histograms"], fields)
                continue
            slot, metric = _split_stat(target, str(entry.get("name", "")))
            if slot in fields and metric in COUNTERS:
                fields[slot][COUNTERS[metric]] = int(entry.get("value", 0))
        return {slot: SlotStats(**values) for slot, values in fields.items()}

    @staticmethod
    def _read_quantiles(
        target: LocalApp, histograms: dict[str, Any], fields: dict[str, dict[str, Any]]
    ) -> None:
        supported = [float(q) for q in histograms.get("supported_quantiles", [])]
        for item in histograms.get("computed_quantiles", []):
            slot, metric = _split_stat(target, str(item.get("name", "")))
            if slot not in fields or metric != LATENCY:
                continue
            values = item.get("values", [])
            for quantile, field in QUANTILES.items():
                if quantile in supported and supported.index(quantile) < len(values):
                    value = values[supported.index(quantile)].get("cumulative")
                    if isinstance(value, int | float) and not math.isnan(value):
                        fields[slot][field] = float(value)

    # ------------------------------------------------------------------ admin API

    async def _applied(self, target: LocalApp) -> dict[str, int]:
        """The split Envoy serves for the app; {} when it has no such route."""
        splits = await self._applied_splits(target)
        if any(split != splits[0] for split in splits[1:]):
            raise PlatformError(
                f"the routes of {target.name} split traffic differently ({splits}): "
                f"set the weights again to rewrite its route file"
            )
        return splits[0] if splits else {}

    async def _applied_splits(self, target: LocalApp) -> list[dict[str, int]]:
        """The split of each of the app's routes as Envoy serves them; [] without a route."""
        name = route_config_name(target)
        dump = await self._admin_json(
            "/config_dump",
            {"resource": "dynamic_route_configs", "name_regex": re.escape(name)},
        )
        for config in dump.get("configs", []):
            route_config = config.get("route_config", {})
            if route_config.get("name") == name:
                return _splits_of(target, route_config)
        return []

    async def _admin_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = self.admin_url + path
        try:
            response = await self._session().get(url, params=params)
        except httpx.ConnectError:
            raise PlatformError(f"{NOT_RUNNING}: nothing answers at {self.admin_url}") from None
        except httpx.HTTPError as err:
            raise PlatformError(f"envoy admin {url} failed: {type(err).__name__} {err}") from None
        if response.status_code == 404 and path == "/config_dump":
            return {}  # no resource of that kind yet
        if response.status_code != 200:
            raise PlatformError(
                f"envoy admin {url} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            data = response.json()
        except ValueError:
            raise PlatformError(f"envoy admin {url} answered something that is not JSON") from None
        return dict(data) if isinstance(data, dict) else {}

    def _session(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: the admin is on loopback, never behind an HTTP(S)_PROXY.
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False)
        return self._client

    async def aclose(self) -> None:
        """Close the pooled admin connections (its environments' too); the next call opens a
        new pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        for scoped in self._scoped.values():
            await scoped.aclose()

    async def __aenter__(self) -> EnvoyRouter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _file_holds(path: Path, text: str) -> bool:
        try:
            return path.read_text(encoding="utf-8") == text
        except OSError:
            return False

    @staticmethod
    def _result(requested: dict[str, int], applied: dict[str, int]) -> dict[str, int]:
        """Every slot named in the request (zero-weight ones as 0), with the applied weights."""
        return {**{slot: 0 for slot in requested}, **applied}


def _split_stat(target: LocalApp, name: str) -> tuple[str, str]:
    """`cluster.<app>|<slot>.<metric>` -> (slot, metric); ("", "") for another name."""
    prefix = f"cluster.{cluster_name(target, '')}"
    if not name.startswith(prefix):
        return "", ""
    slot, _, metric = name[len(prefix) :].partition(".")
    return slot, metric


def _splits_of(target: LocalApp, route_config: dict[str, Any]) -> list[dict[str, int]]:
    """The split of each route of a RouteConfiguration (non-zero weights, in slot order)."""
    clusters = {cluster_name(target, slot): slot for slot in SLOTS}
    splits: list[dict[str, int]] = []
    for host in route_config.get("virtual_hosts", []):
        for route in host.get("routes", []):
            if "route" not in route:  # a direct response (drills are not routed): no split
                continue
            action = route["route"]
            if "cluster" in action:
                split = {clusters.get(action["cluster"], action["cluster"]): 100}
            else:
                split = {
                    clusters.get(c["name"], c["name"]): int(c.get("weight", 0))
                    for c in action.get("weighted_clusters", {}).get("clusters", [])
                }
            order = {slot: i for i, slot in enumerate(SLOTS)}
            splits.append(dict(sorted(_nonzero(split).items(), key=lambda kv: order.get(kv[0], 9))))
    return splits
