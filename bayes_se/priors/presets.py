"""Named prior sets (:data:`PRESETS`): the default, a vague set, Rhodes et al. (2015) empirical
heterogeneity priors and Röver et al. (2021) unit-information priors; each one's source in
:data:`PRESETS_DOC`.
"""

from __future__ import annotations

import difflib
import math

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.priors.distribution import Prior, format_number
from bayes_se.priors.grammar import prior_for

# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
# Rhodes, Turner & Higgins (2015), Table 3 ("other" medical areas): log tau2 ~ t_5(location, scale)
# for SMDs. Numbers as published (cross-checked against bayesmeta's RhodesEtAlParameters array).
RHODES2015_GENERAL = (-3.44, 2.59)
RHODES2015_MENTAL = {
    "pharm_vs_placebo": (-2.99, 2.16),
    "pharm_vs_pharm": (-3.27, 2.14),
    "nonpharm_vs_control": (-3.85, 1.93),  # as printed; -2.85 fits the table (see _rhodes docstring)
}
# Unit-information SD of an SMD with the unit "one participant in each arm" (n per arm):
# var(d) ~ 1/n + 1/n = 2/n, so UISD = sqrt(2). Counted per participant in total (N = 2n) it is
# var(d) ~ 4/N, UISD = 2. RoBMA 4.0 (brma) uses sqrt(2) with the fractions below.
UISD_SMD = math.sqrt(2.0)
ROVER2021_FRACTIONS = {"mu": 0.5, "tau": 0.25, "beta": 0.25}


def _p(text: str, param: str) -> Prior:
    return prior_for(param, text)


def _location_defaults(sd_mu: float = 1.0, sd_beta: float = 1.0) -> dict[str, Prior]:
    return {"mu": _p(f"normal(0, {format_number(sd_mu)})", "mu"), "beta": _p(f"normal(0, {format_number(sd_beta)})", "beta")}


def _rhodes(location: float, scale: float) -> dict[str, Prior]:
    return {**_location_defaults(), "tau": _p(f"log_t(5, {format_number(location)}, {format_number(scale)})", "tau")}


def _rover(uisd: float) -> dict[str, Prior]:
    f = ROVER2021_FRACTIONS
    return {
        "mu": Prior("normal", {"mu": 0.0, "sigma": f["mu"] * uisd}, "mu"),
        "beta": Prior("normal", {"mu": 0.0, "sigma": f["beta"] * uisd}, "beta"),
        "tau": Prior("half_normal", {"sigma": f["tau"] * uisd}, "tau"),
    }


PRESETS: dict[str, dict[str, Prior]] = {
    "default": {name: _p(text, name) for name, text in defaults.PRIORS.items()},
    "vague": {"mu": _p("normal(0, 10)", "mu"), "beta": _p("normal(0, 10)", "beta"),
              "tau": _p("half_cauchy(1)", "tau")},
    "rhodes2015_general": _rhodes(*RHODES2015_GENERAL),
    **{f"rhodes2015_mental_{cell}": _rhodes(*lt) for cell, lt in RHODES2015_MENTAL.items()},
    "rhodes2015_mental_nonpharm_vs_control_corrected": _rhodes(-2.85, 1.93),
    "rover2021_smd": _rover(UISD_SMD),
    "rover2021_smd_total_n": _rover(2.0),
}
PRESETS_DOC = """Named prior sets; each maps ``mu``, ``beta`` and ``tau`` to a Prior (``tau`` may hold a
variance prior, whose ``target`` is then ``tau2``).

default
    ``mu ~ N(0, 1)``, each ``beta ~ N(0, 1)``, ``tau ~ HalfNormal(0.5)``: weakly informative on the
    SMD scale (an SMD beyond +-2 is rare; tau above 1 SMD unit is implausible). It is the prior of
    the exact quadrature reference in ``tests/reference/exact``.
vague
    ``mu ~ N(0, 10)``, ``beta ~ N(0, 10)``, ``tau ~ HalfCauchy(1)`` (Gelman 2006, Bayesian Anal
    1:515-534, recommends the half-Cauchy for group-level SDs).
rhodes2015_general, rhodes2015_mental_*
    Rhodes, Turner & Higgins (2015, J Clin Epidemiol 68:52-60), Table 3, predictive distributions
    of tau2 for SMDs in Cochrane reviews: ``log(tau2) ~ t_5(location, scale)``. General (any
    outcome, any comparison): t_5(-3.44, 2.59). Mental-health outcomes: pharmacological vs
    placebo/control t_5(-2.99, 2.16); pharmacological vs pharmacological t_5(-3.27, 2.14);
    non-pharmacological (the table's column "non-pharmacological (any)") t_5(-3.85, 1.93) as
    printed. The table's locations are additive in outcome type and comparison type: in every
    other row the non-pharmacological location is the pharmacological-vs-placebo location + 0.14
    (e.g. -2.55 -> -2.41, -3.00 -> -2.86, -3.41 -> -3.27), and the same holds for the mental-health
    row in the respiratory (-4.90 -> -4.76) and cancer (-0.43 -> -0.29) tables of its appendix.
    The mental-health cell -3.85 is therefore 1.00 off the pattern; -2.99 + 0.14 = -2.85 fits.
    ``rhodes2015_mental_nonpharm_vs_control`` ships the printed -3.85 and
    ``rhodes2015_mental_nonpharm_vs_control_corrected`` the -2.85 that fits; the scale (1.93) is
    kept. ``mu`` and ``beta`` are the default N(0, 1).
rover2021_smd, rover2021_smd_total_n
    Unit-information-SD (UISD) priors in the sense of Röver et al. (2021, Res Synth Methods
    12:448-474, Eq. 6: UISD = sqrt(sum n_i / sum se_i^-2)), with the fractions RoBMA 4.0's ``brma``
    uses by default: ``mu ~ N(0, UISD/2)``, ``beta ~ N(0, UISD/4)``, ``tau ~ HalfNormal(UISD/4)``.
    For Cohen's d with n participants in each of two arms, var(d) ~ 1/n + 1/n = 2/n: counting the
    unit as one participant per arm gives UISD = sqrt(2) (RoBMA's known UISD for SMD; preset
    ``rover2021_smd``: N(0, 0.707), HalfNormal(0.354)); counting each participant of the total
    N = 2n gives var(d) ~ 4/N and UISD = 2 (preset ``rover2021_smd_total_n``: N(0, 1),
    N(0, 0.5), HalfNormal(0.5)).
"""


def preset(name: str) -> dict[str, Prior]:
    """The priors of a named preset (a copy); see :data:`PRESETS_DOC` for each one's source.

    Raises
    ------
    SpecError
        For an unknown name, listing the known ones and the closest.
    """
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(f"unknown prior preset '{name}'{hint}; known presets: {', '.join(PRESETS)}",
                        key="preset")
    return dict(PRESETS[name])


preset.__doc__ += "\n" + PRESETS_DOC


