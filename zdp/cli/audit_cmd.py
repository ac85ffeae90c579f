"""`zdp audit`: verify the hash-chained audit log and its signed checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import fail
from zdp.compliance.audit import default_log_path, verify_log
from zdp.compliance.engine_key import engine_public_key_path
from zdp.errors import ZdpError
from zdp.signing import load_public_key

app = typer.Typer(help="Verify the audit log.", no_args_is_help=True, add_completion=False)


@app.callback()
def audit() -> None:
    """Verify the audit log."""


@app.command("verify")
def verify(
    log: Annotated[
        Path | None,
        typer.Option("--log", help="The audit log [default: $ZDP_HOME/audit/audit.jsonl]."),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="The checkpoint file [default: beside the log]."),
    ] = None,
    keys: Annotated[
        list[Path] | None,
        typer.Option(
            "--key",
            metavar="PUB",
            help="A public key trusted to sign checkpoints (repeatable) "
            "[default: $ZDP_HOME/keys/engine.pub].",
        ),
    ] = None,
) -> None:
    """Check every entry's hash and link, and every checkpoint's signature and coverage."""
    log_path = log or default_log_path()
    if not log_path.is_file():
        fail(f"audit log not found: {log_path}")
    if not keys and not engine_public_key_path().is_file():
        fail(f"engine public key not found: {engine_public_key_path()} (give --key PUB)")
    try:
        public_keys = [load_public_key(path) for path in keys or [engine_public_key_path()]]
        report = verify_log(log_path, checkpoints, public_keys=public_keys)
    except (ZdpError, OSError, ValueError) as err:
        fail(str(err))
    last = report.last_checkpoint
    if last is None:
        coverage = "no checkpoint yet (nothing is signed)"
    elif last.size == report.entries:
        coverage = f"last checkpoint covers {last.size}"
    else:
        unsigned = report.entries - last.size
        newer = _count(unsigned, "newer entry", "newer entries")
        coverage = f"last checkpoint covers {last.size} ({newer} not yet signed)"
    typer.echo(
        f"audit log OK: {_count(report.entries, 'entry', 'entries')}, "
        f"{_count(report.checkpoints, 'checkpoint', 'checkpoints')}, "
        f"head {report.head_hash[:12]}…, {coverage}"
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
