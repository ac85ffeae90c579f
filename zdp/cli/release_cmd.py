"""`zdp release`: create, sign and verify release manifests."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from zdp.cli.keys_cmd import (
    PassphraseEnv,
    PassphraseFile,
    Prompt,
    me,
    read_passphrase,
    signing_key,
)
from zdp.cli.output import EXIT_USAGE, fail
from zdp.errors import ZdpError
from zdp.release import (
    ChangeRecord,
    approve_validation,
    create_manifest,
    envelope_path_for,
    load_change_record,
    missing_for_environment,
    read_manifest,
    sign_manifest,
    verify_release_files,
    write_envelope,
    write_manifest,
)
from zdp.settings import settings
from zdp.signing import fingerprint, load_private_key, load_public_key

if TYPE_CHECKING:
    from zdp.config import EngineConfig
    from zdp.models import ReleaseManifest

app = typer.Typer(
    help="Create, sign and verify releases.", no_args_is_help=True, add_completion=False
)


def _fail(err: Exception) -> NoReturn:
    fail(str(err))


def _known_app(app_name: str, path: Path | None, environments: list[str]) -> EngineConfig:
    """A release for an app (or an environment) the engine does not know would only be
    refused later: say so now."""
    from zdp.config import find_config_path, load_config

    found = path
    try:
        found = find_config_path(path)
        config = load_config(found)
        config.app(app_name)
        for name in environments:
            config.environment(app_name, name)
    except ZdpError as err:
        fail(f"{err} (checked against {found})" if found else str(err), EXIT_USAGE)
    return config


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def default_release_key(user: str) -> Path:
    """The key `zdp release sign` signs with when no --key is given: the user's own key,
    <key dir>/USER.key (the key `zdp deploy` signs the start with, see `zdp whoami`)."""
    from zdp.compliance.identity import default_key_path

    return default_key_path(user)


def _release_key(key: Path | None) -> Path:
    """--key, else the user's own key; exit 2, saying which key and how to make it, when the
    default one is not there."""
    if key is not None:
        return key
    user = me()
    path = default_release_key(user)
    if not path.exists():
        fail(_no_key_text(user, path), EXIT_USAGE)
    return path


def _no_key_text(user: str, path: Path) -> str:
    folder = path.parent
    public = folder / f"{user}.pub"
    return (
        f"no signing key for {user}: {path} does not exist (--key FILE, else "
        "$ZDP_KEY_DIR/USER.key, else ~/.config/zdp/keys/USER.key); make it with "
        f"`zdp keys generate {_q(user)} --dir {_q(folder)} --prompt`, then an administrator "
        "registers it (`zdp keys register "
        f'{_q(user)} --public-key {_q(public)} --printed-name "Your Name"`) and trusts it for '
        f"releases (`cp {_q(public)} {_q(settings().trusted_keys)}/`)"
    )


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings as a dict; the value may itself contain '='."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--set expects KEY=VALUE, got {pair!r}", EXIT_USAGE)
        overrides[key.strip()] = value
    return overrides


@app.callback()
def release() -> None:
    """Create, sign and verify releases."""


@app.command("create")
def create(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app being released.")],
    version: Annotated[str, typer.Option("--version", help="The release version.")],
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="The built wheel to release.")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="The OCI image, pinned: name@sha256:<hex>.")
    ] = None,
    from_git: Annotated[
        str | None,
        typer.Option("--from-git", metavar="RANGE", help="Fill change metadata from git."),
    ] = None,
    repo: Annotated[Path, typer.Option("--repo", help="Git repository for --from-git.")] = Path(
        "."
    ),
    change_record: Annotated[
        Path | None,
        typer.Option(
            "--change-record",
            metavar="FILE",
            help="The change record, YAML or JSON: the fields below by name (ticket, author, "
            "description, security_impact, test_evidence, backout_procedure, "
            "personal_data_change, dpia_ref, validation_doc; reason is for `zdp deploy "
            "--reason`). A flag wins over the file.",
        ),
    ] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Change ticket (sox).")] = None,
    author: Annotated[str | None, typer.Option("--author", help="Change author.")] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="What the change does (pci-dss 6.5.1)."),
    ] = None,
    security_impact: Annotated[
        str | None,
        typer.Option("--security-impact", help="Its security impact (pci-dss 6.5.1)."),
    ] = None,
    test_evidence: Annotated[
        str | None,
        typer.Option(
            "--test-evidence", help="The tests it passed: a report, a CI run (pci-dss 6.5.1)."
        ),
    ] = None,
    backout_procedure: Annotated[
        str | None,
        typer.Option("--backout-procedure", help="How to back it out (pci-dss 6.5.1)."),
    ] = None,
    personal_data_change: Annotated[
        bool | None,
        typer.Option(
            "--personal-data-change/--no-personal-data-change",
            help="It changes personal-data processing (gdpr: then give --dpia-ref).",
            show_default=False,
        ),
    ] = None,
    dpia_ref: Annotated[
        str | None, typer.Option("--dpia-ref", help="Its DPIA reference (gdpr Art. 35).")
    ] = None,
    validation_doc: Annotated[
        str | None,
        typer.Option(
            "--validation-doc",
            metavar="ID",
            help="The approved IQ/OQ/PQ validation document (required for GxP production).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="A config override (repeatable)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the manifest.")
    ] = Path("release.json"),
    engine_config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Engine config that must know APP [default: $ZDP_CONFIG, else apps.yaml].",
        ),
    ] = None,
    for_env: Annotated[
        list[str] | None,
        typer.Option(
            "--for-env",
            metavar="ENV",
            help="Bind the release to this environment (repeatable): it is refused elsewhere, "
            "and refused now if it lacks what the environment's compliance profiles ask for.",
        ),
    ] = None,
) -> None:
    """Write a release manifest for one artifact: a wheel file or an image pinned by digest,
    with its change record (flags, a --change-record file, and --from-git)."""
    if (artifact is None) == (image is None):
        fail("give exactly one of --artifact PATH or --image NAME@sha256:<hex>", EXIT_USAGE)
    environments = for_env or []
    engine = _known_app(app_name, engine_config, environments)
    config = parse_overrides(overrides or [])
    flags = ChangeRecord(
        ticket=ticket,
        author=author,
        description=description,
        security_impact=security_impact,
        test_evidence=test_evidence,
        backout_procedure=backout_procedure,
        personal_data_change=personal_data_change,
        dpia_ref=dpia_ref,
        validation_doc=validation_doc,
    )
    try:
        record = load_change_record(change_record) if change_record else ChangeRecord()
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)
    record = record.merged(flags)
    try:
        manifest = create_manifest(
            app_name,
            version,
            artifact_path=artifact,
            image=image,
            git_range=from_git,
            repo=repo,
            config_overrides=config,
            environments=environments,
            record=record,
        )
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    gaps: list[str] = []
    for name in environments:
        env = engine.environment(app_name, name)
        missing = missing_for_environment(
            manifest, env.compliance_profiles, env.requires_validation
        )
        if missing:
            profiles = ", ".join(env.compliance_profiles) or "no profiles"
            gaps.append(f"for {name} ({profiles}) it lacks: {'; '.join(missing)}")
    if gaps:
        fail(
            f"release {manifest.app} {manifest.version} not written: {' / '.join(gaps)}; give "
            "them as flags or in --change-record FILE",
            EXIT_USAGE,
        )
    try:
        write_manifest(manifest, output)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    change = manifest.change
    typer.echo(f"wrote {output}: {manifest.app} {manifest.version}")
    typer.echo(f"artifact: {manifest.artifact.kind} {manifest.artifact.reference}")
    typer.echo(f"digest:   {manifest.artifact.digest}")
    if manifest.validation is not None:
        typer.echo(
            f"validation: {manifest.validation.document_id} (IQ/OQ/PQ pending: a validation "
            f"approver signs it with `zdp release approve-validation {output} --as USER --key "
            "USER.key --meaning ...`, before `zdp release sign`)"
        )
    if from_git:
        typer.echo(
            f"change:   {change.files_changed} files, {change.lines_changed} lines"
            f"{', migrations' if change.migrations else ''}"
            f"{', config' if change.config_changed else ''}"
            f"{', dependencies' if change.dependencies_changed else ''}"
            f"; ticket {change.ticket or '-'}, author {change.author or '-'}"
        )
    if record.reason:
        typer.echo(f"reason:   {record.reason.splitlines()[0]} (for `zdp deploy --reason`)")
    for name in environments:
        _deploy_notes(engine, manifest, name, record.reason, output)


def _deploy_notes(
    engine: EngineConfig,
    manifest: ReleaseManifest,
    environment: str,
    reason: str | None,
    output: Path,
) -> None:
    """What the environment still asks for beyond the release: said once, at create."""
    env = engine.environment(manifest.app, environment)
    profiles = env.compliance_profiles
    if "sox" in profiles and not manifest.change.ticket:
        typer.echo(
            f"note: {environment} (sox) needs a change ticket: give `zdp deploy --change-ref "
            "TICKET` (or --ticket here)"
        )
    if "pci-dss" in profiles and not reason:
        typer.echo(
            f"note: {environment} (pci-dss 6.5.1) needs the reason for the change: give "
            '`zdp deploy --reason "…"`'
        )
    pending = manifest.validation is not None and manifest.validation.status == "pending"
    if pending and (env.requires_validation or "part11" in profiles):
        approvers = ", ".join(env.validation_approvers or env.approvers)
        typer.echo(
            f"pending: {environment} needs the validation document approved before the release "
            f"is signed: a validation approver ({approvers}), not the author, runs `zdp release "
            f'approve-validation {_q(output)} --as USER --meaning "IQ/OQ/PQ executed and '
            f'approved" --prompt`, then `zdp release sign {_q(output)}`'
        )


@app.command("approve-validation")
def approve_validation_command(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="release.json")],
    meaning: Annotated[
        str,
        typer.Option(help='What your signature means, e.g. "IQ/OQ/PQ executed and approved".'),
    ],
    as_: Annotated[
        str | None,
        typer.Option(
            "--as", help="Your validation approver identity [default: $ZDP_USER, else your login]."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Your registered Ed25519 key [default: <key dir>/USER.key]."),
    ] = None,
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
) -> None:
    """Approve the release's IQ/OQ/PQ validation document with your Part 11 e-signature.

    Bound to the document, the app and the artifact digest; refused for the release's author.
    Sign the release after this (`zdp release sign`): the approval is part of what it covers."""
    from zdp.compliance.registry import load_registry, registry_dir

    signer = me(as_)
    path = key or default_release_key(signer)
    if not path.exists():
        fail(_no_key_text(signer, path) if key is None else f"key not found: {path}", EXIT_USAGE)
    passphrase = read_passphrase(passphrase_env, passphrase_file, prompt)
    try:
        manifest = read_manifest(manifest_path)
        private_key = load_private_key(path, passphrase)
        approved = approve_validation(
            manifest, signer, meaning, private_key, load_registry(registry_dir())
        )
        write_manifest(approved, manifest_path)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    ref = approved.validation
    assert ref is not None and ref.signature is not None
    typer.echo(
        f"validation {ref.document_id} approved by {signer} for {approved.app} {approved.version} "
        f"({approved.artifact.digest[:19]}…); now sign the release: zdp release sign "
        f"{manifest_path} --key …"
    )


@app.command("sign")
def sign(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="release.json")],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="The Ed25519 private key (PEM) [default: your own, <key dir>/USER.key; "
            "`zdp release signing-key` shows it].",
        ),
    ] = None,
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the envelope [default: *.dsse.json]."),
    ] = None,
) -> None:
    """Sign a manifest: write a DSSE envelope over its in-toto statement. An encrypted key is
    asked for its passphrase on a terminal, and refused (exit 2) elsewhere without one."""
    path = _release_key(key)
    destination = output or envelope_path_for(manifest_path)
    try:
        manifest = read_manifest(manifest_path)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    private_key = signing_key(path, passphrase_env, passphrase_file, prompt)
    try:
        write_envelope(sign_manifest(manifest, private_key), destination)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    typer.echo(f"signed {manifest.app} {manifest.version}: wrote {destination}")
    typer.echo(f"signer: {fingerprint(private_key.public_key())}")


@app.command("verify")
def verify(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="release.json")],
    trusted_keys: Annotated[
        Path, typer.Option("--trusted-keys", metavar="DIR", help="Folder of trusted *.pub keys.")
    ],
    envelope: Annotated[
        Path | None,
        typer.Option("--envelope", help="The DSSE envelope [default: *.dsse.json]."),
    ] = None,
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="The wheel file to check.")
    ] = None,
) -> None:
    """Verify a signed release: trusted signer, unchanged manifest, matching artifact."""
    try:
        verified = verify_release_files(manifest_path, trusted_keys, envelope, artifact)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    manifest = verified.manifest
    typer.echo(
        f"verified: {manifest.app} {manifest.version} signed by {verified.signer_fingerprint}"
    )


@app.command("signing-key")
def signing_key_command(
    as_: Annotated[
        str | None, typer.Option("--as", help="Whose key [default: $ZDP_USER, else your login].")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="This key instead of <key dir>/USER.key.")
    ] = None,
    trusted_keys: Annotated[
        Path | None,
        typer.Option(
            "--trusted-keys",
            metavar="DIR",
            help="Check that the worker trusts it for releases (its trusted-keys folder).",
        ),
    ] = None,
    registered: Annotated[
        bool,
        typer.Option("--registered", help="Check that the identity registry has it as USER's key."),
    ] = False,
) -> None:
    """The key `zdp release sign` signs with by default (<key dir>/USER.key, the key
    `zdp deploy` signs the start with), checked: exit 2 with the command that makes, trusts or
    registers it when it is not ready. Prints `user:`, `key:` and `fingerprint:` lines."""
    from zdp.compliance.registry import load_registry, registry_dir

    user = me(as_)
    path = key or default_release_key(user)
    if not path.exists():
        fail(_no_key_text(user, path) if key is None else f"key not found: {path}", EXIT_USAGE)
    public = path.with_suffix(".pub")
    try:
        printed = fingerprint(load_public_key(public))
    except ZdpError as err:
        fail(
            f"{err}: the public half of {path} is needed to trust and register it "
            "(`zdp keys generate` writes both)",
            EXIT_USAGE,
        )
    lines = [f"user: {user}", f"key: {path}", f"fingerprint: {printed}"]
    if trusted_keys is not None:
        from zdp.signing import PUBLIC_KEY_SUFFIX, load_trusted_keys

        holds_keys = trusted_keys.is_dir() and any(trusted_keys.glob(f"*{PUBLIC_KEY_SUFFIX}"))
        try:
            trusted = load_trusted_keys(trusted_keys) if holds_keys else {}
        except ZdpError as err:
            fail(str(err), EXIT_USAGE)
        if printed not in trusted:
            fail(
                f"the worker does not trust {public} for releases: no key in {trusted_keys} "
                f"has its fingerprint {printed}; an administrator trusts it with `mkdir -p "
                f"{_q(trusted_keys)} && cp {_q(public)} {_q(trusted_keys)}/`",
                EXIT_USAGE,
            )
        lines.append(f"trusted: by {trusted_keys}")
    if registered:
        folder = registry_dir()
        try:
            identities = load_registry(folder)
        except ZdpError as err:
            fail(str(err), EXIT_USAGE)
        identity = identities.get(user)
        if identity is None and not identities:
            fail(
                f"{user} is not registered: the registry {folder} is empty; its first "
                f"administrator registers themselves, once: `zdp keys register {_q(user)} --key "
                f'{_q(path)} --printed-name "Your Name" --administrator --as {_q(user)}`',
                EXIT_USAGE,
            )
        if identity is None:
            fail(
                f"{user} is not registered in {folder}: an administrator registers the key "
                f"with `zdp keys register {_q(user)} --public-key {_q(public)} --printed-name "
                '"Your Name" --as ADMIN`',
                EXIT_USAGE,
            )
        if identity.fingerprint != printed:
            fail(
                f"{path} is not the key registered to {user} ({identity.fingerprint}): sign "
                "with the registered key (--key), or have an administrator register this one",
                EXIT_USAGE,
            )
        lines.append(f"registered: {user} ({identity.printed_name}) in {folder}")
    for line in lines:  # only once every check passed: a refusal is one line and nothing else
        typer.echo(line)
