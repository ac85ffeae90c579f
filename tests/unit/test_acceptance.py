"""What a signed release may be used for: the environments it names, and its age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zdp.acceptance import Target, accept_release
from zdp.config import EngineConfig, load_config
from zdp.errors import ReleaseVerificationError
from zdp.models import Artifact, ReleaseManifest

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
