"""The one home of bayes_se's defaults: seed, credible level, sampler settings and default priors.

Every other module reads its defaults from here (the packaged ``models/random_effects.toml``
states the same values for users to copy; a test keeps the two equal).
"""

from __future__ import annotations

#: Random seed of every fit that is not given one.
SEED = 20251121
#: Credible level of summaries, plots and reports.
LEVEL = 0.95
#: Smallest effect of interest: P(mu > this) is reported.
SMALLEST_EFFECT = 0.2
#: MCMC settings: chains, kept draws per chain, warm-up draws per chain.
CHAINS = 4
DRAWS = 1000
TUNE = 1000
#: Exact iid draws an exact fit stores in its InferenceData (chains x draws, for plots and PPC).
EXACT_CHAINS = 4
EXACT_DRAWS = 1000
#: Default priors of the normal-normal models (preset "default"), as prior strings.
PRIORS = {"mu": "normal(0, 1)", "beta": "normal(0, 1)", "tau": "half_normal(0.5)"}
#: Default priors of the scale part of a location-scale model, log tau_i = z_i' alpha: the
#: intercept (log tau at the reference) puts tau's median at exp(-1.5) = 0.22 and 95% between 0.03
#: and 1.6 (SMD units); every other alpha, a log ratio of taus, 95% within a factor e = 2.7.
SCALE_PRIORS = {"alpha[intercept]": "normal(-1.5, 1)", "alpha": "normal(0, 0.5)"}
#: Default priors of the MASEM mediation model: tau of the study deviations of each correlation,
#: and the LKJ shapes of the pooled correlation matrix (eta) and of the random-effects
#: correlations (eta_rho).
MEDIATION_PRIORS = {"tau": "half_normal(0.2)", "eta": 2.0, "eta_rho": 1.0}
#: Default priors of the path-based mediation model (reported a, b, c' of each trial; standardised
#: paths): the pooled paths, the between-trial SDs of each path (0.2 on a standardised path is
#: large heterogeneity) and the shape eta of the LKJ prior of the correlation of a_i and b_i,
#: (rho_ab + 1) / 2 ~ Beta(eta, eta) (2 mildly favours weak correlation).
PATH_MEDIATION_PRIORS = {"a": "normal(0, 1)", "b": "normal(0, 1)", "c_prime": "normal(0, 1)",
                         "tau_a": "half_normal(0.2)", "tau_b": "half_normal(0.2)", "tau_c": "half_normal(0.2)",
                         "eta": 2.0}
