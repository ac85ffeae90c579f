"""The fault matrix's infrastructure cases (issue 18): Redis unreachable, the PostgreSQL audit
database down for 10 s, and the audit file's disk full (before provisioning, and mid-bake).

Each case is a bench/faults.py case (`async case(h) -> row`, the interface at the top of that
file) and runs on that bench's one stack, under its independent load through the listener;
bench/faults.py imports CASES from here. Run alone (only these cases, same stack set-up):

    .venv/bin/python bench/faults_infra.py [--json] [--only NAME ...] [--rate 200]

Servers a case starts (redis-server, a throwaway PostgreSQL cluster, a tmpfs for the audit
folder) are stopped by pid or unmounted when the case ends. What each row's recovery_s measures
is said in its note: the time from the fault ending (Redis stopped: the fault itself; the
database started again; space freed and `resume` sent) to the deployment moving again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import faults  # noqa: E402
from bench.faults import APP, Case, Harness, Run, _row, in_bake  # noqa: E402
from tests.pg_outage import OutagePostgres, outage_postgres  # noqa: E402
from tests.pg_server import PostgresUnavailableError  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.small_disk import SmallDisk, SmallDiskUnavailable, mounted_small_disk  # noqa: E402
from zdp import deployments  # noqa: E402
from zdp.cli.demo import APPROVERS  # noqa: E402
from zdp.compliance.audit.postgres_verify import verify_database  # noqa: E402
from zdp.compliance.engine_key import engine_key  # noqa: E402
from zdp.fsutil import stop_pid  # noqa: E402
from zdp.models import DeploymentStatus, Phase, TimelineEvent  # noqa: E402
from zdp.stack import Stack  # noqa: E402

OUTAGE_S = 10.0  # the database's outage, as the issue asks
CACHE_WARNING = "health cache at "


def _skipped(reason: str) -> dict[str, Any]:
    row = _row(
        outcome="not run", expected="-", requests_failed=-1, audit_ok=False, recovery_s=None,
        note=reason,
    )  # fmt: skip
    row["goal_met"] = None
    return row


def _held(status: DeploymentStatus) -> bool:
    """Paused because the audit log cannot be written (phase paused)."""
    return status.paused and status.phase is Phase.paused


def _worker_metric(h: Harness, name: str, **labels: str) -> float | None:
    """One sample from the stack worker's /metrics (loopback), or None."""
    url = h.stack.record()["worker"].get("metrics")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(w in line for w in wanted):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _timeline(h: Harness, run: Run) -> list[TimelineEvent]:
    return await deployments.timeline(h.client, run.workflow_id, run.run_id)


def _alerts(timeline: list[TimelineEvent]) -> list[str]:
    return [e.message for e in timeline if e.kind == "alert"]


async def _until_held(run: Run, timeout: float = 180.0) -> DeploymentStatus:
    """The status once the deployment holds for the audit log, also after its outcome is
    decided (Run.until stops at an outcome)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await run.status()
        if status is not None and _held(status):
            return status
        await asyncio.sleep(0.02)
    raise RuntimeError(f"the deployment did not hold for the audit log within {timeout:g} s")


async def _resume(h: Harness, run: Run, reason: str) -> None:
    who = APPROVERS[APP][0]
    await h.demo.control(h.client, run.workflow_id, "resume", who, reason)


# ---------------------------------------------------------------------------- Redis


class _Redis:
    """A redis-server of the case's own on a fixed loopback port, stopped by pid."""

    def __init__(self, binary: str) -> None:
        self.binary, self.port = binary, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.05)

    def kill(self) -> int:
        """SIGKILL: Redis gone at once, as a crash or a lost host would be."""
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.kill()
        proc.wait(timeout=10)
        return proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


async def redis_unreachable(h: Harness) -> dict[str, Any]:
    """The worker's health cache is Redis (ZDP_REDIS_URL). Redis is SIGKILLed during the 5 %
    bake and started again (empty) during the 25 % one: the gates go on from memory, with one
    warning each way in the worker's log."""
    binary = shutil.which("redis-server")
    if binary is None:
        return _skipped("redis-server not installed (apt-get install -y redis-server)")
    redis = _Redis(binary)
    redis.start()
    try:
        async with h.worker_env(ZDP_REDIS_URL=redis.url):
            log = h.home / "worker.log"  # the worker started with Redis writes a fresh one

            async def fault(run: Run) -> str:
                await run.until(in_bake(5))
                await asyncio.sleep(0.5)
                pid = redis.kill()
                await run.injected()
                await run.until(in_bake(25))
                await asyncio.sleep(0.5)
                redis.start()
                return (
                    f"redis-server pid {pid} SIGKILLed at canary 5 %, started again (empty) "
                    "at 25 %; the deployment never stopped: recovery_s is the time to its next "
                    "step"
                )

            row = await h.deploy(fault, note="health cache in Redis")
            warnings = [line for line in log.read_text().splitlines() if CACHE_WARNING in line]
    finally:
        redis.stop()
    down = [w for w in warnings if " unavailable (" in w]
    back = [w for w in warnings if " answers again" in w]
    row.update(cache_warnings_down=len(down), cache_warnings_back=len(back))
    row["note"] += f"; worker log: {len(down)} 'unavailable' and {len(back)} 'answers again'"
    if len(down) != 1 or len(back) != 1:
        row["goal_met"] = False
        row["note"] += " (expected one each)"
    return row


# ---------------------------------------------------------------------------- PostgreSQL


def _database_check(
    h: Harness, url: str, workflow_id: str, run_id: str, timeline: list[TimelineEvent]
) -> tuple[bool, str]:
    """The database log verifies, and the run's rows are its timeline's audited events, each
    once (all but the sealing of the evidence, which comes after the last append)."""
    import psycopg

    try:
        report = verify_database(url, public_keys=[engine_key(h.home).public_key()])
    except Exception as err:
        return False, f"verify_database: {err}"
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id FROM zdp_audit_entries WHERE workflow_id = %s ORDER BY seq",
            [workflow_id],
        ).fetchall()
    ids = [str(r[0]) for r in rows if str(r[0]).startswith(f"{run_id}/")]
    audited = len(timeline) - (1 if timeline and timeline[-1].kind == "evidence_sealed" else 0)
    wanted = [f"{run_id}/{i}" for i in range(audited)]
    if ids != wanted:
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        missing = sorted(set(wanted) - set(ids))
        return False, f"rows vs timeline: duplicated {duplicated}, missing {missing}"
    return True, (
        f"verify_database: {report.entries} entries, {report.checkpoints} checkpoints; the "
        f"run's {len(ids)} rows = the timeline's {audited} audited events, once each"
    )


async def postgres_down_10s(h: Harness) -> dict[str, Any]:
    """The audit log is PostgreSQL (ZDP_AUDIT_DATABASE_URL). The server is stopped as the risk
    is assessed and started again 10 s later: the append before provisioning (the approval's
    record) fails meanwhile, and record_audit retries (EVIDENCE_RETRY, doubling from 0.2 s)
    until it goes through; nothing changes before it has. (Stopped at a later moment, the
    outage can miss every append on a busy machine: the final one comes after the promotion.)
    """
    try:
        server = outage_postgres()
        pg: OutagePostgres = server.__enter__()
    except PostgresUnavailableError as err:
        return _skipped(f"PostgreSQL cannot run here: {err}")
    runs: list[Run] = []
    try:
        url = pg.create_database("faults")
        async with h.worker_env(ZDP_AUDIT_DATABASE_URL=url):

            async def fault(run: Run) -> str:
                runs.append(run)
                await run.activity_scheduled("assess_risk")
                pg.stop()
                stopped = time.monotonic()
                await asyncio.sleep(OUTAGE_S)
                status = await run.status()
                run.extra["phase_after_outage"] = status.phase.value if status else None
                run.extra["weights_after_outage"] = await h.router.get_weights(APP)
                pg.start()
                run.extra["outage_s"] = round(time.monotonic() - stopped, 2)
                await run.injected()  # the recovery clock: from the database being back
                return (
                    f"PostgreSQL stopped (pg_ctl stop -m fast) as the risk was assessed, started "
                    f"again {run.extra['outage_s']:.1f} s later; recovery_s: from it being back "
                    "to the deployment moving again (the retried append)"
                )

            row = await h.deploy(fault, note="audit log in PostgreSQL")
        if runs:
            run = runs[0]
            timeline = await _timeline(h, run)
            attempts = await faults._history_attempts(h, run, "record_audit")
            ok, said = await asyncio.to_thread(
                _database_check, h, url, run.workflow_id, run.run_id, timeline
            )
            covered = bool(attempts) and attempts[0] > 1
            row.update(
                audit_ok=ok, audit=said, record_audit_attempts=attempts,
                goal_met=(
                    row["outcome"] == row["expected"] and row["requests_failed"] == 0 and ok
                    and covered
                ),
            )  # fmt: skip
            if not covered:
                row["note"] += "; no append fell in the outage (nothing was retried)"
    finally:
        server.__exit__(None, None, None)
    return row


# ---------------------------------------------------------------------------- disk full


@contextlib.asynccontextmanager
async def audit_on_small_disk(h: Harness, size: str = "8m") -> AsyncIterator[SmallDisk]:
    """The home's audit folder moved onto a small tmpfs (worker stopped meanwhile, the log
    copied over as it is), and moved back after, the worker started again each time."""
    audit = h.home / "audit"
    with _stopped_worker(h):
        keep = Path(tempfile.mkdtemp(prefix="zdp-audit-keep-"))
        shutil.copytree(audit, keep / "audit")
    mounted = mounted_small_disk(audit, size)
    try:
        disk = mounted.__enter__()
    except SmallDiskUnavailable:
        await asyncio.to_thread(Stack(home=h.home).up)
        shutil.rmtree(keep, ignore_errors=True)
        raise
    try:
        shutil.copytree(keep / "audit", audit, dirs_exist_ok=True)
        await asyncio.to_thread(Stack(home=h.home).up)
        yield disk
    finally:
        disk.free()
        with _stopped_worker(h):
            shutil.rmtree(keep / "audit")
            shutil.copytree(audit, keep / "audit")
            mounted.__exit__(None, None, None)
            shutil.copytree(keep / "audit", audit, dirs_exist_ok=True)
        shutil.rmtree(keep, ignore_errors=True)
        await asyncio.to_thread(Stack(home=h.home).up)


@contextlib.contextmanager
def _stopped_worker(h: Harness) -> Iterator[None]:
    """The stack's worker stopped (drained) for the block; `Stack.up` starts it after."""
    stop_pid(h.worker_pid(), "zdp worker", grace=40)
    yield


def _disk_case(fill_when: str) -> Case:
    async def case(h: Harness) -> dict[str, Any]:
        try:
            async with audit_on_small_disk(h) as disk:
                return await _deploy_onto_full_disk(h, disk, fill_when)
        except SmallDiskUnavailable as err:
            return _skipped(str(err))

    return case


async def _deploy_onto_full_disk(h: Harness, disk: SmallDisk, fill_when: str) -> dict[str, Any]:
    """Fill the audit disk (before the deployment, or 0.5 s into the 5 % bake); when the
    deployment holds with its alert, read what it holds at, free the space and resume."""
    log = h.home / "audit" / "audit.jsonl"
    if fill_when == "before":
        disk.fill()

    async def fault(run: Run) -> str:
        filled = time.monotonic()
        if fill_when == "bake":
            await run.until(in_bake(5))
            await asyncio.sleep(0.5)
            disk.fill()
            filled = time.monotonic()
        status = await _until_held(run)
        run.extra["held_after_fill_s"] = round(time.monotonic() - filled, 2)
        weights = await h.router.get_weights(APP)
        run.extra["held_at"] = {
            "outcome": status.outcome.value if status.outcome else None,
            "envoy_weights": weights,
            "canary_running": (h.home / "runtime" / APP / "canary.json").exists(),
            "log_bytes": log.stat().st_size,
        }
        run.extra["paused_gauge"] = _worker_metric(
            h, "zdp_deployment_phase", app=APP, phase="paused"
        )
        run.extra["audit_failures_total"] = _worker_metric(
            h, "zdp_audit_append_failures_total", backend="file"
        )
        await asyncio.sleep(1.0)  # held: nothing moves while it waits
        run.extra["log_bytes_unchanged"] = log.stat().st_size == run.extra["held_at"]["log_bytes"]
        run.extra["weights_unchanged"] = await h.router.get_weights(APP) == weights
        disk.free()
        await _resume(h, run, "audit disk: space freed")
        await run.injected()  # the recovery clock: from space freed and resume sent
        where = (
            "before provisioning (nothing changed)"
            if status.outcome is None
            else f"at its final append, outcome {status.outcome.value} decided"
        )
        moment = "before the deployment" if fill_when == "before" else "0.5 s into the 5 % bake"
        return (
            f"audit disk filled {moment}; held with an alert {where} after "
            f"{run.extra['held_after_fill_s']:.1f} s; space freed and resumed; recovery_s: from "
            "the resume to the deployment moving again"
        )

    runs: list[Run] = []

    async def keep(run: Run) -> str:
        runs.append(run)
        return await fault(run)

    row = await h.deploy(keep, note="audit log on a small disk")
    if runs:
        alerts = _alerts(await _timeline(h, runs[0]))
        row.update(alerts=alerts)
        if not alerts or not all("disk full at" in a for a in alerts):
            row["goal_met"] = False
            row["note"] += "; no 'disk full' alert"
    return row


async def no_fault_control(h: Harness) -> dict[str, Any]:
    """The same deployment under the same load with no fault: what the machine alone costs
    (a busy 2-core machine times requests out), to read the rows below against."""
    return await h.deploy(None, note="control: no fault injected")


CASES: dict[str, Case] = {
    "no_fault_control": no_fault_control,
    "redis_unreachable": redis_unreachable,
    "postgres_down_10s": postgres_down_10s,
    "audit_disk_full_before_provision": _disk_case("before"),
    "audit_disk_full_mid_bake": _disk_case("bake"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--only", nargs="*", help="run only these of this module's cases")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.only or ()) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {', '.join(unknown)}; these exist: {', '.join(CASES)}")
    started = time.monotonic()
    result = asyncio.run(faults.bench(args.rate, args.only or list(CASES)))
    result["benchmark"] = "faults_infra"
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'case':<34} {'outcome':<12} {'failed':>6} {'audit':>6} {'recovery_s':>10}  note")
    for name, row in result["cases"].items():
        recovery = "-" if row["recovery_s"] is None else f"{row['recovery_s']:.2f}"
        print(
            f"{name:<34} {row['outcome']:<12} {row['requests_failed']:>6} "
            f"{row['audit_ok']!s:>6} {recovery:>10}  {row['note']}"
        )


if __name__ == "__main__":
    main()
