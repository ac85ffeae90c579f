"""PromQL metric templates and the Prometheus metric provider that runs them.

As Flagger's metric providers: one small interface (`query`, the RunQuery, and `is_online`)
behind which the gate reads a number. As Argo Rollouts' analysis templates: a template is data
(a query, a success condition, an interval, a failure limit and an inconclusive limit), and a
`TemplateRun` measures it repeatedly until it fails, passes or runs out of data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from zdp.errors import PlatformError
from zdp.gates import MetricTemplate
from zdp.models import GateResult

__all__ = ["MetricProvider", "MetricTemplate", "PrometheusProvider", "TemplateRun"]


class MetricProvider(Protocol):
    """What a template needs from a metrics backend (Flagger's RunQuery and IsOnline)."""

    async def query(self, promql: str) -> float | None: ...

    async def is_online(self) -> bool: ...


class PrometheusProvider:
    """Instant queries against one Prometheus server over one pooled HTTP client."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def query(self, promql: str) -> float | None:
        """The first sample's value of an instant query; None when it has no data or is NaN."""
        try:
            response = await self._client.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as err:
            raise PlatformError(
                f"prometheus at {self.url} did not answer ({type(err).__name__}): "
                "check that it runs and that ZDP_PROMETHEUS_URL points at it"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise PlatformError(
                f"prometheus at {self.url} answered HTTP {response.status_code} without JSON"
            ) from None
        if body.get("status") != "success":
            error = " ".join(str(body.get("error", "no error message")).split())
            raise PlatformError(
                f"prometheus at {self.url} refused the query {promql!r}: "
                f"{body.get('errorType', f'HTTP {response.status_code}')}: {error}"
            )
        data = body.get("data", {})
        result = data.get("result")
        if data.get("resultType") in ("scalar", "string"):
            sample = result
        elif result:
            sample = result[0].get("value")
        else:
            return None
        try:
            value = float(sample[1])
        except (TypeError, IndexError, ValueError):
            return None
        return None if math.isnan(value) else value

    async def is_online(self) -> bool:
        """Whether the server says it is ready to answer queries."""
        try:
            response = await self._client.get("/-/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class TemplateRun:
    """One template measured repeatedly during a gate; its result sticks once decided.

    `step` may be called more often than the template's interval (the gate ticks at its probe
    interval): between measurements it returns the current state without querying. A query
    that errors counts like one without data: a Prometheus that is down makes the template
    inconclusive, never failed.
    """

    template: MetricTemplate
    measurements: list[tuple[float, bool]] = field(default_factory=list)
    failures: int = 0
    no_data: int = 0
    result: GateResult | None = None
    last_error: str | None = None
    _last_at: float | None = field(default=None, init=False, repr=False)

    async def step(
        self, provider: MetricProvider, app: str, slot: str, version: str, environment: str = ""
    ) -> GateResult | None:
        """Measure once if the interval has passed; the result once decided, else None."""
        now = time.monotonic()
        if self.result is not None or (
            self._last_at is not None and now - self._last_at < self.template.interval_seconds
        ):
            return self.result
        self._last_at = now
        try:
            value = await provider.query(self.template.render(app, slot, version, environment))
        except PlatformError as err:
            self.last_error, value = str(err), None
        if value is None:
            self.no_data += 1
            if self.no_data > self.template.inconclusive_limit:
                self.result = GateResult.inconclusive
            return self.result
        ok = self.template.succeeds(value)
        self.measurements.append((value, ok))
        if not ok:
            self.failures += 1
            if self.failures > self.template.failure_limit:
                self.result = GateResult.failed
        elif self.template.count is not None and self._successes() >= self.template.count:
            self.result = GateResult.passed
        return self.result

    def _successes(self) -> int:
        return sum(1 for _, good in self.measurements if good)

    def conclude(self) -> GateResult:
        """The result at the end of the bake: pass if it measured anything and did not fail."""
        if self.result is not None:
            return self.result
        return GateResult.passed if self.measurements else GateResult.inconclusive

    def reason(self) -> str:
        """One sentence with the numbers behind the current state."""
        t = self.template
        condition = f"{t.comparator} {t.threshold:g}"
        last = f", last value {self.measurements[-1][0]:g}" if self.measurements else ""
        return (
            f"template '{t.name}' ({condition}): {len(self.measurements)} measurements, "
            f"{self.failures} breaches (limit {t.failure_limit}), {self.no_data} without data "
            f"(limit {t.inconclusive_limit}){last}"
        )

    def evidence(self) -> dict[str, float]:
        """The numbers behind the result, keyed by the template's name."""
        prefix = f"template.{self.template.name}"
        evidence = {
            f"{prefix}.measurements": float(len(self.measurements)),
            f"{prefix}.failures": float(self.failures),
            f"{prefix}.no_data": float(self.no_data),
            f"{prefix}.threshold": self.template.threshold,
        }
        if self.measurements:
            evidence[f"{prefix}.last_value"] = self.measurements[-1][0]
        return evidence
