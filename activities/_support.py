"""What every activity module shares: mapping core errors to Temporal's, and heartbeating."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from zdp.errors import ConfigError, ReleaseError, SigningKeyError, ZdpError

T = TypeVar("T")

# Errors that retrying cannot fix: bad input, a release that fails verification, bad config.
NON_RETRYABLE: tuple[type[ZdpError], ...] = (ReleaseError, ConfigError, SigningKeyError)


def to_application_error(err: ZdpError) -> ApplicationError:
    """A ZdpError as Temporal sees it: its class name as type, bad input as non-retryable."""
    return ApplicationError(
        str(err), type=type(err).__name__, non_retryable=isinstance(err, NON_RETRYABLE)
    )


async def with_heartbeats(work: Awaitable[T], every_seconds: float = 1.0, detail: str = "") -> T:
    """Await `work` while heartbeating, so a long call on a dead worker is noticed and retried."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=every_seconds)
        if done:
            return task.result()
        activity.heartbeat(detail)


def scoped(platform: T, environment: str | None) -> T:
    """The platform's view of one environment. The embedded stack gives each environment its
    own slots and listener (`for_environment`); other backends serve every environment alike
    (on Kubernetes, each environment is its own namespace and worker). None: the whole platform
    as histories from before environments had their own slots saw it."""
    scope = getattr(platform, "for_environment", None)
    if scope is None or not environment:
        return platform
    return scope(environment)
