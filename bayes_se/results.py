"""The result object of an MCMC fit (:class:`BayesianFit`), behind the common fit interface.

:class:`BayesianFit` plays the part of metafor's ``rma`` object: the draws (``idata``), the
settings, the convergence verdict, a summary table, posterior probabilities of effects and an
I^2-like share of heterogeneity ``tau^2 / (tau^2 + s^2)`` per draw, with ``s^2`` metafor's
"typical" within-study variance ``(k - p) / tr(P)``, ``P = W - W X (X'WX)^-1 X'W``, ``W = diag(1/v)``.

References
----------
Higgins, J. P. T. & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis.
Statistics in Medicine 21, 1539-1558.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. JSS 36(3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from bayes_se.diagnostics import Verdict, check
from bayes_se.fits import Fit, draws_table, stored_priors, stored_settings, typical_within_variance

#: Posterior variables left out of the summary table: raw non-centred draws and effect-level
#: deviations (theta carries the same information on the effect scale).
HIDDEN = ("u", "w_effect")
#: Location parameters (for probabilities of effects).
LOCATION = ("mu", "beta", "pred", "theta")


def _row_names(name, arr):
    extra = [d for d in arr.dims if d not in ("chain", "draw")]
    if not extra:
        return [name]
    stacked = arr.stack(_elem=extra)
    return [f"{name}[{', '.join(map(str, np.atleast_1d(v)))}]" for v in stacked["_elem"].values]


def _flat(arr):
    """(chain, draw, n) view of a posterior variable."""
    values = np.asarray(arr)
    return values.reshape(values.shape[0], values.shape[1], -1)


@dataclass(repr=False)
class BayesianFit(Fit):
    """A sampled Bayesian meta-analysis (NUTS: nutpie or PyMC), behind the common fit interface.

    Attributes
    ----------
    idata : arviz.InferenceData
    meta : MetaModel or None
        The built model (data, design, study labels); after :func:`bayes_se.api.load_fit` a
        MetaModel without its PyMC model.
    settings : dict
        What ran: model, priors, sampler settings, level, smallest effect, spec text.
    diagnostics : Verdict
    priors : dict
        The resolved priors (Prior objects) by parameter.
    """

    idata: object
    meta: object = None
    settings: dict = field(default_factory=dict)
    diagnostics: Verdict | None = None
    priors: dict = field(default_factory=dict)
    spec: object = None

    engine = "mcmc"

    def __post_init__(self):
        if self.diagnostics is None:
            self.diagnostics = check(self.idata)
        self._draw_cache = None

    # -- draws -------------------------------------------------------------------------------
    def draws(self) -> dict:
        """Posterior draws, name -> (row names, array (chain, draw, n)); includes ``I2``."""
        post = self.idata.posterior
        out = {}
        for name in post.data_vars:
            if name in HIDDEN or name.startswith("log_"):
                continue
            out[name] = (_row_names(name, post[name]), _flat(post[name]))
        i2 = self.heterogeneity_draws()
        if i2 is not None:
            out["I2"] = i2
        return out

    def _rows(self) -> dict:
        """Row label -> (chain, draw) draws, in summary order (cached)."""
        if self._draw_cache is None:
            rows = {}
            for _, (labels, values) in self.draws().items():
                for j, label in enumerate(labels):
                    rows[label] = values[:, :, j]
            self._draw_cache = rows
        return self._draw_cache

    def heterogeneity_draws(self):
        """(row names, draws) of ``tau^2 / (tau^2 + s^2)`` (three-level: total of both variances)."""
        if self.meta is None:
            return None
        post = self.idata.posterior
        s2 = typical_within_variance(self.meta.vi, self.meta.X)
        if "tau" in post:
            tau2 = _flat(post["tau"]) ** 2
            names = _row_names("I2", post["tau"])
        elif "sigma_cluster" in post:
            tau2 = _flat(post["sigma_cluster"]) ** 2 + _flat(post["sigma_effect"]) ** 2
            names = ["I2"]
        else:
            return None
        return names, tau2 / (tau2 + s2)

    # -- hooks of the fit interface -------------------------------------------------------------
    def _table(self, level, interval, theta):
        rows = {label: x for label, x in self._rows().items() if theta or not label.startswith("theta[")}
        values = np.stack(list(rows.values()), axis=-1)
        return draws_table(list(rows), values, level, interval, mcmc=True)

    def location_names(self) -> list[str]:
        return [label for label in self._rows() if label.split("[")[0] in LOCATION]

    def _prob(self, name, op, x):
        values = self._rows()[name]
        return float(np.mean(values > x) if op.startswith(">") else np.mean(values < x))

    def _headline(self) -> str:
        post = self.idata.posterior
        title = self.settings.get("model", "Bayesian model")
        return (f"{title} (k = {self.settings.get('k', '?')}), MCMC: {post.sizes['chain']} chains x "
                f"{post.sizes['draw']} draws")

    def _data_arrays(self) -> list:
        return [self.meta.yi, self.meta.vi, self.meta.X,
                None if self.meta.group_index is None else np.asarray(self.meta.group_index, float),
                getattr(self.meta, "Z", None)]

    def to_netcdf(self, path) -> str:
        m = self.meta
        info = {"kind": m.kind, "coef_names": list(m.coef_names), "study": list(m.study),
                "group_index": None if m.group_index is None else [int(i) for i in m.group_index],
                "group_labels": None if m.group_labels is None else list(m.group_labels), "nu": m.nu}
        if getattr(m, "Z", None) is not None:  # location-scale: the scale design travels too
            info["scale_names"] = list(m.scale_names)
            if "Z" not in self.idata.constant_data:
                self.idata.constant_data["Z"] = (("study", "scale_coef"), np.asarray(m.Z, float))
        self.idata.attrs["meta"] = json.dumps(info)
        return super().to_netcdf(path)

    @classmethod
    def from_idata(cls, idata) -> "BayesianFit":
        from bayes_se.builders.random_effects import MetaModel

        info = json.loads(idata.attrs["meta"])
        X = np.asarray(idata.constant_data["X"], float) if "X" in idata.constant_data else None
        fields = dict(model=None, kind=info["kind"], yi=np.asarray(idata.observed_data["y"], float),
                      vi=np.asarray(idata.constant_data["vi"], float), X=X, coef_names=info["coef_names"],
                      study=info["study"],
                      group_index=None if info["group_index"] is None else np.asarray(info["group_index"]),
                      group_labels=info["group_labels"], nu=info["nu"])
        if "scale_names" in info:  # a location-scale model: rebuilt with its scale design
            from bayes_se.builders.location_scale import LocationScaleModel

            meta = LocationScaleModel(**fields, Z=np.asarray(idata.constant_data["Z"], float),
                                      scale_names=info["scale_names"])
        else:
            meta = MetaModel(**fields)
        return cls(idata=idata, meta=meta, settings=stored_settings(idata), priors=stored_priors(idata))
