"""Gate policies as data: per-risk-level health gate settings, per-app overrides, and their loader.

The file lives at `infrastructure/health-checks/gate-policies.yaml`. It has `defaults` for each
risk level and optional `apps: {<app>: {<env>: {<level>: {overrides}}}}`, deep-merged over the
defaults. Every model forbids unknown keys, and a policy that gets looser as risk rises is
refused at load time with a one-line ConfigError naming the field.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from zdp.config import _describe, find_data_file, read_yaml
from zdp.errors import ConfigError
from zdp.health.prometheus import MetricTemplate
from zdp.models import RiskLevel

GATE_POLICIES_RELATIVE_PATH = Path("infrastructure/health-checks/gate-policies.yaml")
GATE_POLICIES_ENV_VAR = "ZDP_GATE_POLICIES"


class LatencyAnalysis(BaseModel, extra="forbid"):
    """Canary-vs-stable latency comparison (one-sided Mann-Whitney U on sampled requests)."""

    min_samples: int = Field(default=20, ge=3)
    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    max_slowdown_ms: float = Field(default=20.0, ge=0.0)
    max_slowdown_ratio: float = Field(default=1.2, ge=1.0)


class ErrorAnalysis(BaseModel, extra="forbid"):
    """Canary-vs-stable error comparison on the requests each slot served."""

    min_requests: int = Field(default=10, ge=1)
    max_ratio_to_stable: float = Field(default=2.0, ge=1.0)


class GatePolicy(BaseModel, extra="forbid"):
    """Everything one health gate is run with, for one app, environment and risk level."""

    probe_interval_seconds: float = Field(gt=0.0)
    probe_timeout_ms: float = Field(default=50.0, gt=0.0)
    breaker_failure_threshold: int = Field(ge=1)
    breaker_open_seconds: float = Field(gt=0.0)
    min_samples: int = Field(ge=1)
    max_error_ratio: float = Field(ge=0.0, le=1.0)
    latency: LatencyAnalysis = Field(default_factory=LatencyAnalysis)
    errors: ErrorAnalysis = Field(default_factory=ErrorAnalysis)
    sample_path: str | None = Field(default=None, pattern=r"^/")
    sample_rate_per_s: float = Field(default=20.0, gt=0.0)
    diagnosis_tolerance: float = Field(default=0.5, ge=0.0, le=1.0)
    templates: list[MetricTemplate] = Field(default_factory=list)


# (field path, direction as risk rises, what it means)
_TIGHTENING: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("max_error_ratio",), -1, "allows"),
    (("latency", "max_slowdown_ratio"), -1, "allows"),
    (("min_samples",), +1, "needs"),
)


def _field(policy: GatePolicy, path: tuple[str, ...]) -> float:
    value: Any = policy
    for part in path:
        value = getattr(value, part)
    return float(value)


def _check_tightening(levels: dict[RiskLevel, GatePolicy], where: str) -> None:
    """Refuse policies that get looser as risk rises (ConfigError naming the field)."""
    for lower, higher in itertools.pairwise(RiskLevel):
        for path, direction, verb in _TIGHTENING:
            low, high = _field(levels[lower], path), _field(levels[higher], path)
            if (high - low) * direction < 0:
                name = ".".join(path)
                raise ConfigError(
                    f"{where}{higher.value}.{name}: level '{higher.value}' {verb} {name} "
                    f"{high:g} but level '{lower.value}' below it {verb} {low:g}: more risk "
                    "must never mean a looser gate"
                )


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` over `base`; mappings merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class GatePoliciesFile(BaseModel, extra="forbid"):
    """The file as written: a policy per risk level, and overrides per app, environment, level."""

    defaults: dict[RiskLevel, GatePolicy]
    apps: dict[str, dict[str, dict[RiskLevel, dict[str, Any]]]] = Field(default_factory=dict)


class GatePolicies:
    """The validated policies, resolved per app and environment at load time."""

    def __init__(
        self,
        defaults: dict[RiskLevel, GatePolicy],
        overrides: dict[tuple[str, str], dict[RiskLevel, GatePolicy]] | None = None,
    ) -> None:
        self.defaults = defaults
        self.overrides = overrides or {}

    def for_deployment(self, app: str, env: str, level: RiskLevel) -> GatePolicy:
        """The policy for one deployment: the level's defaults merged with app/env overrides."""
        levels = self.overrides.get((app, env), self.defaults)
        return levels[RiskLevel(level)]


def parse_gate_policies(data: Any, source: str = "<gate policies>") -> GatePolicies:
    """Validate already-parsed YAML data; ConfigError names the first bad setting."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: gate policies must be a mapping with 'defaults' and 'apps'")
    try:
        parsed = GatePoliciesFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    missing = [level.value for level in RiskLevel if level not in parsed.defaults]
    if missing:
        raise ConfigError(
            f"{source}: defaults: every risk level needs a policy; missing {', '.join(missing)}"
        )
    _check_tightening(parsed.defaults, f"{source}: defaults.")
    resolved: dict[tuple[str, str], dict[RiskLevel, GatePolicy]] = {}
    for app, envs in parsed.apps.items():
        for env, by_level in envs.items():
            where = f"apps.{app}.{env}."
            levels: dict[RiskLevel, GatePolicy] = {}
            for level, default in parsed.defaults.items():
                merged = _deep_merge(default.model_dump(), by_level.get(level, {}))
                try:
                    levels[level] = GatePolicy.model_validate(merged)
                except ValidationError as err:
                    raise ConfigError(f"{source}: {where}{level.value}.{_describe(err)}") from None
            _check_tightening(levels, f"{source}: {where}")
            resolved[(app, env)] = levels
    return GatePolicies(dict(parsed.defaults), resolved)


def find_gate_policies_path(path: Path | None = None) -> Path:
    """Where the policies are: `path`, else $ZDP_GATE_POLICIES, else up from cwd, else the repo."""
    return find_data_file(
        path, GATE_POLICIES_ENV_VAR, GATE_POLICIES_RELATIVE_PATH, "gate policies file"
    )


def load_gate_policies(path: Path | None = None) -> GatePolicies:
    """Find, read and validate the gate policies; every failure is a one-line ConfigError."""
    found = find_gate_policies_path(path)
    return parse_gate_policies(read_yaml(found, "gate policies"), str(found))
