"""zdp.metrics: a deployment's phase series belong to its running run only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zdp import metrics

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def phases(app: str, environment: str) -> list[str]:
    return sorted(
        s.labels["phase"]
        for family in metrics.PHASE.collect()
        for s in family.samples
        if (s.labels["app"], s.labels["environment"]) == (app, environment)
    )


def deadlines(app: str, environment: str) -> float | None:
    labels = {"app": app, "environment": environment}
    return metrics.REGISTRY.get_sample_value("zdp_approval_deadline_timestamp_seconds", labels)


def test_a_run_that_never_reached_done_here_is_forgotten_when_the_next_one_starts() -> None:
    """A run terminated (or finished on another worker) leaves its last phase behind; the next
    run of the same deployment starting live means it ended, so its series go."""
    app, env = "metrics-runs-app", "prod"
    first = metrics.DeploymentObserver(app, env, "canary")
    first.observe("started", "verify", AT, {}, live=True)
    first.observe("phase", "await_approval", AT, {}, live=True, approval_deadline=AT)
    first.observe("phase", "rollback", AT, {}, live=True)
    first.observe("phase", "await_approval", AT, {}, live=True, approval_deadline=AT)
    assert phases(app, env) == ["await_approval"] and deadlines(app, env) is not None
    # Terminated: no `done`. Another deployment of another app is left alone.
    other = metrics.DeploymentObserver("metrics-runs-other", env, "canary")
    other.observe("phase", "shift", AT, {}, live=True)

    # A replay of an old run (a query, a worker taking a run over) forgets nothing.
    replayed = metrics.DeploymentObserver(app, env, "blue_green")
    replayed.observe("started", "verify", AT, {}, live=False)
    assert phases(app, env) == ["await_approval"]

    second = metrics.DeploymentObserver(app, env, "blue_green")
    second.observe("started", "verify", AT + timedelta(hours=1), {}, live=True)
    assert phases(app, env) == [] and deadlines(app, env) is None
    second.observe("phase", "verify", AT + timedelta(hours=1), {}, live=True)
    assert phases(app, env) == ["verify"]
    assert phases("metrics-runs-other", env) == ["shift"]
