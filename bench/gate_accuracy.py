"""Gate accuracy: healthy releases not promoted on a busy machine, and faults not caught.

Runs its own embedded stack (Temporal dev server, Envoy, a worker on the local runtime, real
app processes) in a temporary ZDP_HOME and measures both kinds of gate error:

1. healthy: N healthy deployments (first half canary, second half blue-green, the two apps
   alternating; the demo policy, infrastructure/canary-deployments/demo.yaml) while the machine
   is busy: one CPU hog process pinned to each core, busy-looping `duty` x 10 ms of every
   10 ms, and a separate load process per app sending steady GETs through its Envoy listener.
   Every release that is not promoted is counted, with the deployment's own cause, gate
   verdicts and alerts. A deployment the gate pauses (its diagnosis: the baseline is as sick
   as the new version) is recorded as paused and then aborted by the bench.
2. faults: for each fault kind, N canary deployments of finance-trading (steps [25, 100], 30 s
   bake, bench/detection-policy.yaml) under 500 GET/s through Envoy. Once the canary holds 25%
   and 1 s has passed, the fault is applied to the running canary process:
     error_burst        POST /drill/faults {"error_rate": 1.0}: every API call answers 503;
     latency_200ms      POST /drill/faults {"latency_ms": 200}: no errors;
     crash              SIGKILL of the canary process;
     hang               SIGSTOP of the canary process (SIGCONT once the trial is contained);
     readiness_failing  POST /drill/faults {"ready_fail": true}: /healthz/ready answers 503,
                        the API keeps working.
   The clock stops when Envoy's /config_dump shows the canary's weight at 0 (sampled every
   10 ms) and starts at: the first 5xx the canary process served (its own /metrics, sampled
   every 10 ms) for error_burst; the moment the first slowed response completes (the POST
   sent + 200 ms) for latency_200ms; the moment the fault was applied (the kill() call
   returned, or the drill POST was answered) for crash, hang and readiness_failing.
   Requests failed by the load generator are counted per trial.

p50/p99/max are nearest-rank values over the trials whose canary was rolled back: the
ceil(q x n)-th smallest. With fewer than 100 trials, p99 is the slowest trial.

    .venv/bin/python bench/gate_accuracy.py [--healthy 20] [--fault-trials 10] [--json]
    .venv/bin/python bench/gate_accuracy.py --healthy 2 --fault-trials 1 --json   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdp import deployments  # noqa: E402
from zdp.cli.demo import APPROVERS, DEMO_CONFIG, ENV, TARGETS, ContainmentClock, Demo  # noqa: E402
from zdp.fsutil import proc_cmdline  # noqa: E402
from zdp.loadgen import LoadProcess  # noqa: E402
from zdp.models import (  # noqa: E402
    DeploymentRequest,
    DeploymentResult,
    DeploymentStatus,
    Phase,
    Strategy,
    deployment_id,
)
from zdp.platforms.envoy.router import EnvoyRouter  # noqa: E402
from zdp.platforms.layout import LOCAL_APPS, runtime_dir  # noqa: E402
from zdp.stack import Stack  # noqa: E402
from zdp.temporal import connect  # noqa: E402

FAULT_APP = "finance-trading"
# finance-trading runs with APP_ENV=local here; its POST /drill/faults takes only a drill key,
# and this is the public demo one of apps/finance-trading/config/local.yaml.
DRILL_KEY = {"X-API-Key": "ft-demo-drill-key"}
FAULT_CONFIG = REPO / "bench" / "detection-policy.yaml"
FAULT_STEPS = [25, 100]
FAULT_BAKE_S = 30.0  # long: only the fault ends a trial
FAULT_AFTER_S = 1.0  # at 25% this long before the fault: the gate has a healthy baseline
KINDS = ("error_burst", "latency_200ms", "crash", "hang", "readiness_failing")
DRILLS: dict[str, dict[str, Any]] = {
    "error_burst": {"error_rate": 1.0},
    "latency_200ms": {"latency_ms": 200},
    "readiness_failing": {"ready_fail": True},
}
CLOCK_START = {
    "error_burst": "the first 5xx the canary process served (its /metrics, sampled every 10 ms)",
    "latency_200ms": "the first slowed response completes: drill POST sent + 200 ms",
    "crash": "SIGKILL applied (os.kill returned)",
    "hang": "SIGSTOP applied (os.kill returned)",
    "readiness_failing": "the ready_fail drill POST answered",
}
CLOCK_STOP = "the canary's weight read back at 0 from Envoy's /config_dump (sampled every 10 ms)"
PERCENTILES = (
    "nearest rank over the rolled-back trials: the ceil(q*n)-th smallest; "
    "with fewer than 100 trials p99 is the slowest trial"
)
ACTOR = "gate-accuracy-bench"
HEALTHY_DEADLINE_S = 240.0  # per healthy deployment, then the bench aborts it
FAULT_DEADLINE_S = 180.0  # per fault trial's deployment, then the bench aborts it
CONTAIN_WAIT_S = 60.0  # after the fault, for the canary's weight to read 0

# A CPU hog: busy-loops duty x 10 ms of every 10 ms period, bounded by its own deadline.
HOG = """
import sys, time
duty, seconds = float(sys.argv[1]), float(sys.argv[2])
period = 0.01
end = time.monotonic() + seconds
while time.monotonic() < end:
    begun = time.monotonic()
    while time.monotonic() < begun + duty * period:
        pass
    rest = begun + period - time.monotonic()
    if duty < 1 and rest > 0:
        time.sleep(rest)
"""


# ---------------------------------------------------------------------- the busy machine


class Hogs:
    """One CPU hog process per core (pinned), started and stopped by pid, bounded in time."""

    def __init__(self, duty: float, max_seconds: float) -> None:
        self.duty, self.max_seconds = duty, max_seconds
        self.procs: list[tuple[int, subprocess.Popen[bytes], float]] = []

    def start(self) -> None:
        for cpu in sorted(os.sched_getaffinity(0)):
            proc = subprocess.Popen(
                [sys.executable, "-c", HOG, str(self.duty), str(self.max_seconds)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append((cpu, proc, time.monotonic()))
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, {cpu})

    def stop(self) -> list[float | None]:
        """Stop every hog by its pid; return the share of a core each one got while it ran."""
        shares: list[float | None] = []
        tick = os.sysconf("SC_CLK_TCK")
        for _cpu, proc, started in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu_s = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                shares.append(round(cpu_s / max(time.monotonic() - started, 1e-6), 3))
            except (OSError, IndexError, ValueError):
                shares.append(None)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        return shares


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def _url(app: str) -> str:
    return f"http://127.0.0.1:{LOCAL_APPS[app].listener_port()}{TARGETS[app]}"


# ---------------------------------------------------------------------- deployments

RPC_TIMEOUT_S = 10.0


async def _safe(call: Awaitable[Any], default: Any = None) -> Any:
    """One Temporal call, bounded; `default` when it fails or times out (a busy machine, or a
    workflow task that keeps failing, makes queries time out: the callers' deadlines decide)."""
    try:
        return await asyncio.wait_for(call, RPC_TIMEOUT_S)
    except Exception:  # any failure of a status read is 'unknown now'
        return default


async def _status(client: Any, workflow_id: str) -> DeploymentStatus | None:
    return await _safe(deployments.status(client, workflow_id))


def _progress(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


async def _approve(
    client: Any, workflow_id: str, who: tuple[str, ...], seconds: float, demo: Demo | None = None
) -> None:
    """Approve as distinct approvers until the deployment leaves the approval phase (each
    signing with their registered key when `demo` holds them: the demo's staging requires
    proven identities)."""
    end = time.monotonic() + seconds
    tries: Counter[str] = Counter()
    while time.monotonic() < end:
        status = await _status(client, workflow_id)
        if status is not None and status.phase not in (
            Phase.verify,
            Phase.assess_risk,
            Phase.await_approval,
        ):
            return
        if status is not None and status.phase is Phase.await_approval:
            given = {a.approver for a in status.approvals}
            for approver in who:
                if len(given) >= status.approvals_required:
                    break
                if approver in given or tries[approver] >= 3:
                    continue
                tries[approver] += 1
                approval = (
                    demo.approve(client, workflow_id, approver, "reviewed")
                    if demo is not None
                    else deployments.approve(client, workflow_id, approver, "reviewed")
                )
                if await _safe(approval, False):
                    given.add(approver)
        await asyncio.sleep(0.05)


async def _settle(
    client: Any, workflow_id: str, seconds: float
) -> tuple[DeploymentResult, dict[str, Any]]:
    """Wait for the deployment's end. A pause (the gate's diagnosis) or a deployment still
    running after `seconds` is recorded and aborted; one that ignores the abort for 60 s is
    terminated."""
    end = time.monotonic() + seconds
    notes: dict[str, Any] = {}
    aborted: float | None = None
    while await _safe(deployments.is_running(client, workflow_id), True):
        now = time.monotonic()
        if aborted is None:
            status = await _status(client, workflow_id)
            if status is not None and (status.paused or status.phase is Phase.paused):
                events = await _safe(deployments.timeline(client, workflow_id), [])
                notes["paused"] = [e.message for e in events if e.kind == "alert"][-3:]
                why = "paused by the gate's diagnosis; the bench does not resume"
                await _safe(deployments.abort(client, workflow_id, ACTOR, why))
                aborted = now
            elif now > end:
                phase = status.phase.value if status else "unknown (status query failed)"
                notes["timeout"] = f"still in phase {phase} after {seconds:g} s"
                await _safe(deployments.abort(client, workflow_id, ACTOR, "bench deadline"))
                aborted = now
        elif now > aborted + 60:
            handle = deployments.handle_for(client, workflow_id)
            await _safe(handle.terminate("gate accuracy bench: abort not acted on"))
            notes["terminated"] = True
            break
        await asyncio.sleep(0.25)
    for _ in range(10):
        result = await _safe(deployments.closed_result(client, workflow_id))
        if result is not None:
            return result, notes
        await asyncio.sleep(1.0)
    return await deployments.closed_result(client, workflow_id), notes


async def _terminate_if_running(client: Any, app: str) -> None:
    """After a bench error: no deployment of `app` is left running for the next trial."""
    workflow_id = deployment_id(app, ENV)
    if await _safe(deployments.is_running(client, workflow_id), False):
        handle = deployments.handle_for(client, workflow_id)
        await _safe(handle.terminate("gate accuracy bench: bench error"))


def _classify(result: DeploymentResult, notes: dict[str, Any]) -> str:
    if "paused" in notes:
        return "paused_by_diagnosis"
    if "timeout" in notes or "terminated" in notes:
        return "timed_out"
    return result.outcome.value


def _events(result: DeploymentResult, *kinds: str, limit: int = 200) -> list[str]:
    return [e.message[:limit] for e in result.timeline if e.kind in kinds]


def _gate_cpu(result: DeploymentResult) -> list[dict[str, float]]:
    """Per gate, what the scheduler's readings of both slots' processes showed (the gate's
    `cpu_*` evidence: CPU used and requests handled per slot since the warm-up, whether the
    new slot's waiting was its own demand, the most taken out of one answer, and each slot's
    waiting for a CPU over the last window); empty where the gate had none (an older engine)."""
    return [
        {
            k.removeprefix("slowness.sampled requests."): v
            for k, v in e.data.get("evidence", {}).items()
            if k.startswith(("slowness.sampled requests.cpu_", "cpu_wait."))
        }
        for e in result.timeline
        if e.kind == "gate_verdict"
    ]


async def _deploy(
    demo: Demo, client: Any, app: str, version: str, strategy: Strategy, **extra: Any
) -> tuple[DeploymentResult, dict[str, Any]]:
    overrides = extra.pop("overrides", {})
    request = DeploymentRequest(
        app=app,
        environment=ENV,
        release=demo.release(app, version, **overrides),
        strategy=strategy,
        initiator="ci-bot",
        change_ref=f"CHG-{version}",
        reason="gate accuracy bench",
        **extra,
    )
    # The demo's staging requires proven identities: the start is signed with ci-bot's key.
    request = deployments.sign_start(request, demo.identity_keys["ci-bot"])
    handle = await deployments.start_deployment(client, request)
    await _approve(client, handle.id, APPROVERS[app], 90, demo)
    return await _settle(client, handle.id, HEALTHY_DEADLINE_S)


def _healthy_plan(n: int) -> list[tuple[str, Strategy]]:
    """First half canary, second half blue-green, the two apps alternating. Each app was set
    up by canary (serves from stable), so every deployment here has a running baseline."""
    apps = list(LOCAL_APPS)
    half = math.ceil(n / 2)
    return [
        (apps[i % len(apps)], Strategy.canary if i < half else Strategy.blue_green)
        for i in range(n)
    ]


async def _healthy_trial(
    demo: Demo, client: Any, index: int, app: str, strategy: Strategy, rate: float
) -> dict[str, Any]:
    version = f"2.{index}.0"
    loads = {name: LoadProcess(_url(name), rate=rate, max_seconds=600) for name in LOCAL_APPS}
    started = time.monotonic()
    run: dict[str, Any] = {"app": app, "version": version, "strategy": strategy.value}
    reports: dict[str, dict[str, Any]] = {}
    try:
        for load in loads.values():
            await load.start()
        await asyncio.sleep(1.0)  # steady load before the deployment begins
        run["loadavg_1m"] = _loadavg()
        result, notes = await _deploy(demo, client, app, version, strategy)
        await asyncio.sleep(0.5)
    finally:
        for name, load in loads.items():
            reports[name] = await load.stop()
    run.update(
        outcome=_classify(result, notes),
        engine_outcome=result.outcome.value,
        cause=result.cause,
        seconds=round(time.monotonic() - started, 1),
        gates=_events(result, "gate_verdict"),
        gate_cpu=_gate_cpu(result),
        requests_sent={name: int(r.get("requests_sent", 0)) for name, r in reports.items()},
        requests_failed={name: int(r.get("requests_failed", 0)) for name, r in reports.items()},
        failure_kinds={name: r.get("failure_kinds", []) for name, r in reports.items()},
    )
    if run["outcome"] != "promoted":
        run["notes"] = notes
        run["alerts"] = _events(result, "alert")
        run["timeline_tail"] = [
            f"{e.phase.value}/{e.kind}: {e.message[:200]}" for e in result.timeline[-8:]
        ]
    return run


# ---------------------------------------------------------------------- faults


class FaultClock:
    """ContainmentClock (zdp.cli.demo), extended to every fault kind by composition.

    error_burst runs the demo's clock as it is: from the canary's first 5xx in its /metrics to
    its weight at 0. The other kinds start from a moment the trial sets (`start`), so only the
    weight is watched: a stopped process's /metrics would block each sample for its 1 s timeout.
    """

    def __init__(self, router: EnvoyRouter, app: str, kind: str) -> None:
        self.kind = kind
        self.inner = ContainmentClock(router, app, "canary", require_error=kind == "error_burst")
        self.start_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def restored(self) -> float | None:
        return self.inner.restored

    def start(self) -> None:
        if self.kind == "error_burst":
            self.inner.start()
        else:
            self._task = asyncio.create_task(self._watch_weight())

    async def _watch_weight(self) -> None:
        inner = self.inner
        deadline = time.monotonic() + 600
        seen = False
        while inner.restored is None and time.monotonic() < deadline:
            weight = (await inner.router.get_weights(inner.app)).get(inner.slot, 0)
            seen = seen or weight > 0
            if seen and weight == 0:
                inner.restored = time.monotonic()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.inner.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.kind == "error_burst":
            self.start_at = self.inner.first_error


def _canary_process(home: Path) -> tuple[int, str]:
    """The canary's pid from the local runtime's record, checked to be that process now."""
    record = json.loads((runtime_dir(home) / FAULT_APP / "canary.json").read_text())
    pid = int(record["pid"])
    argv = proc_cmdline(pid)
    if record["package"] not in argv or str(record["port"]) not in argv:
        raise RuntimeError(f"pid {pid} is not the canary of {FAULT_APP} any more: {argv}")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return pid, stat[19]  # the start time, so a recycled pid is never signalled


def _same_process(pid: int, start: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == start
    except (OSError, IndexError):
        return False


async def _apply_fault(kind: str, home: Path, trial: dict[str, Any]) -> dict[str, Any]:
    """Apply the fault to the running canary; return when (injected, applied) and what."""
    if kind in ("crash", "hang"):
        pid, start = _canary_process(home)
        sig = signal.SIGKILL if kind == "crash" else signal.SIGSTOP
        injected = time.monotonic()
        os.kill(pid, sig)
        applied = time.monotonic()
        trial["process"] = {"pid": pid, "start": start}
        verified = True
        if kind == "hang":  # the process shows state T (stopped) once it took the signal
            verified = False
            for _ in range(100):  # bounded: 1 s
                with contextlib.suppress(OSError, IndexError):
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    verified = state == "T"
                if verified:
                    break
                await asyncio.sleep(0.01)
        return {"injected": injected, "applied": applied, "verified": verified}
    port = LOCAL_APPS[FAULT_APP].slot_port("canary")
    fault = DRILLS[kind]
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
        injected = time.monotonic()
        answer = await http.post(
            f"http://127.0.0.1:{port}/drill/faults", json=fault, headers=DRILL_KEY
        )
        applied = time.monotonic()
        echo: Any = answer.json() if answer.status_code == 200 else answer.text[:200]
        verified = isinstance(echo, dict) and all(echo.get(k) == v for k, v in fault.items())
        out: dict[str, Any] = {
            "injected": injected,
            "applied": applied,
            "drill_answer": answer.status_code,
        }
        if kind == "readiness_failing":
            with contextlib.suppress(httpx.HTTPError):
                ready = await http.get(f"http://127.0.0.1:{port}/healthz/ready")
                out["ready_answer"] = ready.status_code
                verified = verified and ready.status_code == 503
        out["verified"] = verified
        if not verified:
            out["drill_echo"] = echo
        return out


async def _wait_at_weight(client: Any, workflow_id: str, weight: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status = await _status(client, workflow_id)
        if status is None:
            pass
        elif status.phase is Phase.shift and status.weights.get("canary") == weight:
            return True
        elif status.phase in (Phase.rollback, Phase.done, Phase.promote):
            return False
        await asyncio.sleep(0.05)
    return False


async def _fault_trial(
    demo: Demo, client: Any, kind: str, version: str, rate: float
) -> dict[str, Any]:
    trial: dict[str, Any] = {"kind": kind, "version": version, "loadavg_1m": _loadavg()}
    router = EnvoyRouter(demo.home)
    load = LoadProcess(_url(FAULT_APP), rate=rate, max_seconds=600)
    report: dict[str, Any] = {}
    try:
        await load.start()
        await asyncio.sleep(0.5)
        request = DeploymentRequest(
            app=FAULT_APP,
            environment=ENV,
            release=demo.release(FAULT_APP, version, DRILL_ENDPOINT="1"),
            strategy=Strategy.canary,
            steps=FAULT_STEPS,
            bake_seconds=FAULT_BAKE_S,
            initiator="ci-bot",
            change_ref=f"CHG-{version}",
            reason=f"gate accuracy bench: {kind}",
        )
        handle = await deployments.start_deployment(client, request)
        await _approve(client, handle.id, APPROVERS[FAULT_APP], 90)
        clock = FaultClock(router, FAULT_APP, kind)
        fault: dict[str, Any] = {}
        if await _wait_at_weight(client, handle.id, FAULT_STEPS[0], 120):
            await asyncio.sleep(FAULT_AFTER_S)
            clock.start()
            try:
                fault = await _apply_fault(kind, demo.home, trial)
                deadline = time.monotonic() + CONTAIN_WAIT_S
                while clock.restored is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            finally:
                await clock.stop()
                _resume(trial)
        else:
            trial["note"] = f"the canary never held {FAULT_STEPS[0]}%: no fault applied"
        result, notes = await _settle(client, handle.id, FAULT_DEADLINE_S)
    finally:
        _resume(trial)
        report = await load.stop()
        await router.aclose()
    if kind == "latency_200ms" and fault:
        clock.start_at = fault["injected"] + DRILLS[kind]["latency_ms"] / 1000
    elif fault and kind != "error_burst":
        clock.start_at = fault["applied"]
    rolled_back = result.outcome.value == "rolled_back" and not notes
    contained = clock.restored if rolled_back else None
    trial.update(
        outcome=_classify(result, notes),
        cause=result.cause,
        verified=fault.get("verified"),
        detection_to_containment_ms=round((contained - clock.start_at) * 1000, 1)
        if contained is not None and clock.start_at is not None
        else None,
        injection_to_containment_ms=round((contained - fault["injected"]) * 1000, 1)
        if contained is not None and fault
        else None,
        requests_sent=int(report.get("requests_sent", 0)),
        requests_failed=int(report.get("requests_failed", 0)),
        failure_kinds=report.get("failure_kinds", []),
        gate_cpu=_gate_cpu(result),
    )
    for key in ("drill_answer", "ready_answer", "drill_echo"):
        if key in fault:
            trial[key] = fault[key]
    if not rolled_back:
        trial["notes"] = notes
        trial["gates"] = _events(result, "gate_verdict")
        trial["alerts"] = _events(result, "alert")
    return trial


def _resume(trial: dict[str, Any]) -> None:
    """SIGCONT a hung canary (once), so that its retirement can drain and stop it."""
    process = trial.get("process")
    if trial["kind"] != "hang" or not process or process.get("continued"):
        return
    if _same_process(process["pid"], process["start"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process["pid"], signal.SIGCONT)
    process["continued"] = True


# ---------------------------------------------------------------------- summaries


def _rank(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _fault_summary(kind: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(
        r["detection_to_containment_ms"]
        for r in runs
        if r["detection_to_containment_ms"] is not None
    )
    done = [r for r in runs if r["outcome"] != "bench_error"]
    out: dict[str, Any] = {
        "trials": len(done),
        "bench_errors": len(runs) - len(done),
        "rolled_back": sum(1 for r in done if r["outcome"] == "rolled_back"),
        "p50_ms": _rank(times, 0.50) if times else None,
        "p99_ms": _rank(times, 0.99) if times else None,
        "max_ms": times[-1] if times else None,
        "min_ms": times[0] if times else None,
        "timed_trials": len(times),
        "requests_failed": sum(r["requests_failed"] for r in runs),
        "requests_sent": sum(r["requests_sent"] for r in runs),
        "outcomes": dict(Counter(r["outcome"] for r in runs)),
        "clock_start": CLOCK_START[kind],
        "causes": sorted({(r["cause"] or "")[:100] for r in runs}),
        "runs": runs,
    }
    if kind in DRILLS:
        out["fault_verified"] = sum(1 for r in runs if r.get("verified"))
    return out


CODE_GLOBS = (
    "zdp/**/*.py",
    "zdp/data/*.yaml",
    "workflows/*.py",
    "activities/*.py",
    "workers/*.py",
    "apps/*/src/**/*.py",
    "infrastructure/**/*.yaml",
    "bench/*.yaml",
)


def _code(moment: str, uncommitted: bool = False) -> dict[str, Any]:
    """What code ran: git HEAD, the uncommitted files, and one hash of every engine, app and
    policy file (the tree is shared and edited while benchmarks run: the worker imports it when
    it starts, the apps' wheels are built at the start)."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in CODE_GLOBS for p in REPO.glob(pattern)}):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    out: dict[str, Any] = {"moment": moment, "tree_sha256": digest.hexdigest()[:16]}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        out["git_head"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
        porcelain = subprocess.run(
            [*git, "status", "--porcelain"], capture_output=True, text=True, timeout=20
        ).stdout
        if uncommitted:
            out["git_uncommitted"] = sorted(line[3:] for line in porcelain.splitlines())
    return out


def _cpu_busy(seconds: float = 2.0) -> float | None:
    """The share of all cores busy (anything but idle and iowait) over `seconds`, from /proc/stat:
    the machine is shared, and what else runs on it is part of the conditions."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def _machine() -> dict[str, Any]:
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "cpu_busy_before": _cpu_busy(),  # before the bench starts anything
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        out["mem_gib"] = round(kb / 2**20, 1)
    for name, args in (("envoy", ["--version"]), ("temporal", ["--version"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(
                [str(Path(sys.executable).parent / name), *args],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            out[name] = text.splitlines()[-1].strip() if text else None
    return out


# ---------------------------------------------------------------------- the benchmark


async def bench(
    healthy: int, fault_trials: int, kinds: list[str], duty: float, load_rps: float, rate: float
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="zdp-gate-accuracy-"))
    os.environ["ZDP_HOME"] = str(home)
    os.environ.setdefault("ZDP_PORT_BASE", "27000")  # below the ephemeral ports
    os.environ.setdefault("ZDP_TEMPORAL_PORT", "27400")
    _progress(f"gate accuracy bench in {home}")
    machine = _machine()
    code = [_code("start: wheels built, worker on the demo policy", uncommitted=True)]
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=DEMO_CONFIG)  # what demo.prepare starts; down() stops it
    healthy_runs: list[dict[str, Any]] = []
    fault_runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    setup: list[dict[str, Any]] = []
    shares: list[float | None] = []
    errors: list[str] = []

    def save() -> None:  # so that a run cut short still leaves its trials behind
        partial = {"healthy": healthy_runs, "faults": fault_runs, "errors": errors}
        (home / "partial.json").write_text(json.dumps(partial, indent=2, default=str))

    try:
        await asyncio.to_thread(demo.prepare)  # zdp up with the demo policy, wheels, keys
        client = await connect(target_host=stack.temporal_address)
        # Each app's first deployment: no load, no traffic yet; it sets up the stable slot.
        for app in LOCAL_APPS:
            result, notes = await _deploy(demo, client, app, "1.0.0", Strategy.canary)
            setup.append({"app": app, "version": "1.0.0", "outcome": _classify(result, notes)})
            _progress(f"setup {app} 1.0.0: {setup[-1]['outcome']}")
        if healthy:
            hogs = Hogs(duty, max_seconds=healthy * HEALTHY_DEADLINE_S + 600)
            hogs.start()
            try:
                await asyncio.sleep(1.0)
                failures = 0
                for index, (app, strategy) in enumerate(_healthy_plan(healthy)):
                    try:
                        run = await _healthy_trial(demo, client, index, app, strategy, load_rps)
                        failures = 0
                    except Exception as err:
                        failures += 1
                        run = _bench_error(err, app=app, version=f"2.{index}.0")
                        run["strategy"] = strategy.value
                        errors.append(run["error"])
                        await _terminate_if_running(client, app)
                    healthy_runs.append(run)
                    save()
                    _progress(
                        f"healthy {index + 1}/{healthy} {app} {strategy.value}: {run['outcome']}"
                        + (f" ({run.get('cause')})" if run["outcome"] != "promoted" else "")
                    )
                    if failures >= 3:
                        errors.append("healthy part stopped after 3 bench errors in a row")
                        break
            finally:
                shares = hogs.stop()
        if fault_trials and kinds:
            await asyncio.to_thread(Stack(home=home, config=FAULT_CONFIG).up)  # bench policy
            code.append(_code("fault part: worker restarted on the bench policy"))
            # The fault trials need finance-trading serving from its stable slot, which a
            # canary deployment leaves it on (blue-green trials left it on a colour).
            result, notes = await _deploy(demo, client, FAULT_APP, "3.0.0", Strategy.canary)
            setup.append(
                {"app": FAULT_APP, "version": "3.0.0", "outcome": _classify(result, notes)}
            )
            _progress(f"setup {FAULT_APP} 3.0.0: {setup[-1]['outcome']}")
            failures = 0
            for i in range(fault_trials):
                for kind in kinds:
                    version = f"9.{KINDS.index(kind)}.{i}"
                    try:
                        trial = await _fault_trial(demo, client, kind, version, rate)
                        failures = 0
                    except Exception as err:
                        failures += 1
                        trial = _bench_error(err, kind=kind, version=version)
                        errors.append(trial["error"])
                        await _terminate_if_running(client, FAULT_APP)
                    fault_runs[kind].append(trial)
                    save()
                    _progress(
                        f"fault {i + 1}/{fault_trials} {kind}: {trial['outcome']} "
                        f"{trial.get('detection_to_containment_ms')} ms, "
                        f"{trial.get('requests_failed')} requests failed"
                    )
                    if failures >= 3:
                        raise RuntimeError("fault part stopped after 3 bench errors in a row")
    except Exception as err:
        errors.append(_bench_error(err)["error"])
    finally:
        await asyncio.to_thread(stack.down)
    machine["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    code.append(_code("end"))
    out = {
        "benchmark": "gate_accuracy",
        "healthy": _healthy_summary(healthy_runs, duty, shares, load_rps),
        "faults": {kind: _fault_summary(kind, runs) for kind, runs in fault_runs.items()},
        "fault_setup": {
            "app": FAULT_APP,
            "strategy": "canary",
            "steps": FAULT_STEPS,
            "bake_seconds": FAULT_BAKE_S,
            "fault_after_s": FAULT_AFTER_S,
            "rate_per_s": rate,
            "config": str(FAULT_CONFIG.relative_to(REPO)),
            "clock_stop": CLOCK_STOP,
            "percentiles": PERCENTILES,
        },
        "setup_deployments": setup,
        "machine": machine,
        "code": code,
        "zdp_home": str(home),
    }
    if errors:
        out["errors"] = errors
    return out


def _bench_error(err: BaseException, **fields: Any) -> dict[str, Any]:
    """A trial the bench could not carry out (not a gate verdict): kept apart in the counts."""
    where = traceback.extract_tb(err.__traceback__)[-1:]
    at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    return {
        **fields,
        "outcome": "bench_error",
        "error": f"{type(err).__name__}: {str(err)[:300]}{at}",
        "cause": None,
        "detection_to_containment_ms": None,
        "requests_sent": 0,
        "requests_failed": 0,
    }


def _healthy_summary(
    runs: list[dict[str, Any]], duty: float, shares: list[float | None], load_rps: float
) -> dict[str, Any]:
    deployed = [r for r in runs if r["outcome"] != "bench_error"]
    not_promoted = [r for r in deployed if r["outcome"] != "promoted"]
    loadavgs = [r["loadavg_1m"] for r in deployed if r.get("loadavg_1m") is not None]
    return {
        "trials": len(deployed),
        "bench_errors": len(runs) - len(deployed),
        "false_rollbacks": sum(1 for r in runs if r["outcome"] == "rolled_back"),
        "not_promoted": len(not_promoted),
        "outcomes": dict(Counter(r["outcome"] for r in runs)),
        "by_strategy": {
            f"{app} {strategy}": dict(
                Counter(r["outcome"] for r in runs if (r["app"], r["strategy"]) == (app, strategy))
            )
            for app, strategy in sorted({(r["app"], r["strategy"]) for r in runs})
        },
        "not_promoted_details": not_promoted,
        "requests_sent": sum(sum(r["requests_sent"].values()) for r in deployed),
        "requests_failed": sum(sum(r["requests_failed"].values()) for r in deployed),
        "busy": {
            "hog_duty": duty,
            "hog_processes": len(shares),
            "hog_core_share_measured": shares,
            "load_rps_per_app": load_rps,
            "loadavg_1m_min": min(loadavgs) if loadavgs else None,
            "loadavg_1m_max": max(loadavgs) if loadavgs else None,
        },
        "config": str(DEMO_CONFIG.relative_to(REPO)),
        "runs": runs,
    }


def _table(result: dict[str, Any]) -> str:
    h = result["healthy"]
    busy = h["busy"]
    lines = [
        f"healthy deployments on a busy machine ({busy['hog_processes']} hogs at duty "
        f"{busy['hog_duty']:g}, {busy['load_rps_per_app']:g} req/s per app): "
        f"{h['trials']} trials, {h['false_rollbacks']} false rollbacks, "
        f"{h['not_promoted']} not promoted, outcomes {h['outcomes']}, "
        f"{h['requests_failed']} of {h['requests_sent']} requests failed",
    ]
    for run in h["not_promoted_details"]:
        lines.append(f"  {run['app']} {run['version']} {run['strategy']}: {run['outcome']}")
        lines.append(f"    {run['cause']}")
    lines.append("")
    lines.append(
        f"{'fault':<18} {'trials':>6} {'rolled back':>11} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'req failed':>10}"
    )

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    for kind, f in result["faults"].items():
        lines.append(
            f"{kind:<18} {f['trials']:>6} {f['rolled_back']:>11} {cell(f['p50_ms']):>8} "
            f"{cell(f['p99_ms']):>8} {cell(f['max_ms']):>8} {f['requests_failed']:>10}"
        )
    lines.extend(f"bench error: {e}" for e in result.get("errors", []))
    lines.append(f"whole run: {result['seconds']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=20, help="healthy deployments")
    parser.add_argument("--fault-trials", type=int, default=10, help="trials of each fault")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}"
    )
    parser.add_argument("--hog-duty", type=float, default=1.0, help="0 < duty <= 1")
    parser.add_argument("--load-rps", type=float, default=100.0, help="per app, healthy part")
    parser.add_argument("--rate", type=float, default=500.0, help="req/s during fault trials")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown fault kinds {unknown}: use {', '.join(KINDS)}")
    if not 0 < args.hog_duty <= 1:
        parser.error("--hog-duty must be in (0, 1]")
    if args.healthy < 0 or args.fault_trials < 0:
        parser.error("trial counts cannot be negative")
    started = time.monotonic()
    result = asyncio.run(
        bench(args.healthy, args.fault_trials, kinds, args.hog_duty, args.load_rps, args.rate)
    )
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2, default=str) if args.json else _table(result))
    if result.get("errors"):
        sys.exit(1)


if __name__ == "__main__":
    main()
