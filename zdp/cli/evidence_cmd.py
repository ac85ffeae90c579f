"""`zdp evidence`: verify a sealed evidence bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import fail
from zdp.compliance.evidence import verify_bundle
from zdp.errors import ZdpError
from zdp.signing import load_public_key

app = typer.Typer(help="Verify evidence bundles.", no_args_is_help=True, add_completion=False)


@app.callback()
def evidence() -> None:
    """Verify evidence bundles."""


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="The bundle folder.")],
    keys: Annotated[
        list[Path] | None,
        typer.Option(
            "--key",
            metavar="PUB",
            help="A public key trusted to seal bundles (repeatable) "
            "[default: the bundle's own engine.pub, which proves integrity, not origin].",
        ),
    ] = None,
) -> None:
    """Check the manifest's signature, then every file against its digest."""
    try:
        public_keys = [load_public_key(path) for path in keys or []]
        report = verify_bundle(bundle, public_keys or None)
    except (ZdpError, OSError, ValueError) as err:
        fail(str(err))
    how = (
        "a trusted key"
        if report.trusted_key
        else "the bundle's own engine.pub, not independently trusted: pass --key to pin it"
    )
    typer.echo(f"evidence bundle OK: {report.name}")
    typer.echo(f"files: {report.files}, sealed at {report.sealed_at.isoformat()}")
    typer.echo(f"verified by {report.key_fingerprint} ({how})")
