"""The alert policy, and how one Alertmanager alert is judged against it (pure: no I/O here
but reading the policy file).

The policy is data (`alert-policy.yaml`, shipped as zdp/data/alert-policy.yaml and linked from
infrastructure/rollback-automation/): ordered rules, each an alert name, optionally a
severity and more labels that must all be equal, and the action, `pause` or `abort`. The first
rule that matches decides; an alert no rule matches is ignored (and logged). A policy that
cannot be read or has no rules is a one-line ConfigError: the receiver does not start rather
than check less.

A matched alert must name its deployment with the labels `app` and `environment` (the
workflow id is `deploy-<app>-<environment>`); one without them is refused, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zdp.config import find_data_file, read_yaml
from zdp.errors import ConfigError
from zdp.models import deployment_id
from zdp.release import summarize_validation_error

ALERT_POLICY_RELATIVE_PATH = Path("infrastructure/rollback-automation/alert-policy.yaml")
PACKAGED_ALERT_POLICY = "alert-policy.yaml"
APP_LABEL = "app"
ENVIRONMENT_LABEL = "environment"
# What a control's reason may hold (AbortInput.reason).
MAX_REASON = 2000

Action = Literal["pause", "abort"]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertRule(_Strict):
    """Alerts named `alertname` (with `severity`, and every label in `labels`, when given)
    trigger `action` on the deployment their app and environment labels name."""

    alertname: str = Field(min_length=1)
    severity: str | None = Field(default=None, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    action: Action

    @field_validator("labels")
    @classmethod
    def _no_shadowed_names(cls, value: dict[str, str]) -> dict[str, str]:
        for reserved in ("alertname", "severity"):
            if reserved in value:
                raise ValueError(f"give {reserved} as the rule's own field, not under labels")
        return value

    def matches(self, labels: dict[str, str]) -> bool:
        wanted = {"alertname": self.alertname, **self.labels}
        if self.severity is not None:
            wanted["severity"] = self.severity
        return all(labels.get(name) == value for name, value in wanted.items())

    def describe(self) -> str:
        extra = [f"severity={self.severity}"] if self.severity else []
        extra += [f"{k}={v}" for k, v in sorted(self.labels.items())]
        return (
            f"{self.alertname}" + (f" ({', '.join(extra)})" if extra else "") + f" -> {self.action}"
        )


class AlertPolicy(_Strict):
    """The rules, first match wins."""

    rules: list[AlertRule] = Field(min_length=1)

    def rule_for(self, labels: dict[str, str]) -> AlertRule | None:
        return next((rule for rule in self.rules if rule.matches(labels)), None)


def find_alert_policy(path: Path | None = None) -> Path:
    """Where the policy is: `path`, else $ZDP_ALERT_POLICY, else
    infrastructure/rollback-automation/alert-policy.yaml up from the working directory, else
    the copy shipped in the package."""
    return find_data_file(
        path, "ALERT_POLICY", ALERT_POLICY_RELATIVE_PATH, "alert policy file", PACKAGED_ALERT_POLICY
    )


def parse_alert_policy(data: Any, source: str = "<alert policy>") -> AlertPolicy:
    """Validate parsed YAML; ConfigError names the file and the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the alert policy must be a mapping with `rules:`")
    try:
        return AlertPolicy.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {summarize_validation_error(err)}") from None


def load_alert_policy(path: Path | None = None) -> tuple[AlertPolicy, Path]:
    """Find, read and validate the policy: (the policy, the file it came from); every failure
    is one line of ConfigError."""
    found = find_alert_policy(path)
    return parse_alert_policy(read_yaml(found, "alert policy"), str(found)), found


# --------------------------------------------------------------------------- the webhook


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager webhook notification (version 4)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(alias="startsAt", min_length=1)
    ends_at: str | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=128)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "(unnamed alert)")

    @property
    def key(self) -> str:
        """What makes this alert the same alert: Alertmanager's fingerprint of its labels, and
        when it started firing (the same labels firing again later is a new alert)."""
        return f"{self.fingerprint}@{self.starts_at}"


class WebhookPayload(BaseModel):
    """Alertmanager's webhook notification; only version "4" exists."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    version: Literal["4"]
    status: str = ""
    receiver: str = ""
    group_key: str = Field(default="", alias="groupKey")
    alerts: list[WebhookAlert] = Field(max_length=1000)


def parse_payload(body: bytes) -> WebhookPayload:
    """The notification in `body`; ConfigError (one line) when it is not one."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as err:
        raise ConfigError(
            f"not an Alertmanager webhook notification (version 4): "
            f"{summarize_validation_error(err)}"
        ) from None


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Judgement:
    """What to do with one alert: `act` (then `action`, `deployment` and `reason` are set),
    or `ignored`, `refused` or `resolved`, with `why` in words."""

    verdict: Literal["act", "ignored", "refused", "resolved"]
    why: str
    action: Action | None = None
    rule: AlertRule | None = None
    app: str | None = None
    environment: str | None = None
    reason: str | None = None

    @property
    def deployment(self) -> str | None:
        if self.app is None or self.environment is None:
            return None
        return deployment_id(self.app, self.environment)


def judge(alert: WebhookAlert, policy: AlertPolicy) -> Judgement:
    """The policy's answer for one alert."""
    if alert.status == "resolved":
        return Judgement("resolved", f"alert {alert.name} resolved: nothing to do")
    rule = policy.rule_for(alert.labels)
    if rule is None:
        return Judgement("ignored", f"alert {alert.name}: no rule of the alert policy matches it")
    app = alert.labels.get(APP_LABEL, "")
    environment = alert.labels.get(ENVIRONMENT_LABEL, "")
    missing = [n for n, v in ((APP_LABEL, app), (ENVIRONMENT_LABEL, environment)) if not v]
    if missing:
        return Judgement(
            "refused",
            f"alert {alert.name} matches the rule {rule.describe()} but has no "
            f"{' and no '.join(missing)} label: it names no deployment",
            rule=rule,
        )
    bad = [f"{n}={v[:80]!r}" for n, v in ((APP_LABEL, app), (ENVIRONMENT_LABEL, environment))
           if not _NAME.match(v)]  # fmt: skip
    if bad:
        return Judgement(
            "refused",
            f"alert {alert.name}: {', '.join(bad)} is not an app or environment name "
            "(lowercase letters, digits and '-')",
            rule=rule,
        )
    return Judgement(
        "act",
        f"alert {alert.name} matches the rule {rule.describe()}",
        action=rule.action,
        rule=rule,
        app=app,
        environment=environment,
        reason=control_reason(alert, app, environment),
    )


def control_reason(alert: WebhookAlert, app: str, environment: str) -> str:
    """The reason the control carries into the timeline: "alert ZdpCanaryErrorBudgetBurn
    (app=finance-trading environment=staging, severity=critical): <summary>"."""
    where = f"app={app} environment={environment}"
    severity = alert.labels.get("severity")
    if severity:
        where += f", severity={severity}"
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"alert {alert.name} ({where})" + (f": {' '.join(summary.split())}" if summary else "")
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
