"""The audit trail: who created or changed which record and field, old and new value, why, when.

Entries are written in the same transaction as the change they describe, so there is never a
change without its entry. The table is append-only (database triggers refuse UPDATE and
DELETE), and a change writes the earlier value into its entry, so no later change hides it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from pharma_manufacturing.services.errors import ReasonRequiredError
from pharma_manufacturing.storage.tables import audit_trail


def as_text(value: Any) -> str | None:
    """A value as the trail stores it: JSON, so numbers, text and null stay distinguishable."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def require_reason(reason: str | None, what: str) -> str:
    """A change to an executed record must say why."""
    if reason is None or not reason.strip():
        raise ReasonRequiredError(
            f"a reason is required to change {what}: it was already executed, and the audit "
            "trail must say why it changed"
        )
    return reason.strip()


def record_created(
    connection: Connection,
    *,
    at: datetime,
    user_id: str,
    table: str,
    record_id: str,
    values: Mapping[str, Any],
    batch_id: str | None,
    reason: str | None = None,
) -> None:
    connection.execute(
        insert(audit_trail).values(
            at=at,
            user_id=user_id,
            action="create",
            table_name=table,
            record_id=record_id,
            field=None,
            old_value=None,
            new_value=as_text(dict(values)),
            reason=reason,
            batch_id=batch_id,
        )
    )


def record_changed(
    connection: Connection,
    *,
    at: datetime,
    user_id: str,
    table: str,
    record_id: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    reason: str,
    batch_id: str | None,
) -> list[str]:
    """One entry per field whose value changed; returns the changed fields."""
    changed = [field for field in after if before.get(field) != after[field]]
    if changed:
        connection.execute(
            insert(audit_trail),
            [
                {
                    "at": at,
                    "user_id": user_id,
                    "action": "update",
                    "table_name": table,
                    "record_id": record_id,
                    "field": field,
                    "old_value": as_text(before.get(field)),
                    "new_value": as_text(after[field]),
                    "reason": reason,
                    "batch_id": batch_id,
                }
                for field in changed
            ],
        )
    return changed


def entries_for_batch(connection: Connection, batch_id: str) -> list[dict[str, Any]]:
    """Every entry about the batch and the records in it, oldest first."""
    query = select(audit_trail).where(audit_trail.c.batch_id == batch_id).order_by(audit_trail.c.id)
    return [dict(row) for row in connection.execute(query).mappings()]
