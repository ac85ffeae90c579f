"""docker-compose.temporal.yml and the worker image deliver the self-hosted stack they promise.

Docker cannot run where these tests run, so they read the files and check their content:
the services, the published ports, the database, the worker's command and connection, the
custom search attributes and their types, and the Dockerfile the worker is built from.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.temporal.yml"

# The contract in docs/architecture.md: the workflow upserts these, so the server must know them.
SEARCH_ATTRIBUTES = {
    "ZdpApp": "Keyword",
    "ZdpEnvironment": "Keyword",
    "ZdpVersion": "Keyword",
    "ZdpStrategy": "Keyword",
    "ZdpPhase": "Keyword",
    "ZdpOutcome": "Keyword",
    "ZdpRiskScore": "Int",
}
STACK = ("postgresql", "temporal", "temporal-ui", "zdp-worker")


# --------------------------------------------------------------------------- reading compose


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys, which pyyaml would otherwise drop silently."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: Any) -> str:
    """A compose value as it is with no variables set: `${X:-d}` is d, `$$` is a literal `$`."""
    text = str(value)
    text = _VARIABLE.sub(lambda m: m.group("default") or "", text)
    return text.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE.name} is missing at the repository root"
    document = yaml.load(COMPOSE_FILE.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: _interpolate(value) for key, value in raw.items()}


def _published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("[ip:]host:container") or long syntax."""
    pairs: set[tuple[int, int]] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            pairs.add((int(_interpolate(entry["published"])), int(entry["target"])))
            continue
        parts = _interpolate(entry).split("/")[0].split(":")
        if len(parts) >= 2:
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency and its condition (`service_started` when the list form is used)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else shlex.split(str(value))


def _search_attribute_commands(service: dict[str, Any]) -> list[dict[str, str]]:
    """Every `temporal operator search-attribute create` in a service's command, as its flags."""
    command = service.get("command") or ""
    script = "\n".join(map(str, command)) if isinstance(command, list) else str(command)
    found = []
    for line in _interpolate(script).splitlines():
        words = shlex.split(line, comments=True)
        if words[:4] != ["temporal", "operator", "search-attribute", "create"]:
            continue
        flags: dict[str, str] = {}
        rest = iter(words[4:])
        for word in rest:
            if word.startswith("--"):
                name, eq, value = word[2:].partition("=")
                flags[name] = value if eq else next(rest, "")
        found.append(flags)
    return found


def _registering_service(services: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    for name, service in services.items():
        if _search_attribute_commands(service):
            return name, service
    pytest.fail("no service runs `temporal operator search-attribute create`")


def _seconds(duration: Any) -> float:
    """A compose duration ("2m", "1m30s", "90s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --------------------------------------------------------------------------- reading the Dockerfile


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    result = []
    for line in joined:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [arguments for kw, arguments in instructions if kw == keyword]
    assert values, f"the final stage has no {keyword}"
    return json.loads(values[-1])


@pytest.fixture(scope="module")
def worker_dockerfile(services: dict[str, dict[str, Any]]) -> Path:
    build = services["zdp-worker"].get("build")
    assert build, "zdp-worker is not built from this repository"
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    return context / build.get("dockerfile", "Dockerfile")


# --------------------------------------------------------------------------- the stack


def test_the_stack_has_postgres_temporal_its_ui_and_the_worker(services):
    missing = [name for name in STACK if name not in services]
    assert not missing, f"services missing from {COMPOSE_FILE.name}: {missing}"


def test_every_depends_on_names_a_service_in_the_file(services):
    for name, service in services.items():
        for dependency in _depends_on(service):
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"


def test_temporal_grpc_and_the_ui_are_published_on_7233_and_8080(services):
    assert (7233, 7233) in _published(services["temporal"])
    assert (8080, 8080) in _published(services["temporal-ui"])


def test_the_ui_talks_to_the_temporal_service(services):
    assert _environment(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_temporal_is_a_pinned_1_2x_or_1_3x_auto_setup_image(services):
    image = services["temporal"]["image"]
    assert re.fullmatch(r"temporalio/auto-setup:1\.(2\d|3\d)\.\d+(\.\d+)?", image), image


def test_temporal_stores_its_state_in_the_postgresql_service(services):
    temporal = _environment(services["temporal"])
    postgres = _environment(services["postgresql"])
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] == "postgresql"
    assert temporal["DB_PORT"] == "5432"
    assert temporal["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert temporal["POSTGRES_PWD"] == postgres["POSTGRES_PASSWORD"]
    assert _depends_on(services["temporal"]).get("postgresql") == "service_healthy"


def test_postgres_credentials_come_from_variables_with_defaults(services):
    raw = services["postgresql"]["environment"]
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{key}:-[^}}]+\}}", str(raw[key])), f"{key} = {raw[key]!r}"


def test_postgresql_is_16_with_a_volume_and_a_pg_isready_healthcheck(services):
    postgresql = services["postgresql"]
    assert postgresql["image"].split(":")[1].startswith("16")
    assert any(
        str(volume).endswith(":/var/lib/postgresql/data") for volume in postgresql["volumes"]
    )
    assert "pg_isready" in " ".join(_argv(postgresql["healthcheck"]["test"]))


# --------------------------------------------------------------------------- search attributes


def test_every_custom_search_attribute_is_registered_with_its_type(services):
    _, service = _registering_service(services)
    registered = {flags["name"]: flags["type"] for flags in _search_attribute_commands(service)}
    assert registered == SEARCH_ATTRIBUTES


def test_search_attributes_go_to_the_worker_namespace_on_the_temporal_service(services):
    _, service = _registering_service(services)
    namespace = _environment(services["zdp-worker"])["TEMPORAL_NAMESPACE"]
    for flags in _search_attribute_commands(service):
        assert flags.get("address") == "temporal:7233", flags
        assert flags.get("namespace", "default") == namespace, flags


def test_search_attributes_are_registered_after_temporal_is_healthy_and_before_the_worker(
    services,
):
    name, service = _registering_service(services)
    assert _depends_on(service).get("temporal") == "service_healthy"
    assert _depends_on(services["zdp-worker"]).get(name) == "service_completed_successfully"


def test_registered_search_attributes_match_the_keys_the_engine_upserts():
    engine = pytest.importorskip("zdp.temporal", reason="zdp.temporal is not written yet")
    declared = {
        key.name: "".join(p.capitalize() for p in key.indexed_value_type.name.split("_"))
        for key in engine.SEARCH_ATTRIBUTES
    }
    assert declared == SEARCH_ATTRIBUTES


# --------------------------------------------------------------------------- the worker


def test_the_worker_is_built_from_the_dockerfile_at_the_repo_root(worker_dockerfile):
    assert worker_dockerfile == REPO / "Dockerfile"
    assert worker_dockerfile.is_file()


def test_the_worker_runs_zdp_worker(services, worker_dockerfile):
    worker = services["zdp-worker"]
    final = _final_stage(_instructions(worker_dockerfile))
    entrypoint = _argv(worker["entrypoint"]) if "entrypoint" in worker else None
    if entrypoint is None:
        entrypoint = _exec_form(final, "ENTRYPOINT")
    command = _argv(worker["command"]) if "command" in worker else _exec_form(final, "CMD")
    assert entrypoint + command == ["zdp", "worker"]


def test_the_worker_connects_to_temporal_in_the_stack(services):
    worker = services["zdp-worker"]
    environment = _environment(worker)
    assert environment["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert environment["TEMPORAL_NAMESPACE"]
    assert environment["ZDP_HOME"] == "/var/lib/zdp"
    assert "temporal" in _depends_on(worker)


def test_the_worker_mounts_the_repo_engine_config_and_its_trusted_keys(services):
    worker = services["zdp-worker"]
    environment = _environment(worker)
    mounts = {}
    for volume in worker.get("volumes") or []:
        source, target = _interpolate(volume).split(":")[:2]
        mounts[target] = source
    config_source = mounts.get(environment["ZDP_CONFIG"])
    assert config_source, "ZDP_CONFIG names a file that is not mounted"
    shipped = REPO / "infrastructure/canary-deployments/apps.yaml"  # a link to zdp/data/apps.yaml
    assert (REPO / config_source).resolve() == shipped.resolve()
    assert (REPO / config_source).is_file()
    assert environment["ZDP_TRUSTED_KEYS"] in mounts


def test_the_worker_restarts_and_has_time_to_drain_activities_on_stop(services):
    worker = services["zdp-worker"]
    assert worker.get("restart") == "unless-stopped"
    assert _seconds(worker.get("stop_grace_period", "10s")) >= 60


# --------------------------------------------------------------------------- the image


def test_the_image_is_built_in_a_builder_stage_from_python_3_11_slim(worker_dockerfile):
    instructions = _instructions(worker_dockerfile)
    stages = [arguments.split() for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "the Dockerfile is not multi-stage"
    # and pinned by digest: tests/unit/test_supply_chain.py::test_every_base_image_is_pinned_*
    assert all(stage[0].split("@")[0] == "python:3.11-slim" for stage in stages)
    builder = stages[0][-1]
    assert any(f"from={builder}" in arguments for _, arguments in _final_stage(instructions))


def test_the_image_runs_as_a_non_root_user(worker_dockerfile):
    users = [args for kw, args in _final_stage(_instructions(worker_dockerfile)) if kw == "USER"]
    assert users, "the final stage has no USER: the worker would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001"


def test_the_image_has_a_healthcheck(worker_dockerfile):
    checks = [
        args for kw, args in _final_stage(_instructions(worker_dockerfile)) if kw == "HEALTHCHECK"
    ]
    assert checks, "the final stage has no HEALTHCHECK"
    assert checks[-1].upper() != "NONE"
    assert " CMD " in f" {checks[-1]} "


def test_the_image_defaults_to_zdp_worker_with_zdp_home_set(worker_dockerfile):
    final = _final_stage(_instructions(worker_dockerfile))
    assert _exec_form(final, "ENTRYPOINT") == ["zdp"]
    assert _exec_form(final, "CMD") == ["worker"]
    assert any(kw == "ENV" and "ZDP_HOME=" in args for kw, args in final)
    assert any(kw == "WORKDIR" for kw, _ in final)


def test_the_image_carries_the_engine_config_it_names(worker_dockerfile):
    final = _final_stage(_instructions(worker_dockerfile))
    copies = [args.split() for kw, args in final if kw == "COPY" and "--from" not in args]
    # The file itself (infrastructure/canary-deployments/apps.yaml links to it).
    assert ["zdp/data/apps.yaml", "/etc/zdp/apps.yaml"] in copies
    assert any(kw == "ENV" and "ZDP_CONFIG=/etc/zdp/apps.yaml" in args for kw, args in final)


def test_the_build_context_leaves_out_local_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".zdp", ".zdp-demo"} <= ignored  # the demo home holds its keys
