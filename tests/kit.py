"""Workflow test kit: signed releases, a seeded in-memory platform, and a worker per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workers.worker import Platform, build_worker
from zdp import deployments
from zdp.compliance.identity import identities_required
from zdp.compliance.registry import Admin, load_registry, register, registry_dir
from zdp.config import EngineConfig, EnvironmentConfig, load_config
from zdp.models import (
    ApprovalSignature,
    Artifact,
    ChangeMetadata,
    Channel,
    Deployed,
    DeploymentRequest,
    DeploymentResult,
    DeploymentStatus,
    DsseEnvelope,
    ReleaseManifest,
    RequestAction,
    Strategy,
    ValidationReference,
)
from zdp.notify import Notifier
from zdp.platforms.memory.platform import (
    STATE,
    MemoryAppQuery,
    MemoryProbe,
    MemoryRouter,
    MemoryRuntime,
    MemoryState,
)
from zdp.release import approve_validation, sign_manifest

HERE = Path(__file__).parent
HISTORIES = HERE / "histories"
APP = "webshop"


@dataclass
class Signer:
    key: Ed25519PrivateKey
    trusted_dir: Path

    def manifest(
        self, version: str, validation: ValidationReference | None = None, **change: Any
    ) -> ReleaseManifest:
        return ReleaseManifest(
            validation=validation,
            app=APP,
            version=version,
            artifact=Artifact(
                kind="wheel",
                reference=f"webshop-{version}-py3-none-any.whl",
                digest="sha256:" + (version.encode().hex() * 64)[:64],
            ),
            change=ChangeMetadata(**{"lines_changed": 10, "files_changed": 1, **change}),
        )

    def release(
        self, version: str, validation: ValidationReference | None = None, **change: Any
    ) -> DsseEnvelope:
        return sign_manifest(self.manifest(version, validation, **change), self.key)

    def validated(
        self,
        version: str,
        approver: str,
        key: Ed25519PrivateKey,
        document_id: str = "VAL-2026-0142",
        **change: Any,
    ) -> DsseEnvelope:
        """A release whose IQ/OQ/PQ document `approver` approved with a Part 11 signature
        (registered in $ZDP_APPROVER_REGISTRY), then signed: what a GxP line deploys."""
        pending = ValidationReference(document_id=document_id, status="pending")
        change.setdefault("author", "dev-dana")  # someone other than the approver
        approved = approve_validation(
            self.manifest(version, pending, **change),
            approver,
            "IQ/OQ/PQ executed and approved",
            key,
            load_registry(registry_dir()),
        )
        return sign_manifest(approved, self.key)


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    trusted = tmp_path_factory.mktemp("trusted-keys")
    key = Ed25519PrivateKey.generate()
    (trusted / "release-ci.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Signer(key=key, trusted_dir=trusted)


@pytest.fixture(scope="session")
def engine_config() -> EngineConfig:
    return load_config(HERE / "workflows" / "engine.yaml")


@pytest.fixture(scope="session")
def zdp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' ZDP_HOME: the audit log, the engine key and the evidence store."""
    return tmp_path_factory.mktemp("zdp-home")


@pytest.fixture
def platform() -> MemoryState:
    """The in-memory platform with v1 serving 100% from `stable` (and `blue`)."""
    STATE.reset()
    for slot in ("stable", "blue"):
        STATE.deployed[(APP, slot)] = Deployed(
            app=APP, slot=slot, version="1.0.0", endpoints=[f"memory://{APP}/{slot}/1.0.0/0"]
        )
    STATE.weights[APP] = {"stable": 100}
    return STATE


@dataclass
class Harness:
    client: Client
    task_queue: str
    signer: Signer
    config: EngineConfig
    state: MemoryState
    home: Path
    started: list[WorkflowHandle[Any, DeploymentResult]] = field(default_factory=list)
    notifier: Notifier | None = None

    def worker(self, graceful_shutdown: timedelta = timedelta(seconds=5)) -> Worker:
        return build_worker(
            self.client,
            Platform(
                MemoryRuntime(self.state),
                MemoryRouter(self.state),
                MemoryProbe(self.state),
                MemoryAppQuery(self.state),
            ),
            config=self.config,
            trusted_keys_dir=self.signer.trusted_dir,
            task_queue=self.task_queue,
            graceful_shutdown=graceful_shutdown,
            home=self.home,
            notifier=self.notifier,
        )

    def request(self, version: str = "2.0.0", **overrides: Any) -> DeploymentRequest:
        fields: dict[str, Any] = {
            "app": APP,
            "environment": "dev",
            "release": self.signer.release(version),
            "strategy": Strategy.canary,
            "initiator": "ci-bot",
            "change_ref": "CHG-1001",
            "reason": "test deployment",
        }
        fields.update(overrides)
        return DeploymentRequest(**fields)

    def proven_required(self, environment: str) -> bool:
        env = self.config.apps[APP].environments.get(environment)
        if env is None:
            return False
        return identities_required(
            environment, env.compliance_profiles, env.require_proven_identities
        )

    async def start(self, request: DeploymentRequest) -> WorkflowHandle[Any, DeploymentResult]:
        """Start it; where identities must be proven, the start is signed by its initiator
        (one of KEYS, registered in the registry the worker reads) unless it carries a proof."""
        if (
            request.proof is None
            and request.initiator in KEYS
            and self.proven_required(request.environment)
        ):
            self.ensure_registered(request.initiator)
            request = deployments.sign_start(request, KEYS[request.initiator])
        handle = await deployments.start_deployment(
            self.client, request, task_queue=self.task_queue
        )
        self.started.append(handle)
        return handle

    def ensure_registered(self, who: str) -> None:
        """`who` (one of KEYS) in the registry the worker reads."""
        registry = registry_dir(self.home)
        if who not in load_registry(registry):
            kind = KINDS.get(who, "person")
            enrol(registry, who, f"{who} (test)", KEYS[who].public_key(), kind)

    async def proof(
        self, workflow_id: str, action: RequestAction, who: str, channel: Channel = "api"
    ) -> ApprovalSignature:
        """`who`'s signed request (KEYS[who], registered) for the deployment's current run."""
        self.ensure_registered(who)
        return await deployments.sign_request(
            self.client, workflow_id, action, who, channel, KEYS[who]
        )

    async def record_histories(self, test_name: str) -> None:
        """With ZDP_RECORD_HISTORIES=1, save closed histories for the replay test."""
        for i, handle in enumerate(self.started):
            if await deployments.is_running(self.client, handle.id):
                continue
            history = await handle.fetch_history()
            name = "".join(c if c.isalnum() else "_" for c in test_name)
            (HISTORIES / f"{name}-{i}.json").write_text(history.to_json())

    async def deploy(self, request: DeploymentRequest) -> DeploymentResult:
        handle = await self.start(request)
        return await asyncio.wait_for(handle.result(), timeout=60)

    async def status(self, handle: WorkflowHandle[Any, Any]) -> DeploymentStatus:
        return await handle.query("status", result_type=DeploymentStatus)

    async def wait_for(
        self,
        handle: WorkflowHandle[Any, Any],
        condition: Callable[[DeploymentStatus], bool],
        timeout: float = 30.0,
    ) -> DeploymentStatus:
        """Poll the status query until `condition` holds; fail with the last status if not."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            current = await self.status(handle)
            if condition(current):
                return current
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"condition not met within {timeout} s; last status: {current}")
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def kit(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    signer: Signer,
    engine_config: EngineConfig,
    platform: MemoryState,
    zdp_home: Path,
) -> AsyncIterator[Harness]:
    """A task queue of its own and no worker yet; leftover deployments are terminated after."""
    h = Harness(
        client=temporal_env.client,
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        signer=signer,
        config=engine_config.model_copy(deep=True),  # a test may change its own copy
        state=platform,
        home=zdp_home,
    )
    yield h
    if os.environ.get("ZDP_RECORD_HISTORIES"):
        await h.record_histories(request.node.name)
    for env in ("dev", "prod"):
        await _terminate_if_running(h.client, f"deploy-{APP}-{env}")


@pytest_asyncio.fixture
async def harness(kit: Harness) -> AsyncIterator[Harness]:
    """The kit with a worker running for the whole test."""
    async with kit.worker():
        yield kit


async def _terminate_if_running(client: Client, workflow_id: str) -> None:
    try:
        if await deployments.is_running(client, workflow_id):
            await client.get_workflow_handle(workflow_id).terminate("test cleanup")
    except Exception:
        pass


PRINTED_NAMES = {"alice": "Alice A. Example", "bob": "Robert B. Example"}
# The administrator who registers the identities tests use (self-registered in each registry).
TEST_ADMIN = Admin("test-admin", Ed25519PrivateKey.generate())
# The keys of the people and the CI system the tests act as (registered on first use).
KEYS = {
    user: Ed25519PrivateKey.generate() for user in ("ci-bot", "alice", "bob", "carol", "slack-bot")
}
KINDS = {"ci-bot": "ci", "slack-bot": "bot"}


def enrol(
    registry: Path,
    user: str,
    printed_name: str,
    public_key: Any,
    kind: str = "person",
    encrypted_key: bool = True,
) -> None:
    """Register `user` in `registry`, signed by TEST_ADMIN (registered first if needed), as
    `zdp keys register` does; not audited (the CLI tests check the audit entry)."""
    if "test-admin" not in load_registry(registry):
        register(
            registry, "test-admin", "Test Administrator", TEST_ADMIN.key.public_key(),
            TEST_ADMIN, None, administrator=True,
        )  # fmt: skip
    register(
        registry, user, printed_name, public_key, TEST_ADMIN, None,
        kind=kind, encrypted_key=encrypted_key and kind == "person",  # type: ignore[arg-type]
    )  # fmt: skip


def part11_prod(
    harness: Harness, registry: Path, monkeypatch: pytest.MonkeyPatch, *signers: str
) -> dict[str, Ed25519PrivateKey]:
    """prod under 21 CFR Part 11 (approvers alice and bob, one approval), with `signers`
    registered in a registry of their own ($ZDP_APPROVER_REGISTRY); their private keys."""
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(registry))
    keys = {user: Ed25519PrivateKey.generate() for user in signers}
    for user, key in keys.items():
        enrol(registry, user, PRINTED_NAMES[user], key.public_key())
    harness.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low", approvers=["alice", "bob"], min_approvals=1,
        compliance_profiles=["part11"],
    )  # fmt: skip
    return keys
