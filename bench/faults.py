"""The fault matrix (issue 18): a deployment under load, one fault at one moment, and whether it
still ends right.

Runs its own embedded stack (Temporal dev server, Envoy, a worker on the local runtime, real
app processes) in a temporary ZDP_HOME, like bench/zero_downtime.py, whose load helper it uses:
an independent load generator (`python -m zdp.loadgen`, a process of its own) sends steady GETs
through the app's Envoy listener for the whole deployment and counts what failed. For each case
a deployment of finance-trading (canary 1 → 5 → 25 → 100 %, 2 s bakes: the demo's policy) runs
while the fault is injected, and the row says:

- outcome        what the deployment ended as (and `expected`: what it should end as);
- requests_failed requests the load generator saw fail (the goal is 0);
- audit_ok       `zdp audit verify` passes on the home, and the deployment's entries in the audit
                 log are its timeline exactly: every event once, none missing, none duplicated;
- recovery_s     seconds from the fault to the deployment moving again: the first of a timeline
                 event after the fault, a change of the app's weights in Envoy, or an activity of
                 the deployment started again on a live worker (Temporal's pending activity);
- note           what happened, and where a case misses the goal, why.

    .venv/bin/python bench/faults.py [--json] [--only NAME ...] [--rate 200]
    .venv/bin/python bench/faults.py --table bench/results/faults-<date>.json   # the docs' table

Case interface (bench/faults_infra.py, and any other module of cases, plugs in here)
------------------------------------------------------------------------------------
A case is an async function `case(h: Harness) -> dict` that runs on the bench's one stack and
returns `{"outcome": str, "requests_failed": int, "audit_ok": bool, "recovery_s": float | None,
"note": str}` (more keys are kept in the JSON). Most cases are one call:

    async def my_case(h: Harness) -> dict[str, Any]:
        return await h.deploy(my_fault, expected="promoted", note="...")

where `my_fault(run: Run) -> str` waits for its moment (`await run.until(lambda s: ...)` on the
deployment's status, `await run.activity_scheduled("run_health_gate", nth=2)` on its history),
injects the fault, calls `run.injected()` at that instant (the recovery clock starts there),
undoes it when the case needs that, and returns a note. `h.deploy` starts the load, the
deployment (approved by its approvers when asked), the fault; it returns the row. Helpers a
case may use: `h.kill_worker()`, `h.replace_worker()` (as `zdp up` does), `h.worker_env(**env)`
(a context manager: the stack's worker restarted with extra environment, e.g. ZDP_REDIS_URL,
and put back after), `h.slot_pid(slot)`, `h.audit_check(...)`. A module of cases exports
`CASES: dict[str, Case]`, run after this module's own in that order. bench/faults_infra.py
(Redis, PostgreSQL, disk full) is imported when it exists; when it does not, the output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from bench.zero_downtime import _url  # noqa: E402
from zdp import deployments  # noqa: E402
from zdp.cli.demo import APPROVERS, DEMO_CONFIG, ENV, INITIATOR, Demo  # noqa: E402
from zdp.fsutil import pid_alive  # noqa: E402
from zdp.loadgen import LoadProcess  # noqa: E402
from zdp.models import (  # noqa: E402
    DeploymentRequest,
    DeploymentResult,
    DeploymentStatus,
    Phase,
    Strategy,
    TimelineEvent,
)
from zdp.platforms.envoy.router import EnvoyRouter  # noqa: E402
from zdp.stack import Stack  # noqa: E402
from zdp.temporal import connect  # noqa: E402

APP = "finance-trading"
WORKFLOW_ID = f"deploy-{APP}-{ENV}"
ZDP = str(Path(sys.executable).parent / "zdp")
DEPLOY_TIMEOUT_S = 300.0  # one deployment, faults and recovery included
Fault = Callable[["Run"], Awaitable[str]]
Case = Callable[["Harness"], Awaitable[dict[str, Any]]]


# ---------------------------------------------------------------------------- one deployment


@dataclass
class Run:
    """One deployment while it runs: what a fault waits on, and the instant it was injected."""

    h: Harness
    workflow_id: str
    run_id: str
    fault_at: float | None = None  # monotonic
    fault_wall: datetime | None = None
    weights_at_fault: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # case-specific figures for the row

    async def status(self) -> DeploymentStatus | None:
        """The live status, or None while nobody can answer (no worker, no server)."""
        try:
            return await asyncio.wait_for(
                deployments.status(self.h.client, self.workflow_id, self.run_id), 5
            )
        except Exception:
            return None

    async def until(
        self, condition: Callable[[DeploymentStatus], bool], timeout: float = 120.0
    ) -> DeploymentStatus:
        """Poll the status until `condition` holds; RuntimeError when it never does."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.status()
            if last is not None and condition(last):
                return last
            if last is not None and last.outcome is not None:
                break
            await asyncio.sleep(0.02)
        raise RuntimeError(f"the moment for the fault never came (last status: {_brief(last)})")

    async def activity_scheduled(self, activity: str, nth: int = 1, timeout: float = 120.0) -> None:
        """Return as soon as the `nth` `activity` of this run is scheduled (its history, long
        polled: Temporal tells within milliseconds)."""
        handle = self.h.client.get_workflow_handle(self.workflow_id, run_id=self.run_id)
        seen = 0

        async def follow() -> None:
            nonlocal seen
            async for event in handle.fetch_history_events(wait_new_event=True):
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    attributes = event.activity_task_scheduled_event_attributes
                    if attributes.activity_type.name == activity:
                        seen += 1
                        if seen == nth:
                            return
            raise RuntimeError(f"the run ended before {activity} #{nth} was scheduled")

        await asyncio.wait_for(follow(), timeout)

    async def injected(self) -> None:
        """Mark the fault's instant: the recovery clock starts here."""
        self.fault_at = time.monotonic()
        self.fault_wall = datetime.now(UTC)
        with contextlib.suppress(Exception):
            self.weights_at_fault = await self.h.router.get_weights(APP)


async def _recovery(run: Run, done: asyncio.Event) -> tuple[float | None, str]:
    """Seconds from the fault to the deployment moving again, and what showed it."""
    while run.fault_at is None:
        if done.is_set():
            return None, "no fault injected"
        await asyncio.sleep(0.01)
    assert run.fault_wall is not None
    since = run.fault_wall
    handle = run.h.client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    deadline = run.fault_at + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        # Each figure is taken when its answer arrives: a call may hang while a server restarts.
        with contextlib.suppress(Exception):
            weights = await asyncio.wait_for(run.h.router.get_weights(APP), 2)
            if weights and run.weights_at_fault and weights != run.weights_at_fault:
                return time.monotonic() - run.fault_at, f"weights {_weights(weights)}"
        with contextlib.suppress(Exception):
            desc = await asyncio.wait_for(handle.describe(), 2)
            for pending in desc.raw_description.pending_activities:
                if pending.HasField("last_started_time"):
                    started = pending.last_started_time.ToDatetime(tzinfo=UTC)
                    if started > since:
                        what = f"{pending.activity_type.name} started again"
                        what += f" (attempt {pending.attempt})"
                        return time.monotonic() - run.fault_at, what
        with contextlib.suppress(Exception):
            timeline = await asyncio.wait_for(
                handle.query("timeline", result_type=list[TimelineEvent]), 2
            )
            later = [e for e in timeline if _aware(e.at) > since]
            if later:
                return time.monotonic() - run.fault_at, f"timeline: {later[0].kind}"
        if done.is_set():
            return time.monotonic() - run.fault_at, "the deployment ended"
        await asyncio.sleep(0.05)
    return None, "never moved again"


# ---------------------------------------------------------------------------- the harness


@dataclass
class Harness:
    """The bench's one stack, and what a case needs to deploy under load and break things."""

    home: Path
    stack: Stack
    demo: Demo
    client: Client
    router: EnvoyRouter
    rate: float
    version_counter: int = 0

    def next_version(self) -> str:
        """Each deployment a higher version (an older one would be blocked as a downgrade)."""
        self.version_counter += 1
        return f"1.{self.version_counter}.0"

    # ---- deployments

    async def deploy(
        self,
        fault: Fault | None,
        *,
        expected: str = "promoted",
        overrides: dict[str, str] | None = None,
        operator: Callable[[Run], Awaitable[None]] | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """One deployment of the next version under load, with `fault` injected when it says;
        `operator` acts on the run as a person would (e.g. promote a paused deployment)."""
        version = self.next_version()
        request = DeploymentRequest(
            app=APP,
            environment=ENV,
            release=self.demo.release(APP, version, **(overrides or {})),
            strategy=Strategy.canary,
            initiator=INITIATOR,
            change_ref=f"CHG-{version}",
            reason="bench/faults.py",
            channel="cli",
        )
        request = deployments.sign_start(request, self.demo.identity_keys[INITIATOR])
        fault_note = ""
        recovery: tuple[float | None, str] = (None, "")
        run_box: list[Run] = []

        async def work() -> DeploymentResult:
            nonlocal fault_note, recovery
            handle = await deployments.start_deployment(self.client, request)
            run = Run(self, WORKFLOW_ID, handle.result_run_id or handle.run_id or "")
            run_box.append(run)
            done = asyncio.Event()
            tasks = [asyncio.create_task(self._approve(run))]
            watch = asyncio.create_task(_recovery(run, done))
            faulty = asyncio.create_task(fault(run)) if fault is not None else None
            if operator is not None:
                tasks.append(asyncio.create_task(operator(run)))
            try:
                result = await asyncio.wait_for(self._result(run), DEPLOY_TIMEOUT_S)
            finally:
                done.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if faulty is not None:
                try:
                    fault_note = await asyncio.wait_for(faulty, 60)
                except Exception as err:  # the fault's own failure goes in the row
                    fault_note = f"fault not injected: {type(err).__name__}: {err}"
            recovery = await watch
            return result

        started = time.monotonic()
        try:
            load, result = await self.under_load(work())
        except Exception as err:
            await self._settle()
            return _row(
                outcome=f"error: {type(err).__name__}: {err}",
                expected=expected,
                requests_failed=-1,
                audit_ok=False,
                recovery_s=None,
                note=note,
            )
        run = run_box[0]
        audit_ok, audit_note = await self.audit_check(run.workflow_id, run.run_id, result.timeline)
        row = _row(
            outcome=result.outcome.value,
            expected=expected,
            requests_failed=int(load["requests_failed"]),
            audit_ok=audit_ok,
            recovery_s=None if recovery[0] is None else round(recovery[0], 2),
            note="; ".join(x for x in (note, fault_note) if x),
        )
        row.update(
            version=version,
            requests_sent=int(load["requests_sent"]),
            failure_kinds=load.get("failure_kinds", []),
            p99_ms=load["p99_ms"],
            recovery_by=recovery[1],
            cause=result.cause,
            audit=audit_note,
            deployment_s=round(time.monotonic() - started, 1),
            **run.extra,
        )
        await self._settle()
        return row

    async def under_load(self, work: Awaitable[Any]) -> tuple[dict[str, Any], Any]:
        """`work` under the steady load through the app's listener (a process of its own,
        bench/zero_downtime.py's target), from a second before to half a second after."""
        load = LoadProcess(_url(APP), rate=self.rate, max_seconds=DEPLOY_TIMEOUT_S + 60)
        await load.start()
        await asyncio.sleep(1.0)
        try:
            outcome = await work
        finally:
            await asyncio.sleep(0.5)
            report = await load.stop()
        return report, outcome

    async def _result(self, run: Run) -> DeploymentResult:
        """The run's result, waiting through a dead worker or a restarting server."""
        handle = self.client.get_workflow_handle(
            run.workflow_id, run_id=run.run_id, result_type=DeploymentResult
        )
        while True:
            try:
                return await handle.result(follow_runs=False)
            except Exception as err:  # the server restarting: ask again
                if "failed" in type(err).__name__.lower() and "Workflow" in type(err).__name__:
                    raise
                await asyncio.sleep(0.5)

    async def _approve(self, run: Run) -> None:
        """Approvers sign off when the deployment asks, whatever worker or server comes and
        goes in the meantime."""
        while True:
            status = await run.status()
            if status is not None and status.phase is Phase.await_approval:
                for who in APPROVERS[APP][: status.approvals_required]:
                    with contextlib.suppress(deployments.RequestRefused):
                        approval = self.demo.approve(self.client, run.workflow_id, who, "ok")
                        await asyncio.wait_for(approval, 60)
                return
            if status is not None and status.phase not in (Phase.verify, Phase.assess_risk):
                return
            await asyncio.sleep(0.05)

    async def _settle(self) -> None:
        """Between cases: a worker running, and no deployment of the app left running."""
        await asyncio.to_thread(self.stack.up)
        with contextlib.suppress(Exception):
            if await deployments.is_running(self.client, WORKFLOW_ID):
                await self.client.get_workflow_handle(WORKFLOW_ID).terminate("bench cleanup")

    # ---- processes

    def worker_pid(self) -> int:
        return int(self.stack.record()["worker"]["pid"])

    def kill_worker(self, pid: int | None = None) -> int:
        """SIGKILL the stack's worker (or `pid`): a crash, not a drain. Returns the pid."""
        pid = pid or self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid, "zdp worker") and time.monotonic() < deadline:
            time.sleep(0.01)
        return pid

    async def replace_worker(self) -> float:
        """A new worker, as an operator's `zdp up` starts one; seconds until it is ready."""
        begun = time.monotonic()
        await asyncio.to_thread(Stack(home=self.home).up)
        return time.monotonic() - begun

    def worker_environment(self) -> dict[str, str]:
        """The environment the stack's worker runs with (read from /proc)."""
        raw = Path(f"/proc/{self.worker_pid()}/environ").read_bytes()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    @contextlib.asynccontextmanager
    async def extra_workers(self, count: int) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
        """`count` more workers on the task queue, like the stack's (own logs, no metrics
        ports); stopped by pid after."""
        env = {
            **self.worker_environment(),
            "ZDP_METRICS_ADDRESS": "off",
            "ZDP_TEMPORAL_METRICS_ADDRESS": "off",
        }
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(count):
                log = self.home / f"extra-worker-{i}.log"
                with open(log, "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            [ZDP, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                        )
                    )  # fmt: skip
            for i, proc in enumerate(procs):
                log = self.home / f"extra-worker-{i}.log"
                deadline = time.monotonic() + 60
                while "worker ready" not in log.read_text():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"extra worker {i} did not start: {log.read_text()}")
                    await asyncio.sleep(0.1)
            yield procs
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    await asyncio.to_thread(proc.wait, 40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    @contextlib.asynccontextmanager
    async def worker_env(self, **env: str) -> AsyncIterator[None]:
        """The stack's worker restarted with `env` on top of its own; put back after."""
        base = self.worker_environment()
        self.kill_worker_gracefully()
        with _patched_environ(env):
            await asyncio.to_thread(Stack(home=self.home).up)
        try:
            yield
        finally:
            self.kill_worker_gracefully()
            restore = {k: base[k] for k in env if k in base}
            with _patched_environ(restore, drop=set(env) - set(base)):
                await asyncio.to_thread(Stack(home=self.home).up)

    def kill_worker_gracefully(self) -> None:
        from zdp.fsutil import stop_pid

        stop_pid(self.worker_pid(), "zdp worker", grace=40)

    def slot_pid(self, slot: str) -> int:
        """The pid of the app's process in `slot` (the local runtime's record)."""
        record = self.home / "runtime" / APP / f"{slot}.json"
        return int(json.loads(record.read_text())["pid"])

    # ---- evidence

    async def audit_check(
        self, workflow_id: str, run_id: str, timeline: list[TimelineEvent]
    ) -> tuple[bool, str]:
        """`zdp audit verify` on the home, and the run's entries against its timeline."""
        env = {**os.environ, "ZDP_HOME": str(self.home)}
        verify = await asyncio.to_thread(
            subprocess.run, [ZDP, "audit", "verify"], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if verify.returncode != 0:
            return False, f"zdp audit verify: {(verify.stderr or verify.stdout).strip()[-300:]}"
        ids: list[int] = []
        mismatched: list[int] = []
        log = self.home / "audit" / "audit.jsonl"
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["workflow_id"] != workflow_id:
                continue
            run, _, index = str(entry["event_id"]).partition("/")
            if run != run_id:
                continue
            i = int(index)
            ids.append(i)
            if i < len(timeline) and (
                timeline[i].kind != entry["kind"] or timeline[i].message != entry["message"]
            ):
                mismatched.append(i)
        # The last event, the evidence bundle's seal, comes after the final append by design:
        # the bundle holds that append's signed checkpoint (it is in the history and result).
        audited = len(timeline) - (1 if timeline and timeline[-1].kind == "evidence_sealed" else 0)
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        missing = sorted(set(range(audited)) - set(ids))
        extra = sorted(set(ids) - set(range(audited)))
        if duplicated or missing or extra or mismatched:
            return False, (
                f"entries vs timeline: duplicated {duplicated}, missing {missing}, "
                f"not in the timeline {extra}, different {mismatched}"
            )
        return True, f"verified; {len(ids)} entries = the timeline's {audited} audited events"


@contextlib.contextmanager
def _patched_environ(env: dict[str, str], drop: set[str] | None = None) -> Any:
    saved = {k: os.environ.get(k) for k in [*env, *(drop or ())]}
    os.environ.update(env)
    for key in drop or ():
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _row(**fields: Any) -> dict[str, Any]:
    fields["goal_met"] = (
        fields["outcome"] == fields["expected"]
        and fields["requests_failed"] == 0
        and bool(fields["audit_ok"])
    )
    return fields


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _weights(weights: dict[str, int]) -> str:
    return " ".join(f"{s}={w}" for s, w in weights.items())


def _brief(status: DeploymentStatus | None) -> str:
    if status is None:
        return "none"
    return f"phase {status.phase.value}, weights {_weights(status.weights)}"


# ---------------------------------------------------------------------------- cases: the worker


def in_bake(weight: int) -> Callable[[DeploymentStatus], bool]:
    """The canary holds `weight` % and its gate runs."""
    return lambda s: s.phase is Phase.shift and s.weights.get("canary") == weight


async def _history_attempts(h: Harness, run: Run, activity: str) -> list[int]:
    """The attempt each of the run's `activity` activities completed on (history)."""
    handle = h.client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == activity:
                attempts.append(started.attempt)
    return attempts


def kill_worker_at(activity: str, nth: int = 1, delay: float = 0.0, label: str = "") -> Fault:
    """SIGKILL the worker `delay` s after the `nth` `activity` is scheduled; `zdp up` starts a
    new one. The note says whether the kill landed inside the activity (it ran again)."""

    async def fault(run: Run) -> str:
        await run.activity_scheduled(activity, nth)
        if delay:
            await asyncio.sleep(delay)
        pid = run.h.kill_worker()
        await run.injected()
        ready = await run.h.replace_worker()
        run.extra["new_worker_ready_s"] = round(ready, 2)
        await _wait_closed(run)
        attempts = await _history_attempts(run.h, run, activity)
        landed = len(attempts) >= nth and attempts[nth - 1] > 1
        run.extra["kill_landed_in_activity"] = landed
        where = (
            f"inside {activity} #{nth} (it ran again: attempt {attempts[nth - 1]})"
            if landed
            else f"after {activity} #{nth} had completed, before the next workflow task"
        )
        return f"worker pid {pid} SIGKILLed {label or ''}{where}; new worker ready in {ready:.1f} s"

    return fault


def kill_worker_when(condition: Callable[[DeploymentStatus], bool], label: str) -> Fault:
    async def fault(run: Run) -> str:
        await run.until(condition)
        pid = run.h.kill_worker()
        await run.injected()
        ready = await run.h.replace_worker()
        run.extra["new_worker_ready_s"] = round(ready, 2)
        return f"worker pid {pid} SIGKILLed {label}; new worker ready in {ready:.1f} s"

    return fault


async def _wait_closed(run: Run) -> None:
    handle = run.h.client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            desc = await handle.describe()
            if desc.close_time is not None:
                return
        await asyncio.sleep(0.2)


def worker_case(fault: Fault | None, expected: str = "promoted", **kwargs: Any) -> Case:
    async def case(h: Harness) -> dict[str, Any]:
        return await h.deploy(fault, expected=expected, **kwargs)

    return case


# ---------------------------------------------------------------------------- cases: the stack


async def _worker_running_the_gate(run: Run) -> int:
    """The pid of the worker running the deployment's gate (its pending activity's worker)."""
    handle = run.h.client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    desc = await handle.describe()
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name == "run_health_gate" and pending.last_worker_identity:
            return int(pending.last_worker_identity.split("@", 1)[0])
    raise RuntimeError("no worker runs the gate")


async def three_workers_one_killed(h: Harness) -> dict[str, Any]:
    """Three workers on the task queue; the one running the gate at 25 % is SIGKILLed and
    nothing is restarted: another picks the gate up."""

    async def fault(run: Run) -> str:
        await run.activity_scheduled("run_health_gate", 3)
        await asyncio.sleep(1.0)
        pid = await _worker_running_the_gate(run)
        h.kill_worker(pid)
        await run.injected()
        await _wait_closed(run)
        return f"the worker running the 25 % gate (pid {pid}) SIGKILLed; no worker restarted"

    async with h.extra_workers(2):
        return await h.deploy(fault, note="3 workers on zdp-deployments")


async def temporal_restart_mid_bake(h: Harness) -> dict[str, Any]:
    """The dev server SIGKILLed during the 25 % bake and started again by `zdp up` on the same
    database file a second later."""

    async def fault(run: Run) -> str:
        await run.activity_scheduled("run_health_gate", 3)
        await asyncio.sleep(0.5)
        pid = int(h.stack.record()["temporal"]["pid"])
        os.kill(pid, signal.SIGKILL)
        await run.injected()
        while pid_alive(pid, "start-dev"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        begun = time.monotonic()
        await asyncio.to_thread(Stack(home=h.home).up)
        back = time.monotonic() - begun
        run.extra["temporal_back_s"] = round(back, 2)
        return f"dev server pid {pid} SIGKILLed, down 1 s, up again {back:.1f} s after `zdp up`"

    return await h.deploy(fault)


def kill_envoy(whole_session: bool) -> Fault:
    """SIGKILL Envoy during the 25 % bake. Its supervisor starts it again; with
    `whole_session`, the supervisor dies too and `zdp up` starts Envoy again."""

    async def fault(run: Run) -> str:
        from zdp.platforms.envoy.process import EnvoyProcess

        await run.until(in_bake(25))
        await asyncio.sleep(0.5)
        envoy = EnvoyProcess(run.h.home)
        pid = envoy.running()
        assert pid is not None
        before = await run.h.router.get_weights(APP)
        parents = envoy._supervisors() if whole_session else []
        for victim in [*parents, pid]:
            os.kill(victim, signal.SIGKILL)
        await run.injected()
        begun = time.monotonic()
        if whole_session:
            await asyncio.to_thread(Stack(home=run.h.home).up)
        while True:
            now_pid = envoy.running()
            if now_pid not in (None, pid) and envoy._admin_config(state="LIVE"):
                break
            if time.monotonic() - begun > 60:
                raise RuntimeError("envoy did not come back within 60 s")
            await asyncio.sleep(0.01)
        back = time.monotonic() - begun
        after = await run.h.router.get_weights(APP)
        run.extra.update(envoy_back_s=round(back, 2), weights_kept=after == before)
        who = "`zdp up`" if whole_session else "its supervisor"
        return (
            f"envoy pid {pid}{' and its supervisor' if whole_session else ''} SIGKILLed at "
            f"{_weights(before)}; {who} brought it back in {back:.2f} s serving {_weights(after)}"
        )

    return fault


def slot_signal(slot: str, sig: signal.Signals, weight: int = 5) -> Fault:
    """`sig` to the app's process in `slot` while the canary holds `weight` %."""

    async def fault(run: Run) -> str:
        await run.until(in_bake(weight))
        await asyncio.sleep(0.5)
        pid = run.h.slot_pid(slot)
        os.kill(pid, sig)
        await run.injected()
        return f"{slot} (pid {pid}) got {sig.name} at canary {weight} %"

    return fault


async def stable_dies_mid_canary(h: Harness) -> dict[str, Any]:
    """Stable (the version users are served from) is SIGKILLed while the canary holds 5 %.
    The gate does not blame the release: the deployment pauses with an alert; the operator
    (here at once) resumes and promotes, which moves every user to the healthy canary."""

    async def operator(run: Run) -> None:
        await run.until(lambda s: s.phase is Phase.paused, timeout=120)
        if run.fault_at is not None:
            run.extra["alert_after_s"] = round(time.monotonic() - run.fault_at, 2)
        who = APPROVERS[APP][0]
        await h.demo.control(h.client, run.workflow_id, "resume", who, "stable is down")
        await run.until(lambda s: s.phase is Phase.shift, timeout=60)
        proof = await deployments.sign_request(
            h.client, run.workflow_id, "promote", who, "cli", h.demo.identity_keys[who]
        )
        await deployments.promote(h.client, run.workflow_id, who, "stable is down", "cli", proof)
        while (await h.router.get_weights(APP)).get("canary") != 100:
            await asyncio.sleep(0.02)
        if run.fault_at is not None:  # every user on a running version again
            run.extra["users_back_s"] = round(time.monotonic() - run.fault_at, 2)

    return await h.deploy(
        slot_signal("stable", signal.SIGKILL),
        operator=operator,
        note="operator resumes and promotes on the alert",
    )


BAD = {"FAULT_ERROR_RATE": "1.0"}  # every API call answers 503: the gate rolls it back

CASES: dict[str, Case] = {
    # The control: the same deployment under the same load with no fault, in the same run. What
    # fails here is the machine's (timeouts on a busy machine), not a fault's.
    "no_fault": worker_case(None),
    "worker_kill_verify": worker_case(kill_worker_at("verify_release")),
    "worker_kill_assess_risk": worker_case(kill_worker_at("assess_risk")),
    "worker_kill_await_approval": worker_case(
        kill_worker_when(lambda s: s.phase is Phase.await_approval, "waiting for approval")
    ),
    "worker_kill_provision": worker_case(kill_worker_at("provision_version", 1, delay=0.3)),
    "worker_kill_bake_1": worker_case(kill_worker_at("run_health_gate", 1, delay=1.0)),
    "worker_kill_bake_5": worker_case(kill_worker_at("run_health_gate", 2, delay=1.0)),
    "worker_kill_bake_25": worker_case(kill_worker_at("run_health_gate", 3, delay=1.0)),
    "worker_kill_bake_100": worker_case(kill_worker_at("run_health_gate", 4, delay=1.0)),
    "worker_kill_promote": worker_case(kill_worker_at("provision_version", 2, delay=0.3)),
    "worker_kill_compensations": worker_case(
        kill_worker_at("retire_version", 1, delay=0.05, label="in the rollback, "),
        expected="rolled_back",
        overrides=BAD,
    ),
    "three_workers_one_killed": three_workers_one_killed,
    "temporal_restart_mid_bake": temporal_restart_mid_bake,
    "envoy_kill_mid_canary": worker_case(kill_envoy(whole_session=False)),
    "envoy_and_supervisor_kill_mid_canary": worker_case(kill_envoy(whole_session=True)),
    "canary_crash": worker_case(slot_signal("canary", signal.SIGKILL), expected="rolled_back"),
    "canary_hang": worker_case(slot_signal("canary", signal.SIGSTOP), expected="rolled_back"),
    "stable_dies_mid_canary": stable_dies_mid_canary,
}


# ---------------------------------------------------------------------------- running it


async def bench(rate: float, only: list[str] | None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="zdp-faults-"))
    os.environ["ZDP_HOME"] = str(home)
    os.environ.setdefault("ZDP_PORT_BASE", "31200")  # below the ephemeral ports
    os.environ.setdefault("ZDP_TEMPORAL_PORT", "30800")  # its UI on 31800
    for key in [k for k in os.environ if k.startswith("TEMPORAL_")]:
        os.environ.pop(key)
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=DEMO_CONFIG)
    try:
        await asyncio.to_thread(demo.prepare)
    except BaseException:
        await asyncio.to_thread(stack.down)  # whatever part of it started
        raise
    # The SDK core's warnings (a server restarting) go to stderr, not into the JSON on stdout.
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )
    client = await connect(target_host=stack.temporal_address, runtime=runtime)
    router = EnvoyRouter(home)
    h = Harness(home, stack, demo, client, router, rate)
    cases = dict(CASES)
    infra = "bench/faults_infra.py: included"
    try:
        from bench import faults_infra  # type: ignore[attr-defined]

        cases.update(faults_infra.CASES)
    except ImportError as err:
        infra = f"bench/faults_infra.py not included: {err}"
    # The control again at the end: the machine's load moves during a run of twenty minutes.
    cases["no_fault_after"] = cases["no_fault"]
    selected = {k: v for k, v in cases.items() if not only or k in only}
    load_before = _loadavg()
    rows: dict[str, dict[str, Any]] = {}
    try:
        await demo.deploy(client, APP, "1.0.0", Strategy.canary, load=False)
        for name, case in selected.items():
            print(f"case {name} ...", file=sys.stderr, flush=True)
            try:
                rows[name] = await case(h)
            except Exception as err:
                rows[name] = _row(
                    outcome=f"error: {type(err).__name__}: {err}", expected="?",
                    requests_failed=-1, audit_ok=False, recovery_s=None, note="",
                )  # fmt: skip
                await h._settle()
            print(f"  {json.dumps(rows[name])}", file=sys.stderr, flush=True)
    finally:
        await router.aclose()
        await asyncio.to_thread(stack.down)
    return {
        "benchmark": "faults",
        "rate_per_s": rate,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "load_after": _loadavg(),
        "infra_cases": infra,
        "cases": rows,
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The rows of a run as the Markdown table in docs/benchmarks.md."""
    lines = [
        "| case | outcome (expected) | requests failed / sent | audit | recovery s (by) | note |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["cases"].items():
        recovery = "—" if row["recovery_s"] is None else f"{row['recovery_s']:.2f}"
        if row.get("recovery_by"):
            recovery += f" ({row['recovery_by']})"
        kinds = ", ".join(row.get("failure_kinds") or [])
        failed = f"{row['requests_failed']} / {row.get('requests_sent', '?')}"
        failed += f" ({kinds})" if kinds else ""
        audit = "ok" if row["audit_ok"] else f"NOT OK: {row.get('audit', '')}"
        outcome = f"{row['outcome']} ({row['expected']})"
        note = str(row.get("note", "")).replace("|", "/")
        lines.append(f"| `{name}` | {outcome} | {failed} | {audit} | {recovery} | {note} |")
    return "\n".join(lines)


def _loadavg() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--table", type=Path, metavar="RESULT.json", help="print a saved run as Markdown, only"
    )
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    started = time.monotonic()
    result = asyncio.run(bench(args.rate, args.only))
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'case':<30} {'outcome':<12} {'failed':>6} {'audit':>6} {'recovery_s':>10}  note")
    for name, row in result["cases"].items():
        recovery = "-" if row["recovery_s"] is None else f"{row['recovery_s']:.2f}"
        print(
            f"{name:<30} {row['outcome']:<12} {row['requests_failed']:>6} "
            f"{row['audit_ok']!s:>6} {recovery:>10}  {row['note']}"
        )


if __name__ == "__main__":
    main()
