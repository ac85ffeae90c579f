"""Every command's --help, as a new user reads it in an 80-column terminal: it exits 0, no
line is cut or wider than the terminal, no stray space before a period, no type label on a
flag that takes no value, arguments named alike, and the main commands show examples."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from zdp.cli.main import app

# The commands a new user starts with: each shows examples of itself.
WITH_EXAMPLES = ("", "deploy", "approve", "reject", "status", "timeline", "history", "up")


def _paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _paths(sub, (*path, name))


PATHS = list(_paths(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, (path, result.output)
    return result.stdout


def test_every_command_is_walked() -> None:
    names = {" ".join(p) for p in PATHS}
    for expected in ("deploy", "status", "timeline", "history", "keys generate", "release create"):
        assert expected in names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "zdp")
def test_help_reads_well_at_80_columns(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert text.startswith("Usage: zdp"), text
    for line in text.splitlines():
        assert len(line) <= 80, f"wider than 80 columns: {line!r}"
        assert "…" not in line, f"cut: {line!r}"
        assert not re.search(r"\s\.(\s|$)", line), f"space before a period: {line!r}"
        assert "<bool>" not in line, f"a flag shown as taking a value: {line!r}"
    # The command list shows each command's first sentence whole, never cut with "...".
    commands = text.split("\nCommands:\n", 1)[1] if "\nCommands:\n" in text else ""
    for line in commands.splitlines():
        assert not line.rstrip().endswith("..."), f"cut: {line!r}"
    # Arguments are named in capitals alike in every usage line ({APP}, {ID}, {NAME}).
    usage = text.splitlines()[0]
    for placeholder in re.findall(r"\{([^}]*)\}", usage):
        assert placeholder == placeholder.upper(), usage


@pytest.mark.parametrize("name", WITH_EXAMPLES, ids=lambda n: n or "zdp")
def test_main_commands_show_examples(name: str) -> None:
    text = _help(tuple(name.split()) if name else ())
    assert "Examples:" in text, text
    examples = text.split("Examples:", 1)[1].split("\n\n", 1)[0]
    shown = [line.strip() for line in examples.splitlines() if line.strip()]
    # Commands (a continued one goes on with its options), or one run with a setting.
    assert shown and all(line.startswith(("zdp ", "ZDP_", "--")) for line in shown), examples
    assert any(line.startswith(f"zdp {name}".strip()) for line in shown), examples


def test_who_you_are_and_which_server_are_documented() -> None:
    """$ZDP_USER, used as the default of --as and --initiator, is explained where zdp starts;
    so is which Temporal server the commands talk to."""
    text = " ".join(_help(()).split())
    assert "else $ZDP_USER, else your login name" in text
    assert "TEMPORAL_ADDRESS" in text and "the stack `zdp up` started" in text
    assert "--address HOST:PORT" in text
    assert "[default: $ZDP_USER, else your login name]" in " ".join(_help(("deploy",)).split())


def test_timeline_json_and_format_json_are_one_thing() -> None:
    text = " ".join(_help(("timeline",)).split())
    assert "--json Short for --format json." in text
