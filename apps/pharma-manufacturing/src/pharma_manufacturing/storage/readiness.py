"""Readiness of the database: it answers a query, and its schema fits this version."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.schema import SchemaGate


class DatabaseReadiness:
    """`check()` is None when the database can serve this version, else the reason.

    Blocking, and a real query: the app runs it only from its ReadinessMonitor (readiness.py),
    in the background with a deadline, never on a probe's request path.
    """

    def __init__(self, database: Database, gate: SchemaGate) -> None:
        self._database = database
        self._gate = gate

    def check(self) -> str | None:
        """A trivial query and the schema revision."""
        try:
            with self._database.reading() as connection:
                return self._gate.problem(connection)
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            return f"the database does not answer: {' '.join(str(cause).split())}"
