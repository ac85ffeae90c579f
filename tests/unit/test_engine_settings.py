"""zdp/settings.py is the one reader of ZDP_* variables, and docs/settings.md its table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from zdp.errors import ConfigError
from zdp.settings import Settings, settings

REPO = Path(__file__).resolve().parents[2]
ENGINE = [REPO / name for name in ("zdp", "activities", "workflows", "workers")]
ALLOWED = REPO / "zdp" / "settings.py"


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's top-level NAME = "string" assignments."""
    found: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _is_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def environment_reads(path: Path) -> list[tuple[int, str]]:
    """(line, variable) for every read of a variable from os.environ / os.getenv."""
    tree = ast.parse(path.read_text(), str(path))
    constants = _constants(tree)

    def name_of(key: ast.expr) -> str:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
        if isinstance(key, ast.Name):
            return constants.get(key.id, f"<{key.id}>")
        return "<computed>"

    reads: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value):
                reads.append((node.lineno, name_of(node.args[0])))
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "getenv"
                and isinstance(func.value, ast.Name)
                and func.value.id == "os"
            ):
                reads.append((node.lineno, name_of(node.args[0])))
        if (
            isinstance(node, ast.Subscript)
            and _is_environ(node.value)
            and isinstance(node.ctx, ast.Load)
        ):
            reads.append((node.lineno, name_of(node.slice)))
        if isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            reads.append((node.lineno, name_of(node.left)))
    return reads


def test_no_engine_module_but_settings_reads_a_zdp_variable() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for folder in ENGINE
        for path in sorted(folder.rglob("*.py"))
        if path != ALLOWED
        for line, name in environment_reads(path)
        # A ZDP_ name, or a name not known here (keys_cmd's --passphrase-env VAR is the user's).
        if name.startswith("ZDP_") or (name.startswith("<") and name != "<env_var>")
    ]
    assert offenders == []


def test_the_scan_finds_each_way_of_reading_a_variable(tmp_path: Path) -> None:
    """The check above would catch a read written any of these ways."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        'import os\nNAME = "ZDP_X"\n'
        'a = os.environ.get("ZDP_A")\nb = os.getenv("ZDP_B")\nc = os.environ["ZDP_C"]\n'
        'd = os.environ.get(NAME)\ne = "ZDP_E" in os.environ\nos.environ["ZDP_W"] = "written"\n'
    )
    assert [name for _, name in environment_reads(sample)] == [
        "ZDP_A", "ZDP_B", "ZDP_C", "ZDP_X", "ZDP_E",
    ]  # fmt: skip


def test_docs_table_lists_exactly_the_settings() -> None:
    table = (REPO / "docs" / "settings.md").read_text()
    documented = re.findall(r"^\| `(ZDP_[A-Z0-9_]+)` \|", table, flags=re.M)
    assert documented == [f"ZDP_{name}" for name in Settings.model_fields]


def test_zdp_home_is_absolute_and_a_blank_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZDP_HOME", "relative/home")
    assert settings().home == tmp_path.resolve() / "relative" / "home"
    monkeypatch.delenv("ZDP_HOME")
    assert settings().home == tmp_path.resolve() / ".zdp"
    monkeypatch.setenv("ZDP_REDIS_URL", "   ")
    monkeypatch.setenv("ZDP_PORT_BASE", "")
    assert settings().REDIS_URL is None and settings().PORT_BASE == 18000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ZDP_PORT_BASE", "eighteen", "ZDP_PORT_BASE: Input should be a valid integer"),
        ("ZDP_APP_CONFINEMENT", "loose", "ZDP_APP_CONFINEMENT: Input should be 'auto'"),
        ("ZDP_TEMPORAL_PORT", "70000", "ZDP_TEMPORAL_PORT: Input should be less than"),
    ],
)
def test_a_malformed_variable_is_one_line_naming_it(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        settings()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_secrets_stay_out_of_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDP_SLACK_BOT_TOKEN", "xoxb-secret-token")
    monkeypatch.setenv("ZDP_AUDIT_DATABASE_URL", "postgresql://zdp:db-password@db/zdp")
    shown = repr(settings())
    assert "xoxb-secret-token" not in shown and "db-password" not in shown
