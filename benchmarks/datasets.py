"""Synthetic benchmark data sets: the same table for a given (model, k) on every run.

``re`` and ``mod``: ``y_i ~ N(0.3 + 0.2 guided_i + u_i, v_i)``, ``u_i ~ N(0, 0.2^2)``,
``v_i ~ U(0.01, 0.1)`` (``guided`` alternates 0/1). ``3l``: clusters (``district``) of 3 effects,
``y_ij ~ N(0.3 + u_j + w_ij, v_ij)`` with SDs 0.2 (cluster) and 0.1 (effect).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EFFECTS_PER_CLUSTER = 3


def make_data(model: str, k: int, seed: int = 7) -> pd.DataFrame:
    """A k-row effect-size table (columns study, yi, vi, guided, district)."""
    rng = np.random.default_rng([seed, k])
    vi = rng.uniform(0.01, 0.1, size=k)
    guided = np.arange(k) % 2
    district = np.arange(k) // EFFECTS_PER_CLUSTER
    if model == "3l":
        n_c = int(district.max()) + 1
        theta = 0.3 + 0.2 * rng.standard_normal(n_c)[district] + 0.1 * rng.standard_normal(k)
    else:
        theta = 0.3 + 0.2 * guided * (model == "mod") + 0.2 * rng.standard_normal(k)
    yi = theta + np.sqrt(vi) * rng.standard_normal(k)
    return pd.DataFrame({"study": [f"s{i + 1}" for i in range(k)], "yi": yi, "vi": vi, "guided": guided,
                         "district": [f"d{j + 1}" for j in district]})
