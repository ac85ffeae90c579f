"""Risk scoring: hand-computed scores, the business calendar, completeness and monotonicity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zdp.config import AppConfig, CalendarConfig, EngineConfig, EnvironmentConfig, load_config
from zdp.errors import ConfigError
from zdp.models import Artifact, ChangeMetadata, Criticality, ReleaseManifest, RiskLevel
from zdp.risk import SCORE_BANDS, assess_risk, config_changes, downgrade_check, level_for

SHIPPED = Path(__file__).resolve().parents[2] / "infrastructure/canary-deployments/apps.yaml"
FACTOR_NAMES = [
    "lines_changed",
    "files_changed",
    "migrations",
    "config_changed",
    "dependencies_changed",
    "app_criticality",
    "environment_criticality",
    "freeze_window",
    "peak_window",
    "business_hours",
    "recent_failures",
]
CRITICALITIES = list(Criticality)


@pytest.fixture(scope="module")
def engine() -> EngineConfig:
    return load_config(SHIPPED)


def manifest(app: str = "finance-trading", **change: int | bool) -> ReleaseManifest:
    return ReleaseManifest(
        app=app,
        version="1.4.0",
        artifact=Artifact(kind="wheel", reference="dist/app.whl", digest="sha256:" + "0" * 64),
        change=ChangeMetadata(**change),  # type: ignore[arg-type]
    )


def plain_app(
    app: Criticality = Criticality.low,
    env: Criticality = Criticality.low,
    calendar: CalendarConfig | None = None,
) -> AppConfig:
    return AppConfig(
        criticality=app,
        environments={"production": EnvironmentConfig(criticality=env, approvers=["alice"])},
        calendar=calendar,
    )


def points(assessment: object) -> dict[str, int]:
    return {f.name: f.points for f in assessment.factors}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- hand-computed cases


def test_nothing_changed_on_a_low_app_scores_zero_and_lists_every_factor() -> None:
    at = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    result = assess_risk(manifest(), plain_app(), "production", at, recent_failures=0)
    assert result.score == 0
    assert result.level is RiskLevel.low
    assert [f.name for f in result.factors] == FACTOR_NAMES
    assert all(f.points == 0 for f in result.factors)
    assert result.factors[7].detail == "no business calendar configured for this app"


def test_a_release_that_only_sets_configuration_counts_as_a_configuration_change() -> None:
    """`zdp release create --set K=V` with no diff is still a configuration change."""
    at = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    release = manifest().model_copy(update={"config_overrides": {"LIMIT": "5", "MODE": "x"}})
    result = assess_risk(release, plain_app(), "production", at, recent_failures=0)
    factor = next(f for f in result.factors if f.name == "config_changed")
    assert factor.points == 5
    assert factor.detail == (
        "the release sets LIMIT=5 (the running version's config is not known); "
        "MODE=x (the running version's config is not known)"
    )
    assert result.score == 5


def test_configuration_is_diffed_against_the_running_version() -> None:
    """What changes against the running version's overrides is the configuration change:
    the same overrides again are none; a changed, new or dropped key is one, and says so."""
    at = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    release = manifest().model_copy(update={"config_overrides": {"LIMIT": "5", "MODE": "x"}})
    same = config_changes(release.config_overrides, {"LIMIT": "5", "MODE": "x"})
    assert same == []
    result = assess_risk(release, plain_app(), "production", at, 0, changes=same)
    assert points(result)["config_changed"] == 0
    changes = config_changes(release.config_overrides, {"LIMIT": "3", "OLD": "1"})
    assert [c.describe() for c in changes] == [
        "LIMIT: 3 -> 5",
        "MODE=x (new)",
        "OLD no longer set (was 1)",
    ]
    result = assess_risk(release, plain_app(), "production", at, 0, changes=changes)
    factor = next(f for f in result.factors if f.name == "config_changed")
    assert factor.points == 5
    assert (
        factor.detail == "the release sets LIMIT: 3 -> 5; MODE=x (new); OLD no longer set (was 1)"
    )


@pytest.mark.parametrize(
    ("version", "running", "allowed", "initiator", "expected"),
    [
        ("2.0.0", None, False, "ci", None),  # nothing runs
        ("2.0.0", "2.0.0", False, "ci", None),  # the same version again
        ("2.0.0", "1.9.9", False, "ci", None),  # an upgrade
        ("1.10.0", "1.9.0", False, "ci", None),  # numbers, not text
        ("2.0.0", "2.0.0rc1", False, "ci", None),  # the final release after its candidate
        ("1.9.0", "2.0.0", False, "ops", "refused"),
        ("2.0.0-rc.1", "2.0.0", False, "ops", "refused"),  # SemVer pre-release is older
        ("1.9.0", "2.0.0", True, "ci", "refused"),  # not an operator or approver
        ("1.9.0", "2.0.0", True, "ops", "allowed"),
        ("2026.1-abc", "2.0.0", False, "ops", "refused"),  # order unknown: fail closed
    ],
)
def test_a_downgrade_needs_an_operators_override(
    version: str, running: str | None, allowed: bool, initiator: str, expected: str | None
) -> None:
    check = downgrade_check(version, running, allowed, initiator, {"ops", "alice"})
    if expected is None:
        assert check is None
        return
    assert check is not None and check.name == "downgrade"
    assert check.detail.startswith(f"downgrade {expected}")
    assert check.blocking is (expected == "refused")
    assert check.passed is (expected == "allowed")


def test_worked_example_from_the_docs(engine: EngineConfig) -> None:
    """docs/risk-and-policy.md, "A worked example": keep the two in step."""
    release = manifest(lines_changed=412, files_changed=9, config_changed=True)
    at = datetime(2026, 1, 14, 16, 0, tzinfo=UTC)  # Wednesday 11:00 in New York
    result = assess_risk(release, engine.app("finance-trading"), "production", at, 1)
    assert [(f.name, f.points, f.detail) for f in result.factors] == [
        ("lines_changed", 13, "412 lines changed"),
        ("files_changed", 3, "9 files changed"),
        ("migrations", 0, "no migrations"),
        ("config_changed", 5, "configuration changed"),
        ("dependencies_changed", 0, "dependencies unchanged"),
        ("app_criticality", 15, "app finance-trading is critical"),
        ("environment_criticality", 15, "environment production is critical"),
        ("freeze_window", 0, "outside every freeze window"),
        ("peak_window", 0, "outside peak windows (Wednesday 11:00 America/New_York)"),
        (
            "business_hours",
            5,
            "inside business hours 09:30-16:00 (Wednesday 11:00 America/New_York)",
        ),
        ("recent_failures", 5, "1 recent failed or rolled-back deployment of finance-trading"),
    ]
    assert result.score == 61
    assert result.level is RiskLevel.high


def test_every_change_flag_on_a_medium_app_with_a_high_environment() -> None:
    release = manifest(
        lines_changed=99,
        files_changed=31,
        migrations=True,
        config_changed=True,
        dependencies_changed=True,
    )
    at = datetime(2026, 1, 14, 23, 0, tzinfo=UTC)  # no calendar: time adds nothing
    result = assess_risk(
        release, plain_app(Criticality.medium, Criticality.high), "production", at, 2
    )
    assert points(result) == {
        "lines_changed": 10,
        "files_changed": 10,
        "migrations": 15,
        "config_changed": 5,
        "dependencies_changed": 8,
        "app_criticality": 5,
        "environment_criticality": 10,
        "freeze_window": 0,
        "peak_window": 0,
        "business_hours": 0,
        "recent_failures": 10,
    }
    assert result.score == 73
    assert result.level is RiskLevel.high


@pytest.mark.parametrize(
    ("lines", "expected"),
    [(0, 0), (1, 1), (9, 5), (10, 5), (99, 10), (412, 13), (999, 15), (10**6, 15)],
)
def test_lines_changed_are_log_scaled_and_capped(lines: int, expected: int) -> None:
    at = datetime(2026, 1, 14, tzinfo=UTC)
    result = assess_risk(manifest(lines_changed=lines), plain_app(), "production", at, 0)
    assert points(result)["lines_changed"] == expected


@pytest.mark.parametrize(
    ("files", "expected"), [(0, 0), (2, 0), (3, 1), (29, 9), (30, 10), (500, 10)]
)
def test_files_changed_are_capped(files: int, expected: int) -> None:
    at = datetime(2026, 1, 14, tzinfo=UTC)
    result = assess_risk(manifest(files_changed=files), plain_app(), "production", at, 0)
    assert points(result)["files_changed"] == expected


@pytest.mark.parametrize(("failures", "expected"), [(0, 0), (1, 5), (3, 15), (4, 20), (50, 20)])
def test_recent_failures_are_capped(failures: int, expected: int) -> None:
    at = datetime(2026, 1, 14, tzinfo=UTC)
    result = assess_risk(manifest(), plain_app(), "production", at, failures)
    assert points(result)["recent_failures"] == expected


def test_score_is_clamped_at_100(engine: EngineConfig) -> None:
    release = manifest(lines_changed=412, files_changed=9, config_changed=True)
    at = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)  # inside the sample quarter-end freeze
    result = assess_risk(release, engine.app("finance-trading"), "production", at, 1)
    assert sum(f.points for f in result.factors) == 101
    assert result.score == 100
    assert result.level is RiskLevel.critical


# --------------------------------------------------------------------------- the calendar


def test_freeze_window_is_named_in_the_detail(engine: EngineConfig) -> None:
    at = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    result = assess_risk(manifest(), engine.app("finance-trading"), "staging", at, 0)
    freeze = result.factors[7]
    assert (freeze.points, freeze.detail) == (
        40,
        "inside freeze window 'Q4 2026 quarter-end close'",
    )


def test_freeze_window_ends_exclusively(engine: EngineConfig) -> None:
    end = datetime(2027, 1, 4, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    app = engine.app("finance-trading")
    assert (
        points(assess_risk(manifest(), app, "staging", end - timedelta(seconds=1), 0))[
            "freeze_window"
        ]
        == 40
    )
    assert points(assess_risk(manifest(), app, "staging", end, 0))["freeze_window"] == 0


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 1, 14, 14, 30, tzinfo=UTC),  # EST: UTC-5
        datetime(2026, 7, 15, 13, 30, tzinfo=UTC),  # EDT: UTC-4
        datetime(2026, 1, 14, 15, 30, tzinfo=timezone(timedelta(hours=1))),  # same instant, CET
    ],
)
def test_time_is_converted_to_the_calendars_timezone(engine: EngineConfig, at: datetime) -> None:
    result = assess_risk(manifest(), engine.app("finance-trading"), "production", at, 0)
    peak, hours = result.factors[8], result.factors[9]
    assert peak.points == 20
    assert peak.detail.startswith("inside peak window 'opening auction' (Wednesday 09:30")
    assert hours.points == 5


def test_before_the_open_is_outside_business_hours(engine: EngineConfig) -> None:
    at = datetime(2026, 1, 14, 14, 0, tzinfo=UTC)  # 09:00 New York
    result = assess_risk(manifest(), engine.app("finance-trading"), "production", at, 0)
    assert points(result)["peak_window"] == 0
    assert result.factors[9].points == 0
    assert result.factors[9].detail.startswith("outside business hours 09:30-16:00")


def test_weekend_is_not_a_business_day(engine: EngineConfig) -> None:
    at = datetime(2026, 1, 17, 15, 0, tzinfo=UTC)  # Saturday 10:00 New York
    result = assess_risk(manifest(), engine.app("finance-trading"), "production", at, 0)
    hours = result.factors[9]
    assert (hours.points, hours.detail) == (
        3,
        "Saturday is not a business day (Saturday 10:00 America/New_York)",
    )


def test_pharma_shift_changeover_in_zurich_summer_time(engine: EngineConfig) -> None:
    at = datetime(2026, 6, 13, 11, 50, tzinfo=UTC)  # Saturday 13:50 CEST: a shift day
    app = engine.app("pharma-manufacturing")
    result = assess_risk(manifest("pharma-manufacturing"), app, "production", at, 0)
    assert result.factors[8].detail.startswith("inside peak window 'midday shift changeover'")
    assert points(result) == {
        **dict.fromkeys(FACTOR_NAMES, 0),
        "app_criticality": 10,
        "environment_criticality": 15,
        "peak_window": 20,
        "business_hours": 5,
    }
    assert result.score == 50


# --------------------------------------------------------------------------- inputs and bands


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        assess_risk(manifest(), plain_app(), "production", datetime(2026, 1, 14), 0)


def test_negative_failure_count_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        assess_risk(manifest(), plain_app(), "production", datetime.now(UTC), -1)


def test_unknown_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="app 'finance-trading' has no environment 'qa'"):
        assess_risk(manifest(), plain_app(), "qa", datetime(2026, 1, 14, tzinfo=UTC), 0)


def test_score_bands() -> None:
    assert [upper for upper, _ in SCORE_BANDS] == [24, 49, 74, 100]
    assert [level_for(s) for s in (0, 24, 25, 49, 50, 74, 75, 100)] == [
        RiskLevel.low,
        RiskLevel.low,
        RiskLevel.medium,
        RiskLevel.medium,
        RiskLevel.high,
        RiskLevel.high,
        RiskLevel.critical,
        RiskLevel.critical,
    ]
    with pytest.raises(ValueError):
        level_for(101)


# --------------------------------------------------------------------------- properties

changes = st.fixed_dictionaries(
    {
        "lines_changed": st.integers(0, 100_000),
        "files_changed": st.integers(0, 2_000),
        "migrations": st.booleans(),
        "config_changed": st.booleans(),
        "dependencies_changed": st.booleans(),
    }
)
moments = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2028, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))]),
)


@settings(max_examples=200, deadline=None)
@given(
    base=changes,
    more_lines=st.integers(0, 10_000),
    more_files=st.integers(0, 500),
    add_migrations=st.booleans(),
    add_config=st.booleans(),
    add_dependencies=st.booleans(),
    failures=st.integers(0, 10),
    more_failures=st.integers(0, 10),
    at=moments,
    app_name=st.sampled_from(["finance-trading", "pharma-manufacturing"]),
    env=st.sampled_from(["staging", "production"]),
)
def test_more_change_or_more_failures_never_lowers_the_score(
    engine: EngineConfig,
    base: dict[str, int | bool],
    more_lines: int,
    more_files: int,
    add_migrations: bool,
    add_config: bool,
    add_dependencies: bool,
    failures: int,
    more_failures: int,
    at: datetime,
    app_name: str,
    env: str,
) -> None:
    bigger = {
        "lines_changed": int(base["lines_changed"]) + more_lines,
        "files_changed": int(base["files_changed"]) + more_files,
        "migrations": bool(base["migrations"]) or add_migrations,
        "config_changed": bool(base["config_changed"]) or add_config,
        "dependencies_changed": bool(base["dependencies_changed"]) or add_dependencies,
    }
    app = engine.app(app_name)
    before = assess_risk(manifest(app_name, **base), app, env, at, failures)
    after = assess_risk(manifest(app_name, **bigger), app, env, at, failures + more_failures)
    assert after.score >= before.score
    assert [f.name for f in after.factors] == FACTOR_NAMES
    for old, new in zip(before.factors, after.factors, strict=True):
        if old.name not in ("freeze_window", "peak_window", "business_hours"):
            assert new.points >= old.points, old.name


@settings(max_examples=200, deadline=None)
@given(
    change=changes,
    app_levels=st.lists(st.integers(0, 3), min_size=2, max_size=2).map(sorted),
    env_levels=st.lists(st.integers(0, 3), min_size=2, max_size=2).map(sorted),
    at=moments,
    failures=st.integers(0, 10),
)
def test_higher_criticality_never_lowers_the_score(
    engine: EngineConfig,
    change: dict[str, int | bool],
    app_levels: list[int],
    env_levels: list[int],
    at: datetime,
    failures: int,
) -> None:
    calendar = engine.app("finance-trading").calendar
    lower = plain_app(CRITICALITIES[app_levels[0]], CRITICALITIES[env_levels[0]], calendar)
    higher = plain_app(CRITICALITIES[app_levels[1]], CRITICALITIES[env_levels[1]], calendar)
    release = manifest(**change)
    low = assess_risk(release, lower, "production", at, failures)
    high = assess_risk(release, higher, "production", at, failures)
    assert 0 <= low.score <= high.score <= 100
    assert low.level == level_for(low.score) and high.level == level_for(high.score)
