"""Convergence verdicts for MCMC fits (numbers and plain-language problems, never plots).

Thresholds follow Vehtari et al. (2021): rank-normalised split R-hat <= 1.01, bulk and tail ESS
>= 400; no divergent transitions (Betancourt 2017); E-BFMI >= 0.3 per chain (Betancourt 2016).
Quantities drawn exactly after sampling (study effects, predictions: variables carrying the
``exact_conditional_draw`` attribute) are not Markov chains of their own and are left out.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Buerkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat. Bayesian Analysis 16, 667-718.
Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte Carlo.
arXiv:1604.00695.
Betancourt, M. (2017). A conceptual introduction to Hamiltonian Monte Carlo. arXiv:1701.02434.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

MAX_R_HAT = 1.01
MIN_ESS = 400
MIN_BFMI = 0.3
EXACT_ATTR = "exact_conditional_draw"  # set by bayes_se.sampling on exactly drawn quantities


@dataclass
class Verdict:
    """The convergence verdict of one fit.

    Attributes
    ----------
    passed : bool
    max_r_hat, min_ess_bulk, min_ess_tail, min_bfmi : float
        Worst values over the checked parameters (``min_bfmi`` over chains; NaN when unavailable).
    divergences : int
    problems : list of str
        One plain-language sentence per failed check, naming the parameter.
    """

    passed: bool
    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_bfmi: float
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready numbers (NaN becomes None)."""

        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        return {
            "divergences": int(self.divergences),
            "max_r_hat": num(self.max_r_hat),
            "min_ess_bulk": num(self.min_ess_bulk),
            "min_ess_tail": num(self.min_ess_tail),
            "min_bfmi": num(self.min_bfmi),
            "passed": bool(self.passed),
        }

    def banner(self) -> str:
        """A loud one-block warning for a failed fit (empty string when it passed)."""
        if self.passed:
            return ""
        lines = ["!! DIAGNOSTICS FAILED: do not trust these estimates !!"]
        lines += [f"!!   - {p}" for p in self.problems]
        return "\n".join(lines)


@contextmanager
def without_numba():
    """Run ArviZ's R-hat/ESS with NumPy's variance instead of its Numba kernel, then restore.

    With Numba installed (PyTensor requires it) ArviZ JIT-compiles a variance function on the first
    ``az.rhat`` of each process: 0.3 to 0.6 s, a tenth of a warm k = 70 fit, for a reduction over
    a few thousand draws that NumPy does in microseconds.
    """
    from arviz.utils import Numba

    flag = Numba.numba_flag
    Numba.numba_flag = False
    try:
        yield
    finally:
        Numba.numba_flag = flag


def _worst(dataset, pick):
    """(value, 'name[coord]') of the worst element of an ArviZ diagnostic Dataset."""
    best_val, best_name = np.nan, None
    for name, arr in dataset.data_vars.items():
        values = np.asarray(arr, dtype=float)
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        idx = np.unravel_index(pick(values), values.shape)
        val = float(values[idx])
        if best_name is None or pick(np.array([best_val, val])) == 1:
            labels = [str(arr.coords[d].values[i]) for d, i in zip(arr.dims, idx)]
            best_val, best_name = val, name + (f"[{', '.join(labels)}]" if labels else "")
    return best_val, best_name


def check(idata, var_names=None) -> Verdict:
    """Check an MCMC fit against the convergence thresholds.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior`` and ``sample_stats`` (``diverging``, ``energy``).
    var_names : list of str, optional
        Parameters to check; default every posterior variable not drawn exactly.

    Returns
    -------
    Verdict

    References
    ----------
    Vehtari et al. (2021), Bayesian Analysis 16:667-718.
    """
    import arviz as az

    post = idata.posterior
    if var_names is None:
        var_names = [v for v in post.data_vars if not post[v].attrs.get(EXACT_ATTR)]
    problems = []
    n_chains = post.sizes["chain"]
    stats = getattr(idata, "sample_stats", None)
    with without_numba():
        if n_chains > 1:
            r_hat, r_name = _worst(az.rhat(post, var_names=var_names), np.nanargmax)
        else:
            r_hat, r_name = np.nan, None
            problems.append("only one chain: R-hat cannot be computed; run at least 2 chains")
        ess_b, b_name = _worst(az.ess(post, var_names=var_names, method="bulk"), np.nanargmin)
        ess_t, t_name = _worst(az.ess(post, var_names=var_names, method="tail"), np.nanargmin)
        bfmi = float(np.min(az.bfmi(idata))) if stats is not None and "energy" in stats else np.nan
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0

    if np.isfinite(r_hat) and r_hat > MAX_R_HAT:
        problems.append(f"R-hat of {r_name} is {r_hat:.3f} (should be <= {MAX_R_HAT}): chains disagree")
    if np.isfinite(ess_b) and ess_b < MIN_ESS:
        problems.append(f"bulk ESS of {b_name} is {ess_b:.0f} (should be >= {MIN_ESS}): run more draws")
    if np.isfinite(ess_t) and ess_t < MIN_ESS:
        problems.append(f"tail ESS of {t_name} is {ess_t:.0f} (should be >= {MIN_ESS}): "
                        "intervals are unreliable, run more draws")
    if divergences:
        problems.append(f"{divergences} divergent transitions: the sampler missed part of the posterior")
    if np.isfinite(bfmi) and bfmi < MIN_BFMI:
        problems.append(f"E-BFMI is {bfmi:.2f} in one chain (should be >= {MIN_BFMI}): poor exploration")
    return Verdict(
        passed=not problems,
        max_r_hat=r_hat,
        min_ess_bulk=ess_b,
        min_ess_tail=ess_t,
        divergences=divergences,
        min_bfmi=bfmi,
        problems=problems,
    )
