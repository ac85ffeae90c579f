"""How the CLI talks to people: one clear line on error, never a traceback."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from typer import _click
from typer.core import TyperGroup

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# Exit codes shared by every command. Deployment outcomes have their own (see zdp.cli.deploy).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `error: message` on stderr as one line and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def print_json(value: Any) -> None:
    """Print a model or plain value as JSON on stdout (for CI and scripts)."""
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


class ZdpGroup(TyperGroup):
    """A command group whose list shows each command's whole first sentence, wrapped to the
    terminal, never cut short with an ellipsis."""

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
