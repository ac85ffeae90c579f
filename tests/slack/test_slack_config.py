"""slack.yaml: the shipped file, one-line errors naming the field, and where it is found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from zdp.errors import ConfigError
from zdp.slack.config import (
    SLACK_CONFIG_RELATIVE_PATH,
    load_slack_config,
    parse_slack_config,
    slack_api_url,
)

SHIPPED = Path(__file__).resolve().parents[2] / SLACK_CONFIG_RELATIVE_PATH


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZDP_SLACK_CONFIG", raising=False)
    monkeypatch.delenv("ZDP_SLACK_API_URL", raising=False)


def test_shipped_file_maps_users_and_names_every_app_channel() -> None:
    config = load_slack_config(SHIPPED)
    assert config.channels == {
        "webshop": "#deploys",
        "finance-trading": "#trading-deploys",
        "pharma-manufacturing": "#gxp-deploys",
    }
    assert config.approver_for("T0ZDPDEMO", "U0ALICE01") == "alice"
    apps = yaml.safe_load((SHIPPED.parent / "apps.yaml").read_text())["apps"]
    approvers = {a for app in apps.values() for e in app["environments"].values()
                 for a in e.get("approvers", [])}  # fmt: skip
    assert {i.approver for i in config.identities} == approvers


def test_users_match_by_team_and_user_id_only() -> None:
    config = parse_slack_config(
        {"identities": [{"team": "T0001", "user": "U0001", "approver": "alice"}]}
    )
    assert config.approver_for("T0001", "U0001") == "alice"
    assert config.approver_for("T0002", "U0001") is None
    assert config.approver_for("T0001", "U0002") is None
    assert config.approver_for(None, None) is None


def _error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_slack_config(data, "slack.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_errors_are_one_line_naming_the_field() -> None:
    alice = {"team": "T0001", "user": "U0001", "approver": "alice"}
    assert _error({"identities": [{**alice, "user": "alice"}]}).startswith(
        "slack.yaml: identities.0.user: String should match pattern"
    )
    assert _error({"identities": [{**alice, "approver": ""}]}).startswith(
        "slack.yaml: identities.0.approver: String should have at least 1 character"
    )
    assert _error({"identities": [{**alice, "name": "Alice"}]}) == (
        "slack.yaml: identities.0.name: Extra inputs are not permitted"
    )
    assert _error({"identities": [alice, {**alice, "approver": "bob"}]}) == (
        "slack.yaml: identities: Slack user U0001 of team T0001 is listed twice: "
        "a Slack user maps to exactly one approver"
    )
    assert _error({"channels": {"Web Shop": "#deploys"}}) == (
        "slack.yaml: channels: app 'Web Shop' must be a DNS-style name: lowercase letters, "
        "digits, '-'"
    )
    assert _error({"channel": {}}) == "slack.yaml: channel: Extra inputs are not permitted"
    assert _error(["alice"]) == "slack.yaml: the Slack configuration must be a mapping"


def test_found_from_env_then_upwards_from_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / SLACK_CONFIG_RELATIVE_PATH
    local.parent.mkdir(parents=True)
    local.write_text(yaml.safe_dump({"channels": {"webshop": "#here"}}))
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert load_slack_config().channels == {"webshop": "#here"}

    named = tmp_path / "named.yaml"
    named.write_text("channels: {webshop: '#named'}\n")
    monkeypatch.setenv("ZDP_SLACK_CONFIG", str(named))
    assert load_slack_config().channels == {"webshop": "#named"}

    monkeypatch.setenv("ZDP_SLACK_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"^Slack configuration file not found \(from \$ZDP_"):
        load_slack_config()


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "slack.yaml"
    bad.write_text("channels:\n  webshop: [\n")
    with pytest.raises(ConfigError, match=rf"^{bad}:\d+:\d+: invalid YAML"):
        load_slack_config(bad)


def test_api_url_defaults_to_slack_and_always_ends_in_a_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert slack_api_url() == "https://slack.com/api/"
    monkeypatch.setenv("ZDP_SLACK_API_URL", "http://127.0.0.1:8080/api")
    assert slack_api_url() == "http://127.0.0.1:8080/api/"
