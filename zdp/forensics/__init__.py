"""Forensic reports of a finished deployment, rendered from its result's timeline."""

from zdp.forensics.report import RENDERERS, render_html, render_json, render_markdown

__all__ = ["RENDERERS", "render_html", "render_json", "render_markdown"]
