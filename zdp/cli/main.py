"""The `zdp` command line: a client of the deployment workflow; it holds no business logic."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from zdp import deployments
from zdp.acceptance import claimed_manifest
from zdp.cli import audit_cmd, evidence_cmd, keys_cmd, release_cmd, slack_cmd
from zdp.cli.keys_cmd import PassphraseEnv, PassphraseFile, Prompt
from zdp.cli.output import EXIT_ERROR, EXIT_USAGE, console, err_console, fail, print_json
from zdp.cli.progress import OUTCOME_EXIT_CODES, follow
from zdp.compliance.identity import request_digest
from zdp.config import EngineConfig
from zdp.errors import ZdpError
from zdp.models import DeploymentRequest, DsseEnvelope, Strategy, deployment_id
from zdp.release import summarize_validation_error
from zdp.temporal import connect

T = TypeVar("T")

app = typer.Typer(
    name="zdp",
    help="Zero-downtime deployments as durable Temporal workflows: signed releases, risk-based "
    "approvals, health-gated traffic shifting and rollback in under a second.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys_cmd.app, name="keys", help="Generate Ed25519 signing keys.")
app.add_typer(release_cmd.app, name="release", help="Create, sign and verify releases.")
app.add_typer(audit_cmd.app, name="audit", help="Verify the hash-chained audit log.")
app.add_typer(evidence_cmd.app, name="evidence", help="Verify sealed evidence bundles.")
app.add_typer(slack_cmd.app, name="slack", help="Approve and steer deployments from Slack.")


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; any error a user can cause becomes one line, no traceback."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ZdpError as err:
        fail(str(err))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        fail(f"{where}: {first['msg']}")
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except (RPCError, TemporalError) as err:
        fail(f"Temporal: {err}")
    except Exception as err:  # the last line of defence: a bug, said in one line
        if os.environ.get("ZDP_DEBUG"):
            raise
        fail(f"unexpected {type(err).__name__}: {err} (set ZDP_DEBUG=1 for the traceback)")


def _who(value: str | None) -> str:
    return value or os.environ.get("ZDP_USER") or getpass.getuser()


KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Your private key: signs the request, proving who sent it [default: "
        "<key dir>/USER.key if it exists; `zdp whoami` shows it].",
    ),
]


def _signing_key(
    user: str,
    key: Path | None,
    passphrase_env: str | None = None,
    passphrase_file: Path | None = None,
    prompt: bool = False,
) -> Ed25519PrivateKey | None:
    """The key that signs `user`'s request: --key, else the default location if a key is
    there; None when there is none: the request goes unsigned, which is refused, with a
    pointer to `zdp whoami`, where identities must be proven."""
    from zdp.cli.keys_cmd import signing_key
    from zdp.compliance.identity import default_key_path

    path = key or default_key_path(user)
    if key is None and not path.exists():
        return None
    return signing_key(path, passphrase_env, passphrase_file, prompt)


def _load_envelope(release: Path, envelope: Path | None) -> DsseEnvelope:
    """The signed envelope named by --release (or the one a manifest there was signed into)."""
    from zdp.release import read_release_input

    try:
        return read_release_input(release, envelope)
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)


def _preflight(request: DeploymentRequest, config_path: Path | None) -> None:
    """Refuse now, with exit 2, what the worker would refuse before changing anything: no
    workflow starts, no audit entry is written, no bundle is sealed. Checked against the
    worker's config: --config, else the running stack's (when this CLI talks to its Temporal),
    else $ZDP_CONFIG, else apps.yaml. With none of them here (a CLI on a CI runner for a remote
    engine), nothing is checked before starting, said in one note: the worker checks it."""
    from activities.release import default_trusted_keys_dir
    from zdp.acceptance import Target, preflight
    from zdp.compliance.registry import registry_dir
    from zdp.config import CONFIG_ENV_VAR, find_config_path, load_config
    from zdp.errors import ConfigError
    from zdp.stack import worker_config
    from zdp.temporal import stack_address

    address = os.environ.get("TEMPORAL_ADDRESS")
    path = config_path or (worker_config() if not address or address == stack_address() else None)
    try:
        path = find_config_path(path)
    except ConfigError as err:
        if config_path is not None or os.environ.get(CONFIG_ENV_VAR):
            fail(f"refused before starting: {err}", EXIT_USAGE)
        err_console.print(
            "note: no engine config here, so the request was not checked before starting; "
            "the worker checks it (give --config or set ZDP_CONFIG to check it first)",
            markup=False,
        )
        return
    try:
        config = load_config(path)
        preflight(
            config,
            request.release,
            Target.of(request, request.environment),
            default_trusted_keys_dir(),
            registry_dir(),
        )
        _prove_start(request, config)
    except (ZdpError, OSError) as err:
        text = str(err) if isinstance(err, ZdpError) else f"cannot read {err.filename}: {err}"
        where = f" (checked against {path})" if str(path) not in text else ""
        fail(f"refused before starting: {text}{where}", EXIT_USAGE)


def _prove_start(request: DeploymentRequest, config: EngineConfig) -> None:
    """Where identities must be proven, the start must carry the initiator's valid signature:
    checked here against the registry the worker reads, so a refused start never starts."""
    from zdp.compliance.identity import Expected, identities_required, prove, requirement_text
    from zdp.compliance.registry import load_registry, registry_dir

    env = config.app(request.app).environment(request.environment)
    required = identities_required(
        request.environment, env.compliance_profiles, env.require_proven_identities
    )
    if not required and request.proof is None:
        return
    expected = Expected.start(
        request.app,
        request.environment,
        request.initiator,
        request.channel,
        claimed_manifest(request.release).artifact.digest,
        request_digest(request),
    )
    _, refusal = prove(
        request.proof,
        expected,
        load_registry(registry_dir()),
        datetime.now(UTC),
        set(),
        required,
        requirement_text(request.environment, env.compliance_profiles),
    )
    if refusal:
        raise ZdpError(refusal)


def _parse_steps(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        fail(
            f"--steps must be comma-separated percentages such as 1,5,25,100, not '{value}'",
            EXIT_USAGE,
        )


@app.command()
def deploy(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App to deploy.")],
    env: Annotated[str, typer.Option("--env", help="Target environment.")],
    release: Annotated[
        Path,
        typer.Option(
            help="The signed release: its DSSE envelope (release.dsse.json), or a manifest "
            "that equals the statement signed beside it."
        ),
    ],
    envelope: Annotated[
        Path | None, typer.Option(help="The manifest's DSSE envelope, if not beside it.")
    ] = None,
    strategy: Annotated[Strategy, typer.Option(help="canary or blue-green.")] = Strategy.canary,
    steps: Annotated[str | None, typer.Option(help="Canary weights, e.g. 1,5,25,100.")] = None,
    bake: Annotated[float | None, typer.Option(help="Seconds of health gate per step.")] = None,
    initiator: Annotated[
        str | None, typer.Option(help="Who starts it (default $ZDP_USER).")
    ] = None,
    change_ref: Annotated[str | None, typer.Option(help="Change ticket, e.g. CHG-1234.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why this deployment.")] = None,
    approval_timeout: Annotated[float, typer.Option(help="Seconds to wait for approval.")] = 14400,
    standby: Annotated[float, typer.Option(help="Blue-green: seconds to keep the old colour.")] = 0,
    emergency_override: Annotated[
        str | None,
        typer.Option(
            "--emergency-override",
            metavar="REASON",
            help="Deploy inside a freeze window; needs the calendar's emergency approvals (≥2).",
        ),
    ] = None,
    allow_downgrade: Annotated[
        bool,
        typer.Option(
            "--allow-downgrade",
            help="Deploy a version older than the running one (refused otherwise); only the "
            "environment's operators and approvers may, and the start's signature covers it.",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow progress; exit code is the outcome.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final result as JSON.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Engine config to check the request against before starting [default: the "
            "stack's worker config, else $ZDP_CONFIG, else apps.yaml]."
        ),
    ] = None,
    key: KeyOption = None,
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
) -> None:
    """Start a deployment of a signed release; with --wait, follow it to its outcome.

    Checked before anything starts (exit 2): the app, the environment, the strategy, steps
    and bake, and the release (its app, its evidence; its signature when trusted keys are at
    hand). Exit codes: 0 started (or promoted with --wait), 1 error, 2 refused before starting,
    10-15 the outcome with --wait (the README's exit-code table)."""
    try:
        request = DeploymentRequest(
            app=app_name,
            environment=env,
            release=_load_envelope(release, envelope),
            strategy=strategy,
            steps=_parse_steps(steps),
            bake_seconds=bake,
            initiator=_who(initiator),
            change_ref=change_ref,
            reason=reason,
            approval_timeout_seconds=approval_timeout,
            standby_seconds=standby,
            emergency_override=emergency_override,
            channel="cli",
            allow_downgrade=allow_downgrade,
        )
    except ValidationError as err:
        fail(f"invalid deployment request: {summarize_validation_error(err)}", EXIT_USAGE)
    signer = _signing_key(request.initiator, key, passphrase_env, passphrase_file, prompt)
    if signer is not None:
        try:
            request = deployments.sign_start(request, signer)
        except ZdpError as err:
            fail(f"refused before starting: {err}", EXIT_USAGE)
    _preflight(request, config)

    async def work() -> int:
        client = await connect()
        handle = await deployments.start_deployment(client, request)
        err_console.print(f"started {handle.id}")
        if not wait:
            if as_json:
                print_json({"deployment_id": handle.id, "run_id": handle.result_run_id})
            return 0
        result = await follow(client, handle.id, quiet=False)
        if as_json:
            print_json(result)
        return OUTCOME_EXIT_CODES[result.outcome]

    raise typer.Exit(run(work))


def _promote_command() -> Callable[..., None]:
    def command(
        deployment: Annotated[str, typer.Argument(metavar="ID", help="deploy-<app>-<env>.")],
        as_: Annotated[
            str | None, typer.Option("--as", help="Your identity (default $ZDP_USER).")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="Recorded in the timeline.")] = None,
        key: KeyOption = None,
        meaning: Annotated[
            str | None,
            typer.Option(help='Part 11: what your e-signature means, e.g. "promote now".'),
        ] = None,
        passphrase_env: PassphraseEnv = None,
        passphrase_file: PassphraseFile = None,
        prompt: Prompt = False,
    ) -> None:
        who = _who(as_)
        signer = _signing_key(who, key, passphrase_env, passphrase_file, prompt)
        if meaning is not None and signer is None:
            fail("a Part 11 signature (--meaning) needs your key (--key)", EXIT_USAGE)

        async def work() -> str:
            client = await connect()
            proof = signature = None
            if signer is not None:
                proof = await deployments.sign_request(
                    client, deployment, "promote", who, "cli", signer
                )
                if meaning is not None:
                    signature = await deployments.sign_decision(
                        client, deployment, who, "promote", meaning, signer
                    )
            return str(
                await deployments.promote(client, deployment, who, reason, "cli", proof, signature)
            )

        console.print(run(work), markup=False)

    command.__doc__ = "Skip the remaining steps and promote now (allowed approvers only)."
    return command


def _signed_decision(kind: Literal["approve", "reject"]) -> Callable[..., None]:
    def command(
        deployment: Annotated[str, typer.Argument(metavar="ID", help="deploy-<app>-<env>.")],
        as_: Annotated[
            str | None, typer.Option("--as", help="Your identity (default $ZDP_USER).")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="Recorded in the timeline.")] = None,
        key: KeyOption = None,
        meaning: Annotated[
            str | None,
            typer.Option(
                help='Part 11: what your e-signature means, e.g. "approve release to production".'
            ),
        ] = None,
        passphrase_env: PassphraseEnv = None,
        passphrase_file: PassphraseFile = None,
        prompt: Prompt = False,
    ) -> None:
        who = _who(as_)
        private = _signing_key(who, key, passphrase_env, passphrase_file, prompt)
        if meaning is not None and private is None:
            fail("a Part 11 signature (--meaning) needs your key (--key)", EXIT_USAGE)

        async def work() -> str:
            client = await connect()
            signature = proof = None
            if private is not None and meaning is not None:
                signature = await deployments.sign_decision(
                    client, deployment, who, kind, meaning, private
                )
            elif private is not None:
                proof = await deployments.sign_request(
                    client, deployment, kind, who, "cli", private
                )
            action = deployments.approve if kind == "approve" else deployments.reject
            return str(await action(client, deployment, who, reason, signature, "cli", proof))

        console.print(run(work), markup=False)

    command.__doc__ = {
        "approve": "Approve a deployment that awaits approval (signed with --key where Part 11 "
        "applies).",
        "reject": "Reject a deployment that awaits approval; it ends `rejected`.",
    }[kind]
    return command


app.command(name="approve")(_signed_decision("approve"))
app.command(name="reject")(_signed_decision("reject"))
app.command(name="promote")(_promote_command())


def _signal(name: Literal["pause", "resume", "abort"], doc: str) -> Callable[..., None]:
    def command(
        deployment: Annotated[str, typer.Argument(metavar="ID", help="deploy-<app>-<env>.")],
        reason: Annotated[str | None, typer.Option(help="Recorded in the timeline.")] = None,
        actor: Annotated[str | None, typer.Option("--as", help="Who (default $ZDP_USER).")] = None,
        key: KeyOption = None,
        passphrase_env: PassphraseEnv = None,
        passphrase_file: PassphraseFile = None,
        prompt: Prompt = False,
    ) -> None:
        who = _who(actor)
        signer = _signing_key(who, key, passphrase_env, passphrase_file, prompt)

        async def work() -> None:
            client = await connect()
            if name != "abort" and not await deployments.is_running(client, deployment):
                raise ZdpError(f"{deployment} is not running")
            proof = None
            if signer is not None:
                proof = await deployments.sign_request(client, deployment, name, who, "cli", signer)
            await deployments.control(client, deployment, name, who, reason, "cli", proof)

        run(work)
        console.print(
            f"{name} sent to {deployment} as {who}"
            + (" (signed)" if signer is not None else " (unsigned)")
            + f"; `zdp timeline {deployment}` shows whether it was taken or refused"
        )

    command.__doc__ = doc
    return command


app.command(name="pause")(_signal("pause", "Hold at the current weight after the running gate."))
app.command(name="resume")(_signal("resume", "Continue a paused deployment."))
app.command(name="abort")(_signal("abort", "Stop and roll back; traffic is restored first."))


@app.command()
def whoami(
    as_: Annotated[str | None, typer.Option("--as", help="Ask about this user instead.")] = None,
    key: KeyOption = None,
) -> None:
    """Which identity the CLI acts as, the key it signs with, and whether the registry knows
    that key (exit 1 when requests would go unsigned or the key is not the registered one)."""
    from zdp.compliance.identity import KEY_DIR_ENV, default_key_path
    from zdp.compliance.registry import load_registry, registry_dir
    from zdp.signing import fingerprint, load_public_key

    who = _who(as_)
    path = key or default_key_path(who)
    console.print(f"user:     {who} (--as, else $ZDP_USER, else your login name)", markup=False)
    console.print(f"key:      {path} (--key, else ${KEY_DIR_ENV}/USER.key, else "
                  "$XDG_CONFIG_HOME/zdp/keys/USER.key, else ~/.config/zdp/keys/USER.key)",
                  markup=False)  # fmt: skip
    public = path.with_suffix(".pub")
    try:
        printed = fingerprint(load_public_key(public)) if public.exists() else None
    except ZdpError:
        printed = None
    if not path.exists():
        console.print("signing:  no key there: requests go unsigned, and are refused where "
                      "identities must be proven (production; sox, pci-dss, part11)",
                      markup=False)  # fmt: skip
        raise typer.Exit(1)
    folder = registry_dir()
    try:
        registered = load_registry(folder).get(who)
    except ZdpError as err:
        console.print(f"registry: {err}", markup=False)
        raise typer.Exit(1) from None
    shown = printed or "(no .pub beside it: `zdp keys register` shows it)"
    console.print(f"signing:  every start and decision is signed with {shown}", markup=False)
    if registered is None:
        console.print(f"registry: {who} is not registered in {folder}: an administrator "
                      "registers you with `zdp keys register`", markup=False)  # fmt: skip
        raise typer.Exit(1)
    role = f"{registered.kind}{', administrator' if registered.administrator else ''}"
    console.print(f"registry: {who} is {registered.printed_name} ({role}), key "
                  f"{registered.fingerprint}, in {folder}", markup=False)  # fmt: skip
    if printed is not None and printed != registered.fingerprint:
        console.print("warning:  the key here is not the registered one: requests signed "
                      "with it are refused", markup=False)  # fmt: skip
        raise typer.Exit(1)


@app.command()
def status(
    deployment: Annotated[str, typer.Argument(metavar="ID", help="deploy-<app>-<env>.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Where a deployment is: phase, weights, risk, approvals, outcome."""

    async def work() -> tuple[deployments.DeploymentStatus, dict[str, Any]]:
        client = await connect()
        current = await deployments.status(client, deployment)
        return current, await deployments.cached_health(client, deployment)

    current, health = run(work)
    if as_json:
        print_json(
            {
                **current.model_dump(mode="json"),
                "health": {e: h.model_dump(mode="json") for e, h in health.items()},
            }
        )
        return
    from zdp.cli.progress import render_health, render_status

    console.print(render_status(current))
    console.print(render_health(health), markup=False, highlight=False)


@app.command()
def timeline(
    deployment: Annotated[str, typer.Argument(metavar="ID", help="deploy-<app>-<env>.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="text (live, one line per event), or json, md, html, pdf: the forensic "
            "report from the closed workflow's history (pdf: printed by headless Chromium, -o).",
        ),
    ] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The events as JSON.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
) -> None:
    """The forensic record: every phase, decision, weight change, verdict and compensation."""
    from zdp.forensics.report import RENDERERS

    if fmt not in ("text", *RENDERERS, "pdf"):
        fail(f"--format must be one of text, {', '.join(RENDERERS)}, pdf; got {fmt!r}", EXIT_USAGE)
    if fmt == "pdf" and output is None:
        fail("--format pdf writes a file: give -o report.pdf", EXIT_USAGE)
    if fmt == "text":

        async def events() -> list[deployments.TimelineEvent]:
            return await deployments.timeline(await connect(), deployment)

        found = run(events)
        if as_json:
            print_json([e.model_dump(mode="json") for e in found])
            return
        from zdp.cli.progress import render_timeline

        text = render_timeline(found)
    else:

        async def closed() -> deployments.DeploymentResult:
            client = await connect()
            if await deployments.is_running(client, deployment):
                raise ZdpError(
                    f"{deployment} is still running: its report is built from the history once "
                    f"it closes; `zdp timeline {deployment}` shows the live timeline"
                )
            return await deployments.closed_result(client, deployment)

        if fmt == "pdf" and output is not None:
            from zdp.forensics.pdf import html_to_pdf
            from zdp.forensics.report import render_html

            html = render_html(run(closed))
            try:
                size = html_to_pdf(html, output)
            except ZdpError as err:
                fail(str(err))
            err_console.print(f"wrote {output} ({size} bytes, printed by headless Chromium)")
            return
        text = RENDERERS[fmt](run(closed))
    if output is not None:
        try:
            output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as err:
            fail(f"cannot write {output}: {err.strerror}")
        err_console.print(f"wrote {output}")
        return
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def worker(
    check: Annotated[bool, typer.Option(help="Only check that Temporal is reachable.")] = False,
) -> None:
    """Run the worker on task queue zdp-deployments until SIGTERM (then drain)."""
    from workers.worker import run_worker

    async def work() -> None:
        client = await connect()
        if check:
            await client.service_client.check_health()
            return

        def ready() -> None:
            target = client.service_client.config.target_host
            err_console.print(
                f"worker ready: task queue zdp-deployments on {target}, "
                f"namespace {client.namespace}"
            )

        await run_worker(client, on_ready=ready)

    run(work)


@app.command()
def build(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="An app under apps/.")],
) -> None:
    """Build apps/APP into a wheel and put it in the artifact store the local runtime reads."""
    from zdp.platforms.artifacts import build_app_wheel, find_artifact, store_artifact
    from zdp.platforms.local_layout import local_app, zdp_home

    try:
        home = zdp_home()
        artifact = store_artifact(build_app_wheel(local_app(app_name), home / "build"), home)
        path = find_artifact(artifact, home)
    except ZdpError as err:
        fail(str(err))
    # Plain lines (never wrapped): CI scripts read the path with `sed -n 's/^wheel: //p'`.
    typer.echo(f"stored {artifact.reference} {artifact.digest}")
    typer.echo(f"wheel: {path}")


@app.command()
def up(
    show_status: Annotated[bool, typer.Option("--status", help="Only show what runs.")] = False,
    config: Annotated[Path | None, typer.Option(help="Engine config for the worker.")] = None,
) -> None:
    """Start the embedded stack: Temporal dev server, Envoy and a worker (safe to re-run)."""
    from zdp.stack import Stack

    stack = Stack.here(config)
    if not show_status:
        try:
            stack.up()
        except ZdpError as err:
            fail(str(err))
    for part, state, detail in stack.status():
        console.print(f"{part:<32} {state:<8} {detail}", markup=False, highlight=False)
    if not show_status:
        console.print(f"Temporal UI: {stack.ui_url}", markup=False)


@app.command()
def down() -> None:
    """Stop exactly what `zdp up` started (by pid), and every app version it ran."""
    from zdp.stack import Stack

    try:
        stopped = Stack.here().down()
    except ZdpError as err:
        fail(str(err))
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def demo(
    home: Annotated[
        Path,
        typer.Option(
            envvar="ZDP_DEMO_HOME",
            help="The demo's own state folder, where its demo keys are trusted; never the "
            "ZDP_HOME `zdp up` uses.",
        ),
    ] = Path(".zdp-demo"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Deploy real app processes behind Envoy under load: promote, roll back, blue-green.

    Runs its own stack in its own home (default .zdp-demo): the unencrypted demo release key
    and demo identities it trusts stay there, and `zdp up`'s home is not touched."""
    from zdp.demo import demo_home, isolate, run_demo

    try:
        checked = demo_home(home)
    except ZdpError as err:
        fail(f"refused before starting: {err}", EXIT_USAGE)
    isolate(checked)
    result = run(lambda: run_demo(checked, as_json))
    if as_json:
        print_json(result)
    raise typer.Exit(0 if result["ok"] else 1)


def main() -> None:
    """Console entry point. Exits through os._exit once output is flushed: the Temporal SDK's
    native core can abort while the interpreter finalizes (seen here as SIGABRT/SIGSEGV after a
    run that had finished correctly), and CI must get the exit code the command chose."""
    code = 0
    try:
        app()
    except SystemExit as done:
        if isinstance(done.code, str):
            err_console.print(done.code, markup=False)
            code = EXIT_ERROR
        else:
            code = done.code or 0
    except ZdpError as err:  # commands catch their own; this is the last line of defence
        err_console.print(f"error: {err}", markup=False)
        code = EXIT_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = ["app", "deployment_id", "main"]
