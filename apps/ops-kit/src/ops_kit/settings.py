"""The start-up settings the kit reads: drill faults, drain timings, the drill endpoint.

An app's own `Settings` dataclass extends `DrillSettings` (and has `app_name`, `version` and
`slot`, which `/version` reports). The engine passes a release's config overrides as
`APP_<NAME>` variables, so a drill is a release whose overrides set an `APP_FAULT_*`:

- `APP_FAULT_ERROR_RATE` (0.0-1.0), `fault_error_rate`: that share of business requests is 503;
- `APP_FAULT_LATENCY_MS`, `fault_latency_ms`: added before every business request;
- `APP_FAULT_CRASH_ON_START` (1/true/yes/on), `fault_crash_on_start`: startup fails, exit 3;
- `APP_FAULT_READY_DELAY_S`, `fault_ready_delay_s`: readiness stays `starting` this long;
- `APP_DRILL_ENDPOINT` (1/true/yes/on), `drill_endpoint`: POST /drill/faults exists;
- `APP_DRAIN_DELAY_S`, `APP_DRAIN_TIMEOUT_S`: `drain_delay_s`, `drain_timeout_s` (the app reads
  them: from the environment, or from its config file with these variables over it).

How a number is parsed (and how a bad one is reported) stays the app's: `drill_fields` takes
its parser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TRUE = frozenset({"1", "true", "yes", "on"})  # what turns an APP_* flag on (case-insensitive)


@dataclass(frozen=True, kw_only=True)
class DrillSettings:
    fault_error_rate: float = 0.0  # APP_FAULT_ERROR_RATE: fraction of /api/* answered 503
    fault_latency_ms: int = 0  # APP_FAULT_LATENCY_MS: added before every /api/* request
    fault_crash_on_start: bool = False  # APP_FAULT_CRASH_ON_START: exit 3 during startup
    fault_ready_delay_s: float = 0.0  # APP_FAULT_READY_DELAY_S: stay "starting" this long
    drain_delay_s: float = 0.5  # APP_DRAIN_DELAY_S: report draining before closing listeners
    drain_timeout_s: float = 30.0  # APP_DRAIN_TIMEOUT_S: longest wait for in-flight requests
    drill_endpoint: bool = False  # APP_DRILL_ENDPOINT: enable POST /drill/faults (drills only)


def non_negative_number(raw: str, default: float) -> float:
    """`raw` as a number >= 0, `default` when blank; ValueError ("must be a number, got 'x'",
    "must not be negative, got '-1'") otherwise, for the app to name the setting."""
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def drill_fields(env: Mapping[str, str], number: Callable[[str, float], float]) -> dict[str, Any]:
    """The `APP_FAULT_*` and `APP_DRILL_ENDPOINT` fields of `DrillSettings`, read from `env`;
    `number(variable, default)` is the app's parser (it raises the app's error)."""
    return {
        "fault_error_rate": number("APP_FAULT_ERROR_RATE", 0.0),
        "fault_latency_ms": int(number("APP_FAULT_LATENCY_MS", 0)),
        "fault_crash_on_start": env.get("APP_FAULT_CRASH_ON_START", "").lower() in TRUE,
        "fault_ready_delay_s": number("APP_FAULT_READY_DELAY_S", 0.0),
        "drill_endpoint": env.get("APP_DRILL_ENDPOINT", "").strip().lower() in TRUE,
    }


def check_error_rate(settings: DrillSettings, error: type[Exception]) -> None:
    """Raise `error` (the app's settings error) unless 0.0 <= APP_FAULT_ERROR_RATE <= 1.0."""
    if not 0.0 <= settings.fault_error_rate <= 1.0:
        raise error(
            f"APP_FAULT_ERROR_RATE must be between 0.0 and 1.0, got {settings.fault_error_rate}"
        )


def refuse_drills_in_production(
    settings: DrillSettings, environment: str, error: type[Exception]
) -> None:
    """Raise `error` when APP_DRILL_ENDPOINT is on and the environment is production."""
    if settings.drill_endpoint and environment == "production":
        raise error("APP_DRILL_ENDPOINT is refused in production: drills break the app on purpose")
