"""The alert receiver without a server: its policy (loading, matching), dedup across restarts,
the bearer token, its own identity, and the HTTP answers Alertmanager relies on."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from tests.cli_checks import assert_one_line_error
from tests.kit import enrol
from zdp.alerts import receiver as receiver_module
from zdp.alerts.auth import (
    ReceiverIdentity,
    bearer_matches,
    check_registered,
    ensure_token,
    receiver_identity,
)
from zdp.alerts.policy import (
    AlertPolicy,
    WebhookAlert,
    WebhookPayload,
    judge,
    load_alert_policy,
    parse_payload,
)
from zdp.alerts.receiver import AlertReceiver, TemporalUnreachable
from zdp.alerts.seen import SeenAlerts, seen_path
from zdp.alerts.server import http_app
from zdp.cli.main import app
from zdp.config import packaged_data
from zdp.errors import ConfigError
from zdp.settings import settings

REPO = Path(__file__).resolve().parents[2]
POLICY = """
rules:
  - alertname: ZdpCanaryErrorBudgetBurn
    action: abort
  - alertname: FinanceLatency
    severity: critical
    labels: {environment: production}
    action: abort
  - alertname: FinanceLatency
    action: pause
"""


def _policy(tmp_path: Path, text: str = POLICY) -> AlertPolicy:
    path = tmp_path / "alert-policy.yaml"
    path.write_text(text)
    return load_alert_policy(path)[0]


def _alert(name: str = "ZdpCanaryErrorBudgetBurn", status: str = "firing", **labels: str) -> Any:
    labels = {"alertname": name, "app": "finance-trading", "environment": "staging", **labels}
    return {
        "status": status,
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {"summary": "canary 5xx ratio 0.4 over budget 0.01"},
        "startsAt": "2026-03-01T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": f"fp-{name}-{labels.get('environment')}",
    }


def _payload(*alerts: dict[str, Any]) -> WebhookPayload:
    body = {"version": "4", "status": "firing", "receiver": "zdp", "alerts": list(alerts)}
    return parse_payload(json.dumps(body).encode())


# --------------------------------------------------------------------------- the policy


def test_the_shipped_policy_loads_and_the_checkout_links_to_it() -> None:
    policy, _ = load_alert_policy(packaged_data("alert-policy.yaml"))
    actions = {rule.alertname: rule.action for rule in policy.rules}
    assert actions["ZdpCanaryErrorBudgetBurn"] == "abort"
    assert actions["ZdpGateInconclusive"] == "pause"
    link = REPO / "infrastructure" / "rollback-automation" / "alert-policy.yaml"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "zdp" / "data" / "alert-policy.yaml").resolve()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rules: [", "invalid YAML"),
        ("- just a list", "must be a mapping"),
        ("rules: []", "rules: List should have at least 1 item"),
        ("rules:\n  - {alertname: X, action: rollback}", "rules.0.action"),
        ("rules:\n  - {alertname: X, action: abort, sevrity: critical}", "rules.0.sevrity"),
        ("rules:\n  - {alertname: X, action: abort, labels: {severity: x}}", "own field"),
    ],
)
def test_a_policy_that_cannot_be_loaded_is_one_line_naming_the_file(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and says in message
    assert str(tmp_path / "alert-policy.yaml") in message


def test_the_receiver_does_not_start_with_a_bad_or_missing_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_HOME", str(tmp_path / "home"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {alertname: X, action: explode}\n")
    result = CliRunner().invoke(app, ["alert-receiver", "--policy", str(bad)])
    assert_one_line_error(result, f"{bad}: rules.0.action")
    missing = tmp_path / "nowhere.yaml"
    result = CliRunner().invoke(app, ["alert-receiver", "--policy", str(missing)])
    assert_one_line_error(result, "alert policy file not found")


def test_the_first_matching_rule_decides_and_severity_and_labels_must_all_match(
    tmp_path: Path,
) -> None:
    policy = _policy(tmp_path)
    alert = WebhookAlert.model_validate
    critical_prod = alert(_alert("FinanceLatency", severity="critical", environment="production"))
    assert judge(critical_prod, policy).action == "abort"
    warning_prod = alert(_alert("FinanceLatency", severity="warning", environment="production"))
    assert judge(warning_prod, policy).action == "pause"
    critical_staging = alert(_alert("FinanceLatency", severity="critical"))
    assert judge(critical_staging, policy).action == "pause"


def test_an_unmatched_alert_is_ignored_and_a_resolved_one_does_nothing(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    ignored = judge(WebhookAlert.model_validate(_alert("ZdpWorkerDown")), policy)
    assert ignored.verdict == "ignored" and "no rule of the alert policy" in ignored.why
    resolved = judge(WebhookAlert.model_validate(_alert(status="resolved")), policy)
    assert resolved.verdict == "resolved" and resolved.action is None


def test_a_matched_alert_without_app_or_environment_labels_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    policy = _policy(tmp_path)
    unnamed = judge(WebhookAlert.model_validate(_alert(app="", environment="")), policy)
    assert unnamed.verdict == "refused"
    assert "has no app and no environment label: it names no deployment" in unnamed.why
    odd = judge(WebhookAlert.model_validate(_alert(app="Finance Trading")), policy)
    assert odd.verdict == "refused" and "is not an app or environment name" in odd.why


def test_the_control_names_the_alert_its_labels_and_its_summary(tmp_path: Path) -> None:
    verdict = judge(WebhookAlert.model_validate(_alert(severity="critical")), _policy(tmp_path))
    assert verdict.verdict == "act" and verdict.action == "abort"
    assert verdict.deployment == "deploy-finance-trading-staging"
    assert verdict.reason == (
        "alert ZdpCanaryErrorBudgetBurn (app=finance-trading environment=staging, "
        "severity=critical): canary 5xx ratio 0.4 over budget 0.01"
    )


def test_a_body_that_is_not_a_version_4_notification_is_one_line() -> None:
    for body in (b"{", b'{"version": "3", "alerts": []}', b'{"version": "4"}'):
        with pytest.raises(ConfigError) as info:
            parse_payload(body)
        assert str(info.value).startswith("not an Alertmanager webhook notification")
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- dedup


def test_seen_alerts_survive_a_restart_and_stay_bounded(tmp_path: Path) -> None:
    path = seen_path(tmp_path)
    first = SeenAlerts(path, limit=3)
    for n in range(5):
        first.add(f"fp{n}@t", f"abort sent to deploy-a-b (run {n})")
    again = SeenAlerts(path, limit=3)
    assert len(again) == 3 and "fp0@t" not in again and "fp4@t" in again
    assert (again.when("fp4@t") or "").startswith("abort sent to deploy-a-b (run 4) at ")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_seen_file_that_is_not_ours_stops_the_receiver(tmp_path: Path) -> None:
    path = seen_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not the alert receiver's record"):
        SeenAlerts(path)


class _Temporal:
    """Stands in for the deployments module: records controls, or fails like a lost server."""

    def __init__(self, running: set[str]) -> None:
        self.running = running
        self.sent: list[tuple[str, str, str, str | None]] = []
        self.unreachable = False

    async def sign_request(self, client: Any, deployment: str, action: str, *args: Any,
                           **kwargs: Any) -> str:  # fmt: skip
        if self.unreachable:
            raise TemporalUnreachable("Temporal: connection refused")
        return f"proof-{action}"

    async def control(self, client: Any, deployment: str, name: str, actor: str,
                      reason: str | None, channel: str, proof: str) -> None:  # fmt: skip
        self.sent.append((deployment, name, actor, reason))


@pytest.fixture
def temporal(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Temporal]:
    fake = _Temporal({"deploy-finance-trading-staging"})
    monkeypatch.setattr(receiver_module.deployments, "sign_request", fake.sign_request)
    monkeypatch.setattr(receiver_module.deployments, "control", fake.control)

    async def running_run(self: AlertReceiver, deployment: str) -> str | None:
        return "run-1" if deployment in fake.running else None

    monkeypatch.setattr(AlertReceiver, "_running_run", running_run)
    yield fake


def _receiver(tmp_path: Path, policy: AlertPolicy) -> AlertReceiver:
    key = Ed25519PrivateKey.generate()
    identity = ReceiverIdentity("alert-receiver", key, tmp_path / "keys" / "alert-receiver.key")
    return AlertReceiver(None, policy, SeenAlerts(seen_path(tmp_path)), identity, tmp_path)  # type: ignore[arg-type]


async def test_the_same_alert_acts_once_even_after_a_restart(
    tmp_path: Path, temporal: _Temporal
) -> None:
    policy = _policy(tmp_path)
    payload = _payload(_alert(severity="critical"))
    first = await _receiver(tmp_path, policy).receive(payload)
    assert [o.outcome for o in first] == ["acted"]
    assert temporal.sent == [
        (
            "deploy-finance-trading-staging",
            "abort",
            "alert-receiver",
            "alert ZdpCanaryErrorBudgetBurn (app=finance-trading environment=staging, "
            "severity=critical): canary 5xx ratio 0.4 over budget 0.01",
        )
    ]
    again = await _receiver(tmp_path, policy).receive(payload)  # a new process, same home
    assert [o.outcome for o in again] == ["duplicate"]
    assert "already acted on this alert (abort sent to" in again[0].detail
    assert len(temporal.sent) == 1
    # The same labels firing again later is a new alert.
    later = {**_alert(severity="critical"), "startsAt": "2026-03-01T11:00:00Z"}
    assert [o.outcome for o in await _receiver(tmp_path, policy).receive(_payload(later))] == [
        "acted"
    ]


async def test_nothing_running_is_not_remembered_so_a_repeat_can_still_act(
    tmp_path: Path, temporal: _Temporal
) -> None:
    receiver = _receiver(tmp_path, _policy(tmp_path))
    temporal.running.clear()
    payload = _payload(_alert())
    assert [o.outcome for o in await receiver.receive(payload)] == ["no_deployment"]
    temporal.running.add("deploy-finance-trading-staging")
    assert [o.outcome for o in await receiver.receive(payload)] == ["acted"]


async def test_when_temporal_is_unreachable_the_alert_is_left_for_the_retry(
    tmp_path: Path, temporal: _Temporal
) -> None:
    receiver = _receiver(tmp_path, _policy(tmp_path))
    temporal.unreachable = True
    with pytest.raises(TemporalUnreachable):
        await receiver.receive(_payload(_alert()))
    temporal.unreachable = False
    assert [o.outcome for o in await receiver.receive(_payload(_alert()))] == ["acted"]


async def test_each_alert_of_a_notification_gets_its_own_answer(
    tmp_path: Path, temporal: _Temporal
) -> None:
    receiver = _receiver(tmp_path, _policy(tmp_path))
    outcomes = await receiver.receive(
        _payload(
            _alert("ZdpWorkerDown", app="", environment=""),
            _alert(app=""),
            _alert("FinanceLatency", status="resolved"),
            _alert("FinanceLatency"),
        )
    )
    assert [o.outcome for o in outcomes] == ["ignored", "refused", "resolved", "acted"]
    assert [(d, a) for d, a, _, _ in temporal.sent] == [("deploy-finance-trading-staging", "pause")]


# --------------------------------------------------------------------------- authentication


def test_the_token_file_is_made_once_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "alert-receiver.token"
    token, made = ensure_token(path)
    assert made and len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == (token, False)
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ensure_token(path)


def test_only_the_bearer_token_is_accepted() -> None:
    token = "s3cret-token-for-alertmanager"
    assert bearer_matches(f"Bearer {token}", token)
    assert bearer_matches(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", "Bearer "):
        assert not bearer_matches(header, token)


class _Answers:
    """Stands in for AlertReceiver behind the HTTP layer."""

    def __init__(self) -> None:
        self.unreachable = False
        self.received: list[WebhookPayload] = []

    async def receive(self, payload: WebhookPayload) -> list[Any]:
        if self.unreachable:
            raise TemporalUnreachable("Temporal: connection refused")
        self.received.append(payload)
        return []


async def test_http_answers_alertmanager_relies_on(caplog: pytest.LogCaptureFixture) -> None:
    token = "s3cret-token-for-alertmanager"
    answers = _Answers()
    transport = httpx.ASGITransport(app=http_app(answers, token))  # type: ignore[arg-type]
    body = json.dumps({"version": "4", "alerts": [_alert()]})
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        wrong = {"Authorization": "Bearer wrong"}
        assert (await client.post("/alerts", content=body, headers=wrong)).status_code == 401
        assert answers.received == []
        assert "missing or wrong bearer token" in caplog.text and token not in caplog.text
        assert (await client.post("/alerts", content=body)).status_code == 401
        assert (await client.post("/alerts", content="{", headers=auth)).status_code == 400
        assert (await client.post("/alerts", content=body, headers=auth)).status_code == 200
        assert len(answers.received) == 1
        answers.unreachable = True
        assert (await client.post("/alerts", content=body, headers=auth)).status_code == 503
        assert (await client.get("/healthz")).json() == {"ok": True}


# --------------------------------------------------------------------------- its identity


def test_the_receiver_acts_only_as_a_registered_identity_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        receiver_identity(settings())  # makes its key, then finds it unregistered
    message = str(info.value)
    assert "alert-receiver is not a registered identity" in message and "\n" not in message
    assert f"zdp keys register alert-receiver --public-key {tmp_path}/keys/alert-receiver.pub" in (
        message
    )
    identity, made = receiver_identity_after_registering(tmp_path)
    assert not made and identity.user == "alert-receiver"
    other = ReceiverIdentity("alert-receiver", Ed25519PrivateKey.generate(), tmp_path / "x.key")
    with pytest.raises(ConfigError, match=r"is registered in .* with key sha256:"):
        check_registered(other, tmp_path / "approvers")


def receiver_identity_after_registering(home: Path) -> tuple[ReceiverIdentity, bool]:
    from zdp.signing import load_private_key

    key = load_private_key(home / "keys" / "alert-receiver.key")
    enrol(home / "approvers", "alert-receiver", "Alertmanager receiver", key.public_key(), "bot")
    return receiver_identity(settings())
