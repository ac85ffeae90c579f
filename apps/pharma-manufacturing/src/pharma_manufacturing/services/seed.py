"""Demo data for APP_ENV=local: three batches and a small genealogy, seeded once per database.

Both versions of the app may start at the same moment against one file; the seed runs in a
single write transaction that first looks for B-1001, so it happens exactly once and whole.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.sql.schema import Table

from pharma_manufacturing.services import audit
from pharma_manufacturing.services.credentials import User
from pharma_manufacturing.services.lookups import new_id, utc_now
from pharma_manufacturing.services.signatures import RecordRef, SignatureSeal, batch_content
from pharma_manufacturing.storage.database import Database
from pharma_manufacturing.storage.tables import batches, lot_consumptions, lots, signatures

logger = logging.getLogger(__name__)

SEEDER = "system"
REASON = "demo data seeded (APP_ENV=local)"

SEED_BATCHES: tuple[tuple[str, str, str], ...] = (
    ("B-1001", "Amoxicillin 500 mg capsules", "in_progress"),
    ("B-1002", "Paracetamol 500 mg tablets", "in_progress"),
    ("B-1003", "Ibuprofen 200 mg tablets", "released"),
)
SEED_LOTS: tuple[tuple[str, str, float, str], ...] = (
    ("ML-AMOX-2401", "Amoxicillin trihydrate", 50.0, "kg"),
    ("ML-GEL-2402", "Hard gelatin capsule shells, size 0", 200_000.0, "pcs"),
    ("ML-IBU-2403", "Ibuprofen", 20.0, "kg"),
    ("ML-MCC-2404", "Microcrystalline cellulose", 100.0, "kg"),
)
SEED_CONSUMPTIONS: tuple[tuple[str, str, float], ...] = (
    ("B-1001", "ML-AMOX-2401", 25.0),
    ("B-1003", "ML-IBU-2403", 10.0),
    ("B-1003", "ML-MCC-2404", 5.0),
)
SEED_PRODUCT_LOT = ("PL-1003-A", "B-1003", 50_000.0, "tablets")


def seed_demo_data(database: Database, seal: SignatureSeal, approver: User | None) -> bool:
    """Seed unless already seeded; True when this call seeded. `approver` (a QA user) signs
    B-1003's release; without one, B-1003 is released unsigned."""
    now = utc_now()
    with database.writing() as connection:
        if connection.execute(
            select(batches.c.batch_id).where(batches.c.batch_id == "B-1001")
        ).first():
            return False
        for hours, (batch_id, product, status) in zip((6, 30, 54), SEED_BATCHES, strict=True):
            started = now - timedelta(hours=hours)
            row: dict[str, Any] = {
                "batch_id": batch_id,
                "product": product,
                "status": status,
                "started_at": started,
                "created_by": SEEDER,
                "released_at": started + timedelta(hours=20) if status == "released" else None,
            }
            _add(connection, batches, row, batch_id, now, record_id=batch_id)
            if status == "released" and approver is not None:
                ref = RecordRef("batch", batch_id, batch_id, 1)
                approval = seal.sign(
                    ref, batch_content(row), approver, "approved", row["released_at"]
                )
                _add(connection, signatures, approval, batch_id, now)
        for lot_id, material, quantity, unit in SEED_LOTS:
            lot = _lot(lot_id, "material", material, quantity, unit, None, now)
            _add(connection, lots, lot, None, now, record_id=lot_id)
        for batch_id, lot_id, quantity in SEED_CONSUMPTIONS:
            consumption = {
                "batch_id": batch_id,
                "lot_id": lot_id,
                "quantity": quantity,
                "consumed_at": now - timedelta(hours=5),
                "consumed_by": SEEDER,
            }
            _add(connection, lot_consumptions, consumption, batch_id, now)
        lot_id, batch_id, quantity, unit = SEED_PRODUCT_LOT
        product = next(p for b, p, _ in SEED_BATCHES if b == batch_id)
        lot = _lot(lot_id, "product", product, quantity, unit, batch_id, now)
        _add(connection, lots, lot, batch_id, now, record_id=lot_id)
    logger.info("demo data seeded", extra={"fields": {"batches": [b for b, _, _ in SEED_BATCHES]}})
    return True


def _lot(
    lot_id: str,
    kind: str,
    material: str,
    quantity: float,
    unit: str,
    batch: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "lot_id": lot_id,
        "kind": kind,
        "material": material,
        "quantity": quantity,
        "unit": unit,
        "produced_by_batch": batch,
        "created_at": now,
        "created_by": SEEDER,
    }


def _add(
    connection: Connection,
    table: Table,
    values: dict[str, Any],
    batch_id: str | None,
    now: datetime,
    record_id: str | None = None,
) -> None:
    inserted = connection.execute(insert(table).values(values))
    audit.record_created(
        connection,
        at=now,
        user_id=SEEDER,
        table=table.name,
        record_id=record_id or str(new_id(inserted)),
        values=values,
        batch_id=batch_id,
        reason=REASON,
    )
