"""`zdp release`: create, sign and verify release manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from zdp.cli.keys_cmd import PassphraseEnv, PassphraseFile, Prompt, read_passphrase
from zdp.cli.output import EXIT_USAGE, fail
from zdp.errors import ZdpError
from zdp.release import (
    approve_validation,
    create_manifest,
    envelope_path_for,
    read_manifest,
    sign_manifest,
    verify_release_files,
    write_envelope,
    write_manifest,
)
from zdp.signing import fingerprint, load_private_key

app = typer.Typer(
    help="Create, sign and verify releases.", no_args_is_help=True, add_completion=False
)


def _fail(err: Exception) -> NoReturn:
    fail(str(err))


def _known_app(app_name: str, path: Path | None) -> None:
    """A release for an app the engine does not know would only be refused later: say so now."""
    from zdp.config import find_config_path, load_config

    found = path
    try:
        found = find_config_path(path)
        load_config(found).app(app_name)
    except ZdpError as err:
        fail(f"{err} (checked against {found})" if found else str(err), EXIT_USAGE)


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
    ticket: Annotated[str | None, typer.Option("--ticket", help="Change ticket.")] = None,
    author: Annotated[str | None, typer.Option("--author", help="Change author.")] = None,
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
            help="Bind the release to this environment (repeatable): it is refused elsewhere.",
        ),
    ] = None,
) -> None:
    """Write a release manifest for one artifact: a wheel file or an image pinned by digest."""
    if (artifact is None) == (image is None):
        fail("give exactly one of --artifact PATH or --image NAME@sha256:<hex>", EXIT_USAGE)
    _known_app(app_name, engine_config)
    config = parse_overrides(overrides or [])
    try:
        manifest = create_manifest(
            app_name,
            version,
            artifact_path=artifact,
            image=image,
            git_range=from_git,
            repo=repo,
            ticket=ticket,
            author=author,
            config_overrides=config,
            validation_doc=validation_doc,
            environments=for_env or [],
        )
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


@app.command("approve-validation")
def approve_validation_command(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="release.json")],
    as_: Annotated[str, typer.Option("--as", help="Your validation approver identity.")],
    key: Annotated[Path, typer.Option("--key", help="Your registered Ed25519 key.")],
    meaning: Annotated[
        str,
        typer.Option(help='What your signature means, e.g. "IQ/OQ/PQ executed and approved".'),
    ],
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
) -> None:
    """Approve the release's IQ/OQ/PQ validation document with your Part 11 e-signature.

    Bound to the document, the app and the artifact digest; refused for the release's author.
    Sign the release after this (`zdp release sign`): the approval is part of what it covers."""
    from zdp.compliance.registry import load_registry, registry_dir

    passphrase = read_passphrase(passphrase_env, passphrase_file, prompt)
    try:
        manifest = read_manifest(manifest_path)
        private_key = load_private_key(key, passphrase)
        approved = approve_validation(
            manifest, as_, meaning, private_key, load_registry(registry_dir())
        )
        write_manifest(approved, manifest_path)
    except (ZdpError, OSError, ValueError) as err:
        _fail(err)
    ref = approved.validation
    assert ref is not None and ref.signature is not None
    typer.echo(
        f"validation {ref.document_id} approved by {as_} for {approved.app} {approved.version} "
        f"({approved.artifact.digest[:19]}…); now sign the release: zdp release sign "
        f"{manifest_path} --key …"
    )


@app.command("sign")
def sign(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="release.json")],
    key: Annotated[Path, typer.Option("--key", help="The Ed25519 private key (PEM).")],
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the envelope [default: *.dsse.json]."),
    ] = None,
) -> None:
    """Sign a manifest: write a DSSE envelope over its in-toto statement."""
    passphrase = read_passphrase(passphrase_env, passphrase_file, prompt)
    destination = output or envelope_path_for(manifest_path)
    try:
        manifest = read_manifest(manifest_path)
        private_key = load_private_key(key, passphrase)
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
