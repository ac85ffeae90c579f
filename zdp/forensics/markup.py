"""HTML building blocks: escaping, badges and tables. Text from the result never becomes markup."""

from __future__ import annotations

import html
from collections.abc import Iterable

from zdp.forensics.facts import as_text


class Html(str):
    """Markup built here; any other string is escaped where it is inserted."""


def escape(value: object) -> str:
    return value if isinstance(value, Html) else html.escape(as_text(value), quote=True)


def badge(tone: str, text: str) -> Html:
    return Html(f'<span class="badge {tone}">{escape(text)}</span>')


def html_table(
    header: list[str], rows: Iterable[Iterable[object]], caption: str = "", cls: str = ""
) -> Html:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>\n" for row in rows
    )
    return Html(
        (f'<table class="{cls}">' if cls else "<table>")
        + (f"<caption>{escape(caption)}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"
    )
