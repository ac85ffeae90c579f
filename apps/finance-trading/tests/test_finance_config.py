"""finance-trading configuration: config/<APP_ENV>.yaml, APP_* overrides, refusals by name."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from finance_kit import ALICE_KEY, DEMO_KEY, DRILL_KEY, TWO_ACCOUNTS, digest, key, order
from finance_trading import trading_config
from finance_trading.settings import Settings, SettingsError
from finance_trading.trading_config import ConfigError, load_trading_config

if TYPE_CHECKING:
    from ops_kit.testing import AppProcess, InProcess

StartApp = Callable[[dict[str, str]], "AppProcess"]
CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_local_is_the_default_and_ships_the_documented_demo_key() -> None:
    config = load_trading_config({})
    assert config.environment == "local"
    assert config.source == CONFIG / "local.yaml"
    assert dict(config.api_keys) == {digest(DEMO_KEY): "demo"}
    assert config.limits.max_order_qty == 10000
    assert config.limits.price_band_pct == Decimal(5)
    assert config.limits.restricted_symbols == {"GME"}
    readme = (CONFIG.parent / "README.md").read_text()
    assert DEMO_KEY in readme


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_staging_and_production_ship_no_key_and_refuse_to_start_without_one(
    environment: str,
) -> None:
    shipped = yaml.safe_load((CONFIG / f"{environment}.yaml").read_text())
    assert shipped["api_keys"] == {}
    with pytest.raises(ConfigError, match=f"no API keys configured for {environment}"):
        load_trading_config({"APP_ENV": environment})
    config = load_trading_config({"APP_ENV": environment, **TWO_ACCOUNTS})
    assert set(config.api_keys.values()) == {"alice", "bob"}


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_public_demo_key_is_refused_outside_local(environment: str) -> None:
    """Its plaintext is in the README: a staging or production site that accepted it would
    let anyone trade."""
    demo = {"APP_API_KEYS": f"{digest(DEMO_KEY)}=demo,{digest(ALICE_KEY)}=alice"}
    with pytest.raises(ConfigError, match=rf"public demo API key \(ft-demo-local-key\) is for "
                       rf"APP_ENV=local only, not {environment}: remove sha256 "):  # fmt: skip
        load_trading_config({"APP_ENV": environment, **demo})
    assert load_trading_config({"APP_ENV": "local", **demo}).api_keys  # local keeps it


def test_local_ships_the_documented_demo_drill_key_and_no_other_environment_does() -> None:
    assert dict(load_trading_config({}).drill_keys) == {digest(DRILL_KEY): "demo-drill"}
    assert DRILL_KEY in (CONFIG.parent / "README.md").read_text()
    for environment in ("staging", "production"):
        shipped = yaml.safe_load((CONFIG / f"{environment}.yaml").read_text())
        assert shipped["drill_keys"] == {}


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_public_demo_drill_key_is_refused_outside_local(
    environment: str, tmp_path: Path
) -> None:
    drill_keys = tmp_path / "DRILL_KEYS_FILE"
    drill_keys.write_text(f"{digest(DRILL_KEY)}: demo-drill\n")
    env = {"APP_ENV": environment, **TWO_ACCOUNTS, "APP_DRILL_KEYS_FILE": str(drill_keys)}
    with pytest.raises(ConfigError, match=r"public demo drill key \(ft-demo-drill-key\) is for "
                       rf"APP_ENV=local only, not {environment}: remove sha256 .* from "
                       "APP_DRILL_KEYS_FILE"):  # fmt: skip
        load_trading_config(env)


def test_a_drill_key_that_is_also_a_trading_key_is_refused(tmp_path: Path) -> None:
    drill_keys = tmp_path / "DRILL_KEYS_FILE"
    drill_keys.write_text(f"{digest(ALICE_KEY)}: alice-drills\n")
    env = {**TWO_ACCOUNTS, "APP_DRILL_KEYS_FILE": str(drill_keys)}
    with pytest.raises(ConfigError) as refused:
        load_trading_config(env)
    assert str(refused.value).startswith("a drill key must not also be a trading key")
    assert "APP_DRILL_KEYS_FILE and APP_API_KEYS" in str(refused.value)
    assert ALICE_KEY not in str(refused.value)


def test_the_drill_endpoint_is_refused_in_production() -> None:
    env = {"APP_ENV": "production", **TWO_ACCOUNTS, "APP_DRILL_ENDPOINT": "1"}
    with pytest.raises(SettingsError, match="APP_DRILL_ENDPOINT is refused in production"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "APP_ENV": "staging"}).drill_endpoint


def test_production_limits_are_tighter_than_local() -> None:
    local = load_trading_config({}).limits
    production = load_trading_config({"APP_ENV": "production", **TWO_ACCOUNTS}).limits
    assert production.max_order_notional < local.max_order_notional
    assert production.price_band_pct < local.price_band_pct


def test_app_variables_override_the_file() -> None:
    config = load_trading_config(
        {
            "APP_MAX_ORDER_QTY": "50",
            "APP_MAX_ORDER_NOTIONAL": "12345.5",
            "APP_PRICE_BAND_PCT": "2.5",
            "APP_RESTRICTED_SYMBOLS": "msft,AAPL",
        }
    )
    assert config.limits.max_order_qty == 50
    assert config.limits.max_order_notional == Decimal("12345.5")
    assert config.limits.price_band_pct == Decimal("2.5")
    assert config.limits.restricted_symbols == {"MSFT", "AAPL"}


def test_a_keys_file_and_app_api_keys_are_merged(tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys.yaml"
    keys_file.write_text(f"{digest(ALICE_KEY)}: alice\n")
    env = {
        "APP_ENV": "production",
        "APP_API_KEYS_FILE": str(keys_file),
        "APP_API_KEYS": f"{digest('carol-key')}=carol",
    }
    config = load_trading_config(env)
    assert dict(config.api_keys) == {digest(ALICE_KEY): "alice", digest("carol-key"): "carol"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_ENV": "prod"}, "APP_ENV must be one of local, staging, production, got 'prod'"),
        ({"APP_MAX_ORDER_QTY": "abc"}, "APP_MAX_ORDER_QTY: Input should be a valid integer"),
        ({"APP_MAX_ORDER_QTY": "0"}, "APP_MAX_ORDER_QTY: Input should be greater than 0"),
        ({"APP_MAX_ORDER_NOTIONAL": "-1"}, "APP_MAX_ORDER_NOTIONAL: Input should be greater"),
        ({"APP_PRICE_BAND_PCT": "150"}, "APP_PRICE_BAND_PCT: Input should be less than or equal"),
        ({"APP_API_KEYS": "plain-key"}, "APP_API_KEYS must be <sha256 hex>=<account>,...: entry 1"),
        ({"APP_API_KEYS": "plain-key=alice"}, "APP_API_KEYS: the key of account 'alice' is not"),
        ({"APP_API_KEYS_FILE": "/nonexistent/keys.yaml"}, "APP_API_KEYS_FILE: cannot read"),
        ({"APP_DRILL_KEYS_FILE": "/nonexistent/d.yaml"}, "APP_DRILL_KEYS_FILE: cannot read"),
        ({"APP_FAULT_ERROR_RATE": "2"}, "APP_FAULT_ERROR_RATE must be between 0.0 and 1.0"),
    ],
)
def test_an_invalid_variable_is_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
    assert "plain-key" not in str(refused.value)  # a key is never echoed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("risk: {max_order_qty: many, max_order_notional: 1, price_band_pct: 1}", (
            "risk.max_order_qty in {path}: Input should be a valid integer"
        )),
        ("risk: {max_qty: 1, max_order_qty: 1, max_order_notional: 1, price_band_pct: 1}", (
            "risk.max_qty in {path}: not a known setting"
        )),
        ("risk: {max_order_qty: 1, price_band_pct: 1}", (
            "risk.max_order_notional in {path}: required, but not set"
        )),
        ("[1, 2]", "{path}: {path} must hold a mapping"),
        ("risk: {", "{path}: {path} is not valid YAML"),
    ],
)  # fmt: skip
def test_an_invalid_file_value_is_refused_naming_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    (tmp_path / "local.yaml").write_text(text)
    monkeypatch.setattr(trading_config, "config_dir", lambda: tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_trading_config({})
    assert str(refused.value).startswith(message.format(path=tmp_path / "local.yaml"))


async def test_requests_never_read_configuration(
    in_process: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reading(*args: object) -> None:
        raise AssertionError("configuration read while serving a request")

    async with in_process() as client:
        monkeypatch.setattr(trading_config, "load_trading_config", no_reading)
        monkeypatch.setattr(yaml, "safe_load", no_reading)
        answers = [
            await client.post("/api/orders", json=order(f"c-{n}"), headers=key()) for n in range(3)
        ]
    assert [a.status_code for a in answers] == [201] * 3


def test_a_process_with_a_bad_config_exits_1_with_one_line(app_process: StartApp) -> None:
    no_keys = app_process({"APP_ENV": "production"})
    bad_value = app_process({"APP_PRICE_BAND_PCT": "five"})
    assert no_keys.process.wait(timeout=30) == 1, no_keys.log()
    assert bad_value.process.wait(timeout=30) == 1, bad_value.log()
    [no_keys_line] = no_keys.log().splitlines()
    [bad_value_line] = bad_value.log().splitlines()
    assert '"level": "critical"' in no_keys_line
    assert "no API keys configured for production: set APP_API_KEYS_FILE" in no_keys_line
    assert "APP_PRICE_BAND_PCT: Input should be a valid decimal" in bad_value_line
