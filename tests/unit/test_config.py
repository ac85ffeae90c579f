"""The engine configuration: the shipped file, validation messages, and where it is found."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from zdp import config as config_module
from zdp.config import EngineConfig, find_config_path, load_config, parse_config
from zdp.errors import ConfigError
from zdp.models import Criticality, RiskLevel
from zdp.risk import SCORE_BANDS

SHIPPED = Path(__file__).resolve().parents[2] / "infrastructure/canary-deployments/apps.yaml"


@pytest.fixture
def shipped_data() -> dict[str, Any]:
    data = yaml.safe_load(SHIPPED.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZDP_CONFIG", raising=False)


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "apps.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the shipped file


def test_shipped_config_loads_with_both_apps() -> None:
    config = load_config(SHIPPED)
    assert sorted(config.apps) == ["finance-trading", "pharma-manufacturing"]
    finance = config.app("finance-trading")
    assert finance.criticality is Criticality.critical
    assert finance.calendar is not None and finance.calendar.timezone == "America/New_York"
    production = config.environment("finance-trading", "production")
    assert production.approvers == ["alice", "bob", "carol", "dave", "erin"]
    assert production.min_approvals == 1
    assert production.compliance_profiles == ["sox", "pci-dss"]
    pharma = config.environment("pharma-manufacturing", "production")
    assert pharma.approvers == ["qa-lead", "plant-manager", "validation-eng", "alice"]
    assert pharma.compliance_profiles == ["part11", "gdpr"]
    assert config.recent_failure_window_days == 30


def test_shipped_policy_tiers_use_the_risk_bands() -> None:
    tiers = load_config(SHIPPED).policy.tiers
    assert [(t.max_score, t.level) for t in tiers] == list(SCORE_BANDS)
    assert [t.approvals_required for t in tiers] == [0, 1, 2, 3]
    assert [t.min_bake_seconds for t in tiers] == [60, 120, 300, 600]
    assert [t.gate_policy for t in tiers] == ["low", "medium", "high", "critical"]
    assert tiers[-1].steps == [1, 2, 5, 10, 25, 50, 100]


def test_tier_for_picks_the_band_containing_the_score() -> None:
    policy = load_config(SHIPPED).policy
    assert [policy.tier_for(s).level for s in (0, 24, 25, 49, 50, 74, 75, 100)] == [
        RiskLevel.low,
        RiskLevel.low,
        RiskLevel.medium,
        RiskLevel.medium,
        RiskLevel.high,
        RiskLevel.high,
        RiskLevel.critical,
        RiskLevel.critical,
    ]


# --------------------------------------------------------------------------- validation


def test_unknown_key_is_rejected_with_its_location(shipped_data: dict[str, Any]) -> None:
    env = shipped_data["apps"]["finance-trading"]["environments"]["production"]
    env["aprovers"] = env.pop("approvers")
    message = _error(shipped_data)
    assert message.startswith("apps.yaml: apps.finance-trading.environments.production.")
    assert "aprovers: Extra inputs are not permitted" in message


def test_production_may_not_run_apps_with_their_local_config(
    shipped_data: dict[str, Any],
) -> None:
    shipped_data["apps"]["finance-trading"]["environments"]["production"]["app_env"] = "local"
    message = _error(shipped_data)
    assert message.startswith("apps.yaml: apps.finance-trading.environments: ")
    assert "production may not run apps with app_env: local" in message


@pytest.mark.parametrize("profile", ["sox", "pci-dss", "part11"])
def test_a_profile_that_needs_approvals_forces_at_least_one(
    shipped_data: dict[str, Any], profile: str
) -> None:
    """SOX ITGC separation of duties (and PCI DSS, Part 11): an environment under such a
    profile cannot say min_approvals: 0, whatever the risk tier would ask."""
    env = shipped_data["apps"]["finance-trading"]["environments"]["staging"]
    env.update(compliance_profiles=[profile], min_approvals=0)
    message = _error(shipped_data)
    assert f"compliance profile {profile} needs documented approval" in message
    assert "set min_approvals to at least 1" in message


def test_validation_error_names_the_setting(shipped_data: dict[str, Any]) -> None:
    shipped_data["apps"]["finance-trading"]["environments"]["production"]["approvers"] = [
        "alice",
        "alice",
    ]
    message = _error(shipped_data)
    assert message == (
        "apps.yaml: apps.finance-trading.environments.production.approvers: "
        "approvers are listed twice: alice"
    )


def test_list_positions_are_shown_in_brackets(shipped_data: dict[str, Any]) -> None:
    shipped_data["policy"]["tiers"][1]["steps"] = [5, 1, 100]
    assert _error(shipped_data).startswith("apps.yaml: policy.tiers[1].steps: steps must be")


def test_min_approvals_above_the_approver_count_is_rejected(
    shipped_data: dict[str, Any],
) -> None:
    shipped_data["apps"]["pharma-manufacturing"]["environments"]["staging"]["min_approvals"] = 4
    assert "min_approvals is 4 but only 3 approvers are listed" in _error(shipped_data)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timezone", "America/Gotham", "'America/Gotham' is not an IANA timezone name"),
        ("timezone", "America", "'America' is not an IANA timezone name"),
        ("business_hours", "9:30-16:00", "'9:30' is not a 24-hour time in the form HH:MM"),
        ("business_hours", "16:00-09:30", "must end after it starts"),
        ("business_days", [0, 7], "weekday numbers, Monday=0 to Sunday=6"),
    ],
)
def test_bad_calendar_values_are_rejected(
    shipped_data: dict[str, Any], field: str, value: Any, expected: str
) -> None:
    shipped_data["apps"]["finance-trading"]["calendar"][field] = value
    message = _error(shipped_data)
    assert f"apps.finance-trading.calendar.{field}: " in message
    assert expected in message


def test_freeze_window_must_be_timezone_aware(shipped_data: dict[str, Any]) -> None:
    window = shipped_data["apps"]["finance-trading"]["calendar"]["freeze_windows"][0]
    window["start"] = "2026-12-30T16:00:00"
    message = _error(shipped_data)
    assert "freeze_windows[0].start" in message and "timezone" in message


def test_policy_with_fewer_approvals_at_higher_risk_is_rejected(
    shipped_data: dict[str, Any],
) -> None:
    shipped_data["policy"]["tiers"][3]["approvals_required"] = 1
    message = _error(shipped_data)
    assert message.startswith("apps.yaml: policy: ")
    assert "tier 'critical' (max_score 100) requires 1 approvals" in message
    assert "more risk must never mean fewer approvals" in message


def test_policy_with_shorter_bake_at_higher_risk_is_rejected(
    shipped_data: dict[str, Any],
) -> None:
    shipped_data["policy"]["tiers"][2]["min_bake_seconds"] = 90
    assert "more risk must never mean a shorter bake" in _error(shipped_data)


def test_tier_with_gate_thresholds_instead_of_a_policy_name_is_rejected(
    shipped_data: dict[str, Any],
) -> None:
    # Thresholds live in gate-policies.yaml only: a tier that still carries them is refused.
    shipped_data["policy"]["tiers"][1]["gate"] = {"max_error_ratio": 0.05}
    assert "policy.tiers[1].gate: Extra inputs are not permitted" in _error(shipped_data)


def test_policy_tiers_must_be_sorted_and_reach_100(shipped_data: dict[str, Any]) -> None:
    unsorted = copy.deepcopy(shipped_data)
    unsorted["policy"]["tiers"][1]["max_score"] = 10
    assert "sorted by strictly increasing max_score" in _error(unsorted)
    short = copy.deepcopy(shipped_data)
    short["policy"]["tiers"][3]["max_score"] = 99
    assert "must have max_score 100" in _error(short)
    repeated = copy.deepcopy(shipped_data)
    repeated["policy"]["tiers"][1]["level"] = "low"
    assert "must name a higher risk level than tier 'low' below it" in _error(repeated)


def test_top_level_must_be_a_mapping() -> None:
    assert "must be a mapping" in _error(["apps"])


# --------------------------------------------------------------------------- lookups


def test_unknown_app_error_lists_known_apps() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SHIPPED).app("finance")
    assert str(info.value) == (
        "unknown app 'finance': known apps are finance-trading, pharma-manufacturing"
    )


def test_unknown_environment_error_lists_known_environments() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SHIPPED).environment("pharma-manufacturing", "prod")
    assert str(info.value) == (
        "app 'pharma-manufacturing' has no environment 'prod': "
        "known environments are production, staging"
    )


# --------------------------------------------------------------------------- finding the file


def test_missing_explicit_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"configuration file not found; tried: {missing}"


def test_missing_file_error_lists_every_path_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = Path("infrastructure/canary-deployments/missing.yaml")
    monkeypatch.setattr(config_module, "CONFIG_RELATIVE_PATH", relative)
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    # Outside a checkout the copy shipped in the package is the config ...
    assert find_config_path() == config_module.packaged_data("apps.yaml")
    # ... and where even that is gone (a broken install), every path tried is named.
    monkeypatch.setattr(config_module, "packaged_data", lambda name: tmp_path / "gone" / name)
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert message.startswith("configuration file not found; tried: ")
    assert str(workdir.resolve() / relative) in message
    assert str(tmp_path.resolve() / relative) in message
    assert str(tmp_path / "gone" / "apps.yaml") in message


def test_zdp_config_env_var_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shipped_data: dict[str, Any]
) -> None:
    shipped_data["recent_failure_window_days"] = 14
    monkeypatch.setenv("ZDP_CONFIG", str(_write(tmp_path / "custom.yaml", shipped_data)))
    assert load_config().recent_failure_window_days == 14


def test_missing_zdp_config_file_says_where_the_path_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"not found \(from \$ZDP_CONFIG\); tried: .*gone\.yaml"):
        load_config()


def test_config_is_found_by_walking_up_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shipped_data: dict[str, Any]
) -> None:
    shipped_data["recent_failure_window_days"] = 7
    _write(tmp_path / "infrastructure/canary-deployments/apps.yaml", shipped_data)
    workdir = tmp_path / "apps" / "deep"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    assert load_config().recent_failure_window_days == 7


def test_falls_back_to_the_repository_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_config(), EngineConfig)


def test_invalid_yaml_is_one_line_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps:\n  finance-trading: [unclosed\npolicy: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}:") and "invalid YAML" in message
    assert "\n" not in message
