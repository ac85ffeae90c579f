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

from ops_kit.settings import (
    DrillSettings,
    check_error_rate,
    drill_fields,
    non_negative_number,
    refuse_drills_in_production,
)

from finance_trading import APP_NAME, __version__
from finance_trading.trading_config import ConfigError, TradingConfig, load_trading_config


class SettingsError(ConfigError):
    """An `APP_*` variable holds a value the app cannot use; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Settings(DrillSettings):
    """The drill faults, drain timings and drill endpoint are ops_kit's `DrillSettings`."""

    trading: TradingConfig  # APP_ENV's config file with its APP_* overrides
    app_name: str = APP_NAME
    version: str = __version__
    slot: str | None = None
    data_dir: Path | None = None  # APP_DATA_DIR: the shared idempotency ledger's folder

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check everything; raises ConfigError (or SettingsError) naming the key."""
        env = os.environ if environ is None else environ
        settings = cls(
            trading=load_trading_config(env),
            version=env.get("APP_VERSION") or __version__,
            slot=env.get("APP_SLOT") or None,
            data_dir=_folder(env, "APP_DATA_DIR"),
            **drill_fields(env, lambda name, default: _number(env, name, default)),
            drain_delay_s=_number(env, "APP_DRAIN_DELAY_S", 0.5),
            drain_timeout_s=_number(env, "APP_DRAIN_TIMEOUT_S", 30.0),
        )
        check_error_rate(settings, SettingsError)
        refuse_drills_in_production(settings, settings.trading.environment, SettingsError)
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
    try:
        return non_negative_number(env.get(name, "").strip(), default)
    except ValueError as error:
        raise SettingsError(f"{name} {error}") from None
