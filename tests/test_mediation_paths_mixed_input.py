"""Mixed input of the path-based mediation model: each table may be one part of the input (one
trial, a pair no trial reports, no b), and the union is what must hold 2 trials and a b."""

import numpy as np
import pandas as pd
import pytest

from bayes_se.correlations import load_correlations
from bayes_se.errors import DataError
from bayes_se.reported_paths import combine_paths, load_paths, paths_from_correlations

XMY = ("intervention", "self_efficacy", "symptoms")


def _paths(rows):
    return pd.DataFrame(rows, columns=["study", "a", "se_a", "b", "se_b"])


def test_one_matrix_trial_beside_reported_paths():
    corr = pd.DataFrame({"study": ["M1"] * 3, "n": [100] * 3, "var1": ["intervention", "intervention", "self_efficacy"],
                         "var2": ["self_efficacy", "symptoms", "symptoms"], "r": [0.3, -0.2, -0.4]})
    with pytest.raises(DataError, match="at least 2 studies"):
        load_correlations(corr)
    matrices = paths_from_correlations(load_correlations(corr, partial=True), *XMY)
    paths = load_paths(_paths([["P1", 0.2, 0.1, -0.3, 0.1]]), partial=True)
    both = combine_paths(paths, matrices)
    assert list(both.study) == ["P1", "M1"] and list(both.source) == ["paths", "matrix"]
    a, r_xy, r_my = 0.3, -0.2, -0.4
    np.testing.assert_allclose(both.est[1], [a, (r_my - a * r_xy) / (1 - a**2), (r_xy - a * r_my) / (1 - a**2)])


def test_a_matrix_table_without_the_outcome_gives_a_only():
    corr = pd.DataFrame({"study": ["M1", "M2"], "n": [100, 50], "var1": ["intervention"] * 2,
                         "var2": ["self_efficacy"] * 2, "r": [0.3, 0.1]})
    matrices = paths_from_correlations(load_correlations(corr, partial=True), *XMY)
    assert matrices.observed.tolist() == [[True, False, False]] * 2
    np.testing.assert_allclose(matrices.cov[:, 0, 0], [(1 - 0.09) ** 2 / 99, (1 - 0.01) ** 2 / 49])
    # without the mediator there is no a: refused, naming the variable
    corr["var2"] = "symptoms"
    with pytest.raises(DataError, match="no variable 'self_efficacy'"):
        paths_from_correlations(load_correlations(corr, partial=True), *XMY)


def test_the_union_must_hold_two_trials():
    one = load_paths(_paths([["P1", 0.2, 0.1, -0.3, 0.1]]), partial=True)
    with pytest.raises(DataError, match="at least 2 studies") as err:
        combine_paths(one, None)
    assert err.value.column == "study"
    with pytest.raises(DataError, match="at least 2 studies"):
        load_paths(_paths([["P1", 0.2, 0.1, -0.3, 0.1]]))
    # a paths part need not report b when the matrices do
    no_b = load_paths(_paths([["P1", 0.2, 0.1, None, None], ["P2", 0.3, 0.1, None, None]]), partial=True)
    assert not no_b.observed[:, 1].any()
    with pytest.raises(DataError, match="no study reports b"):
        load_paths(_paths([["P1", 0.2, 0.1, None, None], ["P2", 0.3, 0.1, None, None]]))
