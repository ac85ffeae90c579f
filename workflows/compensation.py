"""Compensations: what undoes each change a deployment made, and the order they run in.

A compensation is registered only after the step it undoes has run. On rollback, traffic is
restored first (users stop seeing the new version before anything else happens), then the rest
run newest first. Each retries until it succeeds: a rollback that gives up leaves the system
half-changed, which is worse than a slow one.

A traffic compensation made with `restore` names what served before the deployment, not a split
to force: the set_weights activity routes back to the part of it that still runs, and when none
does (a first deployment, or the previous version is gone), it leaves traffic where a version
runs. `run()` returns the split as applied, which is what the timeline records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from activities.traffic import TrafficActivities
    from zdp.models import RetireInput, WeightsInput

# maximum_attempts=0 means unlimited: a compensation never gives up.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
# Verifying, scoring, starting or stopping a slot's process heartbeat every second
# (activities._support): a worker lost in the middle is noticed after this long, and another
# worker runs the activity again. Before, 30 s (a start-to-close or heartbeat timeout): a
# worker killed while retiring a rolled-back canary held the rollback's end for 30 s
# (bench/faults.py: worker_kill_compensations, worker_kill_provision, worker_kill_verify).
RUNTIME_HEARTBEAT = timedelta(seconds=10)


@dataclass(frozen=True)
class Compensation:
    kind: Literal["traffic", "retire"]
    app: str
    description: str
    weights: dict[str, int] = field(default_factory=dict)
    slot: str = ""
    version: str | None = None
    restore: bool = False
    # The environment whose own slots it acts on (see ProvisionInput.scope); None: shared.
    scope: str | None = None

    @classmethod
    def traffic(cls, app: str, weights: dict[str, int], scope: str | None = None) -> Compensation:
        return cls(
            "traffic", app, f"traffic restored: {_text(weights)}", weights=dict(weights),
            scope=scope,
        )  # fmt: skip

    @classmethod
    def restore_traffic(
        cls, app: str, before: dict[str, int], scope: str | None = None
    ) -> Compensation:
        """Back to `before` (what served before; the deployment's slots at 0), as far as it runs."""
        served = {s: w for s, w in before.items() if w}
        description = (
            f"traffic back to what served before ({_text(served)})"
            if served
            else "nothing served before: traffic stays where a version runs"
        )
        return cls("traffic", app, description, weights=dict(before), restore=True, scope=scope)

    @classmethod
    def retire(
        cls, app: str, slot: str, version: str | None, scope: str | None = None
    ) -> Compensation:
        return cls(
            "retire", app, f"version {version} retired from slot {slot}", slot=slot,
            version=version, scope=scope,
        )  # fmt: skip

    def data(self) -> dict[str, Any]:
        if self.kind == "traffic":
            return {"weights": dict(self.weights)}
        return {"slot": self.slot, "version": self.version}

    async def run(self) -> dict[str, int] | None:
        """Run it; a traffic compensation returns the split as applied."""
        if self.kind == "traffic":
            return await workflow.execute_activity_method(
                TrafficActivities.set_weights,
                WeightsInput(
                    app=self.app, weights=self.weights, restore=self.restore, scope=self.scope
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=COMPENSATION_RETRY,
                summary="rollback: " + self.description,
            )
        else:
            await workflow.execute_activity_method(
                RuntimeActivities.retire_version,
                RetireInput(app=self.app, slot=self.slot, version=self.version, scope=self.scope),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=RUNTIME_HEARTBEAT,
                retry_policy=COMPENSATION_RETRY,
                summary="rollback: " + self.description,
            )
            return None


class CompensationStack:
    """Registered compensations, newest last."""

    def __init__(self) -> None:
        self._items: list[Compensation] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def push(self, item: Compensation) -> None:
        self._items.append(item)

    def clear(self) -> None:
        self._items.clear()

    def has_traffic(self) -> bool:
        return any(c.kind == "traffic" for c in self._items)

    def in_rollback_order(self) -> list[Compensation]:
        newest_first = list(reversed(self._items))
        return [c for c in newest_first if c.kind == "traffic"] + [
            c for c in newest_first if c.kind != "traffic"
        ]


def _text(weights: dict[str, int]) -> str:
    return " ".join(f"{s}={w}%" for s, w in sorted(weights.items())) or "no route"
