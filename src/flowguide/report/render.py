"""Render the report's sections as Markdown and HTML: a table of contents first, numbers rounded,
counts as integers, wide tables in their own horizontally scrolling box."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from flowguide.report.section import Section


def _formatted(table: pd.DataFrame, decimals: int) -> pd.DataFrame:
    """Numbers rounded for reading; missing values as '-'."""

    def cell(value: Any, integer: bool) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "-"
        if isinstance(value, float):
            return f"{value:.0f}" if integer else f"{value:.{decimals}f}"
        return str(value)

    def column(values: pd.Series) -> pd.Series:
        # A count column (n_*, *_n, clips, support, epochs, ...) read as float because of a
        # missing value is printed as integers.
        name = str(values.name).lower()
        countlike = name.startswith("n_") or name.endswith("_n") or name in COUNT_COLUMNS
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.dropna()
        integer = countlike and len(whole) > 0 and bool((whole == whole.round()).all())
        return values.map(lambda v: cell(v, integer))

    return table.apply(column) if len(table) else table.astype(str)


COUNT_COLUMNS = {"clips", "support", "epochs", "videos", "frames", "count", "n", "t"}


TITLE = "flowguide report"


def _anchor(index: int) -> str:
    return f"s{index + 1}"


def render_markdown(sections: list[Section], decimals: int = 4) -> str:
    lines = [f"# {TITLE}", "", "Contents:", ""]
    lines += [f"{i + 1}. [{s.title}](#{_anchor(i)})" for i, s in enumerate(sections)]
    lines.append("")
    for i, section in enumerate(sections):
        lines += [f'<a id="{_anchor(i)}"></a>', "", f"## {i + 1}. {section.title}", ""]
        for text in section.text:
            lines += [text, ""]
        for caption, table in section.tables:
            lines += [
                f"**{caption}**",
                "",
                _formatted(table, decimals).to_markdown(index=False, disable_numparse=True),
                "",
            ]
        for caption, image in section.images:
            lines += [f"![{caption}]({image})", "", f"*{caption}*", ""]
        for missing in section.missing:
            lines += [f"> Missing: {missing}", ""]
    return "\n".join(lines)


def render_html(sections: list[Section], decimals: int = 4) -> str:
    parts = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>{TITLE}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        ".missing{color:#a40}img{max-width:100%}"
        ".scroll{overflow-x:auto;max-width:100%;margin-bottom:8px}"  # wide tables scroll
        "td{white-space:nowrap}nav ol{columns:2}</style>",
        "</head><body>",
        f"<h1>{TITLE}</h1>",
        "<nav><b>Contents</b><ol>",
    ]
    parts += [
        f"<li><a href='#{_anchor(i)}'>{html.escape(s.title)}</a></li>"
        for i, s in enumerate(sections)
    ]
    parts.append("</ol></nav>")
    for i, section in enumerate(sections):
        parts.append(f"<h2 id='{_anchor(i)}'>{i + 1}. {html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(text)}</p>" for text in section.text]
        for caption, table in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>")
            table_html = _formatted(table, decimals).to_html(index=False, escape=True, border=0)
            parts.append(f"<div class='scroll'>{table_html}</div>")
        for caption, image in section.images:
            parts.append(
                f"<figure><img src='{html.escape(image)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts += [f"<p class='missing'>Missing: {html.escape(m)}</p>" for m in section.missing]
    parts.append("</body></html>")
    return "\n".join(parts)
