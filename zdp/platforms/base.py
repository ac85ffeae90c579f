"""The platform seams: where versions run (`Runtime`), who routes traffic (`TrafficRouter`).

As in Flagger's router interface, each seam is one small protocol and each backend is one module
registered by name in `workers.platforms`. Both seams must be idempotent: activities are
retried, so provisioning a running version, retiring a retired one or setting the weights that
are already applied must succeed and change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from zdp.config import ENGINE_KEYS
from zdp.errors import ConfigError
from zdp.models import Deployed, ProbeResult, ReleaseManifest

CANARY_SLOTS = ("stable", "canary")
BLUE_GREEN_SLOTS = ("blue", "green")
# Every slot a version can run in, in the order weights are listed.
SLOTS = (*CANARY_SLOTS, *BLUE_GREEN_SLOTS)


_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_]+$")
DEFAULT_APP_ENV = "local"


def release_environment(
    release: ReleaseManifest, slot: str, app_env: str | None = None
) -> dict[str, str]:
    """The APP_* variables a version starts with: the release's config overrides, then what
    the engine sets: APP_ENV (the target environment's, `local` when none is given),
    APP_VERSION and APP_SLOT. An override of those, or a key that is not a name, is refused."""
    env: dict[str, str] = {}
    for key, value in release.config_overrides.items():
        if not _CONFIG_KEY.match(key):
            raise ConfigError(
                f"config override key {key!r} of {release.app} {release.version} is not a "
                "valid name: use letters, digits and '_' only"
            )
        if key.upper() in ENGINE_KEYS:
            raise ConfigError(
                f"config override {key} of {release.app} {release.version} is refused: "
                f"APP_{key.upper()} is set by the engine (the target environment, the version "
                "and the slot), never by a release"
            )
        env[f"APP_{key.upper()}"] = value
    env.update(APP_ENV=app_env or DEFAULT_APP_ENV, APP_VERSION=release.version, APP_SLOT=slot)
    return env


@runtime_checkable
class Runtime(Protocol):
    """Starts and stops app versions, one version per (app, slot)."""

    async def provision(
        self, release: ReleaseManifest, slot: str, app_env: str | None = None
    ) -> Deployed:
        """Start `release` in `slot` for the target environment `app_env` (what the app reads
        as APP_ENV; `local` when none is given) and return once it is ready for traffic."""
        ...

    async def retire(self, app: str, slot: str) -> None:
        """Stop whatever runs in `slot`; a slot that is already empty is fine."""
        ...

    async def endpoints(self, app: str, slot: str) -> list[str]:
        """The addresses the health probes should hit for the version in `slot`."""
        ...

    async def deployed(self, app: str, slot: str) -> Deployed | None:
        """What runs in `slot` now, or None."""
        ...


@runtime_checkable
class TrafficRouter(Protocol):
    """Splits an app's traffic between slots by integer percentages that sum to 100."""

    async def set_weights(self, app: str, weights: dict[str, int]) -> dict[str, int]:
        """Apply `weights` and return the weights read back as applied."""
        ...

    async def get_weights(self, app: str) -> dict[str, int]:
        """The weights applied now; empty when the app has no route yet."""
        ...


@runtime_checkable
class HealthProbe(Protocol):
    """Checks one endpoint once; never raises for an unhealthy endpoint, it reports it."""

    async def probe(self, endpoint: str) -> ProbeResult: ...


@runtime_checkable
class SlotCounters(Protocol):
    """Cumulative counts a router keeps per slot: requests served, and how many failed."""

    @property
    def requests(self) -> int: ...

    @property
    def failures(self) -> int: ...


@runtime_checkable
class TrafficStats(Protocol):
    """A router that counts what each slot served (Envoy does; the memory router does not)."""

    async def slot_stats(self, app: str) -> Mapping[str, SlotCounters]: ...


@dataclass(frozen=True)
class CpuTimes:
    """What the scheduler says about a slot's process at one moment (counters since it started).

    The serving thread is the process's main thread: it runs the event loop of the apps here.
    """

    waiting_ms: float  # the serving thread's time runnable but waiting for a CPU (run queue)
    running_ms: float  # the serving thread's time on a CPU
    process_cpu_ms: float  # every thread's CPU time, user and system
    state: str  # the serving thread's state letter: R runnable, S sleeping, D disk, T stopped


@runtime_checkable
class ProcessStats(Protocol):
    """A runtime that can read how long a slot's process waited for a CPU.

    Optional: the local runtime reads /proc for the processes it started; on Kubernetes the gate
    has no pid of the app to read, and the gate judges without it.
    """

    def cpu_times(self, app: str, slot: str) -> CpuTimes | None:
        """Read now, cheaply (the gate reads it every few ms); None when there is no process."""
        ...


def validate_weights(weights: Mapping[str, object]) -> dict[str, int]:
    """The weights in slot order, or ConfigError: known slots, ints >= 0, summing to 100."""
    if not weights:
        raise ConfigError("no weights given: name at least one slot, e.g. stable=100")
    unknown = sorted(set(weights) - set(SLOTS))
    if unknown:
        raise ConfigError(f"unknown slot(s) {', '.join(unknown)}: use {', '.join(SLOTS)}")
    checked: dict[str, int] = {}
    for slot, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ConfigError(f"weight of {slot} must be a whole number >= 0, got {weight!r}")
        checked[slot] = weight
    total = sum(checked.values())
    if total != 100:
        raise ConfigError(f"weights must sum to 100, got {total}: {checked}")
    return {slot: checked[slot] for slot in SLOTS if slot in checked}
