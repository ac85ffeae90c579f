"""Assertions shared by the CLI tests: what a user sees when something is wrong."""

from __future__ import annotations

from typer.testing import Result


def assert_one_line_error(result: Result, contains: str) -> None:
    """Exit 1, nothing on stdout, exactly one `error: …` line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    assert "Traceback" not in result.output
