"""The tail probabilities and quantiles the frequentist engine needs, without importing scipy.stats.

Each function calls the same :mod:`scipy.special` function that ``scipy.stats`` calls for it
(``t.sf`` is ``stdtr(df, -x)``, ``chi2.isf`` is ``chdtri(df, q)``, ...), so the numbers are the
same to the last bit; importing scipy.stats costs about half a second of every ``bayes-se freq``
process, longer than a REML fit of a thousand studies. Used as ``from bayes_se.frequentist.dist
import stats`` with the call syntax of ``scipy.stats`` (``stats.t.sf(x, df)``).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import special

__all__ = ["stats"]

_LOG_SQRT_2PI = np.log(np.sqrt(2 * np.pi))  # as scipy.stats writes it (_norm_pdf_logC)


def _norm_logpdf(x, loc=0.0, scale=1.0):
    z = (np.asarray(x, dtype=float) - loc) / scale
    return -z**2 / 2.0 - _LOG_SQRT_2PI - np.log(scale)


stats = SimpleNamespace(
    norm=SimpleNamespace(
        sf=lambda x: special.ndtr(-np.asarray(x, dtype=float)),
        isf=lambda q: -special.ndtri(q),
        ppf=lambda q: special.ndtri(q),
        logpdf=_norm_logpdf,
    ),
    t=SimpleNamespace(
        sf=lambda x, df: special.stdtr(df, -np.asarray(x, dtype=float)),
        isf=lambda q, df: -special.stdtrit(df, q),
        ppf=lambda q, df: special.stdtrit(df, q),
    ),
    chi2=SimpleNamespace(
        sf=lambda x, df: special.chdtrc(df, x),
        isf=lambda q, df: special.chdtri(df, q),
        ppf=lambda q, df: 2 * special.gammaincinv(df / 2, q),
    ),
    f=SimpleNamespace(
        sf=lambda x, dfn, dfd: special.fdtrc(dfn, dfd, x),
    ),
)
