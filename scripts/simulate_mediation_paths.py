"""Simulate the bundled table of reported mediation paths (SIMULATED trials, not any review's data).

Each trial is simulated at the participant level and analysed as a trial would analyse itself:

* ``n_i`` participants randomised 1:1, ``X = +1`` (intervention) or ``-1`` (control), so var(X) = 1;
* ``M = a_i X + sqrt(1 - a_i^2) e_M`` and ``Y = c'_i X + b_i M + s_i e_Y`` with
  ``s_i^2 = 1 - (c'_i^2 + b_i^2 + 2 a_i b_i c'_i)``, ``e ~ N(0, 1)``: every variable has variance 1,
  so the trial's true standardised paths are ``(a_i, b_i, c'_i)``;
* the trial's paths ``(a_i, b_i) ~ N((a, b), [[tau_a^2, rho tau_a tau_b], [., tau_b^2]])``,
  ``c'_i ~ N(c', tau_c^2)`` (values in ``GENERATING``);
* the trial reports OLS on z-scored variables: ``a`` (zM on zX) and ``b``, ``c'`` (zY on zX, zM),
  with the usual OLS standard errors (residual variance on n - 2 and n - 3 degrees of freedom),
  rounded to 3 decimals as papers report them. Every fifth trial reports a and b only (no c').

Usage: ``python scripts/simulate_mediation_paths.py [--out DIR]`` writes ``mediation_paths.csv``
and ``mediation_paths_generating_values.json`` (the generating values and each trial's true
paths) to ``data/self_efficacy_sim/``. Deterministic: one ``numpy.random.Generator`` (seed
``SEED``) consumed in a fixed order. :func:`simulate_trials` is importable (the tests use it).

References
----------
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum, ch. 3-4.
Morris, T. P., White, I. R. & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine 38, 2074-2102.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "self_efficacy_sim"
SEED = 20260416
GENERATING = {"seed": SEED, "k": 20, "a": 0.24, "b": -0.35, "c_prime": -0.10, "tau_a": 0.10, "tau_b": 0.08,
              "tau_c": 0.05, "rho_ab": -0.3, "n_min": 80, "n_max": 400, "decimals": 3,
              "no_c_prime": "every fifth trial (Sim-P05, Sim-P10, ...) reports a and b only"}


def trial_paths(rng, n: int, a: float, b: float, c: float) -> dict:
    """One trial: participant data X, M, Y with standardised paths (a, b, c'), analysed by OLS on
    z-scores. Returns a, se_a, b, se_b, c_prime, se_c_prime, cov_b_c_prime."""
    x = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    m = a * x + np.sqrt(1.0 - a**2) * rng.standard_normal(n)
    s2 = 1.0 - (c**2 + b**2 + 2.0 * a * b * c)
    y = c * x + b * m + np.sqrt(s2) * rng.standard_normal(n)
    zx, zm, zy = ((v - v.mean()) / v.std(ddof=1) for v in (x, m, y))
    a_hat = zx @ zm / (zx @ zx)
    sig_a = np.sum((zm - a_hat * zx) ** 2) / (n - 2)
    X = np.column_stack([zx, zm])
    XtX = X.T @ X
    coef = np.linalg.solve(XtX, X.T @ zy)
    sig_y = np.sum((zy - X @ coef) ** 2) / (n - 3)
    V = sig_y * np.linalg.inv(XtX)
    return {"a": a_hat, "se_a": np.sqrt(sig_a / (zx @ zx)), "b": coef[1], "se_b": np.sqrt(V[1, 1]),
            "c_prime": coef[0], "se_c_prime": np.sqrt(V[0, 0]), "cov_b_c_prime": V[0, 1]}


def simulate_trials(rng, k: int, *, a=GENERATING["a"], b=GENERATING["b"], c_prime=GENERATING["c_prime"],
                    tau_a=GENERATING["tau_a"], tau_b=GENERATING["tau_b"], tau_c=GENERATING["tau_c"],
                    rho_ab=GENERATING["rho_ab"], n_min=GENERATING["n_min"], n_max=GENERATING["n_max"],
                    prefix="Sim-P", no_c_every=5, decimals=GENERATING["decimals"]):
    """``k`` simulated trials' reported paths (DataFrame: study, n, a, se_a, b, se_b, c_prime,
    se_c_prime) and their true paths (DataFrame: study, a, b, c_prime)."""
    rows, truth = [], []
    cov_ab = np.array([[tau_a**2, rho_ab * tau_a * tau_b], [rho_ab * tau_a * tau_b, tau_b**2]])
    width = max(2, len(str(k)))
    for i in range(k):
        label = f"{prefix}{i + 1:0{width}d}"
        n = int(rng.integers(n_min, n_max + 1))
        ai, bi = rng.multivariate_normal([a, b], cov_ab)
        ci = c_prime + tau_c * rng.standard_normal()
        rep = trial_paths(rng, n, ai, bi, ci)
        row = {"study": label, "n": n}
        row.update({key: round(float(rep[key]), decimals) for key in ("a", "se_a", "b", "se_b")})
        if no_c_every and (i + 1) % no_c_every == 0:
            row.update(c_prime=np.nan, se_c_prime=np.nan)
        else:
            row.update({key: round(float(rep[key]), decimals) for key in ("c_prime", "se_c_prime")})
        rows.append(row)
        truth.append({"study": label, "a": float(ai), "b": float(bi), "c_prime": float(ci)})
    return pd.DataFrame(rows), pd.DataFrame(truth)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="folder to write (default: data/self_efficacy_sim)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    table, truth = simulate_trials(rng, GENERATING["k"])
    table.to_csv(out / "mediation_paths.csv", index=False, lineterminator="\n", float_format="%.3f")
    record = dict(GENERATING, true_paths=[{key: round(v, 10) if isinstance(v, float) else v
                                           for key, v in row.items()} for row in truth.to_dict("records")])
    (out / "mediation_paths_generating_values.json").write_text(json.dumps(record, indent=2) + "\n",
                                                                encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
