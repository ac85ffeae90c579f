"""What start-up does before the app turns ready: migrate forward, check the schema, seed.

A database that cannot be reached stops start-up (the process exits 3). A database whose
schema does not fit this version does not: the process runs and readiness answers 503
`not_ready` with the reason, so the operator sees why, and the version turns ready by itself
once someone migrates the database.
"""

from __future__ import annotations

import logging

from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.seed import seed_demo_data
from pharma_manufacturing.services.signatures import SignatureSeal
from pharma_manufacturing.settings import Settings
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.schema import SchemaGate, migrate, needs_migration

logger = logging.getLogger(__name__)


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached at start-up."""


def prepare_database(
    settings: Settings, database: Database, gate: SchemaGate, seal: SignatureSeal
) -> None:
    """Blocking; run it in a worker thread. Raises SQLAlchemyError if the database is down."""
    if settings.migrate_on_start and needs_migration(database):
        migrate(database)
    with database.reading() as connection:
        problem = gate.problem(connection)
    if problem is not None:
        logger.error(
            "the database does not fit this version: readiness stays not_ready",
            extra={"fields": {"reason": problem}},
        )
        return
    if settings.seed_demo_data:
        seed_demo_data(database, seal, _first_qa(settings.users))


def _first_qa(users: tuple[User, ...]) -> User | None:
    return next((user for user in users if "qa" in user.roles), None)
