"""The `zdp` command line: a client of the deployment workflow; it holds no business logic."""

from __future__ import annotations

import asyncio
import getpass
import json
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

from zdp import deployments, tracing
from zdp.acceptance import claimed_manifest
from zdp.cli import alert_cmd, audit_cmd, evidence_cmd, keys_cmd, release_cmd, slack_cmd
from zdp.cli.keys_cmd import PassphraseEnv, PassphraseFile, Prompt
from zdp.cli.output import (
    EXIT_ERROR,
    EXIT_USAGE,
    ZdpGroup,
    console,
    err_console,
    fail,
    print_json,
)
from zdp.cli.progress import OUTCOME_EXIT_CODES, follow
from zdp.compliance.identity import request_digest
from zdp.config import EngineConfig
from zdp.errors import ZdpError
from zdp.models import DeploymentRequest, DsseEnvelope, Outcome, Strategy, deployment_id
from zdp.release import summarize_validation_error
from zdp.settings import settings
from zdp.temporal import connect

T = TypeVar("T")

app = typer.Typer(
    name="zdp",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, as click writes it: wrapped to the terminal (readable at 80 columns), text
    # in [brackets] shown as written, flags without a type label.
    rich_markup_mode=None,
    cls=ZdpGroup,
)
app.add_typer(keys_cmd.app, name="keys", help="Generate Ed25519 signing keys.", cls=ZdpGroup)
app.add_typer(
    release_cmd.app, name="release", help="Create, sign and verify releases.", cls=ZdpGroup
)
app.add_typer(audit_cmd.app, name="audit", help="Verify the hash-chained audit log.", cls=ZdpGroup)
app.add_typer(
    evidence_cmd.app, name="evidence", help="Verify sealed evidence bundles.", cls=ZdpGroup
)
app.add_typer(
    slack_cmd.app, name="slack", help="Approve and steer deployments from Slack.", cls=ZdpGroup
)
app.command(name="alert-receiver")(alert_cmd.alert_receiver)


@app.callback()
def _connection(
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="HOST:PORT",
            help="The Temporal server to talk to [default: $TEMPORAL_ADDRESS, else the stack "
            "`zdp up` started in $ZDP_HOME, else localhost:7233].",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            metavar="NAME",
            help="The Temporal namespace [default: $TEMPORAL_NAMESPACE, else the stack's, "
            "else default].",
        ),
    ] = None,
) -> None:
    """Zero-downtime deployments as durable Temporal workflows: signed releases, risk-based
    approvals, health-gated traffic shifting and rollback in under a second.

    You act as --as USER where a command takes it, else $ZDP_USER, else your login name; your
    requests are signed with your key (`zdp whoami` shows both). Commands talk to the Temporal
    server given by --address, else $TEMPORAL_ADDRESS (or a temporal.toml profile), else the
    stack `zdp up` started in $ZDP_HOME (default ./.zdp), else localhost:7233; errors name
    the address tried and where it came from.

    \b
    Examples:
      zdp up                     # a local stack: Temporal, Envoy, a worker
      zdp deploy finance-trading --env staging --release release.dsse.json
      zdp status deploy-finance-trading-staging
      zdp COMMAND --help         # each command's options and examples
    """
    from zdp.temporal import use_flags

    use_flags(address, namespace)


def run(
    work: Callable[[], Awaitable[T]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run a command's coroutine (on `loop_factory`'s event loop, else asyncio's); any error a
    user can cause becomes one line, no traceback."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(work())  # type: ignore[arg-type]
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
        if _debugging():
            raise
        fail(f"unexpected {type(err).__name__}: {err} (set ZDP_DEBUG=1 for the traceback)")


def _debugging() -> bool:
    try:
        return settings().DEBUG
    except ZdpError:
        return False


def _who(value: str | None) -> str:
    return value or settings().USER or getpass.getuser()


DeploymentArg = Annotated[
    str,
    typer.Argument(
        metavar="ID", help="The deployment: deploy-APP-ENV (one per app and environment)."
    ),
]
RunOption = Annotated[
    str | None,
    typer.Option(
        "--run",
        metavar="RUN",
        help="Read this run of the deployment: a run id or a unique part of one (its last "
        "8 characters usually), as `zdp history` lists them, or `promoted` (the latest run "
        "that ended promoted, e.g. the one a rollback went back to) [default: the latest "
        "run].",
    ),
]

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
    from zdp.acceptance import Target, preflight
    from zdp.compliance.registry import registry_dir
    from zdp.config import find_config_path, load_config
    from zdp.errors import ConfigError
    from zdp.settings import settings

    stack_config = None if config_path is not None else _stack_worker_config()
    path = config_path or stack_config
    try:
        path = find_config_path(path)
    except ConfigError as err:
        if config_path is not None or settings().CONFIG is not None:
            fail(f"refused before starting: {err}", EXIT_USAGE)
        err_console.print(
            "note: no engine config here, so the request was not checked before starting; "
            "the worker checks it (give --config or set ZDP_CONFIG to check it first)",
            markup=False,
        )
        return
    try:
        config = load_config(path)
        if stack_config is not None:
            try:
                config.environment(request.app, request.environment)
            except ConfigError as err:
                fail(
                    f"refused before starting: {err}: {_worker_config_hint(stack_config, request)}",
                    EXIT_USAGE,
                )
        preflight(
            config,
            request.release,
            Target.of(request, request.environment),
            settings().trusted_keys,
            registry_dir(),
        )
        _prove_start(request, config)
    except (ZdpError, OSError) as err:
        text = str(err) if isinstance(err, ZdpError) else f"cannot read {err.filename}: {err}"
        where = f" (checked against {path})" if str(path) not in text else ""
        fail(f"refused before starting: {text}{where}", EXIT_USAGE)


def _stack_worker_config() -> Path | None:
    """The config file the worker of the stack this CLI talks to runs with, if it does."""
    from zdp.stack import worker_config
    from zdp.temporal import resolve

    target = resolve()
    if target.stack is None or not target.stack.running:
        return None
    return worker_config(target.stack.home)


def _worker_config_hint(worker_config: Path, request: DeploymentRequest) -> str:
    """Why the stack's worker would refuse the app or environment: its config, not the
    release; and how to restart it with one that has them."""
    from zdp.config import load_config
    from zdp.stack import default_worker_config

    text = (
        f"the stack's worker runs with {worker_config} (`zdp up --status` shows it), so the "
        "deployment would end rejected whatever the release"
    )
    candidate = default_worker_config()
    try:
        if candidate is not None and Path(candidate) != worker_config:
            load_config(Path(candidate)).environment(request.app, request.environment)
            return f"{text}; restart the worker with one that has it: `zdp up --config {candidate}`"
    except ZdpError:
        pass
    return f"{text}; restart the worker with a config that has it: `zdp up --config FILE`"


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
        str | None,
        typer.Option(
            metavar="USER",
            help="Who starts it [default: $ZDP_USER, else your login name].",
        ),
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
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow progress; the exit code is the outcome.")
    ] = False,
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
    hand), against the config of the worker that will run it. Exit codes: 0 started (or
    promoted with --wait), 1 error, 2 refused before starting, 10-15 the outcome with --wait
    (the README's exit-code table).

    \b
    Examples:
      zdp deploy finance-trading --env staging --release release.dsse.json
      zdp deploy finance-trading --env production --release release.dsse.json \\
          --change-ref CHG-1234 --reason "fix rounding" --wait
      zdp deploy pharma-manufacturing --env staging --release release.dsse.json \\
          --strategy blue-green --json"""
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
        # The deployment's trace starts here: the start carries it to the workflow (zdp.tracing).
        tracing.setup(tracing.SERVICE_CLI)
        attributes = {
            "zdp.app": request.app,
            "zdp.environment": request.environment,
            "zdp.strategy": request.strategy.value,
        }
        with tracing.root_span("zdp deploy", attributes):
            handle = await deployments.start_deployment(client, request)
        err_console.print(f"started {handle.id}")
        if not wait:
            if as_json:
                print_json({"deployment_id": handle.id, "run_id": handle.result_run_id})
            return 0
        result = await follow(client, handle.id, quiet=False)
        _note_worker_config(result)
        if as_json:
            print_json(result)
        return OUTCOME_EXIT_CODES[result.outcome]

    raise typer.Exit(run(work))


def _note_worker_config(result: deployments.DeploymentResult) -> None:
    """A refusal for an app or environment the worker's config lacks is the config's doing,
    not the release's: say which config (the stack's worker's, when it is the stack)."""
    cause = result.cause or ""
    if result.outcome not in (Outcome.rejected, Outcome.blocked) or not (
        "has no environment '" in cause or "unknown app '" in cause
    ):
        return
    worker_config = _stack_worker_config()
    where = (
        f"the stack's worker config, {worker_config} (`zdp up --config FILE` restarts it with "
        "another)"
        if worker_config is not None
        else "the worker's engine config (its ZDP_CONFIG)"
    )
    err_console.print(
        f"note: the release was not at fault: {where} has no such app or environment",
        markup=False,
        soft_wrap=True,
    )


def _promote_command() -> Callable[..., None]:
    def command(
        deployment: DeploymentArg,
        as_: Annotated[
            str | None,
            typer.Option(
                "--as",
                metavar="USER",
                help="Your identity [default: $ZDP_USER, else your login name].",
            ),
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
        deployment: DeploymentArg,
        as_: Annotated[
            str | None,
            typer.Option(
                "--as",
                metavar="USER",
                help="Your identity [default: $ZDP_USER, else your login name].",
            ),
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
        "approve": """Approve a deployment that awaits approval (signed with --key where Part
        11 applies).

        Your key (--key, else USER.key in your key folder: `zdp whoami`) signs the
        request; with --meaning it is your Part 11 e-signature, shown with your printed name,
        the meaning and the time in `zdp status`.

        \b
        Examples:
          zdp approve deploy-finance-trading-production --as alice
          zdp approve deploy-pharma-manufacturing-production --as alice --prompt \\
              --meaning "approve release to production"
        """,
        "reject": """Reject a deployment that awaits approval; it ends `rejected`.

        \b
        Examples:
          zdp reject deploy-finance-trading-production --reason "wrong ticket"
        """,
    }[kind]
    return command


app.command(name="approve")(_signed_decision("approve"))
app.command(name="reject")(_signed_decision("reject"))
app.command(name="promote")(_promote_command())


def _signal(name: Literal["pause", "resume", "abort"], doc: str) -> Callable[..., None]:
    def command(
        deployment: DeploymentArg,
        reason: Annotated[str | None, typer.Option(help="Recorded in the timeline.")] = None,
        actor: Annotated[
            str | None,
            typer.Option(
                "--as", metavar="USER", help="Who [default: $ZDP_USER, else your login name]."
            ),
        ] = None,
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
    as_: Annotated[
        str | None, typer.Option("--as", metavar="USER", help="Ask about this user instead.")
    ] = None,
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
    deployment: DeploymentArg,
    run_selector: RunOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The status (and cached health) as JSON.")
    ] = False,
) -> None:
    """Where a deployment is: phase, weights, risk, approvals, outcome.

    Of its latest run, or of the run --run names. Every approval is shown with who gave it,
    when and how it was proven; a Part 11 e-signature with its printed name, meaning, date
    and time. The gates' cached health is shown when there is some (ZDP_REDIS_URL shares the
    gates' cache with the CLI).

    \b
    Examples:
      zdp status deploy-finance-trading-production
      zdp status deploy-finance-trading-production --run promoted
      zdp status deploy-finance-trading-production --run 8e6c0d2f --json
    """

    async def work() -> tuple[deployments.DeploymentStatus, dict[str, Any], dict[str, Any]]:
        client = await connect()
        run_id = await deployments.resolve_run(client, deployment, run_selector)
        current = await deployments.status(client, deployment, run_id)
        health: dict[str, Any] = {}
        if settings().REDIS_URL:  # else nothing here can be cached
            health = await deployments.cached_health(client, deployment, run_id)
        live: dict[str, Any] = {}
        if current.outcome is None:
            live["gate"] = await deployments.live_gate(client, deployment, run_id)
        elif current.outcome is Outcome.rolled_back:
            events = await deployments.timeline(client, deployment, run_id)
            live["containment_seconds"] = deployments.containment_seconds(events)
        return current, health, live

    current, health, live = run(work)
    if as_json:
        print_json(
            {
                **current.model_dump(mode="json"),
                "health": {e: h.model_dump(mode="json") for e, h in health.items()},
                "live_gate": live.get("gate"),
                "containment_seconds": live.get("containment_seconds"),
            }
        )
        return
    from zdp.cli.progress import containment_text, render_health, render_status

    console.print(render_status(current), markup=False, highlight=False)
    if live.get("gate"):
        console.print(f"gate (live)  {deployments.gate_line(live['gate'])}", markup=False)
    if live.get("containment_seconds") is not None:
        console.print(f"contained    {containment_text(live['containment_seconds'])}", markup=False)
    if health:
        console.print(render_health(health), markup=False, highlight=False)


@app.command()
def history(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app.")],
    env: Annotated[str, typer.Option("--env", metavar="ENV", help="The environment.")],
    limit: Annotated[int, typer.Option(help="Show at most this many runs.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The runs as JSON.")] = False,
) -> None:
    """The runs of a deployment (deploy-APP-ENV), newest first: run id, start and close
    (UTC), version, outcome.

    Each `zdp deploy` of the app to the environment is one run of the same deployment id;
    `zdp status` and `zdp timeline` read the latest unless given --run, e.g. the run a
    rollback went back to (marked "last promoted").

    \b
    Examples:
      zdp history finance-trading --env production
      zdp history finance-trading --env production --limit 5 --json
    """
    workflow_id = deployment_id(app_name, env)

    async def work() -> list[deployments.RunSummary]:
        return await deployments.runs(await connect(), workflow_id, limit)

    listed = run(work)
    if as_json:
        print_json([r.model_dump(mode="json") for r in listed])
        return
    from zdp.cli.progress import render_history

    console.print(render_history(workflow_id, listed), markup=False, highlight=False)


@app.command()
def timeline(
    deployment: DeploymentArg,
    run_selector: RunOption = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text: one line per event; json: the record (outcome, status, timeline), "
            "live or closed, the same as --json; md, html, pdf: the forensic report of a "
            "closed deployment (pdf printed by headless Chromium; needs -o).",
        ),
    ] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="Short for --format json.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write it to this file."),
    ] = None,
) -> None:
    """The forensic record: every phase, decision, weight change, verdict and compensation.

    Of the deployment's latest run, or of the run --run names. --format json (or --json)
    writes the record the reports are built from: {outcome, cause, status, timeline}, with
    outcome null while the deployment runs.

    \b
    Examples:
      zdp timeline deploy-finance-trading-production
      zdp timeline deploy-finance-trading-production --json
      zdp timeline deploy-finance-trading-production --run promoted --format md
      zdp timeline deploy-finance-trading-production --format pdf -o report.pdf
    """
    from zdp.forensics.report import RENDERERS

    if as_json:
        if fmt not in ("text", "json"):
            fail(f"--json is --format json: it cannot be combined with --format {fmt}", EXIT_USAGE)
        fmt = "json"
    if fmt not in ("text", *RENDERERS, "pdf"):
        fail(f"--format must be one of text, {', '.join(RENDERERS)}, pdf; got {fmt!r}", EXIT_USAGE)
    if fmt == "pdf" and output is None:
        fail("--format pdf writes a file: give -o report.pdf", EXIT_USAGE)
    if fmt in ("text", "json"):

        async def record() -> str:
            client = await connect()
            run_id = await deployments.resolve_run(client, deployment, run_selector)
            if fmt == "text":
                from zdp.cli.progress import render_timeline

                return render_timeline(await deployments.timeline(client, deployment, run_id))
            if await deployments.is_running(client, deployment, run_id):
                current = await deployments.status(client, deployment, run_id)
                events = await deployments.timeline(client, deployment, run_id)
                live = {
                    "outcome": None,
                    "cause": None,
                    "status": current.model_dump(mode="json"),
                    "timeline": [e.model_dump(mode="json") for e in events],
                }
                return json.dumps(live, indent=2) + "\n"
            return RENDERERS["json"](await deployments.closed_result(client, deployment, run_id))

        text = run(record)
    else:

        async def closed() -> deployments.DeploymentResult:
            client = await connect()
            run_id = await deployments.resolve_run(client, deployment, run_selector)
            if await deployments.is_running(client, deployment, run_id):
                raise ZdpError(
                    f"{deployment} is still running: its report is built from the history once "
                    f"it closes; `zdp timeline {deployment}` shows the live timeline"
                )
            return await deployments.closed_result(client, deployment, run_id)

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
    check: Annotated[
        bool, typer.Option("--check", help="Only check that Temporal is reachable.")
    ] = False,
) -> None:
    """Run the worker on task queue zdp-deployments until SIGTERM (then drain).

    It starts only with an engine config and gate policies that load: the ones it names in
    its ready line. It reads them again for every deployment, so a change applies to the next
    one without a restart.
    """
    from workers.telemetry import start_telemetry
    from workers.worker import run_worker
    from zdp.config import find_config_path, load_config
    from zdp.health.policy import find_gate_policies_path, load_gate_policies

    async def work() -> None:
        if check:
            client = await connect()
            await client.service_client.check_health()
            return
        config_path = find_config_path()
        config = load_config(config_path)
        policies = find_gate_policies_path(config.gate_policies_path())
        load_gate_policies(policies)
        telemetry = start_telemetry()
        for problem in telemetry.problems:
            err_console.print(f"warning: {problem}", markup=False, highlight=False)
        client = await (connect(runtime=telemetry.runtime) if telemetry.runtime else connect())

        def ready() -> None:
            target = client.service_client.config.target_host
            loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop, asyncio
            err_console.print(
                f"worker ready: task queue zdp-deployments on {target}, "
                f"namespace {client.namespace}; config {config_path}, gate policies {policies}; "
                f"{telemetry.describe()}; event loop {loop}",
                markup=False,
                highlight=False,
            )

        await run_worker(client, on_ready=ready)

    run(work, loop_factory=_worker_loop())


def _worker_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the worker where it is installed (an engine dependency off
    Windows): a gate's sweep of 100 endpoints measured p99 5.5 ms on it against 10.5 ms on
    asyncio's, at half the CPU (bench/probes.py, docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
def build(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="An app under apps/.")],
) -> None:
    """Build apps/APP into a wheel and put it in the artifact store the local runtime reads.

    apps/ is found in the working directory or above (a checkout), or named by $ZDP_APPS_DIR.
    """
    from zdp.platforms.layout import local_app
    from zdp.platforms.local.artifacts import build_app_wheel, find_artifact, store_artifact
    from zdp.settings import zdp_home

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
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Every component with its state, URLs and pid, as JSON."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Engine config for the worker; another than the running worker's restarts "
            "it [default: the config the stack's worker was started with, else $ZDP_CONFIG, "
            "else apps.yaml].",
        ),
    ] = None,
) -> None:
    """Start the embedded stack: Temporal dev server, Envoy, Prometheus and a worker (safe to
    re-run). Without Debian's `prometheus` installed the stack runs without it and says so.

    Everything is recorded in $ZDP_HOME/stack.json (default ./.zdp): the server's address and
    namespace, and the worker's engine config, which --status shows. Other zdp commands run
    with the same ZDP_HOME talk to this stack unless TEMPORAL_ADDRESS or --address says
    otherwise. ZDP_TEMPORAL_PORT moves the server (default 7233; its UI is 1000 above).

    \b
    Examples:
      zdp up
      zdp up --status
      zdp up --status --json
      ZDP_TEMPORAL_PORT=7833 zdp up      # when 7233 is taken
      zdp up --config infrastructure/canary-deployments/demo.yaml
    """
    from zdp.stack import Stack
    from zdp.temporal import resolve

    stack = Stack.here(config)
    if not show_status:
        try:
            stack.up()
        except ZdpError as err:
            fail(str(err))
    target = resolve()
    if target.stack is not None:
        where = f"this stack, {target.describe()}"
    elif stack.record().get("temporal"):
        where = f"{target.describe()}, NOT this stack"
    else:
        where = target.describe()
    if as_json:
        typer.echo(
            json.dumps(
                {"home": str(stack.home), "components": stack.components(), "talks_to": where},
                indent=2,
            )
        )
        return
    for part, state, detail in stack.status():
        console.print(f"{part:<32} {state:<11} {detail}", markup=False, highlight=False)
    console.print(f"{'zdp commands here talk to':<44} {where}", markup=False, highlight=False)
    ui = (stack.record().get("temporal") or {}).get("ui")
    if not show_status and ui:
        console.print(f"Temporal UI: {ui}", markup=False)


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
    from zdp.cli.demo import demo_home, isolate, run_demo

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
