"""Workflows that give the Temporal SDK's worker metrics something to count: one that
completes (an activity that succeeds, one that fails twice), one that fails, and one whose
workflow task fails (the test terminates it). Imports only temporalio: the sandbox loads it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError


@activity.defn
async def answer(name: str) -> str:
    return f"hello {name}"


@activity.defn
async def break_down(name: str) -> str:
    raise ApplicationError(f"{name}: failing on purpose")


@workflow.defn
class CompletingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        greeting = await workflow.execute_activity(
            answer, name, start_to_close_timeout=timedelta(seconds=30)
        )
        try:
            await workflow.execute_activity(
                break_down,
                name,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=100), maximum_attempts=2
                ),
            )
        except ActivityError:
            pass
        return greeting


@workflow.defn
class FailingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        raise ApplicationError(f"{name}: the workflow fails on purpose", non_retryable=True)


@workflow.defn
class BrokenTaskWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        raise RuntimeError(f"{name}: a bug in the workflow code (its task fails and retries)")
