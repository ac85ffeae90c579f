"""Proven identities: who acted is shown by a signature, not by a typed name.

Every person and bot that acts holds an Ed25519 key registered in the identity registry (the
folder that also holds the Part 11 approvers, `$ZDP_HOME/approvers`), and every registration
carries an administrator's signature (`zdp keys register`). A state-changing request (start,
approve, reject, promote, pause, resume, abort) carries the actor's signature over a
`SignedRequest` that binds the action, the deployment id, the run id (a start, which has no run
yet, binds the digest of the whole request instead), the release digest, the channel and the
time: lifted onto another deployment, run, release or action, it no longer matches.

A channel that authenticates people its own way (Slack: signed requests, users mapped by
workspace and user id) attests it: the bot signs on behalf of the mapped user with its own
registered key (`attested_by`), and the record shows "bob via Slack (workspace T…, user U…),
attested by slack-bot".

`prove` is pure (no clock, no I/O): the workflow runs it in its handlers over the registry
snapshot the risk activity delivered, so what was checked stays in the history.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from zdp.compliance.esign import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE, sign_approval, verified_body
from zdp.compliance.profiles import APPROVAL_PROFILES
from zdp.models import (
    ApprovalSignature,
    ApproverIdentity,
    DeploymentRequest,
    ProvenActor,
    RequestAction,
    SignedRequest,
    deployment_id,
)
from zdp.settings import settings

# Environments with these profiles, and every environment called "production", refuse
# requests whose actor is not proven; others may opt in (require_proven_identities).
PROVEN_PROFILES = APPROVAL_PROFILES
PRODUCTION = "production"
KEY_DIR_ENV = "ZDP_KEY_DIR"
# Channels that authenticate people their own way, for which a registered bot may attest,
# and the requests it may attest (the Slack bot's buttons and /zdp commands; never a start
# or a promotion).
ATTESTING_CHANNELS = frozenset({"slack"})
ATTESTED_ACTIONS = frozenset({"approve", "reject", "pause", "resume", "abort"})


def identities_required(environment: str, profiles: list[str], opted_in: bool = False) -> bool:
    """Whether unsigned requests are refused in this environment."""
    return opted_in or environment == PRODUCTION or bool(PROVEN_PROFILES.intersection(profiles))


def requirement_text(environment: str, profiles: list[str]) -> str:
    """Why identities must be proven here, in words."""
    found = sorted(PROVEN_PROFILES.intersection(profiles))
    if found:
        return f"{environment} is under {', '.join(found)}"
    if environment == PRODUCTION:
        return "production"
    return f"{environment} requires proven identities"


# --------------------------------------------------------------------------- the client side


def key_dir() -> Path:
    """Where the CLI finds its user's key: $ZDP_KEY_DIR, else $XDG_CONFIG_HOME/zdp/keys, else
    ~/.config/zdp/keys."""
    explicit = settings().KEY_DIR
    if explicit is not None:
        return explicit.expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "zdp" / "keys"


def default_key_path(user: str) -> Path:
    """<key_dir>/<user>.key: the private key `zdp keys generate USER --dir <key_dir>` writes."""
    return key_dir() / f"{user}.key"


def request_digest(request: DeploymentRequest) -> str:
    """sha256 of the deployment request without its proof: what a start signature binds."""
    data = request.model_dump(mode="json", exclude={"proof"})
    if not request.allow_downgrade:
        del data["allow_downgrade"]  # requests signed before the field existed still verify
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def sign_request(private_key: Ed25519PrivateKey, payload: SignedRequest) -> ApprovalSignature:
    return sign_approval(private_key, payload)


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Expected:
    """What a request's signature must be bound to."""

    action: RequestAction
    actor: str  # the name the request was sent under
    channel: str
    deployment_id: str
    run_id: str  # "" for a start
    release_digest: str
    request_digest: str | None = None  # a start only

    @classmethod
    def start(
        cls,
        app: str,
        environment: str,
        initiator: str,
        channel: str,
        release_digest: str,
        digest_of_request: str | None,
    ) -> Expected:
        """A start: no run exists yet, so it binds the digest of the whole request."""
        return cls(
            action="start",
            actor=initiator,
            channel=channel,
            deployment_id=deployment_id(app, environment),
            run_id="",
            release_digest=release_digest,
            request_digest=digest_of_request,
        )


def prove(
    proof: ApprovalSignature | None,
    expected: Expected,
    registry: dict[str, ApproverIdentity],
    now: datetime,
    used: set[str],
    required: bool,
    why_required: str = "",
) -> tuple[ProvenActor | None, str | None]:
    """(who acted, None), or (None, why the request is refused).

    Without a proof, the actor is the typed name (`proven=False`) where identities need not be
    proven, and the request is refused where they must be. A proof that is present is always
    checked: a bad signature is refused even where none is needed."""
    who = expected.actor
    if proof is None:
        if required:
            return None, (
                f"unsigned {expected.action} by {who} refused: identities must be proven here "
                f"({why_required}); sign it with {who}'s registered key (`zdp whoami` shows "
                "which key the CLI signs with)"
            )
        return ProvenActor(user=who, channel=expected.channel, proven=False), None
    if proof.sig in used:
        return None, "this signed request was already used: sign each request anew"
    try:
        claimed = SignedRequest.model_validate_json(base64.b64decode(proof.payload, validate=True))
    except (binascii.Error, ValueError, ValidationError):
        return None, "the signed request is malformed"
    signer = claimed.attested_by or claimed.actor
    identity = registry.get(signer)
    if identity is None:
        return None, f"{signer} has no registered key, so the request proves nothing"
    if claimed.attested_by is not None:
        if identity.kind != "bot":
            return None, f"{signer} is not a registered bot and cannot attest for others"
        if claimed.channel not in ATTESTING_CHANNELS:
            return None, (
                f"a bot attests only for a channel that authenticates people itself "
                f"({', '.join(sorted(ATTESTING_CHANNELS))}), not {claimed.channel}"
            )
        if claimed.action not in ATTESTED_ACTIONS:
            return None, f"a bot may not attest a {claimed.action}: sign it with your own key"
        if claimed.actor not in registry:
            return None, f"{claimed.actor} is not a registered identity"
    body, problem = verified_body(proof, identity, signer)
    if body is None:
        return None, problem
    for field, wanted, label in (
        ("actor", who, "another person"),
        ("action", expected.action, "another action"),
        ("deployment_id", expected.deployment_id, "another deployment"),
        ("run_id", expected.run_id, "another run of this deployment"),
        ("release_digest", expected.release_digest, "another release"),
        ("request_digest", expected.request_digest, "another request"),
        ("channel", expected.channel, "another channel"),
    ):
        if getattr(claimed, field) != wanted:
            return None, f"the signature was made for {label} ({field} differs)"
    if claimed.signed_at > now + MAX_CLOCK_SKEW or claimed.signed_at < now - MAX_SIGNATURE_AGE:
        return None, (
            f"the request was signed at {claimed.signed_at.isoformat()}: sign within "
            f"{int(MAX_SIGNATURE_AGE.total_seconds() // 60)} minutes of sending"
        )
    return (
        ProvenActor(
            user=claimed.actor,
            channel=expected.channel,
            proven=True,
            key_fingerprint=proof.key_fingerprint,
            attested_by=claimed.attested_by,
            via=dict(claimed.via),
            signed_at=claimed.signed_at,
            signature=proof.sig,
        ),
        None,
    )


def claim_start(ledger: Path, proof: ApprovalSignature, run_id: str) -> str | None:
    """One run per signed start: the first run that presents the signature claims it (a file
    named by its hash, created exclusively), a retry of that run finds its own claim. None
    when `run_id` may use it; otherwise why not."""
    ledger.mkdir(parents=True, exist_ok=True)
    path = ledger / (hashlib.sha256(proof.sig.encode()).hexdigest() + ".run")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        owner = path.read_text(encoding="utf-8").strip()
        if owner == run_id:
            return None
        return f"this signed start was already used by run {owner}: sign each start anew"
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(run_id)
    return None
