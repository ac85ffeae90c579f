"""Gate policies as data: the shipped file, overrides, tightening with risk, strict keys."""

from __future__ import annotations

import asyncio
import copy
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine_wheel import build_engine_wheel
from zdp.errors import ConfigError, PlatformError
from zdp.health.policy import (
    GATE_POLICIES_ENV_VAR,
    check_tightening,
    find_gate_policies_path,
    load_gate_policies,
    parse_gate_policies,
)
from zdp.health.prometheus import MetricTemplate, TemplateRun
from zdp.models import GateResult, RiskLevel

SHIPPED = Path(__file__).resolve().parents[2] / "infrastructure/health-checks/gate-policies.yaml"
PACKAGED = Path(__file__).resolve().parents[2] / "zdp/data/gate-policies.yaml"


def _policy(min_samples: int, max_error_ratio: float, slowdown_ratio: float) -> dict[str, Any]:
    return {
        "probe_interval_seconds": 0.05,
        "breaker_failure_threshold": 3,
        "breaker_open_seconds": 1.0,
        "min_samples": min_samples,
        "max_error_ratio": max_error_ratio,
        "latency": {"max_slowdown_ratio": slowdown_ratio},
    }


def _data() -> dict[str, Any]:
    return {
        "policies": {
            "low": _policy(10, 0.02, 1.5),
            "medium": _policy(20, 0.01, 1.3),
            "high": _policy(50, 0.005, 1.2),
            "critical": _policy(100, 0.002, 1.1),
        }
    }


def test_shipped_file_loads_with_sample_paths_and_templates() -> None:
    policies = load_gate_policies(SHIPPED)
    finance = policies.for_deployment("finance-trading", "production", "high")
    pharma = policies.for_deployment("pharma-manufacturing", "production", "low")
    assert finance.sample_path == "/api/quote/AAPL"
    assert pharma.sample_path == "/api/line/status"  # in every installation, not demo data
    assert finance.templates and pharma.templates
    assert finance.max_error_ratio == policies.policies["high"].max_error_ratio
    assert set(policies.names()) >= {"low", "medium", "high", "critical", "demo"}


def test_the_policy_ships_inside_the_package() -> None:
    # The checkout's path is a link to the package's copy: one file, which a wheel carries.
    assert SHIPPED.resolve() == PACKAGED.resolve()
    text = Path(__file__).resolve().parents[2].joinpath("pyproject.toml").read_text()
    assert '"data/*.yaml"' in text


def test_packaged_copy_is_found_when_nothing_else_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(GATE_POLICIES_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # as an installed wheel run outside a checkout
    found = find_gate_policies_path()
    assert found.resolve() == PACKAGED.resolve()


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(GATE_POLICIES_ENV_VAR, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"not found \(from \$ZDP_GATE_POLICIES\)"):
        load_gate_policies()


def test_unknown_policy_name_is_refused_listing_the_known_ones() -> None:
    policies = parse_gate_policies(_data(), "gp.yaml")
    with pytest.raises(ConfigError, match=r"^gp.yaml: policies: no gate policy named 'meduim'"):
        policies.for_deployment("app", "prod", "meduim")


def test_unknown_app_gets_the_named_policy_as_written() -> None:
    policies = parse_gate_policies(_data())
    assert policies.for_deployment("other", "production", "medium").min_samples == 20


def test_overrides_deep_merge_over_every_policy_of_the_app() -> None:
    data = _data()
    data["apps"] = {
        "finance-trading": {
            "production": {"sample_path": "/api/quote/AAPL", "latency": {"alpha": 0.05}}
        }
    }
    policies = parse_gate_policies(data)
    high = policies.for_deployment("finance-trading", "production", "high")
    assert high.sample_path == "/api/quote/AAPL"
    assert high.latency.alpha == 0.05
    assert high.latency.max_slowdown_ratio == 1.2  # kept from the policy beside the override
    assert high.min_samples == 50
    assert policies.for_deployment("finance-trading", "production", "low").sample_path
    assert policies.for_deployment("finance-trading", "staging", "high").sample_path is None


def test_policies_loosening_with_risk_are_refused_naming_the_field() -> None:
    policies = parse_gate_policies(_data())
    ordered = [(n, policies.policies[n]) for n in ("low", "medium", "critical", "high")]
    with pytest.raises(ConfigError) as err:
        check_tightening(ordered, "gp.yaml: ")
    message = str(err.value)
    assert message.startswith("gp.yaml: high.max_error_ratio:")
    assert "looser" in message and "\n" not in message


def test_fewer_samples_at_higher_risk_is_refused() -> None:
    data = _data()
    data["policies"]["high"]["min_samples"] = 5
    policies = parse_gate_policies(data)
    ordered = [(n, policies.policies[n]) for n in ("medium", "high")]
    with pytest.raises(ConfigError, match=r"high\.min_samples"):
        check_tightening(ordered, "")


def test_unknown_key_is_refused() -> None:
    data = _data()
    data["policies"]["low"]["max_eror_ratio"] = 0.1
    with pytest.raises(ConfigError, match=r"policies\.low\.max_eror_ratio: Extra inputs"):
        parse_gate_policies(data)


def test_unknown_key_in_an_override_is_refused() -> None:
    data = _data()
    data["apps"] = {"app": {"prod": {"latency": {"alfa": 0.05}}}}
    with pytest.raises(ConfigError, match=r"apps\.app\.prod\.latency\.alfa"):
        parse_gate_policies(data)


def test_old_per_level_layout_is_refused_naming_the_field() -> None:
    data = {"defaults": _data()["policies"]}
    with pytest.raises(ConfigError, match=r"policies: Field required"):
        parse_gate_policies(data)


def test_invalid_template_comparator_is_refused() -> None:
    data = _data()
    template = {"name": "errors", "query": "up", "threshold": 1, "comparator": "=="}
    data["policies"]["low"]["templates"] = [template]
    with pytest.raises(ConfigError, match=r"policies\.low\.templates\[0\]\.comparator"):
        parse_gate_policies(data)


def test_unknown_template_placeholder_is_refused() -> None:
    data = copy.deepcopy(_data())
    template = {"name": "e", "query": 'up{job="{{service}}"}', "threshold": 1, "comparator": ">="}
    data["policies"]["low"]["templates"] = [template]
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{service\}\}"):
        parse_gate_policies(data)


def test_invalid_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    path = tmp_path / "gp.yaml"
    path.write_text("policies:\n  low: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gp\.yaml:\d+:\d+: invalid YAML"):
        load_gate_policies(path)


def test_template_renders_placeholders_and_checks_its_condition() -> None:
    template = MetricTemplate(
        name="ratio",
        query='x{app="{{app}}",slot="{{ slot }}",v="{{version}}"}[{{interval}}]',
        threshold=0.05,
        comparator="<",
        interval_seconds=1.5,
    )
    assert template.render("a", "canary", "1.2") == 'x{app="a",slot="canary",v="1.2"}[1500ms]'
    assert template.succeeds(0.01) and not template.succeeds(0.05)
    # Staging and production of one app run side by side: {{environment}} tells them apart.
    by_env = template.model_copy(update={"query": 'x{app="{{app}}",env="{{environment}}"}'})
    assert by_env.render("a", "canary", "1.2", "production") == 'x{app="a",env="production"}'


def test_every_shipped_app_environment_runs_the_error_ratio_template_on_its_own_slots() -> None:
    """The stack's Prometheus labels every slot with app, environment and slot; each shipped
    template selects all three, and none fails a release on a fixed latency number."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for app, environments in data["apps"].items():
        for environment, override in environments.items():
            templates = [MetricTemplate(**t) for t in override.get("templates", [])]
            assert templates, f"{app} {environment} runs no template"
            for t in templates:
                query = t.render(app, "canary", "1", environment)
                for label in (f'app="{app}"', f'environment="{environment}"', 'slot="canary"'):
                    assert label in query, (app, environment, query)
                assert "duration" not in query, "a fixed latency threshold fails busy machines"


def test_shipped_file_round_trips_through_yaml() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    # Every risk level has a policy of its name, so a deployment started before policies
    # travelled with it still finds one by its level.
    assert {level.value for level in RiskLevel} <= set(data["policies"])


class _ScriptedProvider:
    """Answers queries from a script: a float, None (no data) or an exception."""

    def __init__(self, answers: list[float | Exception | None]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def query(self, promql: str) -> float | None:
        self.queries.append(promql)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def is_online(self) -> bool:
        return True


def _template(**overrides: Any) -> MetricTemplate:
    fields: dict[str, Any] = {
        "name": "ratio",
        "query": 'r{app="{{app}}"}',
        "threshold": 0.05,
        "comparator": "<",
        "interval_seconds": 0.001,
    }
    return MetricTemplate(**(fields | overrides))


async def _steps(run: TemplateRun, provider: _ScriptedProvider, n: int) -> list[Any]:
    results = []
    for _ in range(n):
        await asyncio.sleep(0.002)
        results.append(await run.step(provider, "a", "canary", "2"))
    return results


async def test_template_fails_only_after_more_breaches_than_its_failure_limit() -> None:
    run = TemplateRun(_template(failure_limit=1))
    provider = _ScriptedProvider([0.01, 0.2, 0.01, 0.3])
    assert await _steps(run, provider, 4) == [None, None, None, GateResult.failed]
    assert run.measurements == [(0.01, True), (0.2, False), (0.01, True), (0.3, False)]
    assert provider.queries[0] == 'r{app="a"}'
    assert run.evidence()["template.ratio.failures"] == 2.0


async def test_template_without_data_becomes_inconclusive_and_errors_count_as_no_data() -> None:
    run = TemplateRun(_template(inconclusive_limit=2))
    provider = _ScriptedProvider([None, PlatformError("down"), None])
    assert await _steps(run, provider, 3) == [None, None, GateResult.inconclusive]
    assert run.last_error == "down"


async def test_template_passes_after_count_or_at_the_end_of_the_bake() -> None:
    counted = TemplateRun(_template(count=2))
    assert await _steps(counted, _ScriptedProvider([0.0, 0.0]), 2) == [None, GateResult.passed]
    open_ended = TemplateRun(_template())
    await _steps(open_ended, _ScriptedProvider([0.0]), 1)
    assert open_ended.conclude() is GateResult.passed
    assert TemplateRun(_template()).conclude() is GateResult.inconclusive


async def test_template_is_not_queried_more_often_than_its_interval() -> None:
    run = TemplateRun(_template(interval_seconds=60))
    provider = _ScriptedProvider([0.0])
    for _ in range(5):
        await run.step(provider, "a", "canary", "2")
    assert len(provider.queries) == 1


def test_the_engine_wheel_carries_the_gate_policies(tmp_path: Path) -> None:
    # What an installed worker or the container image (which installs this wheel) reads.
    wheel = build_engine_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read("zdp/data/gate-policies.yaml").decode("utf-8")
    assert text == PACKAGED.read_text(encoding="utf-8")
    assert parse_gate_policies(yaml.safe_load(text)).names() == load_gate_policies(SHIPPED).names()
