"""Notifications at the moments people act on: started, awaiting approval, steps, outcome."""

from __future__ import annotations

import asyncio

from tests.kit import APP, Harness
from zdp import deployments
from zdp.compliance.audit.log import default_log_path
from zdp.errors import ZdpError
from zdp.models import Outcome, Phase
from zdp.notify import Notification, WebhookNotifier


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Notification] = []
        self.fail = fail

    async def send(self, n: Notification) -> None:
        if self.fail:
            raise ZdpError("webhook answered HTTP 503")
        self.sent.append(n)

    async def latest(self, kind: str) -> Notification:
        """The last notification once it is of `kind` (it goes out just after the phase is
        entered); bounded by the clock, as a busy machine needs."""
        deadline = asyncio.get_running_loop().time() + 30
        while not (self.sent and self.sent[-1].kind == kind):
            assert asyncio.get_running_loop().time() < deadline, f"no {kind} notification"
            await asyncio.sleep(0.05)
        return self.sent[-1]


async def test_approval_steps_and_promotion_are_announced(kit: Harness) -> None:
    recorder = Recorder()
    kit.notifier = recorder
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0", environment="prod"))
        await kit.wait_for(handle, lambda s: s.phase is Phase.await_approval)
        waiting = await recorder.latest("awaiting_approval")
        assert (waiting.version, waiting.initiator, waiting.change_ref) == (
            "2.0.0", "ci-bot", "CHG-1001",
        )  # fmt: skip
        assert waiting.approvals_required == 1 and waiting.allowed_approvers == [
            "alice", "bob", "carol",
        ]  # fmt: skip
        assert waiting.risk_score is not None and waiting.top_factors
        await deployments.approve(kit.client, handle.id, "alice")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert [(n.kind, n.step) for n in recorder.sent] == [
        ("started", None), ("awaiting_approval", None),
        ("step_passed", "1%"), ("step_passed", "5%"), ("step_passed", "25%"),
        ("step_passed", "100%"), ("promoted", None),
    ]  # fmt: skip


async def test_rollback_is_announced_with_its_cause(kit: Harness) -> None:
    recorder = Recorder()
    kit.notifier = recorder
    kit.state.fail_at_weight[(APP, "2.0.0")] = 5
    async with kit.worker():
        result = await kit.deploy(kit.request("2.0.0"))
    assert result.outcome is Outcome.rolled_back
    last = recorder.sent[-1]
    assert last.kind == "rolled_back" and last.cause == result.cause
    assert [n.kind for n in recorder.sent] == ["started", "step_passed", "rolled_back"]


async def test_a_failing_notifier_never_holds_a_deployment_back(kit: Harness) -> None:
    kit.notifier = Recorder(fail=True)
    async with kit.worker():
        result = await kit.deploy(kit.request("2.0.0"))
    assert result.outcome is Outcome.promoted
    failed = [e for e in result.timeline if e.kind == "notification_failed"]
    assert failed and "webhook answered HTTP 503" in failed[0].message


async def test_a_failed_webhook_leaves_no_token_in_the_records(kit: Harness) -> None:
    """A webhook URL carries credentials (user:password, a token in the path or the query);
    when it fails, the timeline, audit log and evidence get it redacted."""
    secret_url = (
        "http://hook-user:hook-pass@127.0.0.1:9/services/T0001/B0002/xoxbSecretToken123"
        "?token=abc123secret"
    )
    kit.notifier = WebhookNotifier(secret_url)
    async with kit.worker():
        result = await kit.deploy(kit.request("2.0.0"))
    assert result.outcome is Outcome.promoted
    failed = [e for e in result.timeline if e.kind == "notification_failed"]
    assert failed
    assert "webhook http://***@127.0.0.1:9/services/***?*** unreachable" in failed[0].message
    recorded = result.model_dump_json()
    for secret in ("hook-pass", "hook-user", "xoxbSecretToken123", "abc123secret", "B0002"):
        assert secret not in recorded
    log = default_log_path(kit.home).read_text()
    assert "xoxbSecretToken123" not in log and "hook-pass" not in log
