"""Render a report's sections as one self-contained HTML page.

No JavaScript, no network: CSS is inline and figures are embedded as base64 PNG. Every string that
comes from the user or the data (titles, study labels, column names, spec text) passes through
:func:`html.escape`; only the fixed markup of this module is written unescaped.

A report is a list of sections ``{"id", "title", "blocks"}``; a block is a tuple whose first item
says its kind: ``("p", text)``, ``("alert", text)``, ``("ok", text)``, ``("list", items)``,
``("table", DataFrame, caption)``, ``("figure", name, caption, png_bytes, width)`` (width
``"single"`` or ``"double"``: half or full page width), ``("missing", text)``
(a figure that could not be drawn), ``("code", text)``.
"""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

__all__ = ["render_html", "format_value", "CSS"]

TEXT_TD = '<td class="text">'  # text columns align left, numbers right
TEXT_TH = '<th class="text">'

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
p.verdict { font-size: 1.1rem; margin-top: 0; }
div.alert { background: #fde8e8; border: 3px solid #b00020; color: #5c0011; padding: .8rem 1rem;
            font-weight: 600; }
div.ok { background: #e8f5e9; border: 1px solid #2e7d32; padding: .5rem 1rem; }
div.missing { background: #f5f5f5; border: 1px dashed #999; color: #555; padding: .5rem 1rem;
              font-style: italic; }
div.table-wrap { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #555; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure.single img { width: 32rem; }
figure.double img { width: 100%; }
td.text, th.text { text-align: left; }
p.verdict.failed { color: #b00020; font-weight: 700; }
figcaption { font-size: .9rem; color: #444; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .6rem; overflow-x: auto; font-size: .8rem;
      white-space: pre-wrap; }
.math { font-family: "Cambria Math", "STIX Two Math", Georgia, serif; }
"""


def format_value(v) -> str:
    """A table cell: 4 significant digits for floats, '–' for missing values."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def _table(df: pd.DataFrame, caption: str) -> str:
    e = html.escape
    index_name = df.index.name or ""
    show_index = not isinstance(df.index, pd.RangeIndex)
    text_cols = [not pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    head = ([f"<th>{e(str(index_name))}</th>"] if show_index else [])
    head += [(TEXT_TH if t else "<th>") + e(str(c)) + "</th>" for c, t in zip(df.columns, text_cols)]
    rows = []
    for idx, row in df.iterrows():
        cells = ([f"<th scope=\"row\">{e(str(idx))}</th>"] if show_index else [])
        cells += [(TEXT_TD if t else "<td>") + e(format_value(v)) + "</td>" for v, t in zip(row.tolist(), text_cols)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    return (f"<div class=\"table-wrap\"><table>{cap}<thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _block(block) -> str:
    e = html.escape
    kind = block[0]
    if kind == "p":
        return f"<p>{e(block[1])}</p>"
    if kind == "math":
        return f"<p class=\"math\">{e(block[1])}</p>"
    if kind == "alert":
        return f"<div class=\"alert\" role=\"alert\">{e(block[1])}</div>"
    if kind == "ok":
        return f"<div class=\"ok\">{e(block[1])}</div>"
    if kind == "missing":
        return f"<div class=\"missing\">{e(block[1])}</div>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in block[1]) + "</ul>"
    if kind == "code":
        return f"<pre>{e(block[1])}</pre>"
    if kind == "table":
        return _table(block[1], block[2])
    if kind == "figure":
        _, name, caption, png, width = block
        data = base64.b64encode(png).decode("ascii")
        cls = "double" if width == "double" else "single"
        return (f"<figure id=\"fig-{e(name)}\" class=\"{cls}\"><img alt=\"{e(caption)}\" src=\"data:image/png;base64,{data}\">"
                f"<figcaption>{e(caption)}</figcaption></figure>")
    raise ValueError(f"unknown block kind {kind!r}")


def render_html(title: str, verdict: str, sections: list, failed: bool = False) -> str:
    """The whole page as text (UTF-8), title and verdict at the top (red when ``failed``), then one
    ``<section>`` each."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<header><h1>{e(title)}</h1><p class=\"verdict{' failed' if failed else ''}\">{e(verdict)}</p></header>"]
    for sec in sections:
        parts.append(f"<section id=\"{e(sec['id'])}\"><h2>{e(sec['title'])}</h2>")
        parts.extend(_block(b) for b in sec["blocks"])
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
