"""Deterministic risk scoring: a release, its app's config and a moment in time become a score.

`assess_risk` is pure: the time is an argument and nothing here reads a clock, the network or
a file, so a workflow replay or an audit recomputes exactly the same assessment. Every factor is
always listed, with 0 points when it does not apply, so the explanation is complete. The score
is the clamped sum of the factors' points; each factor only grows with its input, so a bigger or
riskier change never scores lower. docs/risk-and-policy.md explains the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from packaging.version import InvalidVersion, Version

from zdp.config import AppConfig, CalendarConfig
from zdp.models import (
    ConfigChange,
    Criticality,
    DomainCheck,
    ReleaseManifest,
    RiskAssessment,
    RiskFactor,
    RiskLevel,
)

# Inclusive upper bound of each level's score band, lowest first. The default policy tiers in
# infrastructure/canary-deployments/apps.yaml use exactly these max_score values.
SCORE_BANDS: tuple[tuple[int, RiskLevel], ...] = (
    (24, RiskLevel.low),
    (49, RiskLevel.medium),
    (74, RiskLevel.high),
    (100, RiskLevel.critical),
)

LINES_POINTS_PER_DECADE = 5  # points per factor of ten in lines changed ...
LINES_MAX_POINTS = 15  # ... reached at 999 lines
FILES_PER_POINT = 3  # one point per three files changed ...
FILES_MAX_POINTS = 10  # ... reached at 30 files
MIGRATIONS_POINTS = 15
CONFIG_CHANGED_POINTS = 5
DEPENDENCIES_CHANGED_POINTS = 8
CRITICALITY_POINTS: dict[Criticality, int] = {
    Criticality.low: 0,
    Criticality.medium: 5,
    Criticality.high: 10,
    Criticality.critical: 15,
}
FREEZE_WINDOW_POINTS = 40
PEAK_WINDOW_POINTS = 20
BUSINESS_HOURS_POINTS = 5  # users are active
NON_BUSINESS_DAY_POINTS = 3  # fewer people on hand to respond
RECENT_FAILURE_POINTS = 5  # per failed or rolled-back deployment ...
RECENT_FAILURES_MAX_POINTS = 20  # ... reached at 4

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def level_for(score: int) -> RiskLevel:
    """The level whose band in SCORE_BANDS contains `score` (0 to 100)."""
    if not 0 <= score <= 100:
        raise ValueError(f"risk score must be between 0 and 100, got {score}")
    return next(level for upper, level in SCORE_BANDS if score <= upper)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def config_changes(
    overrides: Mapping[str, str], running: Mapping[str, str] | None
) -> list[ConfigChange]:
    """How a release's config overrides differ from those the running version was started
    with, key by key; with `running` None (not known) every override is listed as such."""
    if running is None:
        return [
            ConfigChange(key=key, after=value, known=False)
            for key, value in sorted(overrides.items())
        ]
    return [
        ConfigChange(key=key, before=running.get(key), after=overrides.get(key))
        for key in sorted(set(overrides) | set(running))
        if running.get(key) != overrides.get(key)
    ]


def _config_factor(manifest: ReleaseManifest, changes: Sequence[ConfigChange] | None) -> RiskFactor:
    """Configuration files changed in the diff, or configuration the release sets differently
    from the running version (`zdp release create --set K=V`): either is a configuration
    change. Without `changes`, every override the release sets counts as one."""
    if changes is None:
        changes = config_changes(manifest.config_overrides, None)
    changed = manifest.change.config_changed or bool(changes)
    parts = ["configuration changed"] if manifest.change.config_changed else []
    if changes:
        parts.append("the release sets " + "; ".join(c.describe() for c in changes))
    return RiskFactor(
        name="config_changed",
        detail="; ".join(parts) if changed else "configuration unchanged",
        points=CONFIG_CHANGED_POINTS if changed else 0,
    )


def _change_factors(
    manifest: ReleaseManifest, changes: Sequence[ConfigChange] | None = None
) -> list[RiskFactor]:
    change = manifest.change
    lines, files = change.lines_changed, change.files_changed
    lines_points = min(LINES_MAX_POINTS, int(LINES_POINTS_PER_DECADE * math.log10(1 + lines)))
    files_points = min(FILES_MAX_POINTS, files // FILES_PER_POINT)
    return [
        RiskFactor(
            name="lines_changed",
            detail=f"{_plural(lines, 'line')} changed",
            points=lines_points,
        ),
        RiskFactor(
            name="files_changed",
            detail=f"{_plural(files, 'file')} changed",
            points=files_points,
        ),
        RiskFactor(
            name="migrations",
            detail="includes database migrations" if change.migrations else "no migrations",
            points=MIGRATIONS_POINTS if change.migrations else 0,
        ),
        _config_factor(manifest, changes),
        RiskFactor(
            name="dependencies_changed",
            detail=(
                "dependencies changed" if change.dependencies_changed else "dependencies unchanged"
            ),
            points=DEPENDENCIES_CHANGED_POINTS if change.dependencies_changed else 0,
        ),
    ]


def _calendar_factors(calendar: CalendarConfig | None, at: datetime) -> list[RiskFactor]:
    if calendar is None:
        detail = "no business calendar configured for this app"
        return [
            RiskFactor(name="freeze_window", detail=detail, points=0),
            RiskFactor(name="peak_window", detail=detail, points=0),
            RiskFactor(name="business_hours", detail=detail, points=0),
        ]
    local = at.astimezone(calendar.zone)
    when = f"{_WEEKDAYS[local.weekday()]} {local:%H:%M} {calendar.timezone}"

    freeze = calendar.freeze_at(at)
    if freeze is not None:
        freeze_factor = RiskFactor(
            name="freeze_window",
            detail=f"inside freeze window '{freeze.reason}'",
            points=FREEZE_WINDOW_POINTS,
        )
    else:
        freeze_factor = RiskFactor(
            name="freeze_window", detail="outside every freeze window", points=0
        )

    peak = next((w for w in calendar.peak_windows if w.contains(local)), None)
    if peak is not None:
        peak_factor = RiskFactor(
            name="peak_window",
            detail=f"inside peak window '{peak.reason}' ({when})",
            points=PEAK_WINDOW_POINTS,
        )
    else:
        peak_factor = RiskFactor(
            name="peak_window", detail=f"outside peak windows ({when})", points=0
        )

    if local.weekday() not in calendar.business_days:
        hours_factor = RiskFactor(
            name="business_hours",
            detail=f"{_WEEKDAYS[local.weekday()]} is not a business day ({when})",
            points=NON_BUSINESS_DAY_POINTS,
        )
    elif calendar.business_start <= local.time() < calendar.business_end:
        hours_factor = RiskFactor(
            name="business_hours",
            detail=f"inside business hours {calendar.business_hours} ({when})",
            points=BUSINESS_HOURS_POINTS,
        )
    else:
        hours_factor = RiskFactor(
            name="business_hours",
            detail=f"outside business hours {calendar.business_hours} ({when})",
            points=0,
        )
    return [freeze_factor, peak_factor, hours_factor]


def assess_risk(
    manifest: ReleaseManifest,
    app: AppConfig,
    environment: str,
    at: datetime,
    recent_failures: int,
    domain_factors: Sequence[RiskFactor] = (),
    changes: Sequence[ConfigChange] | None = None,
) -> RiskAssessment:
    """Score deploying `manifest` to `environment` of `app` at `at`, listing every factor.

    `at` must be timezone-aware; `recent_failures` counts this app's failed or rolled-back
    deployments in the configured window; `domain_factors` are what the app's domain checks
    found (zdp.domain: work in progress on the running version); `changes` how the release's
    config differs from the running version's (`config_changes`). An unknown environment raises
    ConfigError.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime (e.g. workflow.now())")
    if recent_failures < 0:
        raise ValueError(f"recent_failures cannot be negative, got {recent_failures}")
    env = app.environment(environment, app=manifest.app)

    failures_points = min(RECENT_FAILURES_MAX_POINTS, RECENT_FAILURE_POINTS * recent_failures)
    factors = [
        *_change_factors(manifest, changes),
        RiskFactor(
            name="app_criticality",
            detail=f"app {manifest.app} is {app.criticality.value}",
            points=CRITICALITY_POINTS[app.criticality],
        ),
        RiskFactor(
            name="environment_criticality",
            detail=f"environment {environment} is {env.criticality.value}",
            points=CRITICALITY_POINTS[env.criticality],
        ),
        *_calendar_factors(app.calendar, at),
        RiskFactor(
            name="recent_failures",
            detail=(
                f"{_plural(recent_failures, 'recent failed or rolled-back deployment')} "
                f"of {manifest.app}"
            ),
            points=failures_points,
        ),
        *domain_factors,
    ]
    score = max(0, min(100, sum(f.points for f in factors)))
    return RiskAssessment(score=score, level=level_for(score), factors=factors)


def _version_key(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def downgrade_check(
    version: str,
    running: str | None,
    allowed: bool,
    initiator: str | None,
    may_allow: Collection[str],
) -> DomainCheck | None:
    """Whether deploying `version` over the `running` one is a downgrade, and if so whether it
    may go ahead: only with the request's `allow_downgrade` from one of `may_allow` (the
    environment's operators and approvers; the start's signature covers the flag where
    identities are proven). Versions are compared as PEP 440 versions (SemVer's too); when
    either cannot be read as one, the order is not known and the release is treated as a
    downgrade. None when nothing runs or the release is not older."""
    if running is None or version == running:
        return None
    new, old = _version_key(version), _version_key(running)
    if new is not None and old is not None and new >= old:
        return None
    what = (
        f"{version} is older than the running {running}"
        if new is not None and old is not None
        else f"cannot tell whether {version} is older than the running {running} (not both "
        "PEP 440 or SemVer versions), so it counts as a downgrade"
    )
    if not allowed:
        return DomainCheck(
            name="downgrade",
            passed=False,
            blocking=True,
            detail=f"downgrade refused: {what}; an operator or approver of this environment "
            "may start it with --allow-downgrade (signed with the start)",
        )
    if initiator not in may_allow:
        return DomainCheck(
            name="downgrade",
            passed=False,
            blocking=True,
            detail=f"downgrade refused: {what}, and --allow-downgrade came from "
            f"{initiator or 'nobody'}, who is neither an operator nor an approver here",
        )
    return DomainCheck(
        name="downgrade",
        passed=True,
        detail=f"downgrade allowed: {what}; --allow-downgrade from {initiator}",
    )
