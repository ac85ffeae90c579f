"""Whether a deployment request may go ahead: the rules the worker applies before anything
changes, and that `zdp deploy` applies before anything starts.

The worker is the authority: it checks the signature against its trusted keys, then calls
`accept_release` on the verified manifest. The CLI runs the same checks first (`preflight`), on
the verified manifest when it holds trusted keys and on the envelope's claims otherwise, so a
request that would be refused never starts a workflow, writes an audit entry or seals a bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from zdp.compliance.profiles import Evidence, missing_evidence
from zdp.compliance.registry import load_registry
from zdp.config import (
    ENGINE_KEYS,
    SECRET_KEY,
    AppConfig,
    EngineConfig,
    EnvironmentConfig,
    is_drill_key,
)
from zdp.domain import validation_check
from zdp.errors import ReleaseError, ReleaseVerificationError, ZdpError
from zdp.models import (
    ApproverIdentity,
    DeploymentRequest,
    DomainCheck,
    DsseEnvelope,
    ReleaseManifest,
    Strategy,
    VerifyReleaseInput,
)
from zdp.release import claimed_predicate, summarize_validation_error, verify_envelope
from zdp.signing import PUBLIC_KEY_SUFFIX, load_trusted_keys


class PreflightError(ZdpError):
    """The request would be refused: nothing was started."""


@dataclass(frozen=True)
class Target:
    """Where a release is to go, and the request's own evidence (change ticket, reason)."""

    app: str
    environment: str
    strategy: Strategy | None = None
    change_ref: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, request: DeploymentRequest | VerifyReleaseInput, environment: str) -> Target:
        return cls(
            app=request.app,
            environment=environment,
            strategy=request.strategy,
            change_ref=request.change_ref,
            reason=request.reason,
        )


def check_target(config: EngineConfig, target: Target) -> EnvironmentConfig:
    """The environment's config; ConfigError for an unknown app or environment, PreflightError
    for a strategy the environment does not allow."""
    env = config.environment(target.app, target.environment)
    if target.strategy is not None and target.strategy not in env.strategies:
        allowed = ", ".join(s.value for s in env.strategies)
        raise PreflightError(
            f"strategy {target.strategy.value} is not allowed for {target.app} in "
            f"{target.environment}; allowed: {allowed}"
        )
    return env


def check_overrides(
    manifest: ReleaseManifest, app: AppConfig, env: EnvironmentConfig, environment: str
) -> None:
    """A release may set only the config keys its app declares `overridable`, and drill
    settings (DRILL_ENDPOINT, FAULT_*) only where the environment allows drills; never a key
    the engine sets or one that carries a secret. ReleaseVerificationError names every key
    refused and what may be set."""
    refused: list[str] = []
    for raw in sorted(manifest.config_overrides):
        key = raw.upper()
        if key in ENGINE_KEYS:
            refused.append(f"{raw} (set by the engine)")
        elif is_drill_key(key):
            if not env.drills:
                refused.append(f"{raw} (a drill setting; {environment} does not allow drills)")
        elif SECRET_KEY.search(key):
            refused.append(f"{raw} (a secret: secrets come by reference, never from a release)")
        elif key not in app.overridable:
            refused.append(f"{raw} (not declared overridable)")
    if refused:
        allowed = ", ".join(app.overridable) or "nothing"
        raise ReleaseVerificationError(
            f"release {manifest.version} of {manifest.app} sets config it may not: "
            f"{'; '.join(refused)}. {manifest.app} lets a release set: {allowed}"
            + ("; drill settings here too" if env.drills else "")
        )


def accept_release(
    manifest: ReleaseManifest,
    target: Target,
    config: EngineConfig,
    registry: Mapping[str, ApproverIdentity] | None = None,
    now: datetime | None = None,
) -> list[DomainCheck]:
    """The checks a release must pass for this target: it names this app, and this
    environment if it names any, the environment exists and allows the strategy, the release
    is not older than the environment accepts (as of `now`), a GxP environment's validation
    document, and the compliance profiles' evidence. ReleaseVerificationError names what is
    missing."""
    if manifest.app != target.app:
        raise ReleaseVerificationError(f"release is for app '{manifest.app}', not '{target.app}'")
    if manifest.environments and target.environment not in manifest.environments:
        raise ReleaseVerificationError(
            f"release {manifest.version} is signed for {', '.join(manifest.environments)} only, "
            f"not {target.environment}"
        )
    env = check_target(config, target)
    check_overrides(manifest, config.app(target.app), env, target.environment)
    if env.max_release_age_days is not None and now is not None:
        limit = timedelta(days=env.max_release_age_days)
        if manifest.created_at is None:
            raise ReleaseVerificationError(
                f"release {manifest.version} has no creation time, and {target.environment} "
                f"accepts releases at most {env.max_release_age_days} days old"
            )
        created = manifest.created_at
        age = now - (created if created.tzinfo else created.replace(tzinfo=UTC))
        if age > limit:
            raise ReleaseVerificationError(
                f"release {manifest.version} was created {age.days} days ago; "
                f"{target.environment} accepts releases at most {env.max_release_age_days} "
                "days old: build and sign a new one"
            )
    app = config.app(target.app)
    validation = validation_check(manifest, app, target.environment, registry)
    missing = missing_evidence(
        env.compliance_profiles,
        manifest,
        Evidence(change_ref=target.change_ref, reason=target.reason),
    )
    if validation.blocking and not missing:
        raise ReleaseVerificationError(validation.detail)
    if validation.blocking:
        missing.append(validation.detail)
    if missing:
        raise ReleaseVerificationError(
            f"compliance evidence missing for {manifest.app} {manifest.version} to "
            f"{target.environment} ({', '.join(env.compliance_profiles)}): " + "; ".join(missing)
        )
    checks = [validation]
    if env.compliance_profiles:
        checks.append(
            DomainCheck(
                name="compliance",
                passed=True,
                detail=f"evidence complete for {', '.join(env.compliance_profiles)}",
            )
        )
    return checks


def claimed_manifest(envelope: DsseEnvelope) -> ReleaseManifest:
    """The manifest the envelope's statement claims, signature unchecked (the worker checks
    it); PreflightError if the payload is not a release statement at all."""
    try:
        return ReleaseManifest.model_validate(claimed_predicate(envelope))
    except ReleaseError as err:
        raise PreflightError(f"the envelope's payload is not a release statement ({err})") from None
    except ValidationError as err:
        raise PreflightError(
            f"the envelope's payload is not a release statement ({summarize_validation_error(err)})"
        ) from None


def preflight(
    config: EngineConfig,
    envelope: DsseEnvelope,
    target: Target,
    trusted_keys_dir: Path | None = None,
    registry_dir: Path | None = None,
) -> ReleaseManifest:
    """Everything the worker would refuse before changing anything, checked now. With trusted
    keys at hand, the signature too; without them, the envelope's claims."""
    check_target(config, target)
    if (
        trusted_keys_dir is not None
        and trusted_keys_dir.is_dir()
        and any(trusted_keys_dir.glob(f"*{PUBLIC_KEY_SUFFIX}"))
    ):
        manifest = verify_envelope(envelope, load_trusted_keys(trusted_keys_dir)).manifest
    else:
        manifest = claimed_manifest(envelope)
    registry = load_registry(registry_dir) if registry_dir and registry_dir.is_dir() else None
    accept_release(manifest, target, config, registry, datetime.now(UTC))
    return manifest
