"""The engine configuration: apps, environments, calendars and policy tiers, and its YAML loader.

The file lives at `infrastructure/canary-deployments/apps.yaml`. Every model forbids unknown
keys so a typo in the file is an error at load time, not a silently ignored setting.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from zdp.compliance.profiles import APPROVAL_PROFILES, PROFILES
from zdp.errors import ConfigError
from zdp.models import Criticality, RiskLevel, Strategy
from zdp.settings import settings

CONFIG_RELATIVE_PATH = Path("infrastructure/canary-deployments/apps.yaml")

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_LEVEL_ORDER = {level: rank for rank, level in enumerate(RiskLevel)}
# Config keys (without APP_) a release may set: a name, upper case.
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# Names that carry a secret or point at one: never set by a release, whatever an app declares.
# Secrets reach an app by reference ($ZDP_HOME/secrets/<app>/<APP_ENV>/ or a Kubernetes Secret).
SECRET_KEY = re.compile(
    r"(^|_)(KEYS?|SECRETS?|TOKENS?|PASSWORDS?|PASSPHRASES?|CREDENTIALS?|DSN|DATABASE_URL)(_|$)"
    r"|_FILE$"
)
# Set by the engine (the target environment, the version, the slot), never by a release.
ENGINE_KEYS = frozenset({"ENV", "VERSION", "SLOT"})


def is_drill_key(key: str) -> bool:
    """Drill and fault-injection settings (DRILL_ENDPOINT, FAULT_*): only where an environment
    allows drills, never in production."""
    return key == "DRILL_ENDPOINT" or key.startswith("FAULT_")


def parse_hhmm(value: str) -> time:
    """Parse a 24-hour "HH:MM" wall-clock time; raise ValueError naming the expected format."""
    match = _HHMM.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a 24-hour time in the form HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


def _check_span(start: str, end: str, what: str) -> None:
    if parse_hhmm(start) >= parse_hhmm(end):
        raise ValueError(
            f"{what} {start}-{end} must end after it starts "
            "(for a span across midnight, write two spans)"
        )


def _check_weekdays(days: list[int]) -> list[int]:
    if any(not 0 <= d <= 6 for d in days) or len(set(days)) != len(days):
        raise ValueError("days must be distinct weekday numbers, Monday=0 to Sunday=6")
    return sorted(days)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FreezeWindow(_Config):
    """A period when no change should ship (quarter-end close, a validation campaign)."""

    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ends_after_start(self) -> FreezeWindow:
        if self.end <= self.start:
            raise ValueError(f"freeze window '{self.reason}' must end after it starts")
        return self

    def contains(self, at: datetime) -> bool:
        """True when `at` (timezone-aware) falls in [start, end)."""
        return self.start <= at < self.end


class PeakWindow(_Config):
    """A recurring busy span on some weekdays, in the calendar's timezone (an auction, a shift)."""

    days: list[int]
    start: str
    end: str
    reason: str = Field(min_length=1)

    @field_validator("days")
    @classmethod
    def _days_are_weekdays(cls, value: list[int]) -> list[int]:
        return _check_weekdays(value)

    @model_validator(mode="after")
    def _span(self) -> PeakWindow:
        _check_span(self.start, self.end, f"peak window '{self.reason}'")
        return self

    def contains(self, local: datetime) -> bool:
        """True when the local (calendar-timezone) time falls on one of the days in [start, end)."""
        return local.weekday() in self.days and parse_hhmm(self.start) <= local.time() < parse_hhmm(
            self.end
        )


class CalendarConfig(_Config):
    """An app's business calendar: its timezone, working hours and days, freezes and peaks."""

    timezone: str
    business_hours: str = "09:00-17:00"
    business_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    peak_windows: list[PeakWindow] = Field(default_factory=list)
    # Inside a freeze window a deployment to these environments is blocked, unless it carries
    # an emergency override; then it needs at least `emergency_min_approvals` approvals.
    freeze_environments: list[str] = Field(default_factory=lambda: ["production"])
    emergency_min_approvals: int = Field(default=2, ge=2)

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"'{value}' is not an IANA timezone name (e.g. America/New_York)"
            ) from None
        return value

    @field_validator("business_hours")
    @classmethod
    def _hours_span(cls, value: str) -> str:
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"business_hours '{value}' must look like HH:MM-HH:MM")
        _check_span(start, end, "business_hours")
        return value

    @field_validator("business_days")
    @classmethod
    def _days_are_weekdays(cls, value: list[int]) -> list[int]:
        return _check_weekdays(value)

    def freeze_at(self, at: datetime) -> FreezeWindow | None:
        """The first freeze window containing `at` (timezone-aware), if any."""
        return next((w for w in self.freeze_windows if w.contains(at)), None)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def business_start(self) -> time:
        return parse_hhmm(self.business_hours.partition("-")[0])

    @property
    def business_end(self) -> time:
        return parse_hhmm(self.business_hours.partition("-")[2])


class EnvironmentConfig(_Config):
    """One environment of one app: how critical it is and who may approve a deployment to it."""

    criticality: Criticality
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = Field(default=0, ge=0)
    compliance_profiles: list[str] = Field(default_factory=list)
    # A GxP environment: a release must name its validation document (IQ/OQ/PQ) to be verified.
    requires_validation: bool = False
    # Who may sign a release's IQ/OQ/PQ validation document (default: the approvers).
    validation_approvers: list[str] = Field(default_factory=list)
    # What the runtime passes the app as APP_ENV (which config the app reads, and whether its
    # demo credentials are accepted): default, the environment's own name. `production` may
    # not say `local`.
    app_env: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    # Who may pause, resume and abort besides the approvers and the deployment's initiator
    # (an on-call rota, say).
    operators: list[str] = Field(default_factory=list)
    # Refuse a release created longer ago than this (its `created_at`, as signed): an old
    # signed release, perhaps with a known flaw, is not redeployed here by mistake.
    max_release_age_days: int | None = Field(default=None, ge=1)
    # Drills here: a release may turn on the drill endpoint and inject faults (DRILL_ENDPOINT,
    # FAULT_*). Never in production.
    drills: bool = False
    # Refuse unsigned requests here too (always so under sox, pci-dss, part11 and in
    # production: zdp.compliance.identity).
    require_proven_identities: bool = False
    # The rollout strategies allowed here (a line that cannot run two colours says canary).
    strategies: list[Strategy] = Field(
        default_factory=lambda: [Strategy.canary, Strategy.blue_green], min_length=1
    )

    @field_validator("approvers")
    @classmethod
    def _distinct_identities(cls, value: list[str]) -> list[str]:
        if any(not a.strip() for a in value):
            raise ValueError("approver identities must be non-empty")
        duplicates = sorted({a for a in value if value.count(a) > 1})
        if duplicates:
            raise ValueError(f"approvers are listed twice: {', '.join(duplicates)}")
        return value

    @field_validator("compliance_profiles")
    @classmethod
    def _known_profiles(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PROFILES]
        if unknown:
            raise ValueError(
                f"unknown compliance profile {', '.join(unknown)}: known are {', '.join(PROFILES)}"
            )
        return value

    @model_validator(mode="after")
    def _floor_is_reachable(self) -> EnvironmentConfig:
        if self.min_approvals > len(self.approvers):
            raise ValueError(
                f"min_approvals is {self.min_approvals} but only {len(self.approvers)} "
                "approvers are listed: add approvers or lower min_approvals"
            )
        needing = sorted(APPROVAL_PROFILES.intersection(self.compliance_profiles))
        if needing and self.min_approvals < 1:
            raise ValueError(
                f"compliance profile {', '.join(needing)} needs documented approval: "
                "set min_approvals to at least 1"
            )
        return self


class WorkInProgressCheck(_Config):
    """Ask the running version whether work is in progress (a batch on the line) before a deploy.

    The engine GETs `path` from a live endpoint of the app and reads the list at `field`; each
    item names itself by `id_field`. Work in progress adds `points` to the risk score, and blocks
    a deployment to `block_environments`. If no live version answers, those are blocked too:
    the check fails closed.
    """

    path: str = Field(pattern=r"^/")
    field: str = Field(min_length=1)
    id_field: str = "id"
    noun: str = "item"
    block_environments: list[str] = Field(default_factory=lambda: ["production"])
    points: int = Field(default=15, ge=0, le=100)
    timeout_seconds: float = Field(default=2.0, gt=0.0, le=30.0)
    # Where it blocks, a deployment waits (durably, asking again every poll_seconds) up to
    # wait_seconds for the work to finish, then ends `blocked`; 0: it ends blocked at once.
    wait_seconds: float = Field(default=4 * 3600.0, ge=0.0, le=7 * 24 * 3600.0)
    poll_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # What to tell whoever waits: how the work in progress is finished.
    hint: str | None = Field(default=None, max_length=300)


class AppConfig(_Config):
    """One app: its business criticality, its environments and its business calendar."""

    criticality: Criticality
    environments: dict[str, EnvironmentConfig] = Field(min_length=1)
    calendar: CalendarConfig | None = None
    work_in_progress: WorkInProgressCheck | None = None
    # The config keys (as the app reads them, without APP_) a release may set with
    # `zdp release create --set KEY=VALUE`; any other is refused when the release is verified.
    # Secrets (keys, tokens, passwords, database URLs, *_FILE references) never: they come by
    # reference. Drill settings are the environment's `drills`.
    overridable: list[str] = Field(default_factory=list)

    @field_validator("overridable")
    @classmethod
    def _overridable_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not _CONFIG_KEY.match(key):
                raise ValueError(
                    f"overridable key {key!r} is not a config key: upper-case letters, digits "
                    "and '_', as the app reads it without APP_"
                )
            if key in ENGINE_KEYS:
                raise ValueError(f"{key} is set by the engine, never by a release")
            if SECRET_KEY.search(key):
                raise ValueError(
                    f"{key} looks like a secret: secrets come by reference ($ZDP_HOME/secrets/"
                    "<app>/<APP_ENV>/ or a Kubernetes Secret), never from a release's text"
                )
            if is_drill_key(key):
                raise ValueError(
                    f"{key} is a drill setting: allow drills per environment (drills: true)"
                )
        return value

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"environment '{name}' must be a DNS-style name: lowercase letters, digits, '-'"
                )
        production = value.get("production")
        if production is not None and production.app_env == "local":
            raise ValueError(
                "production may not run apps with app_env: local (their demo data and public "
                "demo credentials); leave app_env out, or name a non-local one"
            )
        if production is not None and production.drills:
            raise ValueError("production may not allow drills (drills: true)")
        return value

    def environment(self, name: str, *, app: str = "this app") -> EnvironmentConfig:
        """The named environment, or ConfigError listing the ones that exist."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(
                f"app '{app}' has no environment '{name}': known environments are {known}"
            ) from None


def _validate_steps(steps: list[int]) -> list[int]:
    if not steps or steps[-1] != 100:
        raise ValueError("steps must end at 100")
    if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise ValueError("steps must be strictly increasing percentages between 1 and 100")
    return steps


class PolicyTier(_Config):
    """What one band of risk scores demands: approvals, bake time, traffic steps and gate."""

    level: RiskLevel
    max_score: int = Field(ge=0, le=100)
    approvals_required: int = Field(ge=0)
    min_bake_seconds: float = Field(ge=0.0)
    steps: list[int]
    # The gate policy (by name, in gate-policies.yaml) every health gate at this tier runs.
    gate_policy: str = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, value: list[int]) -> list[int]:
        return _validate_steps(value)


class PolicyConfig(_Config):
    """The tiers, lowest risk first. More risk never asks for less scrutiny."""

    tiers: list[PolicyTier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_tighten_as_risk_rises(self) -> PolicyConfig:
        tiers = self.tiers
        if tiers[-1].max_score != 100:
            raise ValueError(
                f"the last tier ('{tiers[-1].level}') must have max_score 100 so every score "
                f"has a tier, got {tiers[-1].max_score}"
            )
        for lower, higher in itertools.pairwise(tiers):
            pair = f"tier '{higher.level}' (max_score {higher.max_score})"
            below = f"tier '{lower.level}' below it"
            if higher.max_score <= lower.max_score:
                raise ValueError(
                    f"tiers must be sorted by strictly increasing max_score: {pair} "
                    f"follows tier '{lower.level}' (max_score {lower.max_score})"
                )
            if _LEVEL_ORDER[higher.level] <= _LEVEL_ORDER[lower.level]:
                raise ValueError(f"{pair} must name a higher risk level than {below}")
            if higher.approvals_required < lower.approvals_required:
                raise ValueError(
                    f"{pair} requires {higher.approvals_required} approvals but {below} "
                    f"requires {lower.approvals_required}: more risk must never mean "
                    "fewer approvals"
                )
            if higher.min_bake_seconds < lower.min_bake_seconds:
                raise ValueError(
                    f"{pair} bakes {higher.min_bake_seconds:g} s but {below} bakes "
                    f"{lower.min_bake_seconds:g} s: more risk must never mean a shorter bake"
                )
        return self

    def tier_for(self, score: int) -> PolicyTier:
        """The first tier whose max_score is at least `score` (scores are 0 to 100)."""
        if not 0 <= score <= 100:
            raise ValueError(f"risk score must be between 0 and 100, got {score}")
        return next(t for t in self.tiers if score <= t.max_score)


class EngineConfig(_Config):
    """Everything the engine is configured with: the apps and the approval policy."""

    apps: dict[str, AppConfig] = Field(min_length=1)
    policy: PolicyConfig
    recent_failure_window_days: int = Field(default=30, ge=1)
    # Where the gate policies the tiers name are: a path relative to this file. Unset: the
    # usual search ($ZDP_GATE_POLICIES, then up from the working directory, then the package).
    gate_policies: str | None = None
    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("apps")
    @classmethod
    def _app_names(cls, value: dict[str, AppConfig]) -> dict[str, AppConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"app '{name}' must be a DNS-style name: lowercase letters, digits, '-'"
                )
        return value

    def app(self, name: str) -> AppConfig:
        """The named app, or ConfigError listing the apps that exist."""
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(sorted(self.apps))
            raise ConfigError(f"unknown app '{name}': known apps are {known}") from None

    def environment(self, app: str, env: str) -> EnvironmentConfig:
        """The environment `env` of `app`, or ConfigError saying which part is unknown."""
        return self.app(app).environment(env, app=app)

    def gate_policies_path(self) -> Path | None:
        """The gate policies file this configuration names, if it names one."""
        if self.gate_policies is None:
            return None
        path = Path(self.gate_policies)
        return path if path.is_absolute() else (self._base_dir or Path.cwd()) / path


# --------------------------------------------------------------------------- loading


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ""
    for part in first["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    message = first["msg"].removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{loc or '(top level)'}: {message}{suffix}"


def parse_config(data: Any, source: str = "<config>") -> EngineConfig:
    """Validate already-parsed YAML/JSON data; ConfigError names the first bad setting."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping with 'apps' and 'policy'")
    try:
        return EngineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None


def monitoring_rule_files() -> list[Path]:
    """The alert and recording rules of a checkout (infrastructure/monitoring/rules/*.yml, up
    from the working directory), for the embedded stack's Prometheus; [] when there are none."""
    for folder in _here_and_above():
        rules = folder / "infrastructure" / "monitoring" / "rules"
        if rules.is_dir():
            return sorted(rules.glob("*.yml"))
    return []


def _here_and_above() -> list[Path]:
    """The working directory and each of its parents: where a checkout's files are looked for."""
    cwd = Path.cwd().resolve()
    return [cwd, *cwd.parents]


def packaged_data(name: str) -> Path:
    """A data file shipped inside the zdp package (zdp/data/NAME)."""
    return Path(str(resources.files("zdp").joinpath("data", name)))


def find_data_file(
    path: Path | None, setting: str, relative: Path | str, what: str, packaged: str | None = None
) -> Path:
    """Where a data file is: `path`, else the setting (`ZDP_<setting>`), else `relative` up from
    the working directory, else the copy shipped in the package (zdp/data/`packaged`).

    `what` names the file in the one-line error ("configuration file", "gate policies file").
    """
    origin = ""
    configured = getattr(settings(), setting)
    if path is not None:
        tried = [Path(path)]
    elif configured is not None:
        tried, origin = [Path(configured)], f" (from $ZDP_{setting})"
    else:
        tried = [directory / relative for directory in _here_and_above()]
        if packaged is not None:
            tried.append(packaged_data(packaged))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{what} not found{origin}; tried: {', '.join(str(p) for p in tried)}")


def apps_source_dir() -> Path:
    """The apps' sources (`zdp build`, the Kubernetes templates): $ZDP_APPS_DIR, else `apps/` in
    the working directory or a parent (a checkout); installed code never looks elsewhere."""
    configured = settings().APPS_DIR
    if configured is not None:
        return configured
    here = _here_and_above()
    for directory in here:
        if (directory / "apps").is_dir():
            return directory / "apps"
    raise ConfigError(
        f"no apps/ folder in {here[0]} or above: run from a checkout, or set ZDP_APPS_DIR to the "
        "folder that holds the apps' sources"
    )


def read_yaml(found: Path, what: str) -> Any:
    """Read and parse a YAML file; an unreadable file or bad YAML is a one-line ConfigError
    with the file, line and column."""
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{found}: cannot read {what}: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        where, problem = "", str(err)
        if isinstance(err, yaml.MarkedYAMLError):
            if err.problem_mark is not None:
                where = f":{err.problem_mark.line + 1}:{err.problem_mark.column + 1}"
            problem = err.problem or err.context or problem
        problem = " ".join(problem.split())
        raise ConfigError(f"{found}{where}: invalid YAML: {problem}") from None


def find_config_path(path: Path | None = None) -> Path:
    """Where the config is: `path`, else $ZDP_CONFIG, else apps.yaml up from the working
    directory, else the copy shipped in the package."""
    return find_data_file(path, "CONFIG", CONFIG_RELATIVE_PATH, "configuration file", "apps.yaml")


def load_config(path: Path | None = None) -> EngineConfig:
    """Find, read and validate the engine configuration; every failure is one-line ConfigError."""
    found = find_config_path(path)
    config = parse_config(read_yaml(found, "configuration"), str(found))
    config._base_dir = found.resolve().parent
    return config
