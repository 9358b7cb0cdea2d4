"""Priors as small value objects, their text grammar, densities, PyMC bridge and named presets.

The package, by concern: :mod:`~bayes_se.priors.distribution` (the :class:`Prior` object, its
families, densities and draws, and which prior suits which parameter),
:mod:`~bayes_se.priors.grammar` (prior text in and out), :mod:`~bayes_se.priors.presets` (named
prior sets) and :mod:`~bayes_se.priors.pymc_bridge` (priors as PyMC variables). Every public name
is importable from ``bayes_se.priors``.

A :class:`Prior` is data: a family name, its parameters and the quantity (``target``) its density is
on. ``str(prior)`` prints the maths it means (``tau ~ HalfNormal(0.5)``,
``log(tau2) ~ t_5(-3.44, 2.59)``) and :func:`parse_prior` reads that back, as well as the short
forms a spec file uses (``half_normal(0.5)``, ``normal(mu=0, sigma=1)``). Text is read by a small
tokenizer and grammar of our own, never evaluated.

Families and the quantity each is a density on::

    normal(mu, sigma)            x ~ N(mu, sigma^2)                      (target: a real, e.g. mu)
    student_t(nu, mu, sigma)     x ~ t_nu(mu, sigma)                     (real)
    half_normal(sigma)           tau ~ N+(0, sigma^2)                    (positive, e.g. tau)
    half_cauchy(beta)            tau ~ Cauchy+(0, beta)                  (positive)
    half_student_t(nu, sigma)    tau ~ t+_nu(0, sigma)                   (positive)
    exponential(lam)             tau ~ Exp(rate lam)                     (positive)
    uniform(lower, upper)        x ~ U(lower, upper)                     (positive when lower >= 0)
    inverse_gamma(alpha, beta)   tau2 ~ InvGamma(shape alpha, scale beta) (variance)
    log_normal(mu, sigma)        log(tau2) ~ N(mu, sigma^2)              (variance)
    log_t(nu, mu, sigma)         log(tau2) ~ t_nu(mu, sigma)             (variance)
    flat()                       p(x) = 1 (improper): mu, beta on the real line, tau on (0, inf)

``flat()`` is for the exact engine only (:mod:`bayes_se.exact`), which integrates it and checks
that the posterior is proper; it has no normalising constant, so marginal likelihoods and Bayes
factors of hypotheses on the flat parameter are undefined. The MCMC engine refuses it.

References
----------
Rhodes KM, Turner RM, Higgins JPT (2015). Predictive distributions were developed for the extent of
heterogeneity in meta-analyses of continuous outcome data. J Clin Epidemiol 68(1):52-60.
Röver C, Bender R, Dias S, et al. (2021). On weakly informative prior distributions for the
heterogeneity parameter in Bayesian random-effects meta-analysis. Res Synth Methods 12(4):448-474.
"""

from bayes_se.priors.distribution import (
    FAMILIES,
    FLAT_PARAMS,
    PARAM_NAMES,
    Prior,
    assign_prior,
    coefficient_priors,
)
from bayes_se.priors.grammar import parse_assignment, parse_prior, prior_for, prior_overrides
from bayes_se.priors.presets import (
    PRESETS,
    PRESETS_DOC,
    RHODES2015_GENERAL,
    RHODES2015_MENTAL,
    ROVER2021_FRACTIONS,
    UISD_SMD,
    preset,
)
from bayes_se.priors.pymc_bridge import coefficient_vector_rv, heterogeneity_rv

__all__ = ["FAMILIES", "FLAT_PARAMS", "PARAM_NAMES", "Prior", "assign_prior", "coefficient_priors",
           "parse_assignment", "parse_prior", "prior_for", "prior_overrides", "PRESETS", "PRESETS_DOC",
           "RHODES2015_GENERAL", "RHODES2015_MENTAL", "ROVER2021_FRACTIONS", "UISD_SMD", "preset",
           "coefficient_vector_rv", "heterogeneity_rv"]
