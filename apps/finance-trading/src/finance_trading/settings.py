"""Start-up settings read once from `APP_*` environment variables, drill faults included.

The engine passes a release's config overrides as `APP_<NAME>` variables, so a drill is a
release whose overrides set one of the `APP_FAULT_*` variables below. The trading part (risk
limits, API keys) comes from config/<APP_ENV>.yaml, see trading_config.py.

`APP_DATA_DIR` is the folder the engine gives an app, one per app and shared by all of its
versions. When it is set, the idempotency ledger lives there (services/ledger.py); without it,
this process's memory is the only idempotency record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from finance_trading import APP_NAME, __version__
from finance_trading.trading_config import ConfigError, TradingConfig, load_trading_config

_TRUE = {"1", "true", "yes", "on"}


class SettingsError(ConfigError):
    """An `APP_*` variable holds a value the app cannot use; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    trading: TradingConfig  # APP_ENV's config file with its APP_* overrides
    app_name: str = APP_NAME
    version: str = __version__
    slot: str | None = None
    data_dir: Path | None = None  # APP_DATA_DIR: the shared idempotency ledger's folder
    fault_error_rate: float = 0.0  # APP_FAULT_ERROR_RATE: fraction of /api/* answered 503
    fault_latency_ms: int = 0  # APP_FAULT_LATENCY_MS: added before every /api/* request
    fault_crash_on_start: bool = False  # APP_FAULT_CRASH_ON_START: exit 3 during startup
    fault_ready_delay_s: float = 0.0  # APP_FAULT_READY_DELAY_S: stay "starting" this long
    drain_delay_s: float = 0.5  # APP_DRAIN_DELAY_S: report draining before closing listeners
    drain_timeout_s: float = 30.0  # APP_DRAIN_TIMEOUT_S: longest wait for in-flight requests
    drill_endpoint: bool = False  # APP_DRILL_ENDPOINT: enable POST /drill/faults (drills only)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check everything; raises ConfigError (or SettingsError) naming the key."""
        env = os.environ if environ is None else environ
        settings = cls(
            trading=load_trading_config(env),
            version=env.get("APP_VERSION") or __version__,
            slot=env.get("APP_SLOT") or None,
            data_dir=_folder(env, "APP_DATA_DIR"),
            fault_error_rate=_number(env, "APP_FAULT_ERROR_RATE", 0.0),
            fault_latency_ms=int(_number(env, "APP_FAULT_LATENCY_MS", 0)),
            fault_crash_on_start=env.get("APP_FAULT_CRASH_ON_START", "").lower() in _TRUE,
            fault_ready_delay_s=_number(env, "APP_FAULT_READY_DELAY_S", 0.0),
            drain_delay_s=_number(env, "APP_DRAIN_DELAY_S", 0.5),
            drain_timeout_s=_number(env, "APP_DRAIN_TIMEOUT_S", 30.0),
            drill_endpoint=env.get("APP_DRILL_ENDPOINT", "").strip().lower() in _TRUE,
        )
        if not 0.0 <= settings.fault_error_rate <= 1.0:
            raise SettingsError(
                f"APP_FAULT_ERROR_RATE must be between 0.0 and 1.0, got {settings.fault_error_rate}"
            )
        if settings.drill_endpoint and settings.trading.environment == "production":
            raise SettingsError(
                "APP_DRILL_ENDPOINT is refused in production: drills break the app on purpose"
            )
        return settings


def _folder(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    folder = Path(raw)
    if not folder.is_dir():
        raise SettingsError(f"{name} must be an existing folder, got {raw!r}: create it first")
    return folder


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value
