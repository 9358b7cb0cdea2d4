"""Risk of bias of the included studies: RoB 2 and ROBINS-I tables, and risk of bias in the analysis.

A risk-of-bias table is tidy: one row per study and domain, with the reviewers' judgement, and
the overall judgement either as a domain called ``Overall`` or as a column ``overall`` (one value
per study). The wide layout of robvis (``Study, D1, ..., Dn, Overall[, Weight]``) is read too.
Judgements are those of the tools:

* RoB 2 (Sterne et al. 2019), randomized trials: ``Low``, ``Some concerns``, ``High``;
* ROBINS-I (Sterne et al. 2016), non-randomized studies: ``Low``, ``Moderate``, ``Serious``,
  ``Critical``;

and, for both, ``No information`` (as robvis accepts). Case and surrounding spaces do not matter;
``low risk``/``high risk``/``NI`` are read as ``Low``/``High``/``No information``.

:func:`read_rob` reads and validates a table (:class:`RobTable`); :func:`rob_sensitivity` fits
the meta-analysis to all studies, to the studies at low risk of bias only, and with risk of bias
as a moderator, with the frequentist engine (metafor's ``rma``) and the exact Bayesian engine.

References
----------
Sterne, J. A. C., Savovic, J., Page, M. J. et al. (2019). RoB 2: a revised tool for assessing risk
of bias in randomised trials. BMJ 366, l4898.
Sterne, J. A. C., Hernan, M. A., Reeves, B. C. et al. (2016). ROBINS-I: a tool for assessing risk
of bias in non-randomised studies of interventions. BMJ 355, i4919.
McGuinness, L. A. & Higgins, J. P. T. (2021). Risk-of-bias VISualization (robvis): an R package
and Shiny web app for visualizing risk-of-bias assessments. Research Synthesis Methods 12, 55-61.
Higgins, J. P. T. et al. (eds.) (2023). Cochrane Handbook for Systematic Reviews of Interventions,
version 6.4, chapter 7.7 (risk of bias in the synthesis: restricting to low-risk studies,
stratifying or meta-regression by risk of bias).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, DataWarning, SpecError

__all__ = ["RobTable", "read_rob", "rob_sensitivity", "TOOLS", "DOMAIN_NAMES", "COLOURS", "SYMBOLS",
           "effect_judgements", "study_keys", "study_weights"]

NO_INFO = "No information"
#: The judgements of each tool, from least to most severe ("No information" last).
TOOLS = {
    "RoB 2": ("Low", "Some concerns", "High", NO_INFO),
    "ROBINS-I": ("Low", "Moderate", "Serious", "Critical", NO_INFO),
}
#: The domains of each tool when a table names them D1, D2, ... (the robvis legend).
DOMAIN_NAMES = {
    "RoB 2": {"D1": "Bias arising from the randomization process",
              "D2": "Bias due to deviations from intended intervention",
              "D3": "Bias due to missing outcome data",
              "D4": "Bias in measurement of the outcome",
              "D5": "Bias in selection of the reported result"},
    "ROBINS-I": {"D1": "Bias due to confounding",
                 "D2": "Bias due to selection of participants",
                 "D3": "Bias in classification of interventions",
                 "D4": "Bias due to deviations from intended interventions",
                 "D5": "Bias due to missing data",
                 "D6": "Bias in measurement of outcomes",
                 "D7": "Bias in selection of the reported result"},
}
#: robvis's colours ("cochrane" scheme) and symbols per judgement.
COLOURS = {"Low": "#02C100", "Some concerns": "#E2DF07", "Moderate": "#E2DF07", "High": "#BF0000",
           "Serious": "#BF0000", "Critical": "#820000", NO_INFO: "#4EA1F7"}
SYMBOLS = {"Low": "+", "Some concerns": "\u2212", "Moderate": "\u2212", "High": "\u00d7", "Serious": "\u00d7",
           "Critical": "!", NO_INFO: "?"}
OVERALL = "Overall"
_ALIASES = {"low risk": "Low", "low risk of bias": "Low", "high risk": "High", "high risk of bias": "High",
            "ni": NO_INFO, "no info": NO_INFO, "some concern": "Some concerns"}


def _canonical(cell) -> str | None:
    """A judgement in its canonical spelling, or None when it is none of any tool's."""
    text = " ".join(str(cell).split()).lower()
    text = _ALIASES.get(text, text).lower()
    for level in {lv for levels in TOOLS.values() for lv in levels}:
        if text == level.lower():
            return level
    return None


def _tool_name(tool) -> str | None:
    if tool is None:
        return None
    key = str(tool).lower().replace(" ", "").replace("-", "").replace("_", "")
    names = {"rob2": "RoB 2", "robinsi": "ROBINS-I"}
    if key not in names:
        raise SpecError(f"unknown risk-of-bias tool {tool!r}; use 'RoB 2' or 'ROBINS-I'", key="tool")
    return names[key]


@dataclass(frozen=True)
class RobTable:
    """A validated risk-of-bias table.

    Attributes
    ----------
    tool : str
        ``"RoB 2"`` or ``"ROBINS-I"``.
    table : pandas.DataFrame
        One row per study (index ``study``, in the order read), one column per domain in the order
        read, then ``Overall``; cells are canonical judgements.
    rows : dict
        Study -> the 1-based row of the source table where the study first appears (for messages).
    weights : pandas.Series or None
        A ``Weight`` column of a robvis wide table, if present.
    """

    tool: str
    table: pd.DataFrame
    rows: dict
    weights: pd.Series | None = None

    @property
    def domains(self) -> list[str]:
        """The domains, without ``Overall``."""
        return [c for c in self.table.columns if c != OVERALL]

    @property
    def studies(self) -> list[str]:
        return list(self.table.index)

    @property
    def overall(self) -> pd.Series:
        """The overall judgement of each study."""
        return self.table[OVERALL]

    @property
    def levels(self) -> tuple:
        """The judgements of the tool, least to most severe, then "No information"."""
        return TOOLS[self.tool]

    def domain_label(self, domain: str) -> str:
        """The domain's description when it is a standard ``Dn`` of the tool, else its own name."""
        return DOMAIN_NAMES[self.tool].get(domain, domain)

    def low_risk(self) -> pd.Series:
        """True for each study whose overall judgement is ``Low``."""
        return self.overall == "Low"

    def to_long(self) -> pd.DataFrame:
        """The tidy layout: columns ``study``, ``domain``, ``judgement`` (Overall as a domain)."""
        long = self.table.reset_index().melt(id_vars="study", var_name="domain", value_name="judgement")
        order = {d: i for i, d in enumerate(self.table.columns)}
        study_order = {s: i for i, s in enumerate(self.table.index)}
        long = long.assign(_s=long["study"].map(study_order), _d=long["domain"].map(order))
        return long.sort_values(["_s", "_d"]).drop(columns=["_s", "_d"]).reset_index(drop=True)

    def counts(self, weights=None) -> pd.DataFrame:
        """Share of studies (or of ``weights``, a Series by study) per judgement, per domain.

        Returns a DataFrame indexed by domain (Overall last), one column per judgement of the tool,
        rows summing to 1 (robvis's summary plot).
        """
        w = pd.Series(1.0, index=self.table.index) if weights is None else \
            pd.Series(weights, dtype=float).reindex(self.table.index)
        if w.isna().any():
            raise DataError(f"no weight for study {w.index[w.isna()][0]!r}", column="weight")
        if (w < 0).any() or not w.sum() > 0:
            raise DataError("weights must be >= 0 and not all 0", column="weight")
        out = pd.DataFrame(0.0, index=pd.Index(list(self.table.columns), name="domain"), columns=list(self.levels))
        for domain in self.table.columns:
            out.loc[domain] = w.groupby(self.table[domain]).sum().reindex(self.levels, fill_value=0.0) / w.sum()
        return out


def _column(frame: pd.DataFrame, name: str, what: str) -> str:
    """The column of ``frame`` called ``name`` (case-insensitive), or a DataError."""
    for c in frame.columns:
        if str(c).strip().lower() == name.lower():
            return c
    raise DataError(f"the risk-of-bias table needs a {what} column; columns are "
                    f"{', '.join(map(str, frame.columns))}", column=name)


def _label(cell):
    from bayes_se.table import is_missing, label

    return None if is_missing(cell) else label(cell)


def read_rob(source, *, tool=None, study: str = "study", domain: str = "domain", judgement: str = "judgement",
             overall: str = "overall", sep=None, decimal=None, encoding=None) -> RobTable:
    """Read and check a RoB 2 or ROBINS-I table (tidy, or robvis's wide layout).

    Parameters
    ----------
    source : path, pandas.DataFrame or RobTable
        Read by :func:`bayes_se.table.read_table` (encoding, delimiter and missing cells by its
        rules). Tidy: columns ``study``, ``domain``, ``judgement`` (names case-insensitive), the
        overall judgement as domain ``Overall`` or a column ``overall``. Wide (robvis): a
        ``study`` column, one column per domain and ``Overall`` (no ``domain`` column); an optional
        ``Weight`` column is kept as :attr:`RobTable.weights`.
    tool : {"RoB 2", "ROBINS-I"}, optional
        Inferred when omitted: ROBINS-I when a judgement is Moderate, Serious or Critical, else
        RoB 2.
    study, domain, judgement, overall : str
        Column names.

    Returns
    -------
    RobTable

    Raises
    ------
    DataError
        Naming the row and column: a missing column or cell, a judgement the tool does not have,
        a study with the same domain twice, a study without an overall judgement or without a
        domain the others have, an ``overall`` column that changes within a study.

    Warns
    -----
    DataWarning
        A study whose overall judgement is less severe than its worst domain (RoB 2 and ROBINS-I
        guidance: the overall risk is at least the highest risk of any domain).
    """
    if isinstance(source, RobTable):
        return source
    from bayes_se.table import read_table

    tab = read_table(source, sep=sep, decimal=decimal, encoding=encoding)
    tab.warn(stacklevel=3)
    frame = tab.frame
    if len(frame) == 0:
        raise DataError("the risk-of-bias table has no rows")
    chosen = _tool_name(tool)
    s_col = _column(frame, study, "study")
    has_domain = any(str(c).strip().lower() == domain.lower() for c in frame.columns)
    if has_domain:
        return _read_long(frame, tab.where, chosen, s_col, _column(frame, domain, "domain"),
                          _column(frame, judgement, "judgement"), overall)
    return _read_wide(frame, tab.where, chosen, s_col)


def _check_judgement(cell, row, column, tool):
    if _label(cell) is None:
        raise DataError("missing judgement", row=row, column=column)
    value = _canonical(cell)
    if value is None or (tool is not None and value not in TOOLS[tool]):
        allowed = ", ".join(TOOLS[tool]) if tool else "RoB 2: " + ", ".join(TOOLS["RoB 2"]) + \
            "; ROBINS-I: " + ", ".join(TOOLS["ROBINS-I"])
        raise DataError(f"unknown judgement {str(cell).strip()!r}" + (f" for {tool}" if tool else "")
                        + f"; use {allowed}", row=row, column=column)
    return value


def _infer_tool(values, rows, columns, chosen):
    """The tool (given, or inferred from the judgements), checking that they all belong to it
    (``columns``: the column of each value)."""
    robins = [i for i, v in enumerate(values) if v in ("Moderate", "Serious", "Critical")]
    rob2 = [i for i, v in enumerate(values) if v in ("Some concerns", "High")]
    tool = chosen or ("ROBINS-I" if robins else "RoB 2")
    for i, v in enumerate(values):
        if v not in TOOLS[tool]:
            hint = "" if chosen else f" (the table mixes tools: {values[robins[0]]!r} is ROBINS-I on row " \
                f"{rows[robins[0]]}, {values[rob2[0]]!r} is RoB 2)" if robins and rob2 else ""
            raise DataError(f"unknown judgement {v!r} for {tool}; use {', '.join(TOOLS[tool])}{hint}",
                            row=rows[i], column=columns[i])
    return tool


def _read_long(frame, where, chosen, s_col, d_col, j_col, overall_name):
    o_col = next((c for c in frame.columns if str(c).strip().lower() == overall_name.lower()), None)
    studies, domains, values, rows = [], [], [], []
    overall_col = {}
    seen = {}
    for i in range(len(frame)):
        row = where(i)
        s = _label(frame[s_col].iloc[i])
        if s is None:
            raise DataError("missing study label", row=row, column=s_col)
        d = _label(frame[d_col].iloc[i])
        if d is None:
            raise DataError("missing domain", row=row, column=d_col)
        if d.lower() == OVERALL.lower():
            d = OVERALL
        if (s, d) in seen:
            raise DataError(f"study {s!r} has domain {d!r} twice (rows {seen[(s, d)]} and {row}); keep one "
                            "judgement per study and domain", row=row, column=d_col)
        seen[(s, d)] = row
        values.append(_check_judgement(frame[j_col].iloc[i], row, j_col, chosen))
        studies.append(s)
        domains.append(d)
        rows.append(row)
        if o_col is not None:
            cell = frame[o_col].iloc[i]
            if _label(cell) is not None:
                o = _check_judgement(cell, row, o_col, chosen)
                if s in overall_col and overall_col[s][0] != o:
                    raise DataError(f"study {s!r} has overall {overall_col[s][0]!r} on row {overall_col[s][1]} "
                                    f"and {o!r} here; one overall judgement per study", row=row, column=o_col)
                overall_col.setdefault(s, (o, row))
    all_values = values + [v for v, _ in overall_col.values()]
    all_rows = rows + [r for _, r in overall_col.values()]
    tool = _infer_tool(all_values, all_rows, [j_col] * len(values) + [o_col] * len(overall_col), chosen)
    first_row = {}
    for s, r in zip(studies, rows):
        first_row.setdefault(s, r)
    long = pd.DataFrame({"study": studies, "domain": domains, "judgement": values})
    for s, (o, r) in overall_col.items():
        if (s, OVERALL) in seen and long.loc[(long.study == s) & (long.domain == OVERALL), "judgement"].iloc[0] != o:
            raise DataError(f"study {s!r}: the overall column says {o!r} but its Overall row (row "
                            f"{seen[(s, OVERALL)]}) says otherwise", row=r, column=o_col)
        if (s, OVERALL) not in seen:
            long.loc[len(long)] = [s, OVERALL, o]
    domain_order = list(dict.fromkeys(d for d in domains if d != OVERALL))
    study_order = list(dict.fromkeys(studies))
    for s in study_order:
        have = set(long.loc[long.study == s, "domain"])
        if OVERALL not in have:
            raise DataError(f"study {s!r} has no overall judgement: add a row with domain 'Overall' or a column "
                            "'overall'", row=first_row[s], column=o_col or d_col)
        gone = [d for d in domain_order if d not in have]
        if gone:
            raise DataError(f"study {s!r} has no judgement for domain {gone[0]!r} (other studies have one); write "
                            f"'{NO_INFO}' where the study gives none", row=first_row[s], column=d_col)
    if not domain_order:
        raise DataError("the risk-of-bias table has only overall judgements; give the domains too", column=d_col)
    wide = long.pivot(index="study", columns="domain", values="judgement").reindex(
        index=study_order, columns=domain_order + [OVERALL])
    wide.index.name, wide.columns.name = "study", None
    return _finish(RobTable(tool, wide, first_row))


def _read_wide(frame, where, chosen, s_col):
    o_col = _column(frame, OVERALL, "Overall (wide layout, or a 'domain' column for the tidy layout)")
    w_col = next((c for c in frame.columns if str(c).strip().lower() == "weight"), None)
    d_cols = [c for c in frame.columns if c not in (s_col, o_col, w_col)]
    if not d_cols:
        raise DataError("the risk-of-bias table has no domain columns (tidy layout: study, domain, judgement)")
    table, rows, values, vrows, vcols = {}, {}, [], [], []
    weights = {}
    for i in range(len(frame)):
        row = where(i)
        s = _label(frame[s_col].iloc[i])
        if s is None:
            raise DataError("missing study label", row=row, column=s_col)
        if s in rows:
            raise DataError(f"study {s!r} appears twice (rows {rows[s]} and {row})", row=row, column=s_col)
        rows[s] = row
        cells = {}
        for c in d_cols + [o_col]:
            v = _check_judgement(frame[c].iloc[i], row, c, chosen)
            cells[OVERALL if c == o_col else str(c).strip()] = v
            values.append(v)
            vrows.append(row)
            vcols.append(c)
        table[s] = cells
        if w_col is not None:
            from bayes_se.table import NotANumber, parse_number

            try:
                weights[s] = parse_number(frame[w_col].iloc[i])
            except NotANumber as exc:
                raise DataError(str(exc), row=row, column=w_col) from None
            if not (np.isfinite(weights[s]) and weights[s] >= 0):
                raise DataError("weight must be a number >= 0", row=row, column=w_col)
    tool = _infer_tool(values, vrows, vcols, chosen)
    wide = pd.DataFrame.from_dict(table, orient="index")
    wide.index.name = "study"
    return _finish(RobTable(tool, wide, rows, pd.Series(weights, dtype=float) if w_col is not None else None))


def _finish(rob: RobTable) -> RobTable:
    """Warn about an overall judgement milder than the worst domain."""
    severity = {lv: i for i, lv in enumerate(rob.levels[:-1])}  # No information is not ranked
    for s, r in rob.table.iterrows():
        ranked = [severity[v] for d, v in r.items() if d != OVERALL and v in severity]
        if ranked and r[OVERALL] in severity and severity[r[OVERALL]] < max(ranked):
            worst = rob.levels[max(ranked)]
            warnings.warn(f"risk of bias, row {rob.rows[s]}: study {s!r} is judged {r[OVERALL]!r} overall but "
                          f"{worst!r} in a domain; the overall risk is usually at least the worst domain's",
                          DataWarning, stacklevel=4)
    return rob


# ----------------------------------------------------------------------------------- the analysis
def _text_keys(values) -> list:
    from bayes_se.table import label

    return [label(v) for v in values]


def study_keys(rob: RobTable, data, by: str | None = None) -> list[str]:
    """The study of ``rob`` each effect of ``data`` (EffectData) belongs to.

    With ``by`` (a column of the data, e.g. the trial of each comparison) its value; otherwise the
    effect's study label, else its cluster label (a trial whose comparisons share one assessment).

    Raises
    ------
    DataError
        An effect with no judgement (naming its row; the message names a column of the data that
        would match, when there is one), or a study of ``rob`` that matches no effect.
    """
    studies = set(rob.table.index)
    if by is not None:
        if by not in data.frame.columns:
            raise DataError(f"no column {by!r} to match the risk-of-bias studies by; columns are "
                            f"{', '.join(map(str, data.frame.columns))}", column=by)
        keys = _text_keys(data.frame[by])
        where = f"its {by!r} value is"
    else:
        keys = [s if s in studies else (data.cluster[i] if data.cluster is not None and data.cluster[i] in studies
                                        else None) for i, s in enumerate(data.study)]
        where = "its study" + (" and cluster labels are" if data.cluster is not None else " label is")
    for i, key in enumerate(keys):
        if key not in studies:
            hint = ""
            if by is None:
                fits = [c for c in data.frame.columns if c not in ("yi", "vi")
                        and set(_text_keys(data.frame[c])) == studies]
                if fits:
                    hint = f"; column {fits[0]!r} of the data matches every study: match by it (by={fits[0]!r}, " \
                           f"--rob-by {fits[0]})"
            raise DataError(f"effect {data.study[i]!r} has no risk-of-bias judgement ({where} not in the "
                            f"risk-of-bias table){hint}", row=i + 1, column=by or "study")
    unused = [s for s in rob.table.index if s not in set(keys)]
    if unused:
        raise DataError(f"study {unused[0]!r} of the risk-of-bias table matches no effect of the data (by "
                        + (f"column {by!r}" if by else "study or cluster label") + ")",
                        row=rob.rows[unused[0]], column="study")
    return keys


def effect_judgements(rob: RobTable, data, by: str | None = None) -> pd.Series:
    """The overall judgement of each effect of ``data``, matched as :func:`study_keys` says."""
    keys = study_keys(rob, data, by)
    return pd.Series(rob.overall.loc[keys].to_numpy(), index=pd.Index(data.study, name="study"), name="rob")


def study_weights(rob: RobTable, data, tau2: float | None = None, by: str | None = None) -> pd.Series:
    """Meta-analytic weight of each study of ``rob``: ``w_j = sum_{i in j} 1/(v_i + tau^2)`` over its
    effects (matched as :func:`study_keys` says).

    ``tau2`` defaults to the REML estimate of the random-effects model (metafor's ``rma``): the
    weights of robvis's weighted summary plot (McGuinness & Higgins 2021).
    """
    keys = study_keys(rob, data, by)
    if tau2 is None:
        from bayes_se.frequentist import rma

        tau2 = float(rma(data.yi, data.vi).tau2)
    w = 1.0 / (np.asarray(data.vi, float) + tau2)
    return pd.Series(w).groupby(pd.Series(keys)).sum().reindex(rob.studies).rename("weight")


def _rob_per_effect(data, rob, low, by=None):
    """(judgement or score per effect, low-risk mask, kind) for :func:`rob_sensitivity`."""
    if isinstance(rob, RobTable):
        values = effect_judgements(rob, data, by)
        low = "Low" if low is None else low
    elif isinstance(rob, str):
        if rob not in data.frame.columns:
            raise DataError(f"no risk-of-bias column {rob!r}; columns are {', '.join(map(str, data.frame.columns))}",
                            column=rob)
        values = data.frame[rob].reset_index(drop=True)
        values.index = pd.Index(data.study, name="study")
        bad = np.flatnonzero(values.isna().to_numpy())
        if bad.size:
            raise DataError("missing risk-of-bias value", row=int(bad[0]) + 1, column=rob)
    else:
        values = pd.Series(list(rob), index=pd.Index(data.study, name="study"))
        if len(values) != data.k:
            raise DataError(f"rob has {len(values)} values for {data.k} effects", column="rob")
    numeric = pd.api.types.is_numeric_dtype(values)
    if numeric:
        if low is None:
            raise SpecError("a numeric risk-of-bias score needs low=: the score at or above which a study is at "
                            "low risk (e.g. low=4 for the Metapsy score, 0 high to 4 low risk)", key="low")
        mask = values.to_numpy(float) >= float(low)
    else:
        values = values.map(lambda v: _canonical(v) or str(v))
        low = "Low" if low is None else low
        lows = {low} if isinstance(low, str) else set(low)
        mask = values.isin(lows).to_numpy()
    return values, mask, numeric


def rob_sensitivity(data, rob, *, low=None, moderator: str = "low", engines=("frequentist", "exact"),
                    method: str = "REML", spec=None, priors=None, level: float = 0.95,
                    by: str | None = None) -> pd.DataFrame:
    """Risk of bias in the synthesis: all studies, low-risk studies only, and risk of bias as a moderator.

    Random-effects model ``y_i ~ N(theta_i, v_i)``, ``theta_i ~ N(mu, tau^2)`` fitted to all
    effects and to those at low risk of bias; and the meta-regression
    ``theta_i ~ N(b0 + b1 x_i, tau^2)`` with ``x_i = 1`` for an effect not at low risk (b0: the
    effect in low-risk studies, b1: how much larger it is in the others), or ``x_i`` the score
    (``moderator="score"``), or one coefficient per judgement (``moderator="levels"``,
    ``factor(rob)``). Each with metafor's ``rma`` (``method``, Wald z intervals) and with the
    exact Bayesian engine (:func:`bayes_se.fit`, ``engine="exact"``; posterior medians and
    central credible intervals). Effects are treated as independent (two-level model), as the
    exact engine does. Cochrane Handbook 7.7 / 10.11 (Higgins et al. 2023).

    Parameters
    ----------
    data : EffectData
    rob : str, RobTable or sequence
        A column of ``data`` (a numeric score such as Metapsy's ``rob``, or judgements as text), a
        :class:`RobTable` (each effect gets the overall judgement of its study, matched as
        :func:`study_keys` says), or one value per effect.
    low : number, str or set of str, optional
        Which values are low risk: a score at or above ``low`` (required for a numeric score), or
        the judgement(s) (default ``"Low"``).
    moderator : {"low", "score", "levels"}
    engines : sequence of {"frequentist", "exact"}
    method : str
        tau² estimator of the frequentist fits.
    spec, priors : optional
        Passed to :func:`bayes_se.fit` (default: the packaged random-effects spec and priors).
    level : float
    by : str, optional
        The column of ``data`` naming each effect's study in a RobTable (see :func:`study_keys`).

    Returns
    -------
    pandas.DataFrame
        One row per engine, analysis and parameter: columns ``engine``, ``analysis`` ("all
        studies", "low risk only", "risk of bias as moderator"), ``parameter`` (``mu``, or the
        coefficient), ``k``, ``estimate``, ``lower``, ``upper``, ``tau`` (frequentist: sqrt of
        the tau² estimate; Bayesian: posterior median). ``attrs`` hold ``low``, ``k_low`` and
        ``moderator``.
    """
    from bayes_se.data import EffectData

    if not isinstance(data, EffectData):
        raise DataError(f"data must be an EffectData (bayes_se.load_effects), not {type(data).__name__}")
    bad = [e for e in engines if e not in ("frequentist", "exact")]
    if bad or not engines:
        raise SpecError(f"engines must be among 'frequentist', 'exact'; got {list(engines)!r}", key="engines")
    if moderator not in ("low", "score", "levels"):
        raise SpecError(f"moderator must be 'low', 'score' or 'levels', got {moderator!r}", key="moderator")
    values, mask, numeric = _rob_per_effect(data, rob, low, by)
    if moderator == "score" and not numeric:
        raise SpecError("moderator='score' needs a numeric risk-of-bias score", key="moderator")
    k_low = int(mask.sum())
    if k_low < 2:
        raise DataError(f"only {k_low} effect(s) at low risk of bias; the low-risk analysis needs at least 2",
                        column="rob")
    if k_low == data.k and moderator == "low":
        raise DataError("every effect is at low risk of bias: nothing to compare", column="rob")
    frame = {"yi": data.yi, "vi": data.vi, "study": list(data.study)}
    if moderator == "low":
        x, formula = {"rob_not_low": (~mask).astype(float)}, "~ rob_not_low"
    elif moderator == "score":
        x, formula = {"rob_score": values.to_numpy(float)}, "~ rob_score"
    else:
        x, formula = {"rob": values.astype(str).to_numpy()}, "~ factor(rob)"
    mdata = EffectData.from_arrays(data.yi, data.vi, study=list(data.study), cluster=None, **x)
    low_data = EffectData.from_arrays(data.yi[mask], data.vi[mask], study=[s for s, m in zip(frame["study"], mask) if m])
    flat = EffectData.from_arrays(data.yi, data.vi, study=list(data.study))
    rows = []
    analyses = (("all studies", flat, None), ("low risk only", low_data, None),
                ("risk of bias as moderator", mdata, formula))
    for engine in engines:
        for name, d, mods in analyses:
            if engine == "frequentist":
                from bayes_se.frequentist import rma

                res = rma(d, mods=mods, method=method, level=level)
                for j, coef in enumerate(res.coef_names):
                    rows.append({"engine": "frequentist", "analysis": name, "parameter": _param(coef, mods),
                                 "k": int(res.k), "estimate": float(res.beta[j]), "lower": float(res.ci_lower[j]),
                                 "upper": float(res.ci_upper[j]), "tau": float(np.sqrt(res.tau2))})
            else:
                from bayes_se.api import fit

                f = fit(d, spec, priors=priors, mods=mods, engine="exact", level=level)
                table = f.summary(level=level, theta=False)
                lo, hi = table.columns[2], table.columns[4]
                tau = float(table.loc["tau", "q50"])
                for p in [n for n in table.index if n == "mu" or str(n).startswith("beta[")]:
                    rows.append({"engine": "exact", "analysis": name, "parameter": _param(p, mods), "k": d.k,
                                 "estimate": float(table.loc[p, "q50"]), "lower": float(table.loc[p, lo]),
                                 "upper": float(table.loc[p, hi]), "tau": tau})
    out = pd.DataFrame(rows)
    out.attrs.update(low=low if low is not None else "Low", k_low=k_low, moderator=moderator, level=level)
    return out


def _param(name: str, mods) -> str:
    """``mu`` for an intercept-only model, the coefficient's name otherwise (``beta[x]`` -> ``x``)."""
    name = name[5:-1] if name.startswith("beta[") else name
    if mods is None and name in ("intrcpt", "intercept", "mu"):
        return "mu"
    return name
