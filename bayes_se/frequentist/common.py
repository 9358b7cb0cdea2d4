"""Output shared by the frequentist results (``rma``, ``rma_mv``, ``matreg``): one naming for all.

Every result names its Wald intervals ``ci_lower``/``ci_upper``; ``coef_table()`` has the columns
:data:`COEF_COLUMNS` (metafor's ``estimate, se, zval/tval, pval, ci.lb, ci.ub``), ``predict()`` the
columns :data:`PREDICT_COLUMNS` (metafor's ``pred, se, ci.lb, ci.ub, pi.lb, pi.ub``), and
``to_dict()`` the keys of :data:`COMMON_KEYS` (see docs/comparing_with_metafor.md).

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48 (metafor 3.8-1 ``print.rma``, ``predict.rma``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["COEF_COLUMNS", "PREDICT_COLUMNS", "COMMON_KEYS", "coef_table", "format_coef_table",
           "format_p", "json_ready", "prediction_frame"]

#: Columns of every ``coef_table()`` (and keys of every ``to_dict()["coefficients"][name]``).
COEF_COLUMNS = ("estimate", "se", "stat", "pval", "ci_lower", "ci_upper")
#: Columns of every ``predict()``; ``pi_lower``/``pi_upper`` are NaN where a model has no
#: prediction interval (equal-effects model, ``matreg``, ``struct="UN"`` without an outcome).
PREDICT_COLUMNS = ("pred", "se", "ci_lower", "ci_upper", "pi_lower", "pi_upper")
#: Keys every ``to_dict()`` has.
COMMON_KEYS = ("model", "level", "coefficients", "vcov", "QM", "QM_df", "QM_p")


def coef_table(names, beta, se, stat, pval, ci_lower, ci_upper) -> pd.DataFrame:
    """The coefficient table: index ``names``, columns :data:`COEF_COLUMNS`."""
    values = (beta, se, stat, pval, ci_lower, ci_upper)
    return pd.DataFrame({c: np.asarray(v, float) for c, v in zip(COEF_COLUMNS, values)},
                        index=pd.Index([str(n) for n in names], name="coefficient"))


def format_p(p: float, bare: bool = False) -> str:
    """metafor's p-value format: ``<.0001`` below 1e-4, else four decimals (``= 0.0123``)."""
    if p < 1e-4:
        return "<.0001"
    return f"{p:.4f}" if bare else f"= {p:.4f}"


def format_coef_table(table: pd.DataFrame, stat_name: str = "zval") -> list[str]:
    """Lines of a coefficient table as metafor prints it, headed by the :data:`COEF_COLUMNS` names
    (``stat`` shown as ``stat_name``, ``zval`` or ``tval``)."""
    width = max(len(n) for n in table.index)
    heads = [stat_name if c == "stat" else c for c in COEF_COLUMNS]
    lines = [" " * width + "".join(f"{h:>10}" for h in heads)]
    for name, row in table.iterrows():
        lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>10.4f}" for c in ("estimate", "se", "stat"))
                     + f"{format_p(row['pval'], bare=True):>10}"
                     + "".join(f"{row[c]:>10.4f}" for c in ("ci_lower", "ci_upper")))
    return lines


def prediction_frame(pred, se, crit: float, extra_var: float | None, index=None) -> pd.DataFrame:
    """``pred +/- crit se`` and ``pred +/- crit sqrt(se^2 + extra_var)`` (NaN when ``extra_var`` is None).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PREDICT_COLUMNS`.
    """
    pred, se = np.asarray(pred, float), np.asarray(se, float)
    out = pd.DataFrame({"pred": pred, "se": se, "ci_lower": pred - crit * se, "ci_upper": pred + crit * se},
                       index=index)
    if extra_var is None:
        out["pi_lower"] = np.nan
        out["pi_upper"] = np.nan
    else:
        half = crit * np.sqrt(se**2 + extra_var)
        out["pi_lower"] = pred - half
        out["pi_upper"] = pred + half
    return out


def json_ready(value):
    """JSON-ready copy: DataFrames to ``{row: {column: value}}``, arrays to lists, NaN/inf to None,
    NumPy scalars to Python."""
    if isinstance(value, pd.DataFrame):
        return {str(k): json_ready(row.to_dict()) for k, row in value.iterrows()}
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def effect_inputs(yi, vi, data=None, slab=None):
    """``(yi, vi, frame, reserved, slab)`` of the flexible input of ``rma``-like functions: arrays, or
    an EffectData-like ``yi`` (``.yi``, ``.vi``, ``.study``, ``.frame``) whose frame and study labels
    are used unless ``data`` / ``slab`` are given. ``reserved``: the frame's columns a moderator
    formula may not use. ``yi`` and ``vi`` are checked (:func:`bayes_se.data.check_arrays`)."""
    from bayes_se.data import check_arrays
    from bayes_se.errors import DataError

    frame, reserved = data, ("yi", "vi")
    if hasattr(yi, "yi") and hasattr(yi, "vi"):  # duck-typed EffectData
        eff = yi
        if frame is None:
            frame = getattr(eff, "frame", None)
            reserved = ("yi", "vi", "study", "cluster")
        if slab is None:
            slab = getattr(eff, "study", None)
        vi = eff.vi if vi is None else vi
        yi = eff.yi
    if vi is None:
        raise DataError("sampling variances 'vi' are required", column="vi")
    yi, vi = check_arrays(yi, vi)
    return yi, vi, frame, reserved, slab
