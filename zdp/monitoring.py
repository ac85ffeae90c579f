"""The embedded stack's Prometheus: it scrapes the worker, every app slot and Envoy.

`zdp up` starts it when the `prometheus` binary is installed (Debian's package); without it the
stack says so in one line and runs without (the PromQL templates of the gates are then skipped,
and each verdict says so). Its config is written from the stack's port map
(zdp.platforms.layout), so every scrape target is known in advance:

    job zdp-worker        the engine's metrics (zdp.metrics), BASE+2
    job temporal-worker   the Temporal SDK's metrics of the same worker, BASE+3
    job envoy             Envoy's /stats/prometheus on its admin port, BASE+1
    job apps              every (app, environment, slot) port, with the target labels `app`,
                          `environment` and `slot` the gate policies' PromQL templates select on

A slot with nothing running is a target that is down (`up == 0`); the apps' own series carry
the labels above. Scrapes every second, so a template over a few seconds has data during a
short bake. The alert and recording rules of infrastructure/monitoring/rules are loaded when
that folder is found up from the working directory (a checkout).

Like Envoy, it runs in its own session with its pid recorded, so `zdp down` stops exactly it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from zdp.errors import PlatformError
from zdp.fsutil import pid_alive, stop_pid, tail_log, write_file_atomic
from zdp.platforms.base import SLOTS
from zdp.platforms.layout import (
    envoy_admin_port,
    local_instances,
    port_base,
    prometheus_port,
    temporal_metrics_port,
    worker_metrics_port,
)

READY_TIMEOUT_S = 60.0
SCRAPE_INTERVAL = "1s"
INSTALL_HINT = "install Debian's package `prometheus` (apt-get install prometheus)"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def scrape_config(base: int | None = None, rule_files: list[Path] | None = None) -> dict[str, Any]:
    """Prometheus' configuration for the stack on port base `base`."""
    apps = [
        {
            "targets": [f"127.0.0.1:{app.slot_port(slot, base)}"],
            "labels": {
                "app": app.name,
                "environment": app.environment or "staging",
                "slot": slot,
            },
        }
        for app in local_instances()
        for slot in SLOTS
    ]
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(p) for p in rule_files or []],
        "scrape_configs": [
            {
                "job_name": "zdp-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_metrics_port(base)}"]}],
            },
            {
                "job_name": "temporal-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{temporal_metrics_port(base)}"]}],
            },
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{envoy_admin_port(base)}"]}],
            },
            {"job_name": "apps", "static_configs": apps},
        ],
    }


class PrometheusProcess:
    """The Prometheus of one ZDP_HOME and port base (127.0.0.1:BASE+4)."""

    def __init__(self, home: Path, base: int | None = None) -> None:
        self.home = home
        self.base = port_base(base)
        self.dir = home / "prometheus"
        self.config_path = self.dir / "prometheus.yml"
        self.pid_path = self.dir / "prometheus.pid"
        self.log_path = self.dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{prometheus_port(self.base)}"

    def running(self) -> int | None:
        """The recorded pid while it is this home's Prometheus, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid, str(self.config_path)) else None

    def start(self, rule_files: list[Path] | None = None) -> int:
        """Start it unless it runs; its pid. PlatformError when it cannot start (one line)."""
        pid = self.running()
        if pid is not None:
            return pid
        binary = prometheus_binary()
        if binary is None:
            raise PlatformError(f"prometheus is not installed: {INSTALL_HINT}")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = scrape_config(self.base, rule_files)
        write_file_atomic(self.config_path, yaml.safe_dump(config, sort_keys=False).encode())
        args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{prometheus_port(self.base)}",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        write_file_atomic(self.pid_path, f"{proc.pid}\n".encode())
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PlatformError(
                    f"prometheus exited during start-up: {tail_log(self.log_path, 3)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return proc.pid
            time.sleep(0.2)
        stop_pid(proc.pid, str(self.config_path), grace=5)
        raise PlatformError(
            f"prometheus did not become ready on {self.url} within {READY_TIMEOUT_S:.0f} s: "
            f"{tail_log(self.log_path, 3)}"
        )

    def stop(self) -> int | None:
        """Stop it by its recorded pid; the pid it had, or None if it was not running."""
        pid = self.running()
        if pid is not None:
            stop_pid(pid, str(self.config_path), grace=10)
        self.pid_path.unlink(missing_ok=True)
        return pid
