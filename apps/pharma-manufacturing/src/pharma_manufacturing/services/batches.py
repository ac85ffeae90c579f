"""In-memory batch records with a few seeded batches; step records are idempotent per key."""

from __future__ import annotations

from datetime import UTC, datetime

from pharma_manufacturing.models.batches import Batch, BatchStatus, StepRecord, StepRequest

SEED_BATCHES: tuple[tuple[str, str, BatchStatus], ...] = (
    ("B-1001", "Amoxicillin 500 mg capsules", "in_progress"),
    ("B-1002", "Paracetamol 500 mg tablets", "in_progress"),
    ("B-1003", "Ibuprofen 200 mg tablets", "released"),
)


class BatchNotFoundError(LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch '{batch_id}'")


class BatchReleasedError(ValueError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch '{batch_id}' is released: its record takes no more steps")


class IdempotencyConflictError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key '{key}' was already used for a different step: "
            "use a new key for a new step"
        )


class BatchRegistry:
    """Batch records by id; cleared on restart (no storage yet).

    Methods never await, so on the event loop two step records cannot interleave.
    """

    def __init__(self) -> None:
        self._batches = {
            batch_id: Batch(batch_id=batch_id, product=product, status=status)
            for batch_id, product, status in SEED_BATCHES
        }
        self._by_key: dict[str, tuple[str, StepRecord]] = {}

    def get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchNotFoundError(batch_id)
        return batch

    def record_step(self, batch_id: str, key: str, step: StepRequest) -> tuple[StepRecord, bool]:
        """Append the step, or return the one recorded before; the flag says it is a replay."""
        seen = self._by_key.get(key)
        if seen is not None:
            seen_batch, record = seen
            submitted = record.model_dump(include=set(StepRequest.model_fields))
            if seen_batch != batch_id or StepRequest.model_validate(submitted) != step:
                raise IdempotencyConflictError(key)
            return record, True
        batch = self.get(batch_id)
        if batch.status == "released":
            raise BatchReleasedError(batch_id)
        record = StepRecord(
            **step.model_dump(),
            sequence=len(batch.steps) + 1,
            idempotency_key=key,
            recorded_at=datetime.now(UTC),
        )
        batch.steps.append(record)
        self._by_key[key] = (batch_id, record)
        return record, False
