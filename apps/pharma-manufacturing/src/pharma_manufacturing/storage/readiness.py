"""Readiness of the database: it answers a query in time, and its schema fits this version."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.schema import SchemaGate

logger = logging.getLogger(__name__)


class DatabaseReadiness:
    """`await problem()` is None when the database can serve this version, else the reason."""

    def __init__(self, database: Database, gate: SchemaGate, timeout_s: float = 2.0) -> None:
        self._database = database
        self._gate = gate
        self._timeout_s = timeout_s
        self._last: str | None = None

    async def problem(self) -> str | None:
        try:
            # In a worker thread, with a deadline: a stuck database must turn the probe to
            # 503, not hang it (the thread pool bounds how many stuck checks can pile up).
            found = await asyncio.wait_for(asyncio.to_thread(self.check), self._timeout_s)
        except TimeoutError:
            found = f"the database did not answer within {self._timeout_s:g} s"
        if found != self._last:
            if found is None:
                logger.info("database ready")
            else:
                logger.warning("database not ready", extra={"fields": {"reason": found}})
            self._last = found
        return found

    def check(self) -> str | None:
        """The same check, blocking: a trivial query and the schema revision."""
        try:
            with self._database.reading() as connection:
                return self._gate.problem(connection)
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            return f"the database does not answer: {' '.join(str(cause).split())}"
