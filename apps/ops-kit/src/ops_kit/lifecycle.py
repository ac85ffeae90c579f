"""Readiness of this process: starting, then ready, then draining once shutdown begins."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

Readiness = Literal["starting", "ready", "draining"]


class Lifecycle:
    """What `/healthz/ready` reports. Only the lifespan and the signal handler change it."""

    def __init__(self, ready_delay_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self._ready_delay_s = ready_delay_s
        self._clock = clock
        self._ready_at: float | None = None
        self._draining = False

    def mark_started(self) -> None:
        """Startup finished; ready now, or after the drill's ready delay."""
        self._ready_at = self._clock() + self._ready_delay_s

    def start_draining(self) -> None:
        """Shutdown began: readiness turns false for good, so the proxy stops sending traffic."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def readiness(self) -> Readiness:
        if self._draining:
            return "draining"
        if self._ready_at is None or self._clock() < self._ready_at:
            return "starting"
        return "ready"
