"""The readiness verdict `/healthz/ready` serves: a blocking check refreshed in the background.

The engine's health gates probe every 50 ms with a 50 ms timeout, several probes at once, so
a probe must not run the check itself: `ReadinessMonitor.problem()` only reads the verdict the
refresher stored, in microseconds. The refresher runs the check in a daemon thread every
`interval_s`. At most one check is ever in flight: a check that hangs (a database that does
not answer) is given up on after `timeout_s`, which is a verdict of its own ("did not answer"),
and the next refresh waits for that same check again instead of piling up threads. A daemon
thread, not the default executor, so that a hung check can never hold up the process's exit.

If no refresh has completed for `stale_after_s` (the refresher died, or the event loop was
starved), the stored verdict is not trusted: readiness reports "readiness check stale".

A verdict that changes is logged once ("ready", or "not ready" with the reason), on the logger
the app passes (its log lines keep the app's logger name), else on this module's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

logger = logging.getLogger(__name__)

Check = Callable[[], str | None]  # blocking: None when ready, else the reason

REFRESH_INTERVAL_S = 0.5  # a verdict is at most this old, plus one check
CHECK_TIMEOUT_S = 1.0  # a check that takes longer counts as "did not answer"
STALE_AFTER_S = 2.0  # > interval + timeout: a hung check alone never makes the verdict stale
CHECK_THREAD_NAME = "readiness-check"  # the thread each check runs in


class ReadinessMonitor:
    """Runs `check` in the background (`running()`); `problem()` reads the cached verdict."""

    def __init__(
        self,
        check: Check,
        *,
        subject: str = "the readiness check",
        interval_s: float = REFRESH_INTERVAL_S,
        timeout_s: float = CHECK_TIMEOUT_S,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = logger,
    ) -> None:
        self._check = check
        self._logger = logger
        self._subject = subject
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._verdict: str | None = "readiness not checked yet"
        self._refreshed_at: float | None = None
        self._in_flight: asyncio.Future[str | None] | None = None
        self._checks_started = 0

    @property
    def checks_started(self) -> int:
        """How many times the check itself ran (not how many probes were answered)."""
        return self._checks_started

    def problem(self) -> str | None:
        """None when ready, else the reason. Cheap: no I/O, no await, one clock read."""
        if self._refreshed_at is None:
            return self._verdict
        age_s = self._clock() - self._refreshed_at
        if age_s > self._stale_after_s:
            return f"readiness check stale: last refreshed {age_s:.1f} s ago"
        return self._verdict

    async def refresh(self) -> str | None:
        """Run the check once (or wait again for the one still in flight); store the verdict."""
        try:
            verdict = await self._bounded_check()
        except Exception as error:  # a bug in a check must read as not ready, not kill the loop
            verdict = f"{self._subject} failed: {type(error).__name__}: {error}"
        if verdict != self._verdict:
            if verdict is None:
                self._logger.info("ready", extra={"fields": {"check": self._subject}})
            else:
                fields = {"check": self._subject, "reason": verdict}
                self._logger.warning("not ready", extra={"fields": fields})
        self._verdict = verdict
        self._refreshed_at = self._clock()
        return verdict

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Check once, then keep refreshing until the block ends; for the app's lifespan."""
        await self.refresh()  # the first probe after start-up already has a fresh verdict
        task = asyncio.create_task(self._refresh_forever(), name="readiness-refresh")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            if self._in_flight is not None:
                self._in_flight.cancel()  # its thread finishes on its own and is ignored

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.refresh()

    async def _bounded_check(self) -> str | None:
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = _in_daemon_thread(self._check)
            self._checks_started += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                # Shielded: a timeout abandons this wait, not the check, which the next
                # refresh waits for again (one stuck thread at most, never one per refresh).
                return await asyncio.shield(self._in_flight)
        except TimeoutError:
            return f"{self._subject} did not answer within {self._timeout_s:g} s"


def _in_daemon_thread(check: Check) -> asyncio.Future[str | None]:
    """`check()` in a new daemon thread; its outcome lands in the returned future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def settle(outcome: str | None, error: BaseException | None) -> None:
        if future.done():  # cancelled on shutdown while the check ran
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)

    def work() -> None:
        outcome: str | None = None
        error: BaseException | None = None
        try:
            outcome = check()
        except Exception as raised:
            error = raised
        with suppress(RuntimeError):  # the loop closed while the check hung: nobody waits
            loop.call_soon_threadsafe(settle, outcome, error)

    threading.Thread(target=work, name=CHECK_THREAD_NAME, daemon=True).start()
    return future
