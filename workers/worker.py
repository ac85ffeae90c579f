"""Building and running the zdp worker on the `zdp-deployments` task queue.

`build_worker` wires the activities to the configured platform; `run_worker` connects with the
standard TEMPORAL_* settings and drains on SIGTERM/SIGINT: it stops polling, lets running
activities finish within the grace period, then exits. Temporal retries anything left over on
another worker, so a stopped worker loses nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.compliance import ComplianceActivities
from activities.health import HealthActivities
from activities.notify import NotifyActivities
from activities.release import ReleaseActivities
from activities.risk import RiskActivities
from activities.runtime import RuntimeActivities
from activities.traffic import TrafficActivities
from workers.platforms import build_app_query, build_probe, build_router, build_runtime
from workflows.deployment import DeploymentWorkflow
from zdp.config import EngineConfig
from zdp.domain import AppQuery
from zdp.models import TASK_QUEUE
from zdp.notify import Notifier
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter
from zdp.settings import settings
from zdp.tracing import worker_interceptors

log = logging.getLogger("zdp.worker")

# The collector's generation thresholds in a running worker (see run_worker).
GC_THRESHOLDS = (50_000, 20, 100)

# How long a workflow task waits on this worker's own (sticky) queue before the server hands it
# to any worker on the task queue: the SDK's default, unless ZDP_WORKER_STICKY_TIMEOUT says
# otherwise. After a worker crash the next task waits this long (the tests that kill workers
# set a shorter one; a task that misses it is replayed from history by whichever worker polls).
STICKY_TIMEOUT = timedelta(seconds=10)


@dataclass
class Platform:
    runtime: Runtime
    router: TrafficRouter
    probe: HealthProbe
    app_query: AppQuery | None = None  # how domain checks ask a running version; HTTP if None

    @classmethod
    def from_environment(cls) -> Platform:
        """The backends named by ZDP_RUNTIME and ZDP_ROUTER (default: memory)."""
        return cls(
            runtime=build_runtime(),
            router=build_router(),
            probe=build_probe(),
            app_query=build_app_query(),
        )


def activities_for(
    platform: Platform,
    config: EngineConfig | None = None,
    trusted_keys_dir: Path | None = None,
    home: Path | None = None,
    notifier: Notifier | None = None,
) -> list[Callable[..., Any]]:
    release = ReleaseActivities(trusted_keys_dir, config)
    risk = RiskActivities(config, platform.runtime, platform.router, platform.app_query, home=home)
    runtime = RuntimeActivities(platform.runtime)
    traffic = TrafficActivities(platform.router, platform.runtime, platform.probe)
    health = HealthActivities(platform.runtime, platform.probe, platform.router)
    compliance = ComplianceActivities(home)
    notify = NotifyActivities(notifier)
    return [
        notify.notify,
        notify.post_notification,
        compliance.record_audit,
        compliance.seal_evidence,
        release.verify_release,
        risk.assess_risk,
        runtime.provision_version,
        runtime.retire_version,
        traffic.set_weights,
        traffic.get_weights,
        health.run_health_gate,
    ]


def build_worker(
    client: Client,
    platform: Platform | None = None,
    config: EngineConfig | None = None,
    trusted_keys_dir: Path | None = None,
    task_queue: str = TASK_QUEUE,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    home: Path | None = None,
    notifier: Notifier | None = None,
    sticky_timeout: timedelta = STICKY_TIMEOUT,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DeploymentWorkflow],
        activities=activities_for(
            platform or Platform.from_environment(), config, trusted_keys_dir, home, notifier
        ),
        graceful_shutdown_timeout=graceful_shutdown,
        sticky_queue_schedule_to_start_timeout=sticky_timeout,
        interceptors=worker_interceptors(client),  # workflow and activity spans (zdp.tracing)
    )


async def run_worker(
    client: Client,
    platform: Platform | None = None,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    sticky = timedelta(seconds=settings().WORKER_STICKY_TIMEOUT)
    worker = build_worker(
        client, platform, graceful_shutdown=graceful_shutdown, sticky_timeout=sticky
    )
    # Everything loaded so far lives as long as the worker: keep it out of the collector's
    # full passes, whose pauses would otherwise land in the middle of health gates.
    gc.freeze()
    # Collect less often: a deployment allocates freely (payloads, models, protobufs) and
    # little of it is cyclic. With the default thresholds (700, 10, 10) a worker running 80
    # deployments at once collected 2257 times and spent 2.8 s in the collector; with these,
    # 15 times and 0.15 s (bench/scale.py, docs/benchmarks.md).
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        if on_ready is not None:
            on_ready()
        await stop.wait()
        log.info("draining: no new tasks; running activities get %s to finish", graceful_shutdown)
