"""Deviations: record one against a batch (or one of its steps), list them, close one.

A deviation is open until QA closes it with a resolution; an open deviation blocks release.
Deviations came with schema 0002, so the version before knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import insert, select, update

from pharma_manufacturing.models.deviations import Deviation, DeviationClose, DeviationCreate
from pharma_manufacturing.services import audit
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.errors import InvalidStateError, NotFoundError
from pharma_manufacturing.services.lookups import batch_row, new_id, step_row, utc_now
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import deviations

CLOSERS = ("qa",)


class DeviationRecords:
    """Deviations in the database."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._database = database
        self._clock = clock

    def record(self, requester: User, batch_id: str, request: DeviationCreate) -> Deviation:
        """Anyone signed in records what went wrong; it may concern a released batch too."""
        now = self._clock()
        values = {
            "batch_id": batch_id,
            "step_sequence": request.step_sequence,
            "severity": request.severity,
            "description": request.description,
            "status": "open",
            "opened_by": requester.user_id,
            "opened_at": now,
        }
        with self._database.writing() as connection:
            batch_row(connection, batch_id)
            if request.step_sequence is not None:
                step_row(connection, batch_id, request.step_sequence)
            deviation_id = new_id(connection.execute(insert(deviations).values(values)))
            audit.record_created(
                connection,
                at=now,
                user_id=requester.user_id,
                table="deviations",
                record_id=str(deviation_id),
                values=values,
                batch_id=batch_id,
            )
        return Deviation.model_validate({**values, "id": deviation_id})

    def for_batch(self, batch_id: str) -> list[Deviation]:
        with self._database.reading() as connection:
            batch_row(connection, batch_id)
            rows = connection.execute(
                select(deviations)
                .where(deviations.c.batch_id == batch_id)
                .order_by(deviations.c.id)
            ).mappings()
            return [Deviation(**row) for row in rows]

    def close(
        self, requester: User, batch_id: str, deviation_id: int, request: DeviationClose
    ) -> Deviation:
        """QA closes a deviation; the resolution is the reason the audit trail records."""
        requester.require_role(CLOSERS, "close a deviation")
        now = self._clock()
        with self._database.writing() as connection:
            row = (
                connection.execute(
                    select(deviations).where(
                        deviations.c.id == deviation_id, deviations.c.batch_id == batch_id
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFoundError(f"batch '{batch_id}' has no deviation {deviation_id}")
            if row["status"] == "closed":
                raise InvalidStateError(f"deviation {deviation_id} is already closed")
            after = {
                "status": "closed",
                "closed_by": requester.user_id,
                "closed_at": now,
                "resolution": request.resolution,
            }
            connection.execute(
                update(deviations).where(deviations.c.id == deviation_id).values(after)
            )
            audit.record_changed(
                connection,
                at=now,
                user_id=requester.user_id,
                table="deviations",
                record_id=str(deviation_id),
                before=dict(row),
                after=after,
                reason=request.resolution,
                batch_id=batch_id,
            )
            return Deviation(**{**row, **after})
