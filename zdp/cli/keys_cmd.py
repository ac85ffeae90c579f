"""`zdp keys`: generate the Ed25519 key pairs that sign releases."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zdp.cli.output import EXIT_USAGE, fail
from zdp.errors import ZdpError
from zdp.settings import settings
from zdp.signing import generate_key_pair, load_private_key

if TYPE_CHECKING:
    from zdp.compliance.registry import Admin

app = typer.Typer(
    help="Generate Ed25519 keys; register and remove the identities that may act.",
    no_args_is_help=True,
    add_completion=False,
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
    """Generate Ed25519 keys (releases, people, CI, bots); register and remove identities."""


@app.command("generate")
def generate(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Key name: writes NAME.key and NAME.pub.")
    ],
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


def is_encrypted(path: Path) -> bool:
    try:
        return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in path.read_bytes()
    except OSError:
        return False


def signing_key(
    path: Path, env_var: str | None = None, file: Path | None = None, prompt: bool = False
) -> Ed25519PrivateKey:
    """The private key at `path`, decrypted with the passphrase asked for; an encrypted key
    with no passphrase option is prompted for on a terminal, and refused (exit 2) elsewhere."""
    passphrase = read_passphrase(env_var, file, prompt)
    if passphrase is None and is_encrypted(path):
        if not sys.stdin.isatty():
            fail(
                f"{path} is encrypted: give its passphrase (--passphrase-env VAR, "
                "--passphrase-file FILE or --prompt)",
                EXIT_USAGE,
            )
        passphrase = read_passphrase(None, None, True)
    try:
        return load_private_key(path, passphrase)
    except ZdpError as err:
        fail(str(err))


def me(user: str | None = None) -> str:
    """Who the CLI acts as: --as, else $ZDP_USER, else the login name."""
    return user or settings().USER or getpass.getuser()


AdminAs = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="ADMIN",
        help="The administrator who signs this change [default: $ZDP_USER or your login].",
    ),
]
AdminKey = Annotated[
    Path | None,
    typer.Option(
        "--admin-key",
        help="The administrator's private key [default: <key dir>/ADMIN.key, see `zdp whoami`].",
    ),
]
AdminPassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--admin-passphrase-env",
        metavar="VAR",
        help="Read the administrator key's passphrase from this env variable.",
    ),
]
Registry = Annotated[
    Path | None,
    typer.Option(help="Registry folder [default: $ZDP_APPROVER_REGISTRY or $ZDP_HOME/approvers]."),
]


def _admin(
    admin_as: str | None,
    admin_key: Path | None,
    admin_passphrase_env: str | None,
    own: tuple[str, Path, Ed25519PrivateKey] | None = None,
) -> Admin:
    from zdp.compliance.identity import default_key_path
    from zdp.compliance.registry import Admin

    user = me(admin_as)
    if own is not None and own[0] == user and admin_key in (None, own[1]):
        return Admin(user, own[2])  # the first administrator signs with the key registered
    path = admin_key or default_key_path(user)
    if not path.exists():
        fail(
            f"registry changes are signed by an administrator: no key for {user} at {path} "
            "(give --as ADMIN and --admin-key FILE)",
            EXIT_USAGE,
        )
    return Admin(user, signing_key(path, admin_passphrase_env))


@app.command("register")
def register_command(
    user: Annotated[str, typer.Argument(metavar="USER", help="The identity's user id.")],
    printed_name: Annotated[
        str, typer.Option("--printed-name", help="Name shown with everything they sign.")
    ],
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="Their Ed25519 public key (PEM).")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="Their private key instead: registering then proves they hold it."
        ),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="person, ci (a CI system) or bot (the Slack bot, alerting).")
    ] = "person",
    administrator: Annotated[
        bool, typer.Option("--administrator", help="May register and remove identities.")
    ] = False,
    admin_as: AdminAs = None,
    admin_key: AdminKey = None,
    admin_passphrase_env: AdminPassphraseEnv = None,
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    registry: Registry = None,
) -> None:
    """Register a person, CI system or bot and its key, signed by an administrator and
    recorded in the audit log. The first administrator registers themselves, once:
    `zdp keys register alice --key alice.key --printed-name "Alice Admin" --administrator
    --as alice`."""
    _register(
        user,
        printed_name,
        public_key,
        key,
        kind,
        administrator,
        (admin_as, admin_key, admin_passphrase_env),
        (passphrase_env, passphrase_file, prompt),
        registry,
        require_encrypted=False,
    )


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
    admin_as: AdminAs = None,
    admin_key: AdminKey = None,
    admin_passphrase_env: AdminPassphraseEnv = None,
    passphrase_env: PassphraseEnv = None,
    passphrase_file: PassphraseFile = None,
    prompt: Prompt = False,
    registry: Registry = None,
) -> None:
    """Register a person for Part 11 e-signatures (approvals, validation): as `register`,
    and their key must be passphrase-encrypted (exit 2 otherwise)."""
    _register(
        user,
        printed_name,
        None,
        key,
        "person",
        False,
        (admin_as, admin_key, admin_passphrase_env),
        (passphrase_env, passphrase_file, prompt),
        registry,
        require_encrypted=True,
    )


def _register(
    user: str,
    printed_name: str,
    public_key: Path | None,
    key: Path | None,
    kind: str,
    administrator: bool,
    admin_args: tuple[str | None, Path | None, str | None],
    passphrase_args: tuple[str | None, Path | None, bool],
    registry: Path | None,
    *,
    require_encrypted: bool,
) -> None:
    from zdp.compliance.esign import require_encrypted_key
    from zdp.compliance.registry import audit_recorder, register, registry_dir
    from zdp.signing import load_public_key

    if kind not in ("person", "ci", "bot"):
        fail(f"--kind must be person, ci or bot, not {kind!r}", EXIT_USAGE)
    if (public_key is None) == (key is None):
        fail("give the identity's key: --public-key FILE or --key FILE (one of them)", EXIT_USAGE)
    own: tuple[str, Path, Ed25519PrivateKey] | None = None
    try:
        if key is not None:
            if require_encrypted:
                require_encrypted_key(key)
            private = signing_key(key, *passphrase_args)
            own = (user, key, private)
            public = private.public_key()
        else:
            assert public_key is not None
            public = load_public_key(public_key)
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)
    admin = _admin(*admin_args, own=own)
    try:
        identity = register(
            registry or registry_dir(),
            user,
            printed_name,
            public,
            admin,
            audit_recorder(),
            kind=kind,  # type: ignore[arg-type]
            administrator=administrator,
            encrypted_key=key is not None and is_encrypted(key),
        )
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)
    role = f"{identity.kind}{', administrator' if identity.administrator else ''}"
    typer.echo(
        f"registered {identity.user} ({identity.printed_name}; {role}): {identity.fingerprint}, "
        f"signed by {admin.user}; recorded in the audit log"
    )


@app.command("remove")
def remove_command(
    user: Annotated[str, typer.Argument(metavar="USER", help="The identity to remove.")],
    admin_as: AdminAs = None,
    admin_key: AdminKey = None,
    admin_passphrase_env: AdminPassphraseEnv = None,
    registry: Registry = None,
) -> None:
    """Remove an identity, signed by an administrator and recorded in the audit log."""
    from zdp.compliance.registry import audit_recorder, registry_dir, remove

    admin = _admin(admin_as, admin_key, admin_passphrase_env)
    try:
        removed = remove(registry or registry_dir(), user, admin, audit_recorder())
    except ZdpError as err:
        fail(str(err), EXIT_USAGE)
    typer.echo(f"removed {removed.user} ({removed.fingerprint}), signed by {admin.user}")


@app.command("list")
def list_command(registry: Registry = None) -> None:
    """Every registered identity, verified back to the first administrator."""
    from zdp.compliance.registry import load_registry, registry_dir

    try:
        identities = load_registry(registry or registry_dir())
    except ZdpError as err:
        fail(str(err))
    if not identities:
        typer.echo("no identities are registered")
    for identity in identities.values():
        role = f"{identity.kind}{', administrator' if identity.administrator else ''}"
        typer.echo(
            f"{identity.user:<20} {role:<22} {identity.fingerprint}  {identity.printed_name}"
        )
