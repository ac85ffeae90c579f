"""Forensic reports of a deployment: its result as JSON, Markdown or one self-contained HTML page.

The timeline is the forensic record; these renderers only arrange it. Each is a pure function of
a DeploymentResult (no clock, no I/O), so an auditor can regenerate a report from the same result
and diff it byte for byte. Every piece of text from the result is escaped for its format: a
message can never become markup. The HTML page fetches nothing: its style and its chart (inline
SVG, with a table of the same numbers) are part of the page, and it prints as it reads.

This module is the entry point. The work is split by responsibility: facts.py reads the timeline,
text.py holds what every format shows alike, markdown.py and html_page.py lay out each format,
with markup.py (HTML building blocks) and chart.py (the inline SVG chart) under the page.
"""

from __future__ import annotations

from collections.abc import Callable

from zdp.forensics.html_page import render_html
from zdp.forensics.markdown import render_markdown
from zdp.models import DeploymentResult

__all__ = ["RENDERERS", "render_html", "render_json", "render_markdown"]


def render_json(result: DeploymentResult) -> str:
    """The result itself, indented: `DeploymentResult.model_validate_json` reads it back."""
    return result.model_dump_json(indent=2) + "\n"


RENDERERS: dict[str, Callable[[DeploymentResult], str]] = {
    "json": render_json,
    "md": render_markdown,
    "html": render_html,
}
