"""Simulate the bundled self-efficacy dataset (SIMULATED data, not any review's data).

The dataset imitates the published summaries of a systematic review of self-efficacy in
internet-based interventions (IBI) for mental health (Internet Interventions 40:100821, 2025:
70 RCTs, 17,407 participants; between-group d = 0.46, guided d = 0.66, within-group d = 0.47;
self-efficacy as mediator, predictor and moderator with mixed findings). Nothing here is taken
from the trials of that review: every number below is drawn from the generating model.

Generating model (true values in ``GENERATING``; written to ``generating_values.json``):

* trial ``j`` has a true mean baseline self-efficacy ``B_j ~ N(50, 8)`` on a 0-100 (POMP) scale,
  an SD ``s_j ~ U(14, 22)`` and a pre-post correlation ``rho_j ~ U(0.45, 0.80)``;
* comparison / measure ``i`` of trial ``j`` (intervention arm vs the shared control arm) has the
  true standardized effect ``theta_ij = mu[guided_ij] + beta_B (B_j - 50) + u_j + w_ij`` with
  ``u_j`` (SD ``tau``) and ``w_ij`` (SD ``omega``) normal draws rescaled to exactly mean 0 and
  the stated SD ("exact-moment" draws, so the realised heterogeneity is the generating value);
* each participant has ``pre ~ N(B_j, s_j)`` and
  ``post = B_j + s_j delta_arm + rho_j (pre - B_j) + s_j sqrt(1 - rho_j^2) e``, ``e ~ N(0, 1)``,
  ``delta = drift`` in the control arm and ``drift + theta_ij`` in an intervention arm; a second
  self-efficacy measure correlates ``MEASURE_R`` with the first within arm. Arm summaries are the
  sample means and SDs, rounded to 2 decimals as papers report them;
* mediation trials: ``X`` = arm (point-biserial), ``M`` = the same participants' post-test
  self-efficacy, ``Y = c'_j z_X + b_j z_M + sqrt(1 - c'^2 - b^2 - 2 a b c') e`` (standardized
  with population moments), so ``corr(X, M) = a_j``, the point-biserial of that trial's
  ``theta``; ``b_j ~ N(b, sd_b)``, ``c'_j ~ N(c', sd_c')``. Correlations are sample correlations.

Usage: ``python scripts/simulate_self_efficacy.py [--out DIR]``. Deterministic: a fixed seed, one
``numpy.random.Generator`` consumed in a fixed order, ``\\n`` line ends. Computed floats are
written with ``SIG_DIGITS`` significant digits, so last-bit differences between NumPy/BLAS builds
(vectorised ``exp``/``log``, ``lstsq``) cannot change the committed text.

References
----------
Morris, T. P., White, I. R. & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine 38, 2074-2102 (ADEMP; the generating values are
reported with the data). Internet Interventions 40:100821 (2025), the review whose published
summaries are imitated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_se.effect_sizes import DEFAULT_PRE_POST_R, smcr, smd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "self_efficacy_sim"

SEED = 100821  # the review's article number
SIG_DIGITS = 10  # significant digits of every written float (far above the data's precision)
FLOAT_FORMAT = f"%.{SIG_DIGITS}g"
GENERATING = {
    "seed": SEED,
    "n_trials": 70,
    "n_participants": 17407,
    "mu": {"guided": 0.66, "unguided": 0.30},
    "tau": 0.25,
    "omega": 0.10,
    "baseline_mean": 50.0,
    "baseline_sd": 8.0,
    "baseline_centre": 50.0,
    "beta_baseline": -0.010,
    "control_drift": 0.05,
    "scale_sd_range": [14.0, 22.0],
    "prepost_r_range": [0.45, 0.80],
    "measure_r": 0.70,
    "default_pre_post_r": DEFAULT_PRE_POST_R,
    "mediation": {"a": "point-biserial of the trial's true theta (mean about 0.22)",
                  "b": -0.35, "sd_b": 0.08, "c_prime": -0.10, "sd_c_prime": 0.05},
    "findings": {"predictor_rho_mean": 0.05, "predictor_rho_sd": 0.15,
                 "moderator_gamma_mean": -0.20, "moderator_gamma_sd": 0.10},
    "risk_of_bias": {
        "tool": "RoB 2", "seed": [SEED, 2], "levels": ["Low", "Some concerns", "High"],
        "probabilities": {"D1": [0.85, 0.12, 0.03], "D2": [0.75, 0.20, 0.05], "D3": [0.70, 0.20, 0.10],
                          "D4": [0.65, 0.30, 0.05], "D5": [0.80, 0.18, 0.02]},
        "overall": "High if any domain is High or 3+ domains have Some concerns; Low if every domain is Low; "
                   "else Some concerns",
        "independent_of_effects": True,
    },
}

DISORDERS = ["depression"] * 24 + ["anxiety"] * 12 + ["mixed"] * 11 + ["stress"] * 9 \
    + ["insomnia"] * 8 + ["PTSD"] * 6
OUTCOME = {"depression": "depression", "anxiety": "anxiety", "mixed": "psychological distress",
           "stress": "perceived stress", "insomnia": "insomnia severity", "PTSD": "PTSD symptoms"}
N_GUIDED_TRIALS = 28      # trials whose (first) intervention arm is guided
N_LARGE = 6               # trials with 300-1000 per arm (mostly unguided open-access IBIs)
N_TWO_ARM_EXTRA = 8       # trials with 2 intervention arms sharing the control
N_THREE_ARM_EXTRA = 2     # trials with 3 intervention arms
N_SECOND_MEASURE = 6      # trials reporting two self-efficacy measures
N_WITHIN = 40             # trials that report pre-post statistics of the intervention arm(s)
N_RI_MISSING = 6          # of those, rows without a reported pre-post correlation
N_MEDIATION = 15          # trials reporting correlations for the mediation model
MIN_N_MEDIATION = 150     # mediation analyses come from the larger trials (control + arm 1)
MIN_N_MODERATOR = 200     # so do moderator analyses
N_PREDICTOR = 12          # trials reporting self-efficacy as predictor
N_MODERATOR = 10          # trials reporting baseline self-efficacy as moderator
Z_CRIT = 1.959963984540054  # two-sided 5% normal quantile


def _exact_moments(z: np.ndarray, sd: float, covariates: np.ndarray) -> np.ndarray:
    """Residuals of ``z`` on ``[1, covariates]``, rescaled to SD ``sd`` (ddof=0).

    The result has mean 0, SD ``sd`` and is exactly uncorrelated with the covariates, so the
    realised sample carries no chance confounding of the random effects with the moderators.
    """
    X = np.column_stack([np.ones(len(z)), covariates])
    resid = z - X @ np.linalg.lstsq(X, z, rcond=None)[0]
    return sd * resid / resid.std()


def _trials(rng: np.random.Generator) -> pd.DataFrame:
    g = GENERATING
    k = g["n_trials"]
    t = pd.DataFrame({"study_id": [f"Sim-{j + 1:03d}" for j in range(k)]})
    t["disorder"] = rng.permutation(DISORDERS)
    t["year"] = np.sort(rng.integers(2005, 2025, size=k))
    t["year"] = rng.permutation(t["year"].to_numpy())
    large = np.zeros(k, bool)
    large[rng.choice(k, N_LARGE, replace=False)] = True
    t["large"] = large
    # guided trials: one large trial is guided, the others are among the regular trials
    guided = np.zeros(k, bool)
    regular = np.flatnonzero(~large)
    guided[rng.choice(regular, N_GUIDED_TRIALS - 1, replace=False)] = True
    guided[np.flatnonzero(large)[0]] = True
    t["guided"] = guided
    arms = np.ones(k, int)
    extra = rng.choice(regular, N_TWO_ARM_EXTRA + N_THREE_ARM_EXTRA, replace=False)
    arms[extra[:N_TWO_ARM_EXTRA]] = 2
    arms[extra[N_TWO_ARM_EXTRA:]] = 3
    t["n_arms"] = arms
    second = np.zeros(k, bool)
    second[rng.choice(np.flatnonzero(arms == 1), N_SECOND_MEASURE, replace=False)] = True
    t["second_measure"] = second
    t["baseline"] = rng.normal(g["baseline_mean"], g["baseline_sd"], k)
    t["scale_sd"] = rng.uniform(*g["scale_sd_range"], k)
    t["rho"] = rng.uniform(*g["prepost_r_range"], k)
    # per-arm sizes: skewed (log-normal, median 62) for regular trials, 300-1000 for large ones
    per_arm = np.where(large, rng.uniform(300, 1000, k), np.exp(rng.normal(np.log(62), 0.5, k)))
    t["per_arm"] = np.maximum(per_arm, 12)
    design = np.column_stack([t.baseline, guided, np.log(t.per_arm), arms])
    t["u"] = _exact_moments(rng.standard_normal(k), g["tau"], design)
    return t


def _arm_sizes(t: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
    """Sizes of [control, intervention arm 1, ...] per trial, scaled to ``n_participants`` in total."""
    raw = [t.per_arm[j] * rng.uniform(0.85, 1.15, t.n_arms[j] + 1) for j in range(len(t))]
    scale = GENERATING["n_participants"] / sum(a.sum() for a in raw)
    sizes = [np.maximum(np.round(a * scale).astype(int), 10) for a in raw]
    # put the rounding remainder on the control arm of the largest trial (documented)
    biggest = int(np.argmax([s.sum() for s in sizes]))
    sizes[biggest][0] += GENERATING["n_participants"] - sum(int(s.sum()) for s in sizes)
    return sizes


def _effects(t: pd.DataFrame, rng) -> pd.DataFrame:
    """One row per comparison x measure with its true theta."""
    g = GENERATING
    rows = []
    for j, trial in t.iterrows():
        for arm in range(1, trial.n_arms + 1):
            # arm 2 of trials with an even 0-based index is the other guidance format
            guided = bool(trial.guided) if arm == 1 else bool(trial.guided) ^ (arm % 2 == 0 and j % 2 == 0)
            for measure in (1, 2) if trial.second_measure else (1,):
                rows.append({"j": j, "arm": arm, "measure": measure, "guided": guided})
    e = pd.DataFrame(rows)
    w = _exact_moments(rng.standard_normal(len(e)), g["omega"], e.guided.to_numpy(float))
    mu = np.where(e.guided, g["mu"]["guided"], g["mu"]["unguided"])
    base = t.baseline.to_numpy()[e.j] - g["baseline_centre"]
    e["theta"] = mu + g["beta_baseline"] * base + t.u.to_numpy()[e.j] + w
    return e


def _participants(t, sizes, e, rng):
    """Individual pre/post scores of every arm (arm 0 = control).

    Returns ``{(j, arm): (pre, post1, post2)}``, ``post2`` None without a second measure.
    """
    g = GENERATING
    data = {}
    for j, trial in t.iterrows():
        B, s, rho = trial.baseline, trial.scale_sd, trial.rho
        for arm, n in enumerate(sizes[j]):
            delta = {1: g["control_drift"], 2: g["control_drift"]}
            if arm > 0:
                for measure in (1, 2) if trial.second_measure else (1,):
                    theta = e.theta[(e.j == j) & (e.arm == arm) & (e.measure == measure)].item()
                    delta[measure] = g["control_drift"] + theta
            pre = rng.normal(B, s, n)
            z1 = rng.standard_normal(n)
            post1 = B + s * delta[1] + rho * (pre - B) + s * np.sqrt(1 - rho**2) * z1
            post2 = None
            if trial.second_measure:
                z = (pre - B) / s * rho + np.sqrt(1 - rho**2) * z1  # standardized post1 residual
                other = g["measure_r"] * z + np.sqrt(1 - g["measure_r"] ** 2) * rng.standard_normal(n)
                post2 = B + s * delta[2] + s * other
            data[j, arm] = (pre, post1, post2)
    return data


def _round2(x):
    """Two decimals, as trial reports give means, SDs and correlations."""
    return np.round(np.asarray(x, float), 2)


def _label(trial_id: str, index: int, many: bool) -> str:
    return f"{trial_id} ({'abcdefgh'[index]})" if many else trial_id


def _between(t, sizes, e, data) -> pd.DataFrame:
    rows = []
    for j, trial in t.iterrows():
        sub = e[e.j == j].reset_index(drop=True)
        everyone = np.concatenate([data[j, a][0] for a in range(len(sizes[j]))])
        for i, eff in sub.iterrows():
            ctl, arm = data[j, 0], data[j, eff.arm]
            post_arm, post_ctl = (arm[1], ctl[1]) if eff.measure == 1 else (arm[2], ctl[2])
            rows.append({
                "study": _label(trial.study_id, i, len(sub) > 1), "study_id": trial.study_id,
                "arm": int(eff.arm), "measure": "primary" if eff.measure == 1 else "secondary",
                "guided": "guided" if eff.guided else "unguided", "disorder": trial.disorder,
                "year": int(trial.year), "baseline_se": round(float(everyone.mean()), 1),
                "m1i": post_arm.mean(), "sd1i": post_arm.std(ddof=1), "n1i": len(post_arm),
                "m2i": post_ctl.mean(), "sd2i": post_ctl.std(ddof=1), "n2i": len(post_ctl),
            })
    out = pd.DataFrame(rows)
    for col in ("m1i", "sd1i", "m2i", "sd2i"):
        out[col] = _round2(out[col])
    out["yi"], out["vi"] = smd(out.m1i, out.sd1i, out.n1i, out.m2i, out.sd2i, out.n2i)
    return out


def _within(t, between, data, rng) -> pd.DataFrame:
    chosen = np.sort(rng.choice(len(t), N_WITHIN, replace=False))
    rows = []
    for j in chosen:
        trial = t.iloc[j]
        prim = between[(between.study_id == trial.study_id) & (between.measure == "primary")]
        for _, b in prim.iterrows():
            pre, post, _ = data[j, b.arm]
            rows.append({
                "study": b.study, "study_id": trial.study_id, "arm": int(b.arm), "guided": b.guided,
                "disorder": trial.disorder, "year": int(trial.year),
                "m_pre": pre.mean(), "sd_pre": pre.std(ddof=1), "m_post": post.mean(),
                "sd_post": post.std(ddof=1), "ni": len(pre), "ri": np.corrcoef(pre, post)[0, 1],
            })
    out = pd.DataFrame(rows)
    for col in ("m_pre", "sd_pre", "m_post", "sd_post", "ri"):
        out[col] = _round2(out[col])
    out.loc[np.sort(rng.choice(len(out), N_RI_MISSING, replace=False)), "ri"] = np.nan
    r_used = out.ri.fillna(DEFAULT_PRE_POST_R)
    out["yi"], out["vi"] = smcr(out.m_post, out.m_pre, out.sd_pre, out.ni, r_used)
    return out


def _mediation(t, sizes, e, data, rng):
    """Long correlation table and the true paths of the mediation trials."""
    g = GENERATING["mediation"]
    total = np.array([s[:2].sum() for s in sizes])  # control + first intervention arm
    eligible = np.flatnonzero(~t.second_measure.to_numpy() & (total >= MIN_N_MEDIATION))
    chosen = np.sort(rng.choice(eligible, N_MEDIATION, replace=False))
    missing = rng.permutation(N_MEDIATION)  # first 3: no M-Y pair, next 2: no X-Y pair
    rows, truth = [], []
    for pos, j in enumerate(chosen):
        trial = t.iloc[j]
        n1, n0 = sizes[j][1], sizes[j][0]
        p = n1 / (n1 + n0)
        theta = e.theta[(e.j == j) & (e.arm == 1) & (e.measure == 1)].item()
        pq = p * (1 - p)
        a = theta * np.sqrt(pq) / np.sqrt(1 + pq * theta**2)
        b = rng.normal(g["b"], g["sd_b"])
        c = rng.normal(g["c_prime"], g["sd_c_prime"])
        x = np.r_[np.ones(n1), np.zeros(n0)]
        m = np.r_[data[j, 1][1], data[j, 0][1]]
        s = trial.scale_sd
        m_mean = trial.baseline + s * (GENERATING["control_drift"] + p * theta)
        m_sd = s * np.sqrt(1 + pq * theta**2)
        zx, zm = (x - p) / np.sqrt(pq), (m - m_mean) / m_sd
        y = c * zx + b * zm + np.sqrt(1 - c**2 - b**2 - 2 * a * b * c) * rng.standard_normal(n1 + n0)
        r = np.corrcoef(np.vstack([x, m, y]))
        label = _label(trial.study_id, 0, trial.n_arms > 1)  # the arm-1 row of between.csv
        pairs = [("intervention", "self_efficacy", r[1, 0]), ("intervention", "symptoms", r[2, 0]),
                 ("self_efficacy", "symptoms", r[2, 1])]
        rank = int(np.flatnonzero(missing == pos)[0])
        if rank < 3:
            pairs = pairs[:2]
        elif rank < 5:
            pairs = [pairs[0], pairs[2]]
        for v1, v2, rv in pairs:
            rows.append({"study": label, "study_id": trial.study_id, "n": n1 + n0,
                         "var1": v1, "var2": v2, "r": round(float(rv), 3)})
        truth.append({"study": label, "a": float(a), "b": float(b), "c_prime": float(c)})
    return pd.DataFrame(rows), truth


def _sobel(r_xm, r_xy, r_my, n):
    """Standardized a, b, and the Sobel z of a*b from a correlation matrix (Sobel 1982)."""
    a = r_xm
    b = (r_my - r_xm * r_xy) / (1 - r_xm**2)
    r2 = (r_xy**2 + r_my**2 - 2 * r_xy * r_my * r_xm) / (1 - r_xm**2)
    se_a = np.sqrt((1 - r_xm**2) / (n - 2))
    se_b = np.sqrt((1 - r2) / ((n - 3) * (1 - r_xm**2)))
    return a, b, a * b / np.sqrt(b**2 * se_a**2 + a**2 * se_b**2)


def _sign(x):
    return "+" if x > 0 else "-"


def _findings(t, sizes, mediation, rng) -> pd.DataFrame:
    g = GENERATING["findings"]
    rows = []
    for study, grp in mediation.groupby("study", sort=True):
        if len(grp) < 3:
            continue  # a study without all three correlations reported no mediation test
        r = {(v1, v2): rv for v1, v2, rv in zip(grp.var1, grp.var2, grp.r)}
        n = int(grp.n.iloc[0])
        a, b, z = _sobel(r["intervention", "self_efficacy"], r["intervention", "symptoms"],
                         r["self_efficacy", "symptoms"], n)
        benefit = -a * b  # positive: the intervention lowers symptoms through self-efficacy
        sid = grp.study_id.iloc[0]
        rows.append({"study": study, "role": "mediator", "disorder": t.disorder[t.study_id == sid].item(),
                     "direction": _sign(benefit), "significant": "yes" if abs(z) > Z_CRIT else "no",
                     "effect": round(float(benefit), 3), "n": n})
    pred = np.sort(rng.choice(len(t), N_PREDICTOR, replace=False))
    for pos, j in enumerate(pred):
        n = int(sizes[j][1])
        rho = rng.normal(g["predictor_rho_mean"], g["predictor_rho_sd"])
        est = np.tanh(rng.normal(np.arctanh(rho), 1 / np.sqrt(n - 3)))
        sig = abs(np.arctanh(est)) * np.sqrt(n - 3) > Z_CRIT
        reported = sig or pos % 3 != 0  # every third null predictor study gave no estimate
        rows.append({"study": t.study_id[j], "role": "predictor", "disorder": t.disorder[j],
                     "direction": _sign(est) if reported else "0",
                     "significant": "yes" if sig else "no",
                     "effect": round(float(est), 3) if reported else np.nan, "n": n})
    total = np.array([s[:2].sum() for s in sizes])
    mod = np.sort(rng.choice(np.flatnonzero(total >= MIN_N_MODERATOR), N_MODERATOR, replace=False))
    for pos, j in enumerate(mod):
        n = int(sizes[j][0] + sizes[j][1])
        gamma = rng.normal(g["moderator_gamma_mean"], g["moderator_gamma_sd"])
        est = rng.normal(gamma, 2 / np.sqrt(n))  # SE of a standardized treatment x covariate term
        sig = abs(est) / (2 / np.sqrt(n)) > Z_CRIT
        reported = sig or pos % 2 == 0
        rows.append({"study": t.study_id[j], "role": "moderator", "disorder": t.disorder[j],
                     "direction": _sign(est) if reported else "0",
                     "significant": "yes" if sig else "no",
                     "effect": round(float(est), 3) if reported else np.nan, "n": n})
    out = pd.DataFrame(rows)
    out.insert(1, "construct", "self_efficacy")
    out.insert(3, "outcome", out.pop("disorder").map(OUTCOME))
    return out


def _risk_of_bias() -> pd.DataFrame:
    """A RoB 2 assessment of every trial (SIMULATED): each domain's judgement drawn independently of
    the trial and its effects, from its own generator (so the other tables do not change), the
    overall judgement by the rule in ``GENERATING["risk_of_bias"]``."""
    g = GENERATING["risk_of_bias"]
    rng = np.random.default_rng(g["seed"])
    levels = g["levels"]
    rows = []
    for j in range(GENERATING["n_trials"]):
        trial = f"Sim-{j + 1:03d}"
        drawn = [levels[rng.choice(3, p=p)] for p in g["probabilities"].values()]
        if "High" in drawn or drawn.count("Some concerns") >= 3:
            overall = "High"
        elif all(v == "Low" for v in drawn):
            overall = "Low"
        else:
            overall = "Some concerns"
        rows += [{"study": trial, "domain": d, "judgement": v} for d, v in zip(g["probabilities"], drawn)]
        rows.append({"study": trial, "domain": "Overall", "judgement": overall})
    return pd.DataFrame(rows)


def simulate() -> dict:
    """Draw the whole dataset; returns the tables and the generating values."""
    rng = np.random.default_rng(SEED)
    t = _trials(rng)
    sizes = _arm_sizes(t, rng)
    e = _effects(t, rng)
    data = _participants(t, sizes, e, rng)
    between = _between(t, sizes, e, data)
    within = _within(t, between, data, rng)
    mediation, truth = _mediation(t, sizes, e, data, rng)
    findings = _findings(t, sizes, mediation, rng)
    truth_theta = [{"study": s, "theta": float(th)} for s, th in zip(between.study, e.theta)]
    values = dict(GENERATING)
    values["true_theta"] = truth_theta
    values["true_paths"] = truth
    rob = _risk_of_bias()
    values["realised"] = {
        "k_between": len(between), "k_within": len(within), "trials": int(between.study_id.nunique()),
        "trials_within": int(within.study_id.nunique()), "mediation_studies": len(truth),
        "participants": int(sum(int(s.sum()) for s in sizes)),
        "guided_effects": int((between.guided == "guided").sum()),
        "mean_true_a": float(np.mean([p["a"] for p in truth])),
        "rob_overall": {lv: int((rob.judgement[rob.domain == "Overall"] == lv).sum())
                        for lv in GENERATING["risk_of_bias"]["levels"]},
    }
    return {"between": between, "within": within, "mediation_correlations": mediation.drop(columns="study_id"),
            "findings": findings, "risk_of_bias": rob, "generating_values": values}


def _significant(value):
    """``value`` with every float rounded to ``SIG_DIGITS`` significant digits (nested JSON)."""
    if isinstance(value, dict):
        return {key: _significant(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_significant(v) for v in value]
    if isinstance(value, float):
        return float(FLOAT_FORMAT % value)
    return value


def write(tables: dict, out: Path) -> None:
    """CSV files and the JSON of generating values: floats with ``SIG_DIGITS`` digits, ``\\n``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if name == "generating_values":
            text = json.dumps(_significant(table), indent=2, sort_keys=False) + "\n"
            (out / f"{name}.json").write_bytes(text.encode("utf-8"))
        else:
            text = table.to_csv(index=False, lineterminator="\n", float_format=FLOAT_FORMAT)
            (out / f"{name}.csv").write_bytes(text.encode("utf-8"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write (default %(default)s)")
    args = parser.parse_args(argv)
    write(simulate(), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
