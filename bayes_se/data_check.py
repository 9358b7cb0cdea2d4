"""What the table reader understood, without fitting anything (``bayes-se check``).

:func:`describe` reads a table with :func:`bayes_se.table.read_table` and reports its delimiter,
decimal mark, encoding, column types, missing cells and, where the effect-size columns are present,
whether :func:`bayes_se.data.load_effects` accepts it; :func:`format_description` renders that as
text. It sits above both modules so that neither imports the other.
"""

from __future__ import annotations

import warnings

from bayes_se.data import load_effects
from bayes_se.errors import DataError, DataWarning
from bayes_se.table import DELIMITER_NAMES, infer_column, is_missing, label, read_table

def describe(source, *, sep=None, decimal=None, encoding=None, study=None, cluster=None,
             effect="yi", variance="vi", se=None) -> dict:
    """What the reader understood of a table, without fitting anything (``bayes-se check``).

    Returns a JSON-ready dict: ``source``, ``encoding``/``sep``/``decimal`` (each with
    ``*_from``: ``sniffed``, ``given``, ``sep= line``), ``rows`` (data rows read), ``k``, ``columns`` (name, type, missing cells,
    levels or range, the problem when a column cannot be read), ``missing`` (missing cells by
    column), ``study`` and ``clusters`` (when those columns are given), ``effect_table`` (whether
    :func:`bayes_se.data.load_effects` accepts the table with the given columns, and why not) and
    ``notes``.

    Raises
    ------
    DataError
        When the file cannot be read, or ``study``/``cluster`` name no column.
    """
    table = read_table(source, sep=sep, decimal=decimal, encoding=encoding)
    frame = table.frame
    notes = list(table.notes)
    for name, what in ((study, "study label"), (cluster, "cluster")):
        if name is not None and name not in frame.columns:
            raise DataError(f"no {what} column '{name}'; the columns are: "
                            + ", ".join(repr(c) for c in frame.columns), column=name)
    columns, missing = [], {}
    for name in frame.columns:
        entry = {"name": name}
        try:
            info = infer_column(frame[name], name, table.decimal, table.where)
        except DataError as exc:
            entry.update(type="unreadable", problem=str(exc),
                         missing=int(sum(is_missing(v) for v in frame[name])))
        else:
            entry.update(type=info.kind, missing=info.missing)
            levels = info.levels
            if info.kind in ("integer", "number"):
                entry.update(min=float(min(levels)), max=float(max(levels)))
            elif info.kind == "text":
                entry.update(n_levels=len(levels), levels=[str(v) for v in levels[:10]])
            if info.note:
                notes.append(info.note)
        missing[name] = entry["missing"]
        columns.append(entry)
    out = {
        "source": table.source, "encoding": table.encoding, "encoding_from": table.how.get("encoding"),
        "sep": table.sep, "sep_from": table.how.get("sep"), "decimal": table.decimal,
        "decimal_from": table.how.get("decimal"), "rows": len(frame), "k": len(frame),
        "columns": columns, "missing": missing, "study": None, "clusters": None,
    }
    if study is not None:
        labels = [label(v) for v in frame[study]]
        present = [v for v in labels if v is not None]
        out["study"] = {"column": study, "labels": len(set(present)), "missing": len(labels) - len(present),
                        "repeated": sorted({v for v in present if present.count(v) > 1})[:10]}
    if cluster is not None:
        ids = [label(v) for v in frame[cluster]]
        present = [v for v in ids if v is not None]
        sizes = [present.count(c) for c in dict.fromkeys(present)]
        out["clusters"] = {"column": cluster, "n": len(sizes), "missing": len(ids) - len(present),
                           "min_size": min(sizes, default=0), "max_size": max(sizes, default=0)}
    out["effect_table"] = _effect_check(table, effect, variance, se, study, cluster)
    if out["effect_table"].get("k") is not None:
        out["k"] = out["effect_table"]["k"]
    out["notes"] = notes
    return out


def _effect_check(table, effect, variance, se, study, cluster) -> dict:
    needed = [effect, se or variance]
    if any(c not in table.frame.columns for c in needed):
        absent = [c for c in needed if c not in table.frame.columns]
        return {"ok": False, "k": None,
                "problem": f"no column {', '.join(repr(c) for c in absent)}: not an effect-size table "
                           "with these column names (a correlation table, or pass --effect/--variance/--se)"}
    kwargs = {"effect": effect, "variance": variance, "se": se, "cluster": cluster}
    if study is not None:
        kwargs["study"] = study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the notes list them already
        try:
            data = load_effects(table, **kwargs)
        except DataError as exc:
            return {"ok": False, "k": None, "problem": str(exc)}
    return {"ok": True, "k": data.k, "n_clusters": data.n_clusters if data.cluster is not None else None}


def format_description(d: dict) -> str:
    """The text ``bayes-se check`` prints for :func:`describe`'s dict."""
    sep_name = DELIMITER_NAMES.get(d["sep"], "") if d["sep"] else ""
    lines = [d["source"]]
    if d["encoding"] is not None:
        lines.append(f"  encoding:     {d['encoding']} ({d['encoding_from']})")
        lines.append(f"  delimiter:    {d['sep']!r} {sep_name} ({d['sep_from']})")
    lines.append(f"  decimal mark: {d['decimal']!r} ({d['decimal_from']})")
    lines.append(f"  data rows:    {d['rows']}   k = {d['k']}")
    lines.append("  columns (type, missing cells, values):")
    width = max(len(str(c["name"])) for c in d["columns"])
    for c in d["columns"]:
        if c["type"] in ("integer", "number"):
            values = f"{c['min']:g} .. {c['max']:g}"
        elif c["type"] == "text":
            shown = ", ".join(repr(v) for v in c["levels"][:6]) + (", ..." if c["n_levels"] > 6 else "")
            values = f"{c['n_levels']} level(s): {shown}"
        elif c["type"] == "unreadable":
            values = c["problem"]
        else:
            values = "(every cell missing)"
        lines.append(f"    {str(c['name']):<{width}}  {c['type']:<10} {c['missing']:>4} missing   {values}")
    total = sum(d["missing"].values())
    lines.append(f"  missing cells: {total}" + (
        " (" + ", ".join(f"{k}: {v}" for k, v in d["missing"].items() if v) + ")" if total else ""))
    if d["study"]:
        s = d["study"]
        lines.append(f"  study labels: column '{s['column']}', {s['labels']} distinct, {s['missing']} missing"
                     + (f", repeated: {', '.join(s['repeated'])}" if s["repeated"] else ""))
    if d["clusters"]:
        c = d["clusters"]
        lines.append(f"  clusters:     {c['n']} in column '{c['column']}' ({c['min_size']}-{c['max_size']} rows each"
                     f"{', ' + str(c['missing']) + ' missing' if c['missing'] else ''})")
    e = d["effect_table"]
    lines.append(f"  effect table: ok, k = {e['k']}" if e["ok"] else f"  effect table: not usable: {e['problem']}")
    if d["notes"]:
        lines.append("  notes:")
        lines.extend(f"    - {n}" for n in d["notes"])
    return "\n".join(lines)
