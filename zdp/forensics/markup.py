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


# Columns whose values stay on one line (timestamps, labels, kinds of event): a table never
# squeezes them to make room for a long message. Every other cell breaks only between words,
# except free text, which may break anywhere (a digest inside a message).
NOWRAP = frozenset({"#", "Duration (s)", "Field", "What", "Status", "Phase", "Kind"})
FREE = frozenset({"Message", "Detail", "Reason", "Value", "Event"})


def column_class(header: str) -> str:
    if header in NOWRAP or header.endswith("(UTC)"):
        return "nowrap"
    return "free" if header in FREE or header.startswith("Signature") else ""


def html_table(
    header: list[str], rows: Iterable[Iterable[object]], caption: str = "", cls: str = ""
) -> Html:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    opening = [f'<td class="{c}">' if c else "<td>" for c in map(column_class, header)]
    body = "".join(
        "<tr>"
        + "".join(
            f"{opening[i] if i < len(opening) else '<td>'}{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return Html(
        (f'<table class="{cls}">' if cls else "<table>")
        + (f"<caption>{escape(caption)}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"
    )
