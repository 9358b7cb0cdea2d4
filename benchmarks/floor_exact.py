"""The floor for ``bayes-se fit --engine exact``: the simplest script a user could write instead.

``python benchmarks/floor_exact.py TABLE.csv``: reads the effect sizes (columns ``yi``, ``vi``) with
NumPy, integrates the normal random-effects posterior over tau on a 1,001-point grid with the
location integrated out analytically (bayes_se's default priors: mu ~ N(0, 1), tau ~
half-normal(0.5); Gelman et al.
2013, sec. 5.4) and prints the posterior means, SDs and 95% intervals of mu and tau as JSON.
Imports nothing but NumPy (and json, sys).
"""

import json
import sys

import numpy as np


def main(path):
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    cols = [header.index("yi"), header.index("vi")]
    y, v = np.loadtxt(path, delimiter=",", skiprows=1, usecols=cols, unpack=True)
    tau = np.linspace(0.0, 4 * np.std(y) + 4 * np.sqrt(np.max(v)), 1001)
    w = 1.0 / (v[None, :] + tau[:, None] ** 2)  # (grid, k)
    v_mu = 1.0 / (w.sum(1) + 1.0)  # mu ~ N(0, 1), integrated out analytically
    mu_hat = (w * y).sum(1) * v_mu
    loglik = 0.5 * (np.log(w).sum(1) + np.log(v_mu) - ((w * y ** 2).sum(1) - mu_hat ** 2 / v_mu))
    logpost = loglik - 0.5 * (tau / 0.5) ** 2
    p = np.exp(logpost - logpost.max())
    p /= np.trapezoid(p, tau)
    cdf = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(tau))])
    wts = p * np.gradient(tau)
    wts /= wts.sum()
    mu_mean = float((wts * mu_hat).sum())
    mu_sd = float(np.sqrt((wts * (v_mu + mu_hat ** 2)).sum() - mu_mean ** 2))
    # mu's 95% interval from its mixture-of-normals density on a grid
    grid = np.linspace(mu_mean - 6 * mu_sd, mu_mean + 6 * mu_sd, 2001)
    dens = (wts[:, None] * np.exp(-0.5 * (grid[None, :] - mu_hat[:, None]) ** 2 / v_mu[:, None])
            / np.sqrt(2 * np.pi * v_mu)[:, None]).sum(0)
    mu_cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    out = {"k": int(y.size),
           "mu": {"mean": mu_mean, "sd": mu_sd, "q2.5": float(np.interp(0.025, mu_cdf, grid)),
                  "q97.5": float(np.interp(0.975, mu_cdf, grid))},
           "tau": {"mean": float(np.trapezoid(tau * p, tau)), "q2.5": float(np.interp(0.025, cdf, tau)),
                   "q97.5": float(np.interp(0.975, cdf, tau))}}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
