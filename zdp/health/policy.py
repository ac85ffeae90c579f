"""Gate policies as data: named policies (as Argo Rollouts' AnalysisTemplates), per-app
overrides, and their loader.

The file is `gate-policies.yaml`: `policies: {<name>: GatePolicy}` and optional
`apps: {<app>: {<env>: {overrides}}}`, deep-merged over whichever policy a deployment uses.
The engine configuration's risk tiers name the policy they use (`gate_policy: <name>`); this
file holds every threshold. Every model forbids unknown keys, and a policy or an override that
cannot be loaded is a one-line ConfigError naming the file and the field: a gate never runs
with less than its policy says.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from zdp.config import _describe, find_data_file, read_yaml
from zdp.errors import ConfigError
from zdp.gates import ErrorAnalysis, GatePolicy, LatencyAnalysis
from zdp.models import GateThresholds

__all__ = [
    "GATE_POLICIES_ENV_VAR",
    "ErrorAnalysis",
    "GatePolicies",
    "GatePolicy",
    "LatencyAnalysis",
    "check_tightening",
    "load_gate_policies",
    "parse_gate_policies",
    "thresholds_of",
]

GATE_POLICIES_RELATIVE_PATH = Path("infrastructure/health-checks/gate-policies.yaml")
GATE_POLICIES_ENV_VAR = "ZDP_GATE_POLICIES"
# The copy shipped inside the package (a wheel or the container image has it).
PACKAGED_GATE_POLICIES = "data/gate-policies.yaml"

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


def check_tightening(ordered: Sequence[tuple[str, GatePolicy]], where: str) -> None:
    """Refuse policies that get looser as risk rises; `ordered` is (label, policy), lowest
    risk first. The ConfigError names the field and both labels."""
    for (low_label, lower), (high_label, higher) in itertools.pairwise(ordered):
        for path, direction, verb in _TIGHTENING:
            low, high = _field(lower, path), _field(higher, path)
            if (high - low) * direction < 0:
                name = ".".join(path)
                raise ConfigError(
                    f"{where}{high_label}.{name}: '{high_label}' {verb} {name} {high:g} but "
                    f"'{low_label}' below it {verb} {low:g}: more risk must never mean a "
                    "looser gate"
                )


def thresholds_of(policy: GatePolicy) -> GateThresholds:
    """The error-budget thresholds of a policy, as a policy decision has always carried them."""
    return GateThresholds(
        max_error_ratio=policy.max_error_ratio,
        min_samples=policy.min_samples,
        probe_interval_seconds=policy.probe_interval_seconds,
        min_failures=policy.min_failures,
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
    """The file as written: named policies, and overrides per app and environment."""

    policies: dict[str, GatePolicy] = Field(min_length=1)
    apps: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)


class GatePolicies:
    """The validated policies of one file, with every app/environment override pre-resolved."""

    def __init__(
        self,
        policies: dict[str, GatePolicy],
        overrides: dict[tuple[str, str], dict[str, GatePolicy]] | None = None,
        source: str = "<gate policies>",
    ) -> None:
        self.policies = policies
        self.overrides = overrides or {}
        self.source = source

    def names(self) -> list[str]:
        return sorted(self.policies)

    def for_deployment(self, app: str, env: str, name: str) -> GatePolicy:
        """Policy `name` with the app/environment's overrides; ConfigError if it is unknown."""
        if name not in self.policies:
            raise ConfigError(
                f"{self.source}: policies: no gate policy named '{name}' (known: "
                f"{', '.join(self.names())})"
            )
        return self.overrides.get((app, env), self.policies)[name]


def parse_gate_policies(data: Any, source: str = "<gate policies>") -> GatePolicies:
    """Validate already-parsed YAML data; ConfigError names the file and the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: gate policies must be a mapping with 'policies' and 'apps'")
    try:
        parsed = GatePoliciesFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None
    resolved: dict[tuple[str, str], dict[str, GatePolicy]] = {}
    for app, envs in parsed.apps.items():
        for env, overrides in envs.items():
            by_name: dict[str, GatePolicy] = {}
            for name, policy in parsed.policies.items():
                merged = _deep_merge(policy.model_dump(), overrides)
                try:
                    by_name[name] = GatePolicy.model_validate(merged)
                except ValidationError as err:
                    raise ConfigError(f"{source}: apps.{app}.{env}.{_describe(err)}") from None
            resolved[(app, env)] = by_name
    return GatePolicies(dict(parsed.policies), resolved, source)


def find_gate_policies_path(path: Path | None = None) -> Path:
    """Where the policies are: `path`, else $ZDP_GATE_POLICIES, else up from cwd, else the copy
    shipped in the package."""
    return find_data_file(
        path,
        "GATE_POLICIES",
        GATE_POLICIES_RELATIVE_PATH,
        "gate policies file",
        Path(PACKAGED_GATE_POLICIES).name,
    )


def load_gate_policies(path: Path | None = None) -> GatePolicies:
    """Find, read and validate the gate policies; every failure is a one-line ConfigError."""
    found = find_gate_policies_path(path)
    return parse_gate_policies(read_yaml(found, "gate policies"), str(found))
