"""The schema revision gate: migrate forward at start-up, never back, and tell readiness whether
the database fits this version.

Migrations are expand/contract. A release only adds to the schema, so:
- a database at an OLDER revision of our chain is upgraded at start-up, or, with migrations
  disabled, keeps this version not ready (it would query columns that are not there yet);
- a database at a revision this version does not know was migrated by a NEWER release (the
  canary, or a version rolled back since). It is never downgraded: the previous version keeps
  working because the newer release only added. The gate checks that every table and column
  this version uses is still there, so a contract step taken too early shows up as not ready.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, inspect, text

from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import KNOWN_REVISIONS, SCHEMA_REVISION, metadata

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "pharma_manufacturing:migrations"
# Held for the duration of a migration on PostgreSQL, so replicas starting together migrate
# one after the other; on SQLite the write transaction's lock does the same.
_PG_MIGRATION_LOCK = 7_302_011


def current_revision(connection: Connection) -> str | None:
    """The database's Alembic revision ("+"-joined if several), or None before any migration."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return "+".join(sorted(rows)) or None


def migrate(database: Database, target: str = "head") -> str | None:
    """Upgrade to `target` (default: this version's head) unless the database is newer.

    Returns the revision the database is at afterwards. Never downgrades.
    """
    from alembic import command  # imported here: start-up skips it when nothing is to do
    from alembic.config import Config

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    with database.writing() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        before = current_revision(connection)  # read again under the lock
        if before is not None and before not in KNOWN_REVISIONS:
            logger.info(
                "schema is newer than this version: not migrating",
                extra={"fields": {"revision": before, "needs": SCHEMA_REVISION}},
            )
            return before
        config.attributes["connection"] = connection
        command.upgrade(config, target)
        after = current_revision(connection)
    if after != before:
        logger.info("schema migrated", extra={"fields": {"from": before, "to": after}})
    return after


def needs_migration(database: Database) -> bool:
    """Whether the database is behind this version's revision (or has no schema at all)."""
    with database.reading() as connection:
        revision = current_revision(connection)
    return revision is None or (revision in KNOWN_REVISIONS and revision != SCHEMA_REVISION)


class SchemaGate:
    """Answers "does the database fit this version?" for readiness; cheap on every refresh."""

    def __init__(self) -> None:
        self._newer: dict[str, str | None] = {}  # revision -> what it lacks (None: fits)

    def problem(self, connection: Connection) -> str | None:
        """Why this version cannot serve from this database, or None when it can."""
        revision = current_revision(connection)
        if revision == SCHEMA_REVISION:
            return None
        if revision is None:
            return (
                f"the database has no schema (no Alembic revision); this version needs "
                f"{SCHEMA_REVISION}: start it with APP_MIGRATE_ON_START=1 or run the migrations"
            )
        if revision in KNOWN_REVISIONS:
            return (
                f"the database schema is at revision {revision} and this version needs "
                f"{SCHEMA_REVISION}; migrations are disabled (APP_MIGRATE_ON_START=0): run them, "
                "then this version turns ready"
            )
        if revision not in self._newer:
            self._newer[revision] = _what_is_missing(connection, revision)
            if self._newer[revision] is None:
                logger.info(
                    "schema revision is newer than this version; every column it uses is there",
                    extra={"fields": {"revision": revision, "needs": SCHEMA_REVISION}},
                )
        return self._newer[revision]


def _what_is_missing(connection: Connection, revision: str) -> str | None:
    inspector = inspect(connection)
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            missing.append(f"table {table.name}")
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
    if not missing:
        return None
    return (
        f"the database schema is at revision {revision}, which this version does not know, and "
        f"it lacks what this version uses: {', '.join(missing)} (a contract migration ran "
        "before every version that uses them was retired)"
    )
