"""The datasets bundled with bayes_se: ``names()``, ``load(name)``, ``path(name)``.

Every table loads as a :class:`pandas.DataFrame` exactly as stored (``pandas.read_csv``, no
recoding); the generating values of the simulation load as a ``dict`` (JSON). Hand an effect-size
table to :func:`bayes_se.load_effects` (``study="study", cluster="study_id"``) and the correlation
table to :func:`bayes_se.load_correlations`. Provenance, column dictionaries and licences are in
``data/README.md`` and ``data/self_efficacy_sim/README.md`` of the repository, installed with the
package beside the files (``path(name).parent``).

=====================================  =========  ==============================================
name                                   returns    what
=====================================  =========  ==============================================
``metapsy_depression_selfguided``      DataFrame  REAL data, Metapsy database (ODC-By 1.0: credit it,
                                                  see ``data/README.md``): 118 post-test depression
                                                  effects (Hedges' g, ``yi``/``vi``) from 92 RCTs
``self_efficacy_between``              DataFrame  SIMULATED: 88 between-group self-efficacy effects
                                                  (raw statistics, ``yi``/``vi``) from 70 trials
``self_efficacy_within``               DataFrame  SIMULATED: 44 pre-post effects from 40 trials
``self_efficacy_mediation``            DataFrame  SIMULATED: 40 correlations among intervention,
                                                  self_efficacy, symptoms (long layout), 15 trials
``self_efficacy_findings``             DataFrame  SIMULATED: 32 reported findings (box score)
``self_efficacy_risk_of_bias``         DataFrame  SIMULATED: RoB 2 judgements of the 70 trials
                                                  (study, domain D1-D5 and Overall, judgement)
``self_efficacy_generating_values``    dict       the true values behind the simulated data
=====================================  =========  ==============================================

The simulated data (``data/self_efficacy_sim/``, CC0 1.0) imitate the published summaries of a 2025
review; the trials ``Sim-001`` ... do not exist and the numbers must never be presented as real.
"""

from __future__ import annotations

import json

from bayes_se.errors import BayesSEError
from bayes_se.resources import data_file

#: name -> (path under data/, one-line description)
_DATASETS = {
    "metapsy_depression_selfguided": (
        ("metapsy_depression_selfguided.csv",),
        "REAL: 118 post-test depression effects (Hedges' g) from 92 RCTs of self-guided interventions "
        "(Metapsy, ODC-By 1.0)"),
    "self_efficacy_between": (
        ("self_efficacy_sim", "between.csv"),
        "SIMULATED: 88 between-group self-efficacy effects (raw statistics + yi/vi) from 70 trials"),
    "self_efficacy_within": (
        ("self_efficacy_sim", "within.csv"),
        "SIMULATED: 44 pre-post self-efficacy effects (raw statistics + yi/vi) from 40 trials"),
    "self_efficacy_mediation": (
        ("self_efficacy_sim", "mediation_correlations.csv"),
        "SIMULATED: 40 correlations among intervention, self_efficacy, symptoms from 15 trials"),
    "self_efficacy_findings": (
        ("self_efficacy_sim", "findings.csv"),
        "SIMULATED: 32 reported findings on self-efficacy as predictor/moderator/mediator"),
    "self_efficacy_risk_of_bias": (
        ("self_efficacy_sim", "risk_of_bias.csv"),
        "SIMULATED: RoB 2 judgements (D1-D5, Overall) of the 70 simulated trials (tidy: study, domain, judgement)"),
    "self_efficacy_generating_values": (
        ("self_efficacy_sim", "generating_values.json"),
        "the generating (true) values of the simulated self-efficacy data"),
}


def names() -> tuple[str, ...]:
    """Names of the bundled datasets, sorted."""
    return tuple(sorted(_DATASETS))


def _entry(name: str):
    try:
        return _DATASETS[name]
    except (KeyError, TypeError):
        raise BayesSEError(f"no bundled dataset '{name}'; available: {', '.join(names())}") from None


def describe(name: str) -> str:
    """A one-line description of dataset ``name``."""
    return _entry(name)[1]


def path(name: str):
    """The installed file of dataset ``name`` (a :class:`pathlib.Path` on a normal install)."""
    return data_file(*_entry(name)[0])


def load(name: str):
    """Dataset ``name``: a :class:`pandas.DataFrame` for a table, a ``dict`` for generating values.

    Examples
    --------
    >>> import bayes_se as bse
    >>> dat = bse.load_effects(bse.datasets.load("metapsy_depression_selfguided"),
    ...                        study="study", cluster="study_id")
    """
    file = path(name)
    if file.name.endswith(".json"):
        return json.loads(file.read_text(encoding="utf-8"))
    import pandas as pd

    with file.open("rb") as handle:
        return pd.read_csv(handle)
