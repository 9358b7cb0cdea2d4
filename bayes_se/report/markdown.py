"""Render a report's sections as Markdown (figures linked from ``figures/``, tables as pipe tables).

Blocks as in :mod:`bayes_se.report.html`. Pipe tables are written here rather than with
``DataFrame.to_markdown`` because that needs the optional ``tabulate`` package.
"""

from __future__ import annotations

import html
import re

import pandas as pd

from bayes_se.report.html import format_value

__all__ = ["render_markdown"]


#: Characters with a meaning in (GitHub-flavoured) Markdown anywhere in a line: backslash-escaped
#: (CommonMark 2.4: any ASCII punctuation may be), so ``*a_b*``, ``[x](url)``, ``![x](url)``,
#: `` `code` ``, ``~~x~~`` and ``a | b`` in a study label show as typed.
_MD_INLINE = re.compile(r"([\\`*_\[\]~|!{}])")
#: Line starts that open a block (heading, list, quote, setext underline, ordered list).
_MD_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+(?=[.)]))", flags=re.M)


def _inline(text) -> str:
    """User text shown literally inside a line: ``& < >`` HTML-escaped (Markdown passes raw HTML
    through to its renderer) and Markdown's inline syntax backslash-escaped."""
    return _MD_INLINE.sub(r"\\\1", html.escape(str(text), quote=False))


def _text(text) -> str:
    """:func:`_inline`, and block syntax at the start of each line (``# - + =``, ``1.``) escaped."""
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2) if not m.group(2).isdigit()
                              else m.group(0) + "\\", _inline(text))


def _cell(text: str) -> str:
    return _inline(text).replace("\n", " ")


def _fence(body: str) -> str:
    """A code fence longer than any run of backticks in ``body``, so the body cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


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
        fence = _fence(block[1])
        return f"{fence}\n{block[1]}\n{fence}"
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
