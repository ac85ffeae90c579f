"""What a signed release may be used for: the environments it names, its age, the config it
may set."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from zdp.acceptance import Target, accept_release
from zdp.compliance.identity import request_digest
from zdp.config import AppConfig, EngineConfig, load_config
from zdp.errors import ReleaseVerificationError
from zdp.models import Artifact, DeploymentRequest, DsseEnvelope, ReleaseManifest

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DEV = Target(app="webshop", environment="dev")
PROD = Target(app="webshop", environment="prod", change_ref="CHG-1")


@pytest.fixture
def config() -> EngineConfig:
    return load_config(Path(__file__).parents[1] / "workflows" / "engine.yaml")


def release(**fields: object) -> ReleaseManifest:
    return ReleaseManifest.model_validate(
        {
            "app": "webshop",
            "version": "2.0.0",
            "artifact": Artifact(kind="wheel", reference="w.whl", digest="sha256:" + "ab" * 32),
            "created_at": NOW - timedelta(days=1),
            **fields,
        }
    )


def test_a_release_bound_to_environments_is_refused_elsewhere(config: EngineConfig) -> None:
    bound = release(environments=["dev"])
    accept_release(bound, DEV, config, now=NOW)
    with pytest.raises(ReleaseVerificationError, match="signed for dev only, not prod"):
        accept_release(bound, PROD, config, now=NOW)
    accept_release(release(), PROD, config, now=NOW)  # unbound: anywhere


def test_a_release_older_than_the_environment_accepts_is_refused(config: EngineConfig) -> None:
    config.apps["webshop"].environments["prod"].max_release_age_days = 30
    accept_release(release(created_at=NOW - timedelta(days=29)), PROD, config, now=NOW)
    with pytest.raises(ReleaseVerificationError, match="created 45 days ago; prod accepts "
                       "releases at most 30 days old"):  # fmt: skip
        accept_release(release(created_at=NOW - timedelta(days=45)), PROD, config, now=NOW)
    with pytest.raises(ReleaseVerificationError, match="has no creation time"):
        accept_release(release(created_at=None), PROD, config, now=NOW)
    accept_release(release(created_at=NOW - timedelta(days=45)), DEV, config, now=NOW)


def test_a_release_sets_only_declared_config_and_drills_only_where_allowed(
    config: EngineConfig,
) -> None:
    """webshop declares FEATURE_X and LOG_LEVEL. Keys are matched as the app reads them
    (upper case); secrets, engine keys and undeclared keys are refused everywhere, drill
    settings where the environment does not allow drills."""
    accept_release(release(config_overrides={"FEATURE_X": "on", "log_level": "debug"}), DEV,
                   config, now=NOW)  # fmt: skip
    for key, why in [
        ("OPEN_READS", "OPEN_READS (not declared overridable)"),
        ("SIGNING_KEY", "SIGNING_KEY (a secret"),
        ("DATABASE_URL", "DATABASE_URL (a secret"),
        ("API_KEYS_FILE", "API_KEYS_FILE (a secret"),
        ("env", "env (set by the engine)"),
        ("FAULT_ERROR_RATE", "FAULT_ERROR_RATE (a drill setting; dev does not allow drills)"),
    ]:
        with pytest.raises(ReleaseVerificationError, match=re.escape(why)):
            accept_release(release(config_overrides={key: "x"}), DEV, config, now=NOW)
    config.apps["webshop"].environments["dev"].drills = True
    accept_release(release(config_overrides={"DRILL_ENDPOINT": "1"}), DEV, config, now=NOW)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("API_KEYS", "looks like a secret"),
        ("SIGNING_KEY", "looks like a secret"),
        ("DATABASE_URL", "looks like a secret"),
        ("CONFIG_FILE", "looks like a secret"),
        ("VERSION", "set by the engine"),
        ("DRILL_ENDPOINT", "a drill setting"),
        ("log_level", "not a config key"),
    ],
)
def test_an_app_cannot_declare_secrets_or_engine_keys_overridable(key: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        AppConfig.model_validate(
            {"criticality": "low", "environments": {"dev": {"criticality": "low"}},
             "overridable": [key]}
        )  # fmt: skip


def test_production_may_not_allow_drills() -> None:
    with pytest.raises(ValidationError, match="production may not allow drills"):
        AppConfig.model_validate(
            {"criticality": "low",
             "environments": {"production": {"criticality": "high", "drills": True}}}
        )  # fmt: skip


def test_the_start_signature_covers_allow_downgrade() -> None:
    """A request signed without --allow-downgrade does not verify with it added."""
    envelope = DsseEnvelope(payloadType="application/vnd.in-toto+json", payload="e30=")
    plain = DeploymentRequest(
        app="webshop", environment="prod", release=envelope, initiator="oncall"
    )
    assert request_digest(plain) != request_digest(
        plain.model_copy(update={"allow_downgrade": True})
    )
    # Requests signed before the flag existed keep their digest.
    before = plain.model_dump(mode="json", exclude={"proof", "allow_downgrade"})
    body = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert request_digest(plain) == "sha256:" + hashlib.sha256(body).hexdigest()
