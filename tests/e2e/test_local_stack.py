"""The embedded stack end to end: Temporal dev server, Envoy, app processes, steady load.

One stack for the module (its own home and ports): `zdp demo --json` starts it in the demo's
home (ZDP_DEMO_HOME), which every later command here is given as ZDP_HOME, while the `zdp up`
home it was run beside (ZDP_HOME then) must stay without any demo trust. The demo runs the
main job through the stack while a CPU hog keeps both cores busy (a healthy release must
never be rolled back because the machine is busy); then a worker is killed in the middle of a
bake and a new one finishes the deployment while traffic keeps flowing; finally `zdp down`
must leave no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.github_actions import clean_env, run_job
from tests.monitoring.promql import check_dashboards
from tests.ports import free_port, port_base
from zdp import deployments
from zdp.cli.demo import ADMIN, DEMO_CONFIG, Demo
from zdp.compliance.registry import Admin, audit_recorder, load_registry, register, registry_dir
from zdp.errors import ZdpError
from zdp.models import DeploymentRequest, Outcome, Phase, Strategy
from zdp.platforms.layout import LOCAL_APPS
from zdp.signing import generate_key_pair, load_public_key
from zdp.stack import Stack, pid_alive
from zdp.temporal import connect

# The demo runs with one busy loop per core: the load it is judged under is its own, so it runs
# by itself, after the modules `make test` runs side by side (their load would come on top).
pytestmark = pytest.mark.alone

ZDP = str(Path(sys.executable).parent / "zdp")
REPO = Path(__file__).resolve().parents[2]
# finance-trading runs with APP_ENV=local here; its POST /drill/faults takes only a drill key,
# and this is the public demo one of apps/finance-trading/config/local.yaml.
DRILL_KEY = {"X-API-Key": "ft-demo-drill-key"}


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("zdp-home")
    env = {
        "ZDP_HOME": str(home),
        "ZDP_PORT_BASE": str(port_base("local-stack")),
        "ZDP_TEMPORAL_PORT": str(free_port()),
        "COLUMNS": "200",
        # The stack's workers hand a workflow task to any worker after 3 s on their own queue
        # (10 s by default): the worker killed mid-bake costs 3 s there, not 10.
        "ZDP_WORKER_STICKY_TIMEOUT": "3",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("TEMPORAL_")]:
            patch.delenv(key)
        yield {**os.environ}
        stopped = subprocess.run(
            [ZDP, "down"], env={**os.environ}, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr


# One busy loop per core, each ending by itself after 10 minutes at the latest.
HOG = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass\n"


@pytest.fixture(scope="module")
def up_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home `zdp up` would use while the demo runs (ZDP_HOME): the demo must not touch it."""
    return tmp_path_factory.mktemp("zdp-up-home")


@pytest.fixture(scope="module")
def demo_result(stack_env: dict[str, str], up_home: Path) -> dict[str, Any]:
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True)
        for _ in range(os.cpu_count() or 2)
    ]
    # The demo in its own home (the module's stack home), beside another `zdp up` home.
    env = {**stack_env, "ZDP_DEMO_HOME": stack_env["ZDP_HOME"], "ZDP_HOME": str(up_home)}
    try:
        run = subprocess.run(
            [ZDP, "demo", "--json"], env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    return dict(json.loads(run.stdout))


@pytest.fixture(scope="module")
def demo(demo_result: dict[str, Any], stack_env: dict[str, str]) -> Demo:
    """The demo's keys, identities and wheels for the tests that deploy after it, prepared once
    for the module (the wheels are built here, not again in each test)."""
    prepared = Demo(Path(stack_env["ZDP_HOME"]), quiet=True)
    prepared.prepare()  # idempotent: the stack is already up
    return prepared


async def _stack_up(home: Path) -> Stack:
    """The demo's stack, up (a test before may have replaced its worker): `zdp up` is idempotent."""
    stack = Stack(home=home, config=DEMO_CONFIG)
    await asyncio.to_thread(stack.up)
    return stack


def test_demo_on_a_busy_machine_promotes_every_healthy_release_and_rolls_back_the_bad_one(
    demo_result: dict[str, Any],
) -> None:
    rows = {(d["app"], d["version"]): d for d in demo_result["deployments"]}
    assert rows[("finance-trading", "2.0.0")]["outcome"] == "promoted"
    assert rows[("finance-trading", "3.0.0")]["outcome"] == "rolled_back"
    assert rows[("pharma-manufacturing", "2.0.0")]["outcome"] == "promoted"
    assert rows[("pharma-manufacturing", "2.0.0")]["strategy"] == "blue-green"
    for row in demo_result["deployments"]:
        assert set(row) >= {
            "app", "version", "strategy", "outcome",
            "requests_sent", "requests_failed", "containment_ms",
        }  # fmt: skip
        assert row["requests_failed"] == 0, row
    # Load flowed through both canaries. The bad one is rolled back within a second or two,
    # so it sees far fewer requests than the good one's full bake (one second of load is 200).
    assert rows[("finance-trading", "2.0.0")]["requests_sent"] > 500
    assert rows[("finance-trading", "3.0.0")]["requests_sent"] > 100
    bad = rows[("finance-trading", "3.0.0")]
    assert bad["containment_ms"] is not None and bad["containment_ms"] < 5000
    # The engine asked the running pharma version for batches in progress: in staging they
    # only raise the risk (15 points); the demo's seeded batches are in progress.
    pharma = rows[("pharma-manufacturing", "2.0.0")]
    wip = next(c for c in pharma["domain_checks"] if c.startswith("work_in_progress"))
    assert wip.startswith("work_in_progress: passed — 2 batches in progress: ")
    assert "B-1001" in wip and "B-1002" in wip
    first = rows[("pharma-manufacturing", "1.0.0")]
    assert pharma["risk_score"] == first["risk_score"] + 15
    assert demo_result["ok"] is True


def test_the_stacks_prometheus_has_the_demos_outcomes_and_its_gates_ran_the_templates(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """After the demo, `zdp up --status --json` names Prometheus; it has scraped the worker's
    zdp_deployments_total, one series per outcome the demo produced, and the gates ran the
    PromQL templates against it (what they measured is in the verdicts)."""
    status = subprocess.run(
        [ZDP, "up", "--status", "--json"], env=stack_env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    parts = {c["name"]: c for c in json.loads(status.stdout)["components"]}
    assert parts["prometheus"]["state"] == "running", parts["prometheus"]
    url = parts["prometheus"]["url"]
    assert parts["worker"]["prometheus"] == url
    assert parts["worker"]["metrics"].endswith("/metrics")

    produced: dict[str, int] = {}
    for row in demo_result["deployments"]:
        produced[row["outcome"]] = produced.get(row["outcome"], 0) + 1
    deadline = time.monotonic() + 60  # one scrape a second; a busy machine may lag
    while True:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "zdp_deployments_total"})
        series: dict[str, float] = {}
        for item in answer.json()["data"]["result"]:
            outcome = item["metric"]["outcome"]
            if float(item["value"][1]) > 0:  # every outcome's series starts at 0
                series[outcome] = series.get(outcome, 0.0) + float(item["value"][1])
        if series == produced or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert series == produced, (series, produced)

    verdicts = [
        event
        for result in Path(stack_env["ZDP_HOME"], "evidence").rglob("result.json")
        for event in json.loads(result.read_text())["timeline"]
        if event["kind"] == "gate_verdict"
    ]
    # Each deployment the demo started carries the trace its start opened (zdp.tracing).
    started = [
        event
        for result in Path(stack_env["ZDP_HOME"], "evidence").rglob("result.json")
        for event in json.loads(result.read_text())["timeline"]
        if event["kind"] == "started"
    ]
    assert started and all(len(e["data"].get("trace_id") or "") == 32 for e in started), started
    measured = [
        v for v in verdicts if v["data"]["evidence"].get("template.slot-5xx-ratio.measurements")
    ]
    assert measured, [v["data"]["details"] for v in verdicts]
    assert any("template 'slot-5xx-ratio'" in d for v in measured for d in v["data"]["details"])

    # The dashboards' queries against the stack's own Prometheus: each parses, and each metric
    # they name has series, except those the demo cannot produce (no approval is asked in
    # staging; no audit append, activity or workflow task fails; no sticky cache is evicted).
    problems = check_dashboards(
        url,
        variables={
            "datasource": "prometheus",
            "app": "finance-trading",
            "environment": "staging",
            "namespace": "default",
            "task_queue": "zdp-deployments",
        },
    )
    not_produced = (
        "zdp_approval_deadline_timestamp_seconds",
        "zdp_approval_wait_seconds",
        "zdp_audit_append_failures_total",
        "temporal_activity_execution_failed_total",
        "temporal_workflow_task_execution_failed_total",
        "temporal_workflow_failed_total",
        "temporal_sticky_cache_total_forced_eviction_total",
    )
    unexpected = [p for p in problems if not any(f"metric {m}" in p for m in not_produced)]
    assert unexpected == [], unexpected


def test_demo_trust_stays_in_the_demo_home_and_the_zdp_up_home_trusts_no_demo_key(
    demo_result: dict[str, Any], stack_env: dict[str, str], up_home: Path
) -> None:
    demo_home = Path(stack_env["ZDP_HOME"]).resolve()
    assert demo_result["demo_home"] == str(demo_home)
    assert demo_result["zdp_up_home_untouched"] == str(up_home.resolve())
    trust = demo_result["demo_trust"]
    assert all(Path(path).is_relative_to(demo_home) for path in trust.values())
    demo_key = (demo_home / "trusted-keys" / "demo-release.pub").read_bytes()
    assert Path(trust["release_key"]).is_file()
    assert "demo-admin" in load_registry(Path(trust["identity_registry"]))
    # The `zdp up` home: no trusted key, no identity, no file at all.
    assert list(up_home.rglob("*")) == []
    assert load_registry(registry_dir(up_home)) == {}
    everywhere = [p for p in up_home.rglob("*.pub") if p.read_bytes() == demo_key]
    assert everywhere == []


async def test_worker_killed_mid_bake_is_replaced_and_traffic_stays_intact(
    demo: Demo, stack_env: dict[str, str]
) -> None:
    home = Path(stack_env["ZDP_HOME"])
    stack = await _stack_up(home)
    client = await connect(target_host=stack.temporal_address)

    async def kill_worker_mid_bake() -> None:
        workflow_id = "deploy-finance-trading-staging"
        await deployments.wait_until(
            client,
            workflow_id,
            lambda s: (
                s.version == "4.0.0" and s.phase is Phase.shift and bool(s.weights.get("canary"))
            ),
            stop_on_outcome=False,  # the id's earlier run has ended; wait for this one
        )
        before = stack.record()["worker"]
        pid = before["pid"]
        os.kill(pid, signal.SIGKILL)  # a crash, not a drain
        await asyncio.sleep(1.0)
        assert not pid_alive(pid, "zdp worker")
        # `zdp up` as an operator runs it, without --config: the new worker gets the config
        # the stack was started with, and the dead worker's log is kept, not emptied.
        await asyncio.to_thread(Stack(home=home).up)
        after = stack.record()["worker"]
        assert after["pid"] != pid
        assert after["config"] == before["config"] == str(DEMO_CONFIG.resolve())
        assert "worker ready" in (home / "worker.log.1").read_text()

    killer = asyncio.create_task(kill_worker_mid_bake())
    summary = await demo.deploy(client, "finance-trading", "4.0.0", Strategy.canary, True)
    await killer
    assert summary.outcome == Outcome.promoted.value, summary.cause
    assert summary.requests_failed == 0
    assert summary.requests_sent > 500


async def _demo_client(demo: Demo) -> Any:
    stack = await _stack_up(demo.home)
    return await connect(target_host=stack.temporal_address)


async def test_latency_only_fault_is_caught_and_rolled_back(demo: Demo) -> None:
    client = await _demo_client(demo)
    summary = await asyncio.wait_for(
        demo.deploy(
            client, "finance-trading", "5.0.0", Strategy.canary, True, FAULT_LATENCY_MS="200"
        ),
        180,
    )
    assert summary.outcome == Outcome.rolled_back.value, summary.cause
    assert summary.cause and "sampled requests slower than baseline" in summary.cause
    assert summary.requests_failed == 0


async def test_stable_failing_too_pauses_instead_of_rolling_back(demo: Demo) -> None:
    client = await _demo_client(demo)
    app = "finance-trading"
    first = await asyncio.wait_for(
        demo.deploy(client, app, "6.0.0", Strategy.canary, False, DRILL_ENDPOINT="1"), 180
    )
    assert first.outcome == Outcome.promoted.value, first.cause
    stable_url = f"http://127.0.0.1:{LOCAL_APPS[app].slot_port('stable')}/drill/faults"
    workflow_id = f"deploy-{app}-staging"
    request = DeploymentRequest(
        app=app,
        environment="staging",
        release=demo.release(app, "7.0.0", FAULT_ERROR_RATE="1.0"),
        initiator="ci-bot",
    )
    request = deployments.sign_start(request, demo.identity_keys["ci-bot"])
    handle = await deployments.start_deployment(client, request)
    await demo.approve_when_asked(client, handle.id, ("bob", "carol", "alice"))
    async with httpx.AsyncClient(trust_env=False) as http:
        # The outage elsewhere: stable starts failing while the canary is being provisioned,
        # so the first gate already sees both sick (on a busy machine, waiting until the
        # canary takes traffic could let the canary's own verdict come first).
        await deployments.wait_until(
            client, workflow_id, lambda s: s.phase in (Phase.provision, Phase.shift)
        )
        drill = await http.post(stable_url, json={"error_rate": 1.0}, headers=DRILL_KEY)
        assert drill.status_code == 200, drill.text
        try:
            status = await deployments.wait_until(
                client, workflow_id, lambda s: s.phase is Phase.paused
            )
            assert status.phase is Phase.paused, status
            events = await deployments.timeline(client, workflow_id)
            assert any(e.kind == "alert" and "not the cause" in e.message for e in events)
            assert not any(e.kind == "compensated" for e in events)
        finally:
            await http.post(stable_url, json={"error_rate": 0.0}, headers=DRILL_KEY)
            await demo.control(client, workflow_id, "abort", "alice", "cleanup")
    result = await deployments.wait_result(client, workflow_id)
    assert result.outcome is Outcome.rolled_back


def test_audit_log_of_the_demo_verifies_and_an_edited_copy_does_not(
    demo_result: dict[str, Any], stack_env: dict[str, str], tmp_path: Path
) -> None:
    home = Path(stack_env["ZDP_HOME"])
    ok = subprocess.run([ZDP, "audit", "verify"], env=stack_env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit log OK:")
    log = home / "audit" / "audit.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) > 50  # five deployments' worth of events
    copy = tmp_path / "audit.jsonl"
    (tmp_path / "audit.checkpoints.jsonl").write_bytes(
        (home / "audit" / "audit.checkpoints.jsonl").read_bytes()
    )
    entry = json.loads(lines[10])
    entry["actor"] = "mallory"
    lines[10] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    copy.write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        [ZDP, "audit", "verify", "--log", str(copy)],
        env=stack_env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"error: entry {entry['seq']} "), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cutting_the_audit_logs_tail_or_its_checkpoints_shows(
    demo_result: dict[str, Any], stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The signed heads kept in Temporal and in the evidence bundles catch what the files
    alone cannot: the last deployment's entries cut together with their checkpoint lines, or
    the checkpoint file deleted."""
    home = Path(stack_env["ZDP_HOME"])
    log = home / "audit" / "audit.jsonl"

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ZDP, "audit", "verify", *args], env=stack_env, capture_output=True, text=True
        )

    ok = verify()
    assert ok.returncode == 0, ok.stderr
    assert "cross-checked against" in ok.stdout and "in Temporal histories" in ok.stdout
    assert "in evidence bundles" in ok.stdout

    lines = log.read_text().splitlines()
    last = json.loads(lines[-1])
    run = last["event_id"].split("/")[0]
    first = next(
        i
        for i, line in enumerate(lines)
        if json.loads(line)["workflow_id"] == last["workflow_id"]
        and json.loads(line)["event_id"].startswith(f"{run}/")
    )
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(line + "\n" for line in lines[:first]))
    checkpoints = tmp_path / "audit.checkpoints.jsonl"
    checkpoints.write_text(
        "".join(
            line + "\n"
            for line in (home / "audit" / "audit.checkpoints.jsonl").read_text().splitlines()
            if json.loads(line)["size"] <= first
        )
    )
    cut = verify("--log", str(copy))
    assert cut.returncode == 1, cut.stdout
    line = [text for text in cut.stderr.splitlines() if text.startswith("error:")]
    assert len(line) == 1 and "Traceback" not in cut.stderr, cut.stderr
    assert f"first missing entry: entry {first} ({last['workflow_id']} {run}/0" in line[0]
    # Without Temporal, the evidence bundles still catch the cut tail; without the bundles,
    # the Temporal histories do.
    offline = verify("--log", str(copy), "--no-temporal")
    assert offline.returncode == 1 and "evidence bundle" in offline.stderr, offline.stderr
    no_bundles = verify("--log", str(copy), "--evidence", str(tmp_path / "none"))
    assert no_bundles.returncode == 1 and "Temporal history" in no_bundles.stderr

    copy.write_text(log.read_text())
    checkpoints.unlink()
    gone = verify("--log", str(copy))
    assert gone.returncode == 1, gone.stdout
    assert gone.stderr.startswith("error: entry "), gone.stderr
    assert "ends a deployment" in gone.stderr and "no checkpoint" in gone.stderr


async def test_github_actions_example_deploys_through_the_stack(
    demo: Demo, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """examples/ci/github-actions.yml's shell steps, extracted and run against the stack."""
    home = Path(stack_env["ZDP_HOME"])
    stack = Stack(home=home, config=DEMO_CONFIG)
    keys = generate_key_pair(tmp_path / "keys", "release-ci", passphrase=b"ci passphrase")
    (home / "trusted-keys" / "release-ci.pub").write_bytes(keys.public_key.read_bytes())
    # The CI system's own identity, registered by the demo's administrator: it signs the start.
    ci = generate_key_pair(tmp_path / "keys", "github-actions", passphrase=b"id passphrase")
    await _stack_up(home)
    if "github-actions" not in load_registry(registry_dir(home)):
        register(
            registry_dir(home), "github-actions", "GitHub Actions (finance-trading)",
            load_public_key(ci.public_key), Admin(ADMIN, demo.identity_keys[ADMIN]),
            audit_recorder(home), kind="ci",
        )  # fmt: skip
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True, timeout=120)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout.strip()
    expressions = {
        "inputs.environment || 'staging'": "staging",
        "github.run_number": "100",
        # Above what the demo and the tests before left running (a lower one is a downgrade).
        "vars.ZDP_VERSION_MAJOR || '1'": "9",
        "vars.ZDP_ARTIFACT_KIND || 'image'": "wheel",  # the local runtime deploys wheels
        "vars.REGISTRY": "",
        "github.event.before": "0" * 40,  # a first push: the release covers the last commit
        "github.sha": head,
        "github.actor": "octocat",
        "secrets.ZDP_SIGNING_KEY": keys.private_key.read_text(),
        "secrets.ZDP_SIGNING_PASSPHRASE": "ci passphrase",
        "secrets.ZDP_IDENTITY_KEY": ci.private_key.read_text(),
        "secrets.ZDP_IDENTITY_PASSPHRASE": "id passphrase",
        "secrets.TEMPORAL_ADDRESS": stack.temporal_address,
        "secrets.TEMPORAL_NAMESPACE": "default",
        "secrets.TEMPORAL_API_KEY": "",
        "secrets.TEMPORAL_TLS_CLIENT_CERT_DATA": "",
        "secrets.TEMPORAL_TLS_CLIENT_KEY_DATA": "",
        "github.run_id": "4242",
        "github.event.head_commit.message": "Faster quotes\n\nDetails; $(touch pwned)",
    }
    env = {**clean_env(), "PATH": f"{Path(ZDP).parent}:{os.environ['PATH']}", "ZDP_HOME": str(home)}
    client = await connect(target_host=stack.temporal_address)
    job = asyncio.create_task(
        asyncio.to_thread(
            run_job,
            REPO / "examples" / "ci" / "github-actions.yml",
            "deploy",
            expressions,
            checkout,
            env,
            {"Install zdp": "zdp is installed in this venv by `make test`"},
        )
    )
    # Approvals happen outside the job, as they would in Slack or with `zdp approve`. The job
    # builds a wheel first, which takes as long as a busy machine makes it: watch until the
    # job ends, bounded by the clock, never by a count of polls.
    workflow_id = "deploy-finance-trading-staging"
    deadline = asyncio.get_running_loop().time() + 480
    while not job.done() and asyncio.get_running_loop().time() < deadline:
        try:
            status = await deployments.status(client, workflow_id)
        except ZdpError:
            status = None
        if (
            status is not None
            and status.version == "9.100.0"
            and status.phase is Phase.await_approval
        ):
            await demo.approve_when_asked(client, status.deployment_id, ("alice", "bob", "carol"))
        await asyncio.sleep(0.1)
    if not job.done():  # let `zdp deploy --wait` return, so the test fails instead of hanging
        await demo.control(client, workflow_id, "abort", "alice", "the job took too long")
    runs = await asyncio.wait_for(job, 120)

    assert [r.name for r in runs] == [
        "Build the artifact", "Create the release", "Sign the release",
        "Deploy and wait for the outcome",
    ]  # fmt: skip
    for run in runs:
        assert run.code == 0, f"{run.name}: {run.output}"
    result = json.loads((checkout / "result.json").read_text())
    assert result["outcome"] == "promoted" and result["status"]["version"] == "9.100.0"
    assert "promoted finance-trading 9.100.0 to staging" in runs[-1].output
    assert "gate_verdict" in runs[-1].output  # progress lines stream into the job log
    assert result["status"]["approvals"][0]["approver"] in ("alice", "bob", "carol")
    # The start was signed by the CI system's registered key: the initiator is proven.
    initiator = result["status"]["initiator"]
    assert initiator["user"] == "github-actions" and initiator["proven"] is True
    assert initiator["key_fingerprint"] == ci.fingerprint
    assert not (checkout / "pwned").exists()  # the commit message never ran as shell


def test_up_again_is_safe_and_status_shows_what_runs(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    before = Stack(home=Path(stack_env["ZDP_HOME"])).record()
    again = subprocess.run([ZDP, "up"], env=stack_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    after = Stack(home=Path(stack_env["ZDP_HOME"])).record()
    for part in ("temporal", "envoy", "worker"):
        assert after[part]["pid"] == before[part]["pid"], part  # nothing restarted
    status = subprocess.run(
        [ZDP, "up", "--status"], env=stack_env, capture_output=True, text=True, timeout=60
    )
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for part in ("temporal", "envoy", "worker"):
        assert "running" in lines[part], status.stdout
    assert f"config {DEMO_CONFIG.resolve()}" in lines["worker"]
    assert "finance-trading/stable" in status.stdout


def test_down_leaves_no_process_of_ours(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """After the demo (asked for here, so this test also runs alone), `zdp down` stops the
    server, Envoy, the worker and every app version the demo left running."""
    home = Path(stack_env["ZDP_HOME"])
    record = Stack(home=home).record()
    pids = [record["temporal"]["pid"], record["worker"]["pid"], record["envoy"]["pid"]]
    apps = [json.loads(p.read_text())["pid"] for p in (home / "runtime").rglob("*.json")]
    assert apps, "the demo left app versions running for `zdp down` to stop"
    # Each process as it is now (pid and start time): a pid the kernel hands to someone else
    # after ours exited is not ours.
    before = {pid: _started(pid) for pid in pids + apps}
    run = subprocess.run([ZDP, "down"], env=stack_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for pid, started in before.items():
        if started is not None:
            assert _started(pid) != started or _is_zombie(pid), pid


def _started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[19]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
