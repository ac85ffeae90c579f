"""`zdp audit`: verify the hash-chained audit log and its signed checkpoints, in its file or
in PostgreSQL (`--database`, or ZDP_AUDIT_DATABASE_URL), and export the database's log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from zdp.cli.output import EXIT_USAGE, err_console, fail
from zdp.compliance.audit.anchors import (
    HISTORIES,
    Anchor,
    anchors_from_bundles,
    check_anchors,
)
from zdp.compliance.audit.anchors import summary as anchor_summary
from zdp.compliance.audit.log import (
    AUDIT_DATABASE_URL_ENV,
    VerifyReport,
    default_log_path,
    evidence_dir,
    verify_log,
)
from zdp.compliance.engine_key import engine_public_key_path
from zdp.errors import ZdpError
from zdp.models import AuditAnchor
from zdp.settings import settings
from zdp.signing import load_public_key

app = typer.Typer(
    help="Verify or export the audit log.", no_args_is_help=True, add_completion=False
)

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help=f"The audit log's PostgreSQL database [default: ${AUDIT_DATABASE_URL_ENV}].",
    ),
]


@app.callback()
def audit() -> None:
    """Verify or export the audit log."""


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
    database: DatabaseOption = None,
    evidence: Annotated[
        Path | None,
        typer.Option(
            "--evidence",
            metavar="DIR",
            help="Evidence bundles whose anchors to check [default: $ZDP_HOME/evidence].",
        ),
    ] = None,
    temporal: Annotated[
        bool,
        typer.Option(
            help="Also check the anchors in the deployments' Temporal histories "
            "(TEMPORAL_ADDRESS); unreachable is said, never silent.",
        ),
    ] = True,
) -> None:
    """Check every entry's hash and link, every checkpoint's signature and coverage, and the
    log against every anchor outside it (Temporal histories, evidence bundles)."""
    if database and (log or checkpoints):
        fail("give --log (a file) or --database, not both", EXIT_USAGE)
    url = database or (None if log else settings().AUDIT_DATABASE_URL)
    log_path = log or default_log_path()
    if not url and not log_path.is_file():
        fail(f"audit log not found: {log_path}")
    if not keys and not engine_public_key_path().is_file():
        fail(f"engine public key not found: {engine_public_key_path()} (give --key PUB)")
    try:
        public_keys = [load_public_key(path) for path in keys or [engine_public_key_path()]]
        if url:  # imported here: the PostgreSQL driver loads only for commands that use it
            from zdp.compliance.audit.postgres_verify import verify_database

            report = verify_database(url, public_keys=public_keys)
            typer.echo(_summary(report))
            err_console.print(
                "note: anchors are checked against a log file; export the database with "
                "`zdp audit export` and verify the copy with --log to check them",
                markup=False,
            )
            return
        # Anchors first, then the log: an append in between only makes the log longer than
        # every anchor read, never shorter (which would look like a cut).
        anchors, known, notes = _gather_anchors(evidence or evidence_dir(), temporal)
        report = verify_log(log_path, checkpoints, public_keys=public_keys)
        cross = check_anchors(
            log_path,
            report.entries,
            anchors,
            public_keys,
            checkpoints_path=checkpoints,
            known_entries=known,
        )
    except (ZdpError, OSError, ValueError) as err:
        fail(str(err))
    for note in notes:
        err_console.print(f"note: {note}", markup=False)
    typer.echo(f"{_summary(report)}; {anchor_summary(cross)}")


def _gather_anchors(
    evidence: Path, temporal: bool
) -> tuple[list[Anchor], dict[int, str], list[str]]:
    """Anchors from the evidence bundles and, if asked and reachable, from Temporal."""
    anchors, known = anchors_from_bundles(evidence)
    notes: list[str] = []
    if not evidence.is_dir():
        notes.append(f"no evidence folder at {evidence}: no bundle anchors to check")
    if not temporal:
        notes.append("--no-temporal: the anchors in Temporal histories were not checked")
        return anchors, known, notes
    from temporalio.exceptions import TemporalError
    from temporalio.service import RPCError

    from zdp import deployments
    from zdp.temporal import connect, resolve

    async def from_temporal() -> tuple[str, list[tuple[str, AuditAnchor]]]:
        client = await connect()
        return resolve().describe(), await deployments.audit_anchors(client)

    try:
        address, found = asyncio.run(from_temporal())
    except ZdpError as err:  # unreachable: never a silent pass; --no-temporal says it is meant
        raise ZdpError(f"{err}; or give --no-temporal to check the bundles only") from None
    except (RPCError, TemporalError) as err:
        raise ZdpError(f"Temporal: reading the deployments' histories failed: {err}") from None
    anchors += [Anchor(anchor, source, HISTORIES) for source, anchor in found]
    notes.append(f"anchors read from the Temporal server at {address}")
    return anchors, known, notes


@app.command("export")
def export(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="The folder to write audit.jsonl and its "
            "checkpoint file into (they must not exist yet).",
        ),
    ],
    database: DatabaseOption = None,
) -> None:
    """Write the database's log as the JSON-lines pair, for `zdp audit verify --log`."""
    url = database or settings().AUDIT_DATABASE_URL
    if not url:
        fail(f"no audit database: give --database URL or set {AUDIT_DATABASE_URL_ENV}", EXIT_USAGE)
    from zdp.compliance.audit.postgres_verify import export_database

    try:
        exported = export_database(url, output / default_log_path().name)
    except (ZdpError, OSError) as err:
        fail(str(err))
    typer.echo(
        f"exported {_count(exported.entries, 'entry', 'entries')} to {exported.path} and "
        f"{_count(exported.checkpoints, 'checkpoint', 'checkpoints')} to "
        f"{exported.checkpoints_path}"
    )


def _summary(report: VerifyReport) -> str:
    last = report.last_checkpoint
    # verify_* refuse entries that no checkpoint covers once one exists: the last covers all.
    coverage = (
        f"last checkpoint covers {last.size}" if last else "no checkpoint yet (nothing is signed)"
    )
    return (
        f"audit log OK: {_count(report.entries, 'entry', 'entries')}, "
        f"{_count(report.checkpoints, 'checkpoint', 'checkpoints')}, "
        f"head {report.head_hash[:12]}…, {coverage}"
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
