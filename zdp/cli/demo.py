"""`zdp demo`: real app processes behind a real Envoy, deployed by the engine under real load.

It runs `zdp up` (Temporal dev server, Envoy, a worker on the local runtime), builds the two
apps' wheels into the artifact store, signs releases with a demo key, and deploys:
1. finance-trading 1.0.0 as the initial stable version;
2. finance-trading 2.0.0 by canary to 100% under steady load;
3. finance-trading 3.0.0, whose config injects a fault (every API call answers 503), which
   the gate catches and rolls back;
4. pharma-manufacturing 1.0.0, then 2.0.0 by blue-green switch under steady load.
Each deployment ends with a one-screen summary: outcome, steps, requests sent and failed
while it ran, and the time from the canary's first error to traffic restored. The stack is
left running so the histories can be read in the Temporal UI; `ZDP_HOME=<demo home> zdp down`
stops it.

The demo runs in a home of its own (`ZDP_DEMO_HOME`, default `.zdp-demo`), never in the one
`zdp up` uses (`ZDP_HOME`, default `.zdp`): there it keeps an unencrypted demo release key,
trusted by the demo's worker, and demo identities with unencrypted keys in its own registry.
`demo_home` refuses a home whose trust `zdp up` (or the compose file's worker) would read;
`isolate` unsets, for the demo's process and the worker it starts, every variable that would
put the demo's trust or records anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.markup import escape
from temporalio.client import Client

from zdp import deployments, tracing
from zdp.cli.output import console, err_console
from zdp.cli.progress import follow
from zdp.compliance.registry import (
    REGISTRY_ENV,
    ROOT_ENV,
    Admin,
    audit_recorder,
    load_registry,
    register,
    registry_dir,
)
from zdp.config import packaged_data
from zdp.errors import ConfigError
from zdp.loadgen import LoadProcess
from zdp.models import (
    Artifact,
    ChangeMetadata,
    DeploymentRequest,
    DsseEnvelope,
    IdentityKind,
    Outcome,
    Phase,
    ReleaseManifest,
    Strategy,
)
from zdp.platforms.envoy.router import EnvoyRouter
from zdp.platforms.layout import LOCAL_APPS
from zdp.platforms.local.artifacts import build_app_wheel, store_artifact
from zdp.release import sign_manifest
from zdp.settings import settings
from zdp.signing import generate_key_pair, load_private_key
from zdp.stack import Stack, pid_alive
from zdp.temporal import connect

DEMO_CONFIG = packaged_data("demo.yaml")
ENV = "staging"
LOAD_RATE = 200.0
TARGETS = {
    "finance-trading": "/api/quote/AAPL",
    "pharma-manufacturing": "/api/batches/B-1001",
}
APPROVERS = {
    "finance-trading": ("bob", "carol", "alice"),
    "pharma-manufacturing": ("qa-lead", "plant-manager", "validation-eng"),
}
# Who acts in the demo, each with a registered key: an administrator registers the others.
ADMIN = "demo-admin"
INITIATOR = "ci-bot"

DEMO_HOME_ENV = "ZDP_DEMO_HOME"
DEFAULT_DEMO_HOME = Path(".zdp-demo")
# Variables that would take the demo's trust or records out of its home (trusted keys, the
# identity registry and its pinned root, the artifact store, the audit database): unset for
# the demo, whose worker inherits its environment.
OUTSIDE_HOME_ENV = (
    "ZDP_TRUSTED_KEYS",
    REGISTRY_ENV,
    ROOT_ENV,
    "ZDP_ARTIFACTS",
    "ZDP_AUDIT_DATABASE_URL",
    "ZDP_AUDIT_DATABASE_CA",
)


@dataclass(frozen=True)
class DemoHome:
    """The demo's home, and the `zdp up` home it must leave alone (both absolute)."""

    path: Path
    up_home: Path

    def trust(self) -> dict[str, str]:
        """Where the demo's trust lives: all of it under `path`."""
        return {
            "release_key": str(self.path / "keys" / "demo-release.key"),
            "trusted_keys": str(self.path / "trusted-keys"),
            "identity_keys": str(self.path / "keys" / "identities"),
            "identity_registry": str(self.path / "approvers"),
        }


def _resolved(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser().resolve()


def _same(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def demo_home(requested: Path) -> DemoHome:
    """The demo's home, checked before anything starts; ConfigError (one line) when `zdp up`,
    or the compose file's worker, would read trust from it, or when a `zdp up` stack already
    runs on the ports the demo needs."""
    path = requested.expanduser().resolve()
    found = settings()
    up = found.home
    # docker compose runs from the checkout: its relative paths are the working directory's.
    compose_trust = _resolved(found.TRUSTED_KEYS_DIR or Path(".zdp") / "trusted-keys")
    clashes = [
        (path, up, "is the home `zdp up` uses (ZDP_HOME, default ./.zdp)"),
        (
            path / "trusted-keys",
            _resolved(found.TRUSTED_KEYS),
            "holds the trusted keys `zdp up`'s worker reads (ZDP_TRUSTED_KEYS)",
        ),
        (
            path / "approvers",
            _resolved(found.APPROVER_REGISTRY),
            f"holds the identity registry `zdp up` reads ({REGISTRY_ENV})",
        ),
        (
            path / "trusted-keys",
            compose_trust,
            "holds the trusted keys docker-compose.temporal.yml mounts into its worker "
            "(ZDP_TRUSTED_KEYS_DIR, default ./.zdp/trusted-keys)",
        ),
    ]
    for ours, theirs, why in clashes:
        if _same(ours, theirs):
            raise ConfigError(
                f"the demo home {path} {why}: the demo would leave its unencrypted demo keys "
                f"trusted there; give the demo a folder of its own (--home or {DEMO_HOME_ENV}, "
                f"default {DEFAULT_DEMO_HOME})"
            )
    up_stack = Stack(home=up)
    temporal = up_stack.record().get("temporal") or {}
    if temporal.get("address") == up_stack.temporal_address and pid_alive(
        int(temporal.get("pid", 0)), "start-dev"
    ):
        raise ConfigError(
            f"a `zdp up` stack in {up} runs on the ports the demo needs (Temporal "
            f"{up_stack.temporal_address}): stop it with `zdp down`, or move the demo "
            "with ZDP_PORT_BASE and ZDP_TEMPORAL_PORT"
        )
    return DemoHome(path, up)


def isolate(home: DemoHome) -> None:
    """This process, and the stack it starts, read and write the demo home only."""
    os.environ["ZDP_HOME"] = str(home.path)
    for name in OUTSIDE_HOME_ENV:
        os.environ.pop(name, None)


@dataclass
class DeploymentSummary:
    app: str
    version: str
    strategy: str
    outcome: str
    steps: list[int]
    requests_sent: int
    requests_failed: int
    containment_ms: float | None
    cause: str | None
    # The domain checks' verdicts as the timeline recorded them, and the risk score.
    domain_checks: list[str]
    risk_score: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ContainmentClock:
    """From the first 5xx the new slot's process served to its weight back at 0 in Envoy.

    The first failure is read from the process's own `/metrics` (every response it sent, to
    users through Envoy and to the gate's samples alike), sampled every 10 ms; containment is
    the canary's weight read back from Envoy's `/config_dump`. The figure is accurate to about
    one sampling period plus one admin call.
    """

    def __init__(
        self, router: EnvoyRouter, app: str, slot: str, require_error: bool = True
    ) -> None:
        self.router, self.app, self.slot = router, app, slot
        self.require_error = require_error  # False: a latency-only fault serves no 5xx
        port = LOCAL_APPS[app].slot_port(slot)
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self.first_error: float | None = None
        self.restored: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def _failures(self, http: httpx.AsyncClient) -> int:
        try:
            text = (await http.get(self.metrics_url)).text
        except httpx.HTTPError:
            return 0
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("http_requests_total{") and 'status="5' in line
        )

    async def _run(self) -> None:
        deadline = time.monotonic() + 600
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
            seen_weight = False
            while self.restored is None and time.monotonic() < deadline:
                now = time.monotonic()
                if self.first_error is None and await self._failures(http) > 0:
                    self.first_error = now
                weight = (await self.router.get_weights(self.app)).get(self.slot, 0)
                seen_weight = seen_weight or weight > 0
                failed = self.first_error is not None or not self.require_error
                if failed and seen_weight and weight == 0:
                    self.restored = time.monotonic()
                await asyncio.sleep(0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float | None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.first_error is None or self.restored is None:
            return None
        return round((self.restored - self.first_error) * 1000, 1)


class Demo:
    def __init__(self, home: Path, quiet: bool = False) -> None:
        self.home = home
        self.quiet = quiet
        self.key_path = home / "keys" / "demo-release.key"
        self.artifacts: dict[str, Artifact] = {}
        self.identity_keys: dict[str, Ed25519PrivateKey] = {}

    def say(self, text: str) -> None:
        if not self.quiet:
            err_console.print(f"\n[bold cyan]==>[/] {text}")

    def prepare(self, config: Path = DEMO_CONFIG) -> Stack:
        """The stack up with `config` for its worker, the demo's keys, identities and wheels."""
        stack = Stack(home=self.home, config=config)
        self.say("starting the embedded stack (zdp up): Temporal dev server, Envoy, worker")
        stack.up()
        if not self.key_path.exists():
            keys = generate_key_pair(self.key_path.parent, "demo-release")
            trusted = self.home / "trusted-keys" / "demo-release.pub"
            trusted.write_bytes(keys.public_key.read_bytes())
        self.register_identities()
        wheels = self.home / "build"
        for name, app in LOCAL_APPS.items():
            self.say(f"building the {name} wheel from apps/{name} into the artifact store")
            self.artifacts[name] = store_artifact(build_app_wheel(app, wheels), self.home)
        return stack

    def register_identities(self) -> None:
        """A key per person and for the CI system (unencrypted: demo keys in the demo's home;
        people keep theirs passphrase-protected), registered by the demo's administrator and
        recorded in the audit log; kept across runs."""
        folder = self.home / "keys" / "identities"
        registry = registry_dir(self.home)
        people = sorted({p for approvers in APPROVERS.values() for p in approvers})
        known = load_registry(registry)
        for user in (ADMIN, INITIATOR, *people):
            path = folder / f"{user}.key"
            if not path.exists():
                generate_key_pair(folder, user)
            self.identity_keys[user] = load_private_key(path)
        admin = Admin(ADMIN, self.identity_keys[ADMIN])
        record = audit_recorder(self.home)
        for user in (ADMIN, INITIATOR, *people):
            if user in known:
                continue
            kind: IdentityKind = "ci" if user == INITIATOR else "person"
            register(
                registry, user, user.replace("-", " ").title(),
                self.identity_keys[user].public_key(), admin, record,
                kind=kind, administrator=user == ADMIN,
            )  # fmt: skip
        self.say(
            f"identities: {ADMIN} registered {INITIATOR} and {', '.join(people)}; every start "
            "and decision below is signed by its actor's key"
        )

    def release(self, app: str, version: str, **overrides: str) -> DsseEnvelope:
        manifest = ReleaseManifest(
            app=app,
            version=version,
            artifact=self.artifacts[app],
            config_overrides=overrides,
            change=ChangeMetadata(lines_changed=120, files_changed=4, author="ci-bot"),
        )
        return sign_manifest(manifest, load_private_key(self.key_path))

    async def deploy(
        self,
        client: Client,
        app: str,
        version: str,
        strategy: Strategy = Strategy.canary,
        load: bool = True,
        **overrides: str,
    ) -> DeploymentSummary:
        request = DeploymentRequest(
            app=app,
            environment=ENV,
            release=self.release(app, version, **overrides),
            strategy=strategy,
            initiator=INITIATOR,
            change_ref=f"CHG-{version}",
            reason="zdp demo",
            channel="cli",
        )
        request = deployments.sign_start(request, self.identity_keys[INITIATOR])
        url = f"http://127.0.0.1:{LOCAL_APPS[app].listener_port()}{TARGETS[app]}"
        generator = LoadProcess(url, rate=LOAD_RATE, max_seconds=300) if load else None
        router = EnvoyRouter(self.home)
        new_slot = "canary" if strategy is Strategy.canary else None
        clock = ContainmentClock(router, app, new_slot) if new_slot else None
        if generator is not None:
            await generator.start()
            await asyncio.sleep(0.5)  # steady load before the deployment begins
        if clock is not None:
            clock.start()
        try:
            # Each deployment's trace starts here, as with `zdp deploy` (zdp.tracing).
            tracing.setup(tracing.SERVICE_CLI)
            attributes = {"zdp.app": app, "zdp.environment": request.environment}
            with tracing.root_span("zdp demo deploy", attributes):
                handle = await deployments.start_deployment(client, request)
            await self.approve_when_asked(client, handle.id, APPROVERS[app])
            result = await follow(client, handle.id, quiet=self.quiet)
        finally:
            containment = await clock.stop() if clock is not None else None
            report = await generator.stop() if generator is not None else None
            await router.aclose()
        return DeploymentSummary(
            app=app,
            version=version,
            strategy=strategy.value,
            outcome=result.outcome.value,
            steps=result.status.steps,
            requests_sent=int(report["requests_sent"]) if report else 0,
            requests_failed=int(report["requests_failed"]) if report else 0,
            containment_ms=containment if result.outcome is Outcome.rolled_back else None,
            cause=result.cause,
            domain_checks=[e.message for e in result.timeline if e.kind == "domain_check"],
            risk_score=result.status.risk.score if result.status.risk else None,
        )

    async def approve_when_asked(
        self, client: Client, workflow_id: str, who: tuple[str, ...]
    ) -> None:
        """The initiator's own signed approval is refused; then distinct approvers sign off,
        each with their own key."""
        status = await deployments.wait_until(
            client, workflow_id, lambda s: s.phase not in (Phase.verify, Phase.assess_risk)
        )
        if status.phase is not Phase.await_approval:
            return
        try:
            await self.approve(client, workflow_id, INITIATOR, None)
        except deployments.RequestRefused as refused:
            if not self.quiet:
                err_console.print(
                    f"{INITIATOR} signs an approval of its own deployment: refused — {refused}"
                )
        for approver in who[: status.approvals_required]:
            message = await self.approve(client, workflow_id, approver, "reviewed")
            if not self.quiet:
                err_console.print(f"{approver} approves: {message}", markup=False)

    async def control(
        self,
        client: Client,
        workflow_id: str,
        name: Literal["pause", "resume", "abort"],
        who: str,
        reason: str | None,
    ) -> None:
        """A signed pause, resume or abort by `who`."""
        proof = await deployments.sign_request(
            client, workflow_id, name, who, "cli", self.identity_keys[who]
        )
        await deployments.control(client, workflow_id, name, who, reason, "cli", proof)

    async def approve(self, client: Client, workflow_id: str, who: str, reason: str | None) -> str:
        proof = await deployments.sign_request(
            client, workflow_id, "approve", who, "cli", self.identity_keys[who]
        )
        return await deployments.approve(
            client, workflow_id, who, reason, channel="cli", proof=proof
        )

    def print_summary(self, s: DeploymentSummary) -> None:
        if self.quiet:
            return
        contained = f"{s.containment_ms:.0f} ms" if s.containment_ms is not None else "—"
        console.print(
            f"\n[bold]{s.app} {s.version}[/] ({s.strategy}): [bold]{s.outcome}[/]\n"
            f"  steps          {s.steps}\n"
            f"  requests       {s.requests_sent} sent, {s.requests_failed} failed\n"
            f"  containment    {contained} from the first canary error to traffic restored\n"
            f"  risk           {s.risk_score}"
            + "".join(f"\n  check          {escape(c)}" for c in s.domain_checks)
            + (f"\n  cause          {escape(s.cause)}" if s.cause else "")
        )


async def run_demo(home: DemoHome, as_json: bool = False) -> dict[str, Any]:
    demo = Demo(home.path, quiet=as_json)
    stack = await asyncio.to_thread(demo.prepare)
    trust = home.trust()
    demo.say(
        f"demo trust stays in the demo's home {home.path}: the unencrypted demo-release key "
        f"{trust['release_key']} (trusted in {trust['trusted_keys']}), the demo identities' "
        f"keys in {trust['identity_keys']} and their registry {trust['identity_registry']}; "
        f"`zdp up`'s home {home.up_home} is untouched"
    )
    client = await connect(target_host=stack.temporal_address)
    plan: list[tuple[str, str, Strategy, bool, dict[str, str]]] = [
        ("finance-trading", "1.0.0", Strategy.canary, False, {}),
        ("finance-trading", "2.0.0", Strategy.canary, True, {}),
        ("finance-trading", "3.0.0", Strategy.canary, True, {"FAULT_ERROR_RATE": "1.0"}),
        ("pharma-manufacturing", "1.0.0", Strategy.blue_green, False, {}),
        ("pharma-manufacturing", "2.0.0", Strategy.blue_green, True, {}),
    ]
    summaries: list[DeploymentSummary] = []
    for app, version, strategy, load, overrides in plan:
        note = " (injected fault: every API call answers 503)" if overrides else ""
        demo.say(f"deploying {app} {version} by {strategy.value}{note}")
        summary = await demo.deploy(client, app, version, strategy, load, **overrides)
        demo.print_summary(summary)
        summaries.append(summary)
    result = {
        "temporal_ui": stack.ui_url,
        "deployments": [s.as_dict() for s in summaries],
        "ok": _as_promised(summaries),
        "demo_home": str(home.path),
        "demo_trust": trust,
        "zdp_up_home_untouched": str(home.up_home),
    }
    if not as_json:
        console.print(
            f"\nInspect every history in the Temporal UI: {stack.ui_url}\n"
            f"The stack keeps running; `ZDP_HOME={home.path} zdp down` stops it.\n"
            f"The demo's keys and identities (unencrypted, trusted only by this demo) are in "
            f"{home.path}: `rm -rf {home.path}` removes them. `zdp up`'s home "
            f"{home.up_home} trusts none of them.",
            markup=False,
            highlight=False,
        )
    return result


def _as_promised(summaries: list[DeploymentSummary]) -> bool:
    """v2 promoted, v3 rolled back, pharma promoted, and no request failed anywhere."""
    expected = ["promoted", "promoted", "rolled_back", "promoted", "promoted"]
    return [s.outcome for s in summaries] == expected and all(
        s.requests_failed == 0 for s in summaries
    )
