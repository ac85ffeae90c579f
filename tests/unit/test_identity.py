"""`prove`: who sent a request, from its signature, the registry and what it must be bound to."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import enrol
from zdp.compliance.identity import Expected, claim_start, identities_required, prove, sign_request
from zdp.compliance.registry import load_registry
from zdp.models import ApproverIdentity, SignedRequest

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BOB, BOT = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
EXPECTED = Expected(
    action="approve",
    actor="bob",
    channel="slack",
    deployment_id="deploy-webshop-prod",
    run_id="run-1",
    release_digest="sha256:" + "ab" * 32,
)


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, ApproverIdentity]:
    enrol(tmp_path, "bob", "Bob B. Example", BOB.public_key())
    enrol(tmp_path, "slack-bot", "Slack bot", BOT.public_key(), "bot")
    return load_registry(tmp_path)


def request(**change: object) -> SignedRequest:
    fields: dict[str, object] = {
        "action": "approve",
        "actor": "bob",
        "deployment_id": "deploy-webshop-prod",
        "run_id": "run-1",
        "release_digest": "sha256:" + "ab" * 32,
        "channel": "slack",
        "signed_at": NOW - timedelta(minutes=1),
        **change,
    }
    return SignedRequest.model_validate(fields)


def check(registry: dict[str, ApproverIdentity], key: Ed25519PrivateKey, **change: object):  # type: ignore[no-untyped-def]
    return prove(sign_request(key, request(**change)), EXPECTED, registry, NOW, set(), True, "x")


def test_the_bot_attests_for_a_registered_person_on_slack(
    registry: dict[str, ApproverIdentity],
) -> None:
    proven, why = check(
        registry, BOT, attested_by="slack-bot", via={"workspace": "T1", "user": "U2"}
    )
    assert why is None and proven is not None
    assert proven.line() == "bob via Slack (workspace T1, user U2), attested by slack-bot"


@pytest.mark.parametrize(
    ("key", "change", "why"),
    [
        (BOB, {"attested_by": "bob"}, "bob is not a registered bot and cannot attest for others"),
        (BOT, {"attested_by": "slack-bot", "actor": "zoe"}, "zoe is not a registered identity"),
        (BOT, {}, "not the key registered to bob"),  # the bot's key, no attestation claimed
        (BOB, {"signed_at": NOW - timedelta(minutes=16)}, "sign within 15 minutes of sending"),
        (BOB, {"signed_at": NOW + timedelta(minutes=3)}, "sign within 15 minutes of sending"),
        (BOB, {"release_digest": "sha256:" + "cd" * 32}, "another release (release_digest"),
        (BOB, {"channel": "cli"}, "another channel (channel differs)"),
        (BOT, {"attested_by": "slack-bot", "action": "promote"}, "may not attest a promote"),
    ],
    ids=["person attests", "unregistered actor", "wrong key", "stale", "future", "release",
         "channel", "bot promotes"],
)  # fmt: skip
def test_what_does_not_prove_the_sender(
    registry: dict[str, ApproverIdentity],
    key: Ed25519PrivateKey,
    change: dict[str, object],
    why: str,
) -> None:
    proven, refusal = check(registry, key, **change)
    assert proven is None and refusal is not None and why in refusal


def test_a_bot_attests_only_where_the_channel_authenticates_people(
    registry: dict[str, ApproverIdentity],
) -> None:
    cli = Expected(**{**EXPECTED.__dict__, "channel": "cli"})
    signed = sign_request(BOT, request(channel="cli", attested_by="slack-bot"))
    proven, why = prove(signed, cli, registry, NOW, set(), True, "x")
    assert proven is None and why is not None and "not cli" in why


def test_unsigned_is_a_typed_name_where_allowed_and_refused_where_not(
    registry: dict[str, ApproverIdentity],
) -> None:
    typed, why = prove(None, EXPECTED, registry, NOW, set(), False)
    assert why is None and typed is not None and not typed.proven
    assert typed.line() == "bob via slack (typed name, not proven)"
    refused, why = prove(None, EXPECTED, registry, NOW, set(), True, "prod is under sox")
    assert refused is None and why is not None
    assert "identities must be proven here (prod is under sox)" in why
    assert identities_required("production", []) and identities_required("qa", ["pci-dss"])
    assert not identities_required("qa", ["gdpr"])


def test_a_signed_start_is_claimed_by_one_run(tmp_path: Path) -> None:
    signed = sign_request(BOB, request(action="start", run_id=""))
    assert claim_start(tmp_path, signed, "run-1") is None
    assert claim_start(tmp_path, signed, "run-1") is None  # a retry of the same run
    assert "already used by run run-1" in (claim_start(tmp_path, signed, "run-2") or "")


def test_a_signature_spelled_another_way_is_refused(
    registry: dict[str, ApproverIdentity],
) -> None:
    """base64 ignores the unused bits of a signature's last character: a second spelling of a
    used signature must not pass as a new one."""
    proof = sign_request(BOB, request(channel="slack"))
    last = proof.sig[-3]  # 64 bytes: 86 characters and "==", the last 4 bits unused
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    index = alphabet.index(last)
    twin = alphabet[index ^ 1]  # same 2 leading bits as far as the bytes go
    respelled = proof.model_copy(update={"sig": proof.sig[:-3] + twin + proof.sig[-2:]})
    assert base64.b64decode(respelled.sig) == base64.b64decode(proof.sig)
    proven, why = prove(respelled, EXPECTED, registry, NOW, {proof.sig}, True, "x")
    assert proven is None and why == "the signature is not in canonical base64"
