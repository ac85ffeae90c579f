"""Drill faults for the business routes: added latency and a deterministic share of 503 answers.

The faults a process starts with come from `APP_FAULT_ERROR_RATE` and `APP_FAULT_LATENCY_MS`
(settings.py); `APP_FAULT_CRASH_ON_START` makes startup fail (`crash_if_drilled`). They are
a router dependency of the business routes (`Depends(inject_faults)`), not a middleware, so
that health, metrics and version endpoints stay correct, as they would with a real bug in
business logic. The one exception is `ready_fail` (set through POST /drill/faults only):
`/healthz/ready` answers 503 `not_ready` while it is set, and the API keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

from fastapi import HTTPException, Request

READY_FAIL_REASON = "drill: readiness failing"


class FaultInjector:
    """Fails exactly round(rate * N) of every N requests, spread evenly (no randomness)."""

    def __init__(
        self, error_rate: float = 0.0, latency_ms: int = 0, ready_fail: bool = False
    ) -> None:
        self._rate = Fraction(error_rate).limit_denominator(10_000)
        self._latency_s = latency_ms / 1000
        self._seen = 0
        self.ready_fail = ready_fail  # read by /healthz/ready, which answers READY_FAIL_REASON

    def next_request_fails(self) -> bool:
        # Request n fails when floor(n * rate) steps up: n = 2, 4, 6... for a rate of 0.5.
        self._seen += 1
        return self._seen * self._rate // 1 > (self._seen - 1) * self._rate // 1

    async def apply(self) -> None:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self._rate and self.next_request_fails():
            raise HTTPException(status_code=503, detail="injected fault: APP_FAULT_ERROR_RATE")


async def inject_faults(request: Request) -> None:
    """Router dependency for the business routes: applies the faults now set (`app.state.faults`,
    the ones the process started with until POST /drill/faults sets others)."""
    faults: FaultInjector = request.app.state.faults
    await faults.apply()


class InjectedStartupCrash(RuntimeError):
    """The APP_FAULT_CRASH_ON_START drill: startup fails on purpose."""


def crash_if_drilled(crash_on_start: bool, logger: logging.Logger) -> None:
    """First thing in the lifespan: with APP_FAULT_CRASH_ON_START, one `critical` line naming
    the fault, then startup fails (uvicorn exits 3)."""
    if crash_on_start:
        logger.critical(
            "injected fault APP_FAULT_CRASH_ON_START: failing startup, the process exits 3"
        )
        raise InjectedStartupCrash("APP_FAULT_CRASH_ON_START is set")
