"""`zdp keys`: generate the Ed25519 key pairs that sign releases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import EXIT_USAGE, fail
from zdp.errors import ZdpError
from zdp.signing import generate_key_pair, load_private_key

app = typer.Typer(
    help="Generate release-signing keys (Ed25519).", no_args_is_help=True, add_completion=False
)

PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        metavar="VAR",
        help="Read the passphrase from this env variable.",
    ),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", metavar="FILE", help="Read the passphrase from this file."),
]
Prompt = Annotated[
    bool, typer.Option("--prompt", help="Ask for the passphrase interactively (hidden input).")
]


def read_passphrase(
    env_var: str | None, file: Path | None, prompt: bool, *, confirm: bool = False
) -> bytes | None:
    """The passphrase from an env var, a file or a hidden prompt; None when none is asked for.

    Passphrases never come from a plain command-line value: that would leak them into shell
    history and the process list.
    """
    if sum((env_var is not None, file is not None, prompt)) > 1:
        fail("give at most one of --passphrase-env, --passphrase-file and --prompt", EXIT_USAGE)
    if env_var is not None:
        value = os.environ.get(env_var)
        if value is None:
            fail(f"environment variable {env_var} is not set")
        return _non_empty(value.encode("utf-8"))
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as err:
            fail(f"cannot read passphrase file {file}: {err.strerror}")
        return _non_empty(data.rstrip(b"\r\n"))
    if prompt:
        value = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
        return _non_empty(str(value).encode("utf-8"))
    return None


def _non_empty(passphrase: bytes) -> bytes:
    if not passphrase:
        fail("the passphrase is empty")
    return passphrase


@app.callback()
def keys() -> None:
    """Generate release-signing keys (Ed25519)."""


@app.command("generate")
def generate(
    name: Annotated[str, typer.Argument(help="Key name: writes NAME.key and NAME.pub.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder to write the key pair into.")
    ] = Path("keys"),
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
) -> None:
    """Write NAME.key (PKCS#8 PEM, mode 0600) and NAME.pub, and print the key's fingerprint."""
    passphrase = read_passphrase(passphrase_env, passphrase_file, prompt, confirm=True)
    try:
        files = generate_key_pair(directory, name, passphrase, force=force)
    except (ZdpError, OSError) as err:
        fail(str(err))
    protection = "encrypted" if passphrase else "unencrypted"
    typer.echo(f"private key: {files.private_key} ({protection}, mode 0600)")
    typer.echo(f"public key:  {files.public_key}")
    typer.echo(f"fingerprint: {files.fingerprint}")


@app.command("register-approver")
def register_approver_command(
    user: Annotated[str, typer.Argument(metavar="USER", help="The approver's user id.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            help="The approver's passphrase-encrypted Ed25519 private key: registering proves "
            "they hold it, and that it has a passphrase (Part 11's second component).",
        ),
    ],
    printed_name: Annotated[
        str, typer.Option("--printed-name", help="Name shown with every signature (§11.50).")
    ],
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    registry: Annotated[
        Path | None,
        typer.Option(
            help="Registry folder [default: $ZDP_APPROVER_REGISTRY or $ZDP_HOME/approvers]."
        ),
    ] = None,
) -> None:
    """Register an approver's signing key for Part 11 e-signatures (approvals, validation).

    The approver runs it with their own key and passphrase; a key without a passphrase is
    refused (exit 2)."""
    from zdp.compliance.esign import register_approver, registry_dir, require_encrypted_key

    try:
        require_encrypted_key(key)
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)
    passphrase = read_passphrase(passphrase_env, passphrase_file, prompt)
    if passphrase is None:
        fail(f"{key} is encrypted: give its passphrase (--prompt or --passphrase-env)", EXIT_USAGE)
    try:
        private = load_private_key(key, passphrase)
        identity = register_approver(
            user, printed_name, private.public_key(), registry or registry_dir()
        )
    except ZdpError as err:
        fail(str(err))
    typer.echo(f"registered {identity.user} ({identity.printed_name}): {identity.fingerprint}")
