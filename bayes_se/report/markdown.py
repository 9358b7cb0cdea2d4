"""Render a report's sections as Markdown (figures linked from ``figures/``, tables as pipe tables).

Blocks as in :mod:`bayes_se.report.html`. Pipe tables are written here rather than with
``DataFrame.to_markdown`` because that needs the optional ``tabulate`` package.
"""

from __future__ import annotations

import html

import pandas as pd

from bayes_se.report.html import format_value

__all__ = ["render_markdown"]


def _text(text) -> str:
    """User text with ``& < >`` escaped: Markdown passes raw HTML through to its renderer."""
    return html.escape(str(text), quote=False)


def _cell(text: str) -> str:
    return _text(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(df: pd.DataFrame, caption: str) -> str:
    show_index = not isinstance(df.index, pd.RangeIndex)
    head = ([df.index.name or ""] if show_index else []) + [str(c) for c in df.columns]
    lines = [f"*{_cell(caption)}*", ""] if caption else []
    lines.append("| " + " | ".join(_cell(h) for h in head) + " |")
    lines.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for idx, row in df.iterrows():
        cells = ([str(idx)] if show_index else []) + [format_value(v) for v in row.tolist()]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _block(block) -> str:
    kind = block[0]
    if kind in ("p", "math"):
        return _text(block[1])
    if kind == "alert":
        return f"> **WARNING:** {_text(block[1])}"
    if kind == "ok":
        return f"> {_text(block[1])}"
    if kind == "missing":
        return f"*{_text(block[1])}*"
    if kind == "list":
        return "\n".join(f"- {_text(i)}" for i in block[1])
    if kind == "code":
        return "```\n" + block[1] + "\n```"
    if kind == "table":
        return _table(block[1], block[2])
    if kind == "figure":
        _, name, caption, _png, _width = block
        return f"![{_cell(caption)}](figures/{name}.png)"
    raise ValueError(f"unknown block kind {kind!r}")


def render_markdown(title: str, verdict: str, sections: list) -> str:
    """The report as Markdown text."""
    parts = [f"# {_text(title)}", "", f"**{_text(verdict)}**", ""]
    for sec in sections:
        parts += [f"## {_text(sec['title'])}", ""]
        for b in sec["blocks"]:
            parts += [_block(b), ""]
    return "\n".join(parts)
