"""Effect sizes and their sampling variances from reported statistics (metafor ``escalc``).

Each function returns ``(yi, vi)``, float arrays of the effect and its large-sample sampling
variance, computed exactly as metafor 3.8-1's ``escalc`` does with its defaults (``vtype="LS"``,
``add=1/2``, ``to="only0"``), so a table built here meets metafor to rounding. :func:`escalc` is the
table front end: ``escalc("SMD", data=df, m1i="m_t", ...)`` returns ``df`` with ``yi`` and ``vi``.

Bad input (a sample size under the minimum, an SD <= 0, ``|r| >= 1``, a negative count, a missing
value) raises :class:`bayes_se.errors.DataError` naming the 1-based row and the argument.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48; ``escalc`` documentation and source (metafor 3.8-1).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import norm

from bayes_se.errors import DataError
from bayes_se.table import NotANumber, parse_number

__all__ = [
    "escalc", "smd", "smd_from_t", "md", "smcr", "smcc", "zcor", "cor", "log_or", "log_rr",
    "from_ci", "hedges_j", "DEFAULT_PRE_POST_R",
]

DEFAULT_PRE_POST_R = 0.5  # pre-post correlation used when a study reports none (with a warning)
_ADD_TO = ("only0", "all", "if0all", "none")


class _Named:
    """An argument's values with the name errors should show (escalc names the data column)."""

    def __init__(self, values, label):
        self.values, self.label = values, label


class _Column(str):
    """A data column name that stands for a function argument (errors name both)."""

    def __new__(cls, column, argument):
        self = super().__new__(cls, column)
        self.argument = argument
        return self


def _fail(message, row, label):
    if isinstance(label, _Column):
        message += f" (argument '{label.argument}')"
    raise DataError(message, row=row, column=str(label))


def hedges_j(m):
    """Exact small-sample correction of Hedges (1981) for ``m`` degrees of freedom.

    ``J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))``, computed on the log scale
    (metafor's ``.cmicalc``); about ``1 - 3/(4m - 1)``.

    References
    ----------
    Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and related
    estimators. *Journal of Educational Statistics*, 6(2), 107-128.
    """
    m = np.asarray(m, dtype=float)
    return np.exp(gammaln(m / 2) - 0.5 * np.log(m / 2) - gammaln((m - 1) / 2))


# ----------------------------------------------------------------------------- two-group means


def smd(m1i, sd1i, n1i, m2i, sd2i, n2i, correct=True):
    """Standardized mean difference, Hedges' g (metafor ``measure="SMD"``).

    ``yi = J(m) (m1i - m2i) / s_p``, ``s_p^2 = ((n1i-1) sd1i^2 + (n2i-1) sd2i^2) / m``,
    ``m = n1i + n2i - 2``; ``vi = 1/n1i + 1/n2i + yi^2 / (2 (n1i + n2i))`` (``vtype="LS"``).

    Parameters
    ----------
    m1i, sd1i, n1i, m2i, sd2i, n2i : array_like
        Means, SDs and sizes of group 1 (e.g. treatment) and group 2 (control).
    correct : bool
        Apply Hedges' exact correction ``J(m)`` (:func:`hedges_j`); False gives Cohen's d.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Hedges, L. V. (1981). *Journal of Educational Statistics*, 6(2), 107-128.
    Borenstein, M., Hedges, L. V., Higgins, J. P. T. & Rothstein, H. R. (2009). *Introduction to
    Meta-Analysis*, ch. 4. Wiley. metafor ``escalc`` (measure ``"SMD"``).
    """
    (m1, sd1, n1, m2, sd2, n2), names = _floats(
        m1i=m1i, sd1i=sd1i, n1i=n1i, m2i=m2i, sd2i=sd2i, n2i=n2i)
    _at_least(n1, 2, names["n1i"])
    _at_least(n2, 2, names["n2i"])
    _positive(sd1, names["sd1i"])
    _positive(sd2, names["sd2i"])
    m = n1 + n2 - 2
    sp = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / m)
    yi = (hedges_j(m) if correct else 1.0) * (m1 - m2) / sp
    return yi, 1 / n1 + 1 / n2 + yi**2 / (2 * (n1 + n2))


def smd_from_t(ti, n1i, n2i, correct=True):
    """Hedges' g from a two-sample t statistic (metafor ``measure="SMD"`` with ``ti``).

    ``d = ti sqrt(1/n1i + 1/n2i)``, ``yi = J(n1i + n2i - 2) d``,
    ``vi = 1/n1i + 1/n2i + yi^2 / (2 (n1i + n2i))``.

    Parameters
    ----------
    ti : array_like
        Independent-samples t statistics (sign: group 1 minus group 2).
    n1i, n2i : array_like
        Group sizes.
    correct : bool
        Apply Hedges' correction.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 4 and 7; metafor ``escalc``.
    """
    (t, n1, n2), names = _floats(ti=ti, n1i=n1i, n2i=n2i)
    _at_least(n1, 2, names["n1i"])
    _at_least(n2, 2, names["n2i"])
    d = t * np.sqrt(1 / n1 + 1 / n2)
    yi = (hedges_j(n1 + n2 - 2) if correct else 1.0) * d
    return yi, 1 / n1 + 1 / n2 + yi**2 / (2 * (n1 + n2))


def md(m1i, sd1i, n1i, m2i, sd2i, n2i):
    """Raw mean difference (metafor ``measure="MD"``).

    ``yi = m1i - m2i``, ``vi = sd1i^2/n1i + sd2i^2/n2i`` (no equal-variance assumption).

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 4; metafor ``escalc``.
    """
    (m1, sd1, n1, m2, sd2, n2), names = _floats(
        m1i=m1i, sd1i=sd1i, n1i=n1i, m2i=m2i, sd2i=sd2i, n2i=n2i)
    _at_least(n1, 2, names["n1i"])
    _at_least(n2, 2, names["n2i"])
    _positive(sd1, names["sd1i"])
    _positive(sd2, names["sd2i"])
    return m1 - m2, sd1**2 / n1 + sd2**2 / n2


# ----------------------------------------------------------------------- pre-post mean change


def smcr(m1i, m2i, sd1i, ni, ri=None, correct=True):
    """Standardized mean change with raw-score standardization (metafor ``measure="SMCR"``).

    ``yi = J(ni - 1) (m1i - m2i) / sd1i``, ``vi = 2 (1 - ri) / ni + yi^2 / (2 ni)``. As in metafor,
    ``sd1i`` is the SD that standardizes (usually the pre-test SD): e.g. ``m1i`` = post mean,
    ``m2i`` = pre mean, ``sd1i`` = pre SD.

    Parameters
    ----------
    m1i, m2i : array_like
        Means at the two occasions.
    sd1i : array_like
        Standardizing SD.
    ni : array_like
        Number of participants (at least 3).
    ri : array_like, optional
        Pre-post correlation. When None, ``DEFAULT_PRE_POST_R`` = 0.5 is used and a
        ``UserWarning`` says so (results then depend on that assumption).
    correct : bool
        Apply Hedges' correction ``J(ni - 1)``.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Becker, B. J. (1988). Synthesizing standardized mean-change measures. *British Journal of
    Mathematical and Statistical Psychology*, 41, 257-278. Morris, S. B. (2008). Estimating effect
    sizes from pretest-posttest-control group designs. *Organizational Research Methods*, 11,
    364-386. metafor ``escalc`` (measure ``"SMCR"``).
    """
    ri = _default_r(ri, "smcr")
    (m1, m2, sd1, n, r), names = _floats(m1i=m1i, m2i=m2i, sd1i=sd1i, ni=ni, ri=ri)
    _at_least(n, 3, names["ni"])
    _positive(sd1, names["sd1i"])
    _correlation(r, names["ri"])
    yi = (hedges_j(n - 1) if correct else 1.0) * (m1 - m2) / sd1
    return yi, 2 * (1 - r) / n + yi**2 / (2 * n)


def smcc(m1i, m2i, sd1i, sd2i, ni, ri=None, correct=True):
    """Standardized mean change with change-score standardization (metafor ``measure="SMCC"``).

    ``sd_d = sqrt(sd1i^2 + sd2i^2 - 2 ri sd1i sd2i)``, ``yi = J(ni - 1) (m1i - m2i) / sd_d``,
    ``vi = 1/ni + yi^2 / (2 ni)``.

    Parameters
    ----------
    m1i, m2i, sd1i, sd2i : array_like
        Means and SDs at the two occasions.
    ni : array_like
        Number of participants (at least 3).
    ri : array_like, optional
        Pre-post correlation; None uses ``DEFAULT_PRE_POST_R`` = 0.5 with a ``UserWarning``.
    correct : bool
        Apply Hedges' correction ``J(ni - 1)``.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Gibbons, R. D., Hedeker, D. R. & Davis, J. M. (1993). *Journal of Educational Statistics*, 18,
    271-279. Morris (2008), *Organizational Research Methods*, 11, 364-386. metafor ``escalc``
    (measure ``"SMCC"``).
    """
    ri = _default_r(ri, "smcc")
    (m1, m2, sd1, sd2, n, r), names = _floats(m1i=m1i, m2i=m2i, sd1i=sd1i, sd2i=sd2i, ni=ni, ri=ri)
    _at_least(n, 3, names["ni"])
    _positive(sd1, names["sd1i"])
    _positive(sd2, names["sd2i"])
    _correlation(r, names["ri"])
    sdd = np.sqrt(sd1**2 + sd2**2 - 2 * r * sd1 * sd2)
    _positive(sdd, names["sd1i"], what="the SD of the change scores")
    yi = (hedges_j(n - 1) if correct else 1.0) * (m1 - m2) / sdd
    return yi, 1 / n + yi**2 / (2 * n)


# ------------------------------------------------------------------------------ correlations


def zcor(ri, ni):
    """Fisher's r-to-z transformed correlation (metafor ``measure="ZCOR"``).

    ``yi = atanh(ri) = 0.5 log((1 + ri)/(1 - ri))``, ``vi = 1 / (ni - 3)``.

    Parameters
    ----------
    ri : array_like
        Correlations, ``|ri| < 1``.
    ni : array_like
        Sample sizes (at least 5: metafor gives no variance for ``ni <= 4``).

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Fisher, R. A. (1921). *Metron*, 1, 3-32. Borenstein et al. (2009), ch. 6; metafor ``escalc``.
    """
    (r, n), names = _floats(ri=ri, ni=ni)
    _correlation(r, names["ri"])
    _at_least(n, 5, names["ni"])
    return np.arctanh(r), 1 / (n - 3)


def cor(ri, ni):
    """Raw correlation coefficient (metafor ``measure="COR"``).

    ``yi = ri``, ``vi = (1 - ri^2)^2 / (ni - 1)``.

    Parameters
    ----------
    ri : array_like
        Correlations, ``|ri| < 1``.
    ni : array_like
        Sample sizes (at least 5, as metafor).

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 6; metafor ``escalc``.
    """
    (r, n), names = _floats(ri=ri, ni=ni)
    _correlation(r, names["ri"])
    _at_least(n, 5, names["ni"])
    return r.copy(), (1 - r**2) ** 2 / (n - 1)


# --------------------------------------------------------------------------------- 2x2 tables


def log_or(ai, bi, ci, di, add=0.5, to="only0"):
    """Log odds ratio of a 2x2 table (metafor ``measure="OR"``).

    Group 1 has ``ai`` events and ``bi`` non-events, group 2 ``ci`` and ``di``.
    ``yi = log(ai di / (bi ci))``, ``vi = 1/ai + 1/bi + 1/ci + 1/di``, after adding ``add`` to
    every cell of the tables chosen by ``to``.

    Parameters
    ----------
    ai, bi, ci, di : array_like
        Cell counts (>= 0).
    add : float
        Continuity correction.
    to : {"only0", "all", "if0all", "none"}
        Tables that get ``add``: those with a zero cell, all, all if any has a zero cell, none.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 5; metafor ``escalc``.
    """
    a, b, c, d = _table(ai, bi, ci, di, add, to)
    return np.log(a * d / (b * c)), 1 / a + 1 / b + 1 / c + 1 / d


def log_rr(ai, bi, ci, di, add=0.5, to="only0"):
    """Log risk ratio of a 2x2 table (metafor ``measure="RR"``).

    ``yi = log((ai/n1i) / (ci/n2i))``, ``vi = 1/ai - 1/n1i + 1/ci - 1/n2i`` with
    ``n1i = ai + bi``, ``n2i = ci + di``, after the continuity correction of :func:`log_or`.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 5; metafor ``escalc``.
    """
    a, b, c, d = _table(ai, bi, ci, di, add, to)
    n1, n2 = a + b, c + d
    return np.log(a / n1) - np.log(c / n2), 1 / a - 1 / n1 + 1 / c - 1 / n2


def from_ci(estimate, lower, upper, level=0.95, log=True):
    """Effect and variance from a reported estimate and its symmetric confidence interval.

    With ``log=True`` (ratios: OR, RR, HR) ``yi = log(estimate)`` and
    ``vi = ((log(upper) - log(lower)) / (2 z))^2``, ``z = Phi^{-1}(1 - (1 - level)/2)``; with
    ``log=False`` the same without logs.

    Parameters
    ----------
    estimate, lower, upper : array_like
        Point estimate and confidence limits (positive when ``log``).
    level : float
        Confidence level of the interval.
    log : bool
        Work on the log scale.

    Returns
    -------
    yi, vi : ndarray

    References
    ----------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 5; Higgins, J. P. T. et al.
    (eds., 2023), *Cochrane Handbook*, section 6.3.
    """
    (est, lo, hi), names = _floats(estimate=estimate, lower=lower, upper=upper)
    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {level}", column="level")
    if log:
        for values, name in ((est, "estimate"), (lo, "lower"), (hi, "upper")):
            _positive(values, names[name])
        est, lo, hi = np.log(est), np.log(lo), np.log(hi)
    for i in range(est.size):
        if not lo[i] < hi[i] or not lo[i] <= est[i] <= hi[i]:
            _fail("the interval must satisfy lower <= estimate <= upper with lower < upper",
                  i + 1, names["estimate"])
    z = norm.ppf(1 - (1 - level) / 2)
    return est, ((hi - lo) / (2 * z)) ** 2


# --------------------------------------------------------------------------------- front end

_MEASURES = {
    "SMD": (smd, ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"), ("correct",)),
    "SMD_T": (smd_from_t, ("ti", "n1i", "n2i"), ("correct",)),
    "MD": (md, ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"), ()),
    "SMCR": (smcr, ("m1i", "m2i", "sd1i", "ni"), ("ri", "correct")),
    "SMCC": (smcc, ("m1i", "m2i", "sd1i", "sd2i", "ni"), ("ri", "correct")),
    "ZCOR": (zcor, ("ri", "ni"), ()),
    "COR": (cor, ("ri", "ni"), ()),
    "OR": (log_or, ("ai", "bi", "ci", "di"), ("add", "to")),
    "RR": (log_rr, ("ai", "bi", "ci", "di"), ("add", "to")),
}


def escalc(measure, *, data=None, **columns) -> pd.DataFrame:
    """Compute ``yi`` and ``vi`` for a table of studies, as metafor's ``escalc``.

    Parameters
    ----------
    measure : {"SMD", "MD", "SMCR", "SMCC", "ZCOR", "COR", "OR", "RR"}
        The effect size. ``"SMD"`` with ``ti`` (and ``n1i``, ``n2i``) converts t statistics.
    data : pandas.DataFrame, optional
        The table; arguments given as strings then name its columns.
    **columns
        The statistics the measure needs (metafor's argument names: ``m1i, sd1i, n1i, m2i, sd2i,
        n2i``; ``ti``; ``ri, ni``; ``ai, bi, ci, di``), as arrays or column names, plus the options
        of the measure's function (``correct``, ``ri``, ``add``, ``to``).

    Returns
    -------
    pandas.DataFrame
        ``data`` (or the given arrays) with columns ``yi`` and ``vi`` added (replaced if present).

    References
    ----------
    Viechtbauer (2010), *Journal of Statistical Software*, 36(3); metafor ``escalc``.
    """
    key = str(measure).upper()
    if key == "SMD" and "ti" in columns:
        key = "SMD_T"
    if key not in _MEASURES:
        raise DataError(f"unknown measure {measure!r}; choose one of "
                        f"{', '.join(m for m in _MEASURES if m != 'SMD_T')}", column="measure")
    func, needed, options = _MEASURES[key]
    unknown = set(columns) - set(needed) - set(options)
    if unknown:
        raise DataError(f"measure {key} takes {', '.join(needed + options)}; unexpected "
                        f"{', '.join(sorted(unknown))}", column=sorted(unknown)[0])
    missing = [n for n in needed if n not in columns]
    if missing:
        raise DataError(f"measure {key} needs {', '.join(needed)}; missing "
                        f"{', '.join(missing)}", column=missing[0])
    if data is not None and not isinstance(data, pd.DataFrame):
        raise DataError("data must be a pandas DataFrame", column="data")
    args, inputs = {}, {}
    for name, value in columns.items():
        array_arg = name in needed or (name == "ri" and value is not None)
        if isinstance(value, str) and array_arg:
            if data is None:
                raise DataError(f"'{value}' names a column but no data= was given", column=name)
            if value not in data.columns:
                raise DataError(f"no column '{value}' in data; the columns are: "
                                f"{', '.join(map(str, data.columns))}", column=name)
            args[name] = _Named(data[value].to_numpy(), _Column(value, name))
        elif array_arg:
            args[name] = value
            inputs[name] = value
        else:
            args[name] = value
    yi, vi = func(**args)
    if data is not None:
        out = data.copy().reset_index(drop=True)
        if len(out) != len(yi):
            raise DataError(f"data has {len(out)} rows but the statistics give {len(yi)}")
    else:
        out = pd.DataFrame({n: np.broadcast_to(np.asarray(v, dtype=float), yi.shape)
                            for n, v in inputs.items()})
    out["yi"] = yi
    out["vi"] = vi
    return out


# ---------------------------------------------------------------------------------- checking


def _floats(**arguments):
    """Broadcast the arguments to one 1-D float array each; reject missing or non-numbers."""
    names, arrays = {}, []
    for name, value in arguments.items():
        label = name
        if isinstance(value, _Named):
            value, label = value.values, value.label
        names[name] = label
        try:
            raw = np.asarray(value)
        except (TypeError, ValueError):
            _fail("expected numbers, found text or other values", None, label)
        if raw.dtype.kind in "OUS":  # text cells: the data grammar of bayes_se.table, not float()
            cells = raw.reshape(-1)
            array = np.empty(cells.shape)
            for i, cell in enumerate(cells):
                try:
                    array[i] = parse_number(cell.decode() if isinstance(cell, bytes) else cell)
                except NotANumber as exc:
                    _fail(str(exc), i + 1 if raw.ndim == 1 else None, label)
            array = array.reshape(raw.shape)
        else:
            try:
                array = np.asarray(raw, dtype=float)
            except (TypeError, ValueError):
                _fail("expected numbers, found text or other values", None, label)
        arrays.append(np.atleast_1d(array))
    try:
        arrays = np.broadcast_arrays(*arrays)
    except ValueError:
        lengths = {names[n]: a.shape for n, a in zip(arguments, arrays)}
        raise DataError(f"the arguments differ in length: {lengths}") from None
    if arrays[0].ndim != 1:
        raise DataError(f"expected 1-D arrays, got shape {arrays[0].shape}")
    out = []
    for name, array in zip(arguments, arrays):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            i = int(bad[0])
            _fail(f"the value is missing or infinite ({array[i]})", i + 1, names[name])
        out.append(np.array(array, dtype=float))
    return out, names


def _at_least(n, minimum, label):
    bad = np.flatnonzero(n < minimum)
    if bad.size:
        i = int(bad[0])
        _fail(f"the sample size must be at least {minimum}, got {n[i]:g}", i + 1, label)


def _positive(x, label, what="the value"):
    bad = np.flatnonzero(x <= 0)
    if bad.size:
        i = int(bad[0])
        _fail(f"{what} must be > 0, got {x[i]:g}", i + 1, label)


def _correlation(r, label):
    bad = np.flatnonzero(np.abs(r) >= 1)
    if bad.size:
        i = int(bad[0])
        _fail(f"the correlation must lie strictly between -1 and 1, got {r[i]:g}", i + 1, label)


def _default_r(ri, where):
    if ri is None:
        warnings.warn(
            f"{where}: no pre-post correlation ri given; using ri = {DEFAULT_PRE_POST_R} for every "
            "study (the sampling variances depend on this assumption)", UserWarning, stacklevel=3)
        return DEFAULT_PRE_POST_R
    return ri


def _table(ai, bi, ci, di, add, to):
    """The four cells after metafor's continuity correction (``add`` to the tables chosen by ``to``)."""
    (a, b, c, d), names = _floats(ai=ai, bi=bi, ci=ci, di=di)
    if to not in _ADD_TO:
        raise DataError(f"to must be one of {', '.join(_ADD_TO)}, got {to!r}", column="to")
    if not np.isfinite(add) or add < 0:
        raise DataError(f"add must be a number >= 0, got {add!r}", column="add")
    for values, name in ((a, "ai"), (b, "bi"), (c, "ci"), (d, "di")):
        bad = np.flatnonzero(values < 0)
        if bad.size:
            i = int(bad[0])
            _fail(f"a count must be >= 0, got {values[i]:g}", i + 1, names[name])
    for first, second, group in ((a, b, "ai + bi"), (c, d, "ci + di")):
        bad = np.flatnonzero(first + second == 0)
        if bad.size:
            i = int(bad[0])
            label = names["ai" if group == "ai + bi" else "ci"]
            _fail(f"a group has no participants ({group} = 0)", i + 1, label)
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    if to == "all":
        chosen = np.ones_like(zero)
    elif to == "if0all":
        chosen = np.full_like(zero, zero.any())
    elif to == "only0":
        chosen = zero
    else:
        chosen = np.zeros_like(zero)
    a, b, c, d = (x + add * chosen for x in (a, b, c, d))
    cells = np.stack([a, b, c, d])
    bad = np.flatnonzero((cells == 0).any(axis=0))
    if bad.size:
        i = int(bad[0])
        _fail(f"the table has a zero cell and no continuity correction (to={to!r}, "
              f"add={add}); the effect is infinite", i + 1, names["ai"])
    return a, b, c, d
