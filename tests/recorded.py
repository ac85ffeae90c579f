"""Deployments as they were recorded: the request and the result of a history in tests/histories.

A history holds the workflow's input (the deployment request, with the signed release) and, once
the workflow closed, its result. Report tests read both from the same real run, so what they
show is what the engine recorded, not a hand-made timeline.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path
from typing import Any

from zdp.acceptance import claimed_manifest
from zdp.models import DeploymentRequest, DeploymentResult, ReleaseManifest

HISTORIES = Path(__file__).parent / "histories"


def _payload(payloads: dict[str, Any]) -> Any:
    (first,) = payloads["payloads"]
    return json.loads(base64.b64decode(first["data"]))


@cache
def _read(name: str) -> tuple[DeploymentRequest, DeploymentResult]:
    (path,) = HISTORIES.glob(f"test_{name}-0.json")
    events = json.loads(path.read_text())["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]["input"]
    (completed,) = [
        e["workflowExecutionCompletedEventAttributes"]["result"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    ]
    return (
        DeploymentRequest.model_validate(_payload(started)),
        DeploymentResult.model_validate(_payload(completed)),
    )


def recorded(name: str) -> tuple[DeploymentRequest, DeploymentResult]:
    """The request and result of tests/histories/test_<name>-0.json (copies: edit freely)."""
    request, result = _read(name)
    return request.model_copy(deep=True), result.model_copy(deep=True)


def release_of(request: DeploymentRequest) -> ReleaseManifest:
    """The release the request carried (the statement the worker verified)."""
    return claimed_manifest(request.release)


def _edited(result: DeploymentResult, kind: str, **data: Any) -> DeploymentResult:
    """The result with `data` merged into its first event of `kind`."""
    copy = result.model_copy(deep=True)
    event = next(e for e in copy.timeline if e.kind == kind)
    event.data.update(data)
    return DeploymentResult.model_validate(copy.model_dump())


def with_change_record(result: DeploymentResult, release: ReleaseManifest) -> DeploymentResult:
    """The result as an engine that records the verified release's change metadata with
    `release_verified` would have written it (today's workflow does not: see
    zdp/forensics/change.py)."""
    return _edited(result, "release_verified", change=release.change.model_dump(mode="json"))


def with_running_version(result: DeploymentResult, version: str | None) -> DeploymentResult:
    """The result as recorded by an engine that reports the running version (these histories
    predate it)."""
    return _edited(result, "risk_assessed", running_version=version)


def with_profiles(result: DeploymentResult, *profiles: str) -> DeploymentResult:
    """The same deployment in an environment under `profiles`: verify's compliance check says
    so, in the words zdp.acceptance records."""
    copy = result.model_copy(deep=True)
    (check,) = [e for e in copy.timeline if e.data.get("name") == "compliance"]
    check.data["detail"] = f"evidence complete for {', '.join(profiles)}"
    check.message = f"compliance: passed — {check.data['detail']}"
    return DeploymentResult.model_validate(copy.model_dump())
