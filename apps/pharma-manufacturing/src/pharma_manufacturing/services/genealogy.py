"""Material genealogy, lot -> batch -> product lot, and traceability both ways.

Forward (where did material lot X go?): the batches that consumed X, the product lots those
batches yielded, and on through any batch that consumed one of those as an intermediate.
Backward (what went into product lot Y?): the batch that yielded Y, the lots it consumed, and
on through the batches that yielded any of those. One query per level, not per lot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, insert, select

from pharma_manufacturing.models.genealogy import (
    Consumption,
    ConsumptionRequest,
    Lot,
    LotCreate,
    Trace,
    TracedLot,
)
from pharma_manufacturing.services import audit
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.errors import (
    AlreadyExistsError,
    InsufficientQuantityError,
    NotFoundError,
)
from pharma_manufacturing.services.lookups import Row, new_id, open_batch_row, utc_now
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import lot_consumptions, lots

MAX_DEPTH = 32  # levels of intermediates followed; real genealogies are a handful deep


class Genealogy:
    """Lots, their consumption by batches, and the traceability queries over them."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = utc_now) -> None:
        self._database = database
        self._clock = clock

    def register_lot(self, requester: User, request: LotCreate) -> Lot:
        """A received material lot."""
        now = self._clock()
        values = {
            **request.model_dump(),
            "kind": "material",
            "produced_by_batch": None,
            "created_at": now,
            "created_by": requester.user_id,
        }
        with self._database.writing() as connection:
            if connection.execute(
                select(lots.c.lot_id).where(lots.c.lot_id == request.lot_id)
            ).first():
                raise AlreadyExistsError(f"lot '{request.lot_id}' already exists")
            connection.execute(insert(lots).values(values))
            audit.record_created(
                connection,
                at=now,
                user_id=requester.user_id,
                table="lots",
                record_id=request.lot_id,
                values=values,
                batch_id=None,
            )
        return Lot(**values)

    def lot(self, lot_id: str) -> Lot:
        with self._database.reading() as connection:
            return Lot(**_lot_row(connection, lot_id))

    def consume(self, requester: User, batch_id: str, request: ConsumptionRequest) -> Consumption:
        """Book `quantity` of a lot into a batch in progress; a lot cannot give more than it has."""
        now = self._clock()
        with self._database.writing() as connection:
            open_batch_row(connection, batch_id, "consume more material")
            lot = _lot_row(connection, request.lot_id)
            used = connection.execute(
                select(func.coalesce(func.sum(lot_consumptions.c.quantity), 0.0)).where(
                    lot_consumptions.c.lot_id == request.lot_id
                )
            ).scalar_one()
            left = lot["quantity"] - used
            if request.quantity > left + 1e-9:
                raise InsufficientQuantityError(
                    f"lot '{request.lot_id}' has {left:g} {lot['unit']} left; "
                    f"{request.quantity:g} were asked for"
                )
            values = {
                "batch_id": batch_id,
                "lot_id": request.lot_id,
                "quantity": request.quantity,
                "consumed_at": now,
                "consumed_by": requester.user_id,
            }
            consumption_id = new_id(connection.execute(insert(lot_consumptions).values(values)))
            audit.record_created(
                connection,
                at=now,
                user_id=requester.user_id,
                table="lot_consumptions",
                record_id=str(consumption_id),
                values=values,
                batch_id=batch_id,
            )
        return Consumption.model_validate({**values, "id": consumption_id})

    def forward(self, lot_id: str) -> Trace:
        """Which batches consumed the lot, and which product lots came out of them."""
        with self._database.reading() as connection:
            _lot_row(connection, lot_id)
            seen_batches: list[str] = []
            found: list[TracedLot] = []
            frontier = {lot_id}
            for _ in range(MAX_DEPTH):
                consumers = _new(
                    connection.execute(
                        select(lot_consumptions.c.batch_id)
                        .where(lot_consumptions.c.lot_id.in_(frontier))
                        .distinct()
                    ).scalars(),
                    seen_batches,
                )
                if not consumers:
                    break
                seen_batches += consumers
                produced = _lots_where(connection, lots.c.produced_by_batch.in_(consumers))
                found += [_traced(row, row["produced_by_batch"]) for row in produced]
                frontier = {row["lot_id"] for row in produced}
        return Trace(lot_id=lot_id, direction="forward", batches=seen_batches, lots=found)

    def backward(self, lot_id: str) -> Trace:
        """Which batch yielded the lot, and which lots went into that batch (and so on)."""
        with self._database.reading() as connection:
            _lot_row(connection, lot_id)
            seen_batches: list[str] = []
            found: list[TracedLot] = []
            frontier = {lot_id}
            for _ in range(MAX_DEPTH):
                producers = _new(
                    connection.execute(
                        select(lots.c.produced_by_batch).where(
                            lots.c.lot_id.in_(frontier), lots.c.produced_by_batch.is_not(None)
                        )
                    ).scalars(),
                    seen_batches,
                )
                if not producers:
                    break
                seen_batches += producers
                inputs = connection.execute(
                    select(lots, lot_consumptions.c.batch_id.label("via_batch"))
                    .join(lot_consumptions, lot_consumptions.c.lot_id == lots.c.lot_id)
                    .where(lot_consumptions.c.batch_id.in_(producers))
                    .order_by(lot_consumptions.c.id)
                ).mappings()
                fresh = {(row["lot_id"], row["via_batch"]): row for row in inputs}
                found += [_traced(row, row["via_batch"]) for row in fresh.values()]
                frontier = {row["lot_id"] for row in fresh.values()}
        return Trace(lot_id=lot_id, direction="backward", batches=seen_batches, lots=found)


def _lot_row(connection: Connection, lot_id: str) -> Row:
    row = connection.execute(select(lots).where(lots.c.lot_id == lot_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no lot '{lot_id}'")
    return row


def _lots_where(connection: Connection, condition: ColumnElement[bool]) -> list[Row]:
    return list(
        connection.execute(select(lots).where(condition).order_by(lots.c.lot_id)).mappings()
    )


def _new(candidates: Iterable[str], seen: list[str]) -> list[str]:
    """The candidates not seen yet, in order, each once."""
    out: list[str] = []
    for value in candidates:
        if value not in seen and value not in out:
            out.append(value)
    return out


def _traced(row: Row, via_batch: str) -> TracedLot:
    return TracedLot(
        lot_id=row["lot_id"], kind=row["kind"], material=row["material"], via_batch=via_batch
    )
