"""Per-environment trading configuration: risk limits and API keys, read once at start-up.

`APP_ENV` (default `local`) picks `config/<env>.yaml`, which ships inside the wheel as the
package `finance_trading.config`. These `APP_*` variables then override the file:

    APP_MAX_ORDER_QTY, APP_MAX_ORDER_NOTIONAL, APP_PRICE_BAND_PCT
    APP_RESTRICTED_SYMBOLS   comma-separated symbols, replacing the file's list
    APP_API_KEYS_FILE        a YAML mapping {<sha256 hex of a key>: <account>}
    APP_API_KEYS             "<sha256 hex>=<account>,..."
    APP_DRILL_KEYS_FILE      a YAML mapping {<sha256 hex of a drill key>: <name>}

Either key variable replaces the file's keys (both together are merged). Drill keys (for
POST /drill/faults only, see api/operations.py) come from the file's `drill_keys` or, replacing
them, from the file APP_DRILL_KEYS_FILE names: a secret given by reference, never inline. A
drill key may not also be a trading key. A value the app cannot use raises ConfigError naming
the variable, or the file and the key in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from finance_trading.services.risk import RiskLimits

ENVIRONMENTS = ("local", "staging", "production")
RISK_OVERRIDES = {
    "APP_MAX_ORDER_QTY": "max_order_qty",
    "APP_MAX_ORDER_NOTIONAL": "max_order_notional",
    "APP_PRICE_BAND_PCT": "price_band_pct",
    "APP_RESTRICTED_SYMBOLS": "restricted_symbols",
}
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A configuration value the app cannot use; the message names where it came from."""


class ConfigFile(BaseModel):
    """The schema of config/<env>.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk: RiskLimits
    api_keys: dict[str, str] = {}  # sha256 hex digest of a key -> account name
    api_keys_required: bool = False  # refuse to start without any key (production)
    drill_keys: dict[str, str] = {}  # sha256 hex digest of a drill key -> who holds it

    @field_validator("api_keys", "drill_keys")
    @classmethod
    def _digests_and_accounts(cls, keys: dict[str, str]) -> dict[str, str]:
        for digest, account in keys.items():
            if not _SHA256_HEX.match(str(digest)):  # never echo it: it may be a plain key
                raise ValueError(
                    f"the key of account {account!r} is not a SHA-256 digest: write the 64 "
                    "lower-case hex characters of sha256(key), never the key itself"
                )
            if not _ACCOUNT.match(str(account)):
                raise ValueError(
                    f"account {account!r} must be 1-64 letters, digits, '_', '.' or '-'"
                )
        return keys


@dataclass(frozen=True)
class TradingConfig:
    environment: str
    source: Path  # the file the values came from, before overrides
    limits: RiskLimits
    api_keys: Mapping[str, str]  # sha256 hex digest -> account
    drill_keys: Mapping[str, str] = field(default_factory=dict)  # sha256 hex digest -> holder


def config_dir() -> Path:
    """config/ in the wheel (finance_trading/config), else the source checkout's config/."""
    packaged = Path(__file__).resolve().parent / "config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "config"  # run with PYTHONPATH=src


def load_trading_config(env: Mapping[str, str] | None = None) -> TradingConfig:
    """Read config/<APP_ENV>.yaml, apply the APP_* overrides, validate; raise ConfigError."""
    env = os.environ if env is None else env
    environment = env.get("APP_ENV", "").strip() or "local"
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    source = config_dir() / f"{environment}.yaml"
    raw = _read_yaml(source)
    origins: dict[tuple[str, ...], str] = {}
    risk = raw.get("risk")
    if isinstance(risk, dict):
        for variable, key in RISK_OVERRIDES.items():
            value = env.get(variable, "").strip()
            if value:
                risk[key] = value.split(",") if key == "restricted_symbols" else value
                origins[("risk", key)] = variable
    overridden = _override_keys(env)
    if overridden is not None:
        keys, variables = overridden
        raw["api_keys"] = keys
        origins[("api_keys",)] = variables
    drill_file = env.get("APP_DRILL_KEYS_FILE", "").strip()
    if drill_file:
        raw["drill_keys"] = _read_yaml(Path(drill_file), named="APP_DRILL_KEYS_FILE")
        origins[("drill_keys",)] = "APP_DRILL_KEYS_FILE"
    try:
        parsed = ConfigFile.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_explain(error, source, origins)) from None
    if environment != "local":
        demo_api_keys, demo_drill_keys = _demo_key_digests()
        public = demo_api_keys & set(parsed.api_keys)
        if public:
            raise ConfigError(
                f"the public demo API key (ft-demo-local-key) is for APP_ENV=local only, not "
                f"{environment}: remove sha256 {sorted(public)[0][:12]}… from "
                f"{origins.get(('api_keys',), str(source))}"
            )
        public = demo_drill_keys & set(parsed.drill_keys)
        if public:
            raise ConfigError(
                f"the public demo drill key (ft-demo-drill-key) is for APP_ENV=local only, not "
                f"{environment}: remove sha256 {sorted(public)[0][:12]}… from "
                f"{origins.get(('drill_keys',), str(source))}"
            )
    shared = set(parsed.api_keys) & set(parsed.drill_keys)
    if shared:
        raise ConfigError(
            f"a drill key must not also be a trading key: sha256 {sorted(shared)[0][:12]}… is "
            f"in both {origins.get(('drill_keys',), 'drill_keys in ' + str(source))} and "
            f"{origins.get(('api_keys',), 'api_keys in ' + str(source))}; give drills a key "
            "of their own"
        )
    if parsed.api_keys_required and not parsed.api_keys:
        raise ConfigError(
            f"no API keys configured for {environment}: set APP_API_KEYS_FILE (a YAML file "
            "{<sha256 hex>: <account>}) or APP_API_KEYS (<sha256 hex>=<account>,...)"
        )
    return TradingConfig(
        environment, source, parsed.risk, dict(parsed.api_keys), dict(parsed.drill_keys)
    )


def _demo_key_digests() -> tuple[set[str], set[str]]:
    """The API key and drill key digests local.yaml ships (their plaintext is public, in
    README.md)."""
    raw = _read_yaml(config_dir() / "local.yaml")
    found = []
    for section in ("api_keys", "drill_keys"):
        keys = raw.get(section)
        found.append({str(k) for k in keys} if isinstance(keys, dict) else set())
    return found[0], found[1]


def _read_yaml(path: Path, named: str | None = None) -> dict[str, Any]:
    name = named or str(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{name}: {path} is not valid YAML: {error}".replace("\n", " ")) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{name}: {path} must hold a mapping, not {type(loaded).__name__}")
    return loaded


def _override_keys(env: Mapping[str, str]) -> tuple[dict[str, Any], str] | None:
    """Keys from APP_API_KEYS_FILE and APP_API_KEYS, and which variable to blame; or None."""
    keys: dict[str, Any] = {}
    named = []
    path = env.get("APP_API_KEYS_FILE", "").strip()
    if path:
        keys.update(_read_yaml(Path(path), named="APP_API_KEYS_FILE"))
        named.append("APP_API_KEYS_FILE")
    pairs = env.get("APP_API_KEYS", "").strip()
    if pairs:
        for number, pair in enumerate(pairs.split(","), start=1):
            digest, sep, account = pair.strip().partition("=")
            if not sep:  # never echo the entry: it may be a plain key
                raise ConfigError(
                    f"APP_API_KEYS must be <sha256 hex>=<account>,...: entry {number} has no '='"
                )
            keys[digest.strip()] = account.strip()
        named.append("APP_API_KEYS")
    return (keys, " or ".join(named)) if named else None


def _explain(error: ValidationError, source: Path, origins: dict[tuple[str, ...], str]) -> str:
    """One line naming the variable or the file and key at fault, the rule, and the value."""
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"])
    origin = origins.get(location[:2]) or origins.get(location[:1])
    where = origin or f"{'.'.join(location)} in {source}"
    if first["type"] == "extra_forbidden":
        return f"{where}: not a known setting (see config/README.md)"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"{where}: required, but not set"
    value = first.get("input")
    if isinstance(value, dict | list):  # a whole section: the message says what is wrong
        return f"{where}: {message}"
    return f"{where}: {message}, got {value!r}"
