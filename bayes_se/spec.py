"""Model specifications as data: TOML files read with ``tomllib``, validated, never executed.

A spec has five sections (all optional; every key has a default)::

    [model]    type, effects, mods, subgroup_tau, scale, rho
    [data]     effect, variance, se, study, cluster          (column names)
    [priors]   preset, and a prior string per parameter       ("mu" = "normal(0, 1)", ...)
    [sampler]  engine, chains, draws, tune, target_accept, seed, nuts_sampler
    [summary]  smallest_effect, level

:func:`load_spec` reads a file or TOML text into a frozen :class:`ModelSpec`; every problem is a
:class:`~bayes_se.errors.SpecError` naming the key (``model.type``, ``priors.tau``, ...), with the
closest known name for a misspelt one. ``ModelSpec.to_toml()`` writes it back (round trip).
``docs/model_spec.md`` is the reference for every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import pathlib
import re
import tomllib
import types
from typing import Any, Mapping

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.priors import PRESETS, Prior, assign_prior, preset, prior_for

MODEL_TYPES = ("random_effects", "meta_regression", "three_level", "mediation", "mediation_paths")
#: Model types whose spec has a [mediation] section and its own [priors] keys.
MEDIATION_TYPES = ("mediation", "mediation_paths")
EFFECTS = ("normal", "student_t")
ENGINES = ("mcmc", "exact")
#: NUTS implementations of the MCMC engine (``[sampler] nuts_sampler``; bayes_se.sampling.sample).
NUTS_SAMPLERS = ("nutpie", "pymc")
# parameters a [priors] table may name, besides "preset" and beta[NAME]
PRIOR_KEYS = ("mu", "beta", "tau", "tau2", "sigma_cluster", "sigma_effect", "nu", "alpha")

_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_MODS_CHARS_RE = re.compile(r"[^A-Za-z0-9_.+:*~()\- ]")
_BETA_KEY_RE = re.compile(r"^beta\[(.+)\]$")
_ALPHA_KEY_RE = re.compile(r"^alpha\[(.+)\]$")


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """``[model]``: which model. ``mods`` is a moderator formula over data columns (names, ``+ : *``,
    ``factor(x)``, ``0 +`` / ``- 1``; :mod:`bayes_se.formula`)."""

    type: str = "random_effects"
    effects: str = "normal"
    mods: str = ""
    subgroup_tau: str = ""
    #: A location-scale model's scale formula, log tau_i = z_i' alpha (None: one tau). TOML has no
    #: null, so a spec either sets a formula or leaves the key out.
    scale: str | None = dataclasses.field(default=None, metadata={"type": str})
    rho: float = 0.0  # three_level: assumed within-cluster sampling correlation (metafor's vcalc rho)


@dataclasses.dataclass(frozen=True)
class DataSection:
    """``[data]``: column names of the effect-size table ('' = not used), and how to read the file
    (``sep``, ``decimal``, ``encoding``: '' = sniffed, see :mod:`bayes_se.table`)."""

    effect: str = "yi"
    variance: str = "vi"
    se: str = ""
    study: str = "study"
    cluster: str = ""
    sep: str = ""
    decimal: str = ""
    encoding: str = ""


@dataclasses.dataclass(frozen=True)
class SamplerSection:
    """``[sampler]``: engine and MCMC settings (the exact engine ignores chains/draws/tune)."""

    engine: str = "mcmc"
    chains: int = defaults.CHAINS
    draws: int = defaults.DRAWS
    tune: int = defaults.TUNE
    #: None: the model's default (``bayes_se.sampling.TARGET_ACCEPT_BY_KIND``); TOML has no null,
    #: so a spec either sets a number or leaves the key out.
    target_accept: float | None = dataclasses.field(default=None, metadata={"type": float})
    seed: int = defaults.SEED
    #: "nutpie": nutpie's Rust NUTS on the density PyTensor compiles with Numba; "pymc": PyMC's NUTS.
    nuts_sampler: str = "nutpie"


@dataclasses.dataclass(frozen=True)
class SummarySection:
    """``[summary]``: what is reported. P(mu > smallest_effect) and level-credible intervals."""

    smallest_effect: float = 0.0
    level: float = defaults.LEVEL


@dataclasses.dataclass(frozen=True)
class MediationSection:
    """``[mediation]`` (type = "mediation" or "mediation_paths"): the path model and its
    correlation-table layout.

    ``paths`` is ``"OUT ~ A + B; OUT2 ~ C"`` ('' = the single-mediator model m ~ x, y ~ x + m);
    ``variables`` orders the pooled matrix ('' = x, m, y); ``tau`` is set in ``[priors]``.
    ``correlations`` (type = "mediation_paths" only) is an optional correlation table of trials that
    give a matrix instead of paths, a path relative to the current directory ('' = none); ``eta`` is
    then the LKJ shape of rho_ab.
    """

    x: str = "intervention"
    m: str = "self_efficacy"
    y: str = "symptoms"
    paths: str = ""
    variables: str = ""
    layout: str = "auto"
    n: str = "n"
    eta: float = defaults.MEDIATION_PRIORS["eta"]
    eta_rho: float = defaults.MEDIATION_PRIORS["eta_rho"]
    mc_draws: int = 256
    correlations: str = ""
    likelihood: str = "pooled"


_SECTIONS = {
    "model": ModelSection,
    "data": DataSection,
    "sampler": SamplerSection,
    "summary": SummarySection,
    "mediation": MediationSection,
}
MEDIATION_LAYOUTS = ("auto", "long", "wide", "paths")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A validated model specification.

    Attributes
    ----------
    model, data, sampler, summary : frozen section dataclasses
    preset : str
        Name of the prior preset (:data:`bayes_se.priors.PRESETS`) that fills in unset priors.
    priors : Mapping[str, Prior]
        The priors given explicitly in ``[priors]``, by parameter (``mu``, ``tau``, ``beta[x]``, ...).
    """

    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    preset: str = "default"
    priors: Mapping[str, Prior] = dataclasses.field(default_factory=dict)
    sampler: SamplerSection = SamplerSection()
    summary: SummarySection = SummarySection()
    mediation: MediationSection = MediationSection()

    def __post_init__(self):
        object.__setattr__(self, "priors", types.MappingProxyType(dict(self.priors)))
        _validate(self)

    # -- derived -----------------------------------------------------------------------------------
    def resolved_priors(self) -> dict[str, Prior]:
        """Every prior the model uses: the preset's ``mu``/``beta``/``tau``, overridden by ``[priors]``.

        A ``tau2`` entry replaces the preset's ``tau`` (both describe the heterogeneity); it is
        returned under ``tau`` (its ``target`` says ``tau2``).
        """
        out = preset(self.preset)
        for key, prior in self.priors.items():
            out["tau" if key == "tau2" else key] = prior
        return out

    def model_priors(self, coef_names=("intercept",)) -> dict[str, Prior]:
        """The priors the model actually uses (:func:`model_priors`), resolved once for every engine."""
        return model_priors(self.resolved_priors(), coef_names, self.model.type, self.model.effects)

    def with_priors(self, priors: Mapping[str, Prior | str]) -> "ModelSpec":
        """A copy with the given priors set (values: Prior objects or prior strings; the key
        ``preset`` changes the preset)."""
        new = dict(self.priors)
        preset_name = self.preset
        for key, value in priors.items():
            if key == "preset":
                preset_name = _coerce("priors.preset", value, str)
                continue
            if self.model.type == "mediation_paths":
                new[key] = path_prior(key, value)
                continue
            # tau and tau2 both describe the heterogeneity: a new one replaces the other
            new.pop({"tau": "tau2", "tau2": "tau"}.get(key, ""), None)
            new[key] = _prior_value(key, value)
        return dataclasses.replace(self, preset=preset_name, priors=new)

    def with_mods(self, expr: str) -> "ModelSpec":
        """A copy with moderator formula ``expr`` ('' removes the moderators).

        A random-effects spec given moderators becomes a meta-regression, a meta-regression whose
        moderators are removed becomes a random-effects model.
        """
        mtype = self.model.type
        if expr and mtype == "random_effects":
            mtype = "meta_regression"
        elif not expr and mtype == "meta_regression":
            mtype = "random_effects"
        model = dataclasses.replace(self.model, mods=expr, type=mtype)
        return dataclasses.replace(self, model=model)

    def with_rho(self, rho: float) -> "ModelSpec":
        """A copy with the within-cluster sampling correlation ``rho`` (three-level specs only)."""
        spec = dataclasses.replace(self, model=dataclasses.replace(self.model, rho=float(rho)))
        _validate_rho(spec.model)
        return spec

    # -- TOML ----------------------------------------------------------------------------------------
    def to_toml(self) -> str:
        """The spec as TOML text that :func:`load_spec` reads back to an equal spec.

        Hand-written because ``tomllib`` only reads; the values are strings, integers and floats.
        """
        lines = []
        sections = ["model", "data", "priors", "sampler", "summary"]
        if self.model.type in MEDIATION_TYPES:
            sections.append("mediation")
        for section in sections:
            lines.append(f"[{section}]")
            if section == "priors":
                items = [("preset", self.preset)] + [(k, p.spec_text()) for k, p in self.priors.items()]
            else:
                obj = getattr(self, section)
                items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
            for key, value in items:
                if value is not None:  # an unset optional key (TOML has no null)
                    lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def model_priors(resolved: Mapping[str, Prior], coef_names=("intercept",), model_type: str = "random_effects",
                 effects: str = "normal") -> dict[str, Prior]:
    """The priors a model actually uses, picked from resolved priors by one rule for every engine.

    ``resolved`` merges a preset, a spec's ``[priors]`` and overrides
    (:meth:`ModelSpec.resolved_priors`). The result holds ``mu`` for an intercept-only model, else
    ``beta[NAME]`` for each coefficient (the intercept takes ``mu``, see
    :func:`bayes_se.priors.coefficient_priors`); ``tau`` (two-level models) or ``sigma_cluster``
    and ``sigma_effect`` (three-level; each falls back to ``tau``); ``nu`` for Student-t effects
    when given. A model without moderators lists no ``beta``.

    Raises
    ------
    SpecError
        A ``beta[NAME]`` names no coefficient of the design.
    """
    from bayes_se.priors import coefficient_priors

    names = list(coef_names)
    out: dict[str, Prior] = {}
    if names == ["intercept"]:
        stray = [key for key in resolved if key.startswith("beta[")]
        if stray:
            raise SpecError(f"'{stray[0]}' names a coefficient, but the model has no moderators",
                            key=f"priors.{stray[0]}")
        out["mu"] = resolved["mu"]
    else:
        for name, prior in zip(names, coefficient_priors(resolved, names)):
            out[f"beta[{name}]"] = dataclasses.replace(prior, target=f"beta[{name}]")
    if model_type == "three_level":
        for key in ("sigma_cluster", "sigma_effect"):
            prior = resolved.get(key, resolved["tau"])
            out[key] = dataclasses.replace(prior, target=key + ("2" if prior.on_variance else ""))
    else:
        out["tau"] = resolved["tau"]
    if effects == "student_t" and "nu" in resolved:
        out["nu"] = resolved["nu"]
    return out


def scale_priors(priors: dict | None, scale_names) -> list:
    """The prior of each scale coefficient ``alpha[NAME]``: ``priors["alpha[NAME]"]`` if given, else
    ``priors["alpha"]`` for a non-intercept coefficient, else :data:`bayes_se.defaults.SCALE_PRIORS`.

    Raises
    ------
    SpecError
        An ``alpha[NAME]`` that names no scale coefficient.
    """
    priors = dict(priors or {})
    names = list(scale_names)
    for key in priors:
        if key.startswith("alpha[") and key[6:-1] not in names:
            raise SpecError(f"no scale coefficient named '{key[6:-1]}'; the scale design has {', '.join(names)}",
                            key=f"priors.{key}")
    out = []
    for name in names:
        key = f"alpha[{name}]"
        if priors.get(key) is not None:
            out.append(priors[key])
        elif name != "intercept" and priors.get("alpha") is not None:
            out.append(priors["alpha"])
        else:
            text = defaults.SCALE_PRIORS.get(key if name == "intercept" else "alpha")
            out.append(prior_for(key, text))
    return out


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def load_spec(path_or_text: str | pathlib.Path) -> ModelSpec:
    """Read a model spec from a TOML file or TOML text.

    Parameters
    ----------
    path_or_text : str or pathlib.Path
        A path (a ``Path``, or a one-line string ending in ``.toml`` or naming an existing file),
        else the TOML text itself.

    Returns
    -------
    ModelSpec

    Raises
    ------
    SpecError
        TOML syntax errors (with tomllib's line and column), unknown sections or keys (with the
        closest known name), wrong types, bad values, unparsable priors; the message names the key.
    """
    text = _read(path_or_text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}") from None
    return spec_from_dict(raw)


def _read(path_or_text) -> str:
    if isinstance(path_or_text, pathlib.Path):
        path = path_or_text
    elif isinstance(path_or_text, str) and "\n" not in path_or_text and (
            path_or_text.endswith(".toml") or pathlib.Path(path_or_text).is_file()):
        path = pathlib.Path(path_or_text)
    elif isinstance(path_or_text, str):
        return path_or_text.removeprefix("\ufeff")
    else:
        raise SpecError(f"a spec is a path or TOML text, got {type(path_or_text).__name__}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file '{path}': {exc.strerror or exc}") from None
    return decode_spec_bytes(raw, path)


def decode_spec_bytes(raw: bytes, path) -> str:
    """The text of a spec file: UTF-8 (TOML's only encoding), a leading byte-order mark dropped.

    Anything else (Latin-1 or cp1252 from an old editor, UTF-16) is refused rather than guessed:
    a wrong guess would silently change column names and labels.

    Raises
    ------
    SpecError
        Naming the file, the encoding problem and the line and column of the first bad byte.
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"spec file '{path}' is UTF-16 text; TOML files must be UTF-8: save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = raw.startswith(b"\xef\xbb\xbf") * 3
        before = raw[start:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(f"spec file '{path}' is not UTF-8 text (byte 0x{raw[exc.start]:02X} at line {line}, "
                        f"column {column}; Latin-1 or Windows-1252?); TOML files must be UTF-8: save it "
                        "as UTF-8") from None


def _closest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def spec_from_dict(raw: Mapping[str, Any]) -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed TOML table (what ``tomllib.loads`` returns)."""
    known = list(_SECTIONS) + ["priors"]
    for section in raw:
        if section not in known:
            raise SpecError(f"unknown section [{section}]{_closest(section, known)}; sections are "
                            f"{', '.join(f'[{s}]' for s in known)}", key=section)
        if not isinstance(raw[section], dict):
            raise SpecError(f"[{section}] must be a table of keys, got a {_type_name(raw[section])}",
                            key=section)
    parts = {name: _section(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    data_raw = raw.get("data", {})
    if data_raw.get("se") and "variance" not in data_raw:
        parts["data"] = dataclasses.replace(parts["data"], variance="")
    if "mediation" in raw and parts["model"].type not in MEDIATION_TYPES:
        raise SpecError("a [mediation] section needs type = 'mediation' or 'mediation_paths'", key="model.type")
    if parts["model"].type == "mediation_paths":
        preset_name, priors = _path_priors_section(raw.get("priors", {}))
    else:
        preset_name, priors = _priors_section(raw.get("priors", {}))
    return ModelSpec(model=parts["model"], data=parts["data"], preset=preset_name, priors=priors,
                     sampler=parts["sampler"], summary=parts["summary"], mediation=parts["mediation"])


def _type_name(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table",
            list: "array"}.get(type(value), type(value).__name__)


def _section(name: str, cls, table: Mapping[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise SpecError(f"unknown key{_closest(key, fields)}; [{name}] takes "
                            f"{', '.join(fields)}", key=f"{name}.{key}")
        want = fields[key].metadata.get("type", type(fields[key].default))
        values[key] = _coerce(f"{name}.{key}", value, want)
    return cls(**values)


def _coerce(key: str, value, want: type):
    if want is str:
        if not isinstance(value, str):
            raise SpecError(f"must be a string, got {_type_name(value)} {value!r}", key=key)
        return value
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"must be an integer, got {_type_name(value)} {value!r}", key=key)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"must be a number, got {_type_name(value)} {value!r}", key=key)
    return float(value)


def _prior_value(key: str, value) -> Prior:
    if not (key in PRIOR_KEYS or _BETA_KEY_RE.match(key) or _ALPHA_KEY_RE.match(key)):
        raise SpecError(f"unknown prior parameter{_closest(key, ('preset',) + PRIOR_KEYS)}; [priors] "
                        f"takes preset, {', '.join(PRIOR_KEYS)}, beta[NAME] and alpha[NAME]", key=f"priors.{key}")
    try:
        if isinstance(value, Prior):
            return assign_prior(key, value)
        if not isinstance(value, str):
            raise SpecError(f"must be a prior string such as 'normal(0, 1)', got {_type_name(value)} "
                            f"{value!r}")
        return prior_for(key, value)
    except SpecError as exc:
        message = str(exc).removeprefix(f"spec key '{exc.key}': ") if exc.key else str(exc)
        raise SpecError(message, key=f"priors.{key}") from None


def _path_priors_section(table: Mapping[str, Any]) -> tuple[str, dict[str, Prior]]:
    """``[priors]`` of a type = "mediation_paths" spec: a, b, c_prime, tau_a, tau_b, tau_c."""
    preset_name = _coerce("priors.preset", table.get("preset", "default"), str)
    return preset_name, {key: path_prior(key, value) for key, value in table.items() if key != "preset"}


def _priors_section(table: Mapping[str, Any]) -> tuple[str, dict[str, Prior]]:
    preset_name = _coerce("priors.preset", table.get("preset", "default"), str)
    priors = {key: _prior_value(key, value) for key, value in table.items() if key != "preset"}
    return preset_name, priors


# ---------------------------------------------------------------------------------------------
# validation of the whole spec
# ---------------------------------------------------------------------------------------------
def _choice(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise SpecError(f"'{value}' is not one of {', '.join(allowed)}{_closest(value, allowed)}", key=key)


def _mods_columns(expr: str) -> set[str]:
    """Variables of a moderator formula (``x`` or ``factor(x)``), after :func:`check_mods`."""
    from bayes_se.formula import parse_formula

    return {var for term in parse_formula(expr)[1] for var in term}


def _names_coefficient(part: str, variables) -> bool:
    """Whether one ``:``-part of a coefficient name can come from a variable: ``x`` or ``x`` + level."""
    return any(part.startswith(v) for v in variables)


def outcome_moderator(expr: str, *, effect: str = "", variance: str = "", se: str = "") -> tuple | None:
    """``(name, role)`` of the first name in moderator formula ``expr`` that is the effect,
    variance or standard-error column (``role``: "effect size", "sampling variance", "standard
    error"), else None. Regressing effects on their own outcome or its precision is no model."""
    roles = {c: r for c, r in ((se, "standard error"), (variance, "sampling variance"),
                               (effect, "effect size")) if c}
    for name in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", expr or ""):
        if name in roles:
            return name, roles[name]
    return None


def check_mods(expr: str, key: str = "model.mods") -> None:
    """Check a moderator formula: names, ``factor(NAME)``, ``+ : * ~``, ``0 +`` / ``- 1``, spaces.

    Raises
    ------
    SpecError
        Naming the first other character and its position, or the formula module's complaint.
    """
    bad = _MODS_CHARS_RE.search(expr)
    if bad:
        raise SpecError(f"character {bad.group()!r} at position {bad.start() + 1} of '{expr}' is not "
                        "allowed; a moderator formula holds only column names, '+', ':', '*', a leading "
                        "'~', '0 +' or '- 1' (no intercept), factor(COLUMN) and spaces", key=key)
    from bayes_se.formula import parse_formula  # structure (e.g. 'a + + b') is the formula's job

    try:
        parse_formula(expr)
    except SpecError as exc:
        message = str(exc).removeprefix(f"spec key '{exc.key}': ") if exc.key else str(exc)
        raise SpecError(message, key=key) from None


def _validate_rho(m: ModelSection) -> None:
    if m.rho != 0.0:
        if not (math.isfinite(m.rho) and -1.0 < m.rho < 1.0):
            raise SpecError(f"must lie strictly between -1 and 1, got {m.rho}", key="model.rho")
        if m.type != "three_level":
            raise SpecError("rho (correlated sampling errors within clusters) needs type = 'three_level'",
                            key="model.rho")


def _validate(spec: ModelSpec) -> None:
    m, d, s, q = spec.model, spec.data, spec.sampler, spec.summary
    _choice("model.type", m.type, MODEL_TYPES)
    _choice("model.effects", m.effects, EFFECTS)
    _choice("sampler.engine", s.engine, ENGINES)
    _choice("sampler.nuts_sampler", s.nuts_sampler, NUTS_SAMPLERS)
    if m.mods.strip():
        check_mods(m.mods)
    elif m.type == "meta_regression":
        raise SpecError("type = 'meta_regression' needs moderators: set mods = \"COLUMN + ...\"",
                        key="model.mods")
    for key, column in (("model.subgroup_tau", m.subgroup_tau), ("data.effect", d.effect),
                        ("data.variance", d.variance), ("data.se", d.se), ("data.study", d.study),
                        ("data.cluster", d.cluster)):
        if column and not _COLUMN_RE.match(column):
            raise SpecError(f"'{column}' is not a column name (letters, digits, '_' and '.', not "
                            "starting with a digit)", key=key)
    _validate_reading(d)
    if not d.effect:
        raise SpecError("the effect-size column must be named", key="data.effect")
    outcome = outcome_moderator(m.mods, effect=d.effect, variance=d.variance, se=d.se)
    if outcome:
        raise SpecError(f"'{outcome[0]}' is the {outcome[1]} column; it cannot also be a moderator",
                        key="model.mods")
    if not d.variance and not d.se:
        raise SpecError("name the sampling variance column (variance = \"vi\") or the standard error "
                        "column (se = \"sei\")", key="data.variance")
    if d.variance and d.se:
        raise SpecError(f"give either variance = \"{d.variance}\" or se = \"{d.se}\", not both "
                        "(set variance = \"\" to use the standard errors)", key="data.se")
    if m.type == "mediation":
        _validate_mediation(spec)
    elif m.type == "mediation_paths":
        _validate_mediation_paths(spec)
    if m.scale is not None:
        _validate_scale(spec)
    if m.type == "three_level" and not d.cluster:
        raise SpecError("type = 'three_level' needs the cluster column: set cluster = \"...\"",
                        key="data.cluster")
    _validate_rho(m)
    # sampler and summary values
    for key, value, low in (("sampler.chains", s.chains, 1), ("sampler.draws", s.draws, 1),
                            ("sampler.tune", s.tune, 0), ("sampler.seed", s.seed, 0)):
        if value < low:
            raise SpecError(f"must be >= {low}, got {value}", key=key)
    for key, value in (("sampler.target_accept", s.target_accept), ("summary.level", q.level)):
        if value is not None and not 0.0 < value < 1.0:
            raise SpecError(f"must be strictly between 0 and 1, got {value}", key=key)
    if not math.isfinite(q.smallest_effect):
        raise SpecError(f"must be a finite number, got {q.smallest_effect}", key="summary.smallest_effect")
    _validate_priors(spec)


def _validate_scale(spec: ModelSpec) -> None:
    """``model.scale``: a location-scale model (log tau_i = z_i' alpha) of normal two-level effects."""
    m = spec.model
    if not m.scale.strip():
        raise SpecError("the scale formula is empty; leave the key out for one tau, or name columns "
                        "(scale = \"guided\")", key="model.scale")
    check_mods(m.scale, key="model.scale")
    if m.type not in ("random_effects", "meta_regression") or m.effects != "normal":
        raise SpecError(f"a scale formula needs a two-level model with normal effects; this spec has type = "
                        f"'{m.type}', effects = '{m.effects}'", key="model.scale")
    if m.subgroup_tau:
        raise SpecError("give the heterogeneity model once: scale = \"COLUMN\" replaces subgroup_tau",
                        key="model.scale")
    outcome = outcome_moderator(m.scale, effect=spec.data.effect, variance=spec.data.variance, se=spec.data.se)
    if outcome:
        raise SpecError(f"'{outcome[0]}' is the {outcome[1]} column; it cannot also be a scale moderator",
                        key="model.scale")


def _validate_reading(d: DataSection) -> None:
    """``[data]`` sep, decimal and encoding: what :func:`bayes_se.table.check_options` accepts."""
    from bayes_se.errors import DataError
    from bayes_se.table import check_options

    for key in ("sep", "decimal", "encoding"):
        try:
            check_options(**{key: getattr(d, key)})
        except DataError as exc:
            raise SpecError(str(exc), key=f"data.{key}") from None


def mediation_paths(text: str) -> dict[str, list[str]]:
    """Parse ``"OUT ~ A + B; OUT2 ~ C"`` into ``{"OUT": ["A", "B"], "OUT2": ["C"]}`` (our own small
    grammar: names, ``~``, ``+``, ``;``)."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        outcome, sep, rhs = part.partition("~")
        outcome = outcome.strip()
        preds = [t.strip() for t in rhs.split("+")]
        if not sep or not _COLUMN_RE.match(outcome) or not all(_COLUMN_RE.match(t) for t in preds):
            raise SpecError(f"'{part}' is not an equation 'OUTCOME ~ PREDICTOR + ...'", key="mediation.paths")
        if outcome in out:
            raise SpecError(f"outcome '{outcome}' has two equations", key="mediation.paths")
        out[outcome] = preds
    return out


#: [priors] keys of a type = "mediation_paths" spec (the LKJ shape of rho_ab is [mediation] eta).
PATH_PRIOR_KEYS = ("a", "b", "c_prime", "tau_a", "tau_b", "tau_c")


def path_prior(key: str, value) -> Prior:
    """The prior of one parameter of the path-based mediation model, checked: ``a``, ``b``,
    ``c_prime`` take a prior for a real number (normal, student_t, uniform), ``tau_a``, ``tau_b``,
    ``tau_c`` one for a standard deviation (half_normal, half_cauchy, half_student_t, exponential,
    uniform with lower >= 0).

    Raises
    ------
    SpecError
        Key ``priors.KEY``: an unknown key, text that is no prior, a family that does not suit it.
    """
    from bayes_se.priors import parse_prior

    if key not in PATH_PRIOR_KEYS:
        raise SpecError(f"unknown prior parameter{_closest(key, PATH_PRIOR_KEYS)}; the path-based mediation model "
                        f"takes {', '.join(PATH_PRIOR_KEYS)} (the LKJ shape of rho_ab is [mediation] eta)",
                        key=f"priors.{key}")
    try:
        if isinstance(value, Prior):
            prior = value
        elif isinstance(value, str):
            prior = parse_prior(value)
        else:
            raise SpecError(f"must be a prior string such as 'normal(0, 1)', got {_type_name(value)} {value!r}")
        if prior.family == "flat":
            raise SpecError("flat() is an improper prior, which the MCMC engine does not sample")
        if key.startswith("tau_"):
            if prior.kind != "positive":
                raise SpecError(f"'{key}' is a standard deviation: use half_normal, half_cauchy, half_student_t, "
                                f"exponential or uniform with lower >= 0, not {prior.family}")
        elif prior.kind != "real" and prior.family != "uniform":
            raise SpecError(f"{prior.family} is a prior for a positive quantity; '{key}' is a real parameter: use "
                            "normal, student_t or uniform")
    except SpecError as exc:
        message = str(exc).removeprefix(f"spec key '{exc.key}': ") if exc.key else str(exc)
        raise SpecError(message, key=f"priors.{key}") from None
    return dataclasses.replace(prior, target=key)


def _validate_mediation_names(med: MediationSection) -> None:
    """x, m, y and n are column names, x, m and y three different ones; a known layout."""
    for key in ("x", "m", "y", "n"):
        if not _COLUMN_RE.match(getattr(med, key)):
            raise SpecError(f"'{getattr(med, key)}' is not a variable name", key=f"mediation.{key}")
    if len({med.x, med.m, med.y}) < 3:
        raise SpecError("x, m and y must be three different variables", key="mediation.y")
    _choice("mediation.layout", med.layout, MEDIATION_LAYOUTS)


def _validate_mediation(spec: ModelSpec) -> None:
    med = spec.mediation
    _validate_mediation_names(med)
    for key, value in (("mediation.eta", med.eta), ("mediation.eta_rho", med.eta_rho)):
        if not value > 0:
            raise SpecError(f"the LKJ shape must be > 0, got {value}", key=key)
    from bayes_se.builders.masem_likelihood import LIKELIHOODS

    _choice("mediation.likelihood", med.likelihood, LIKELIHOODS)
    if med.mc_draws < 1:
        raise SpecError(f"must be >= 1, got {med.mc_draws}", key="mediation.mc_draws")
    if med.correlations:
        raise SpecError("correlations names the correlation table of type = 'mediation_paths'; a type = "
                        "'mediation' spec reads its correlations from --data", key="mediation.correlations")
    mediation_paths(med.paths)
    names = [v.strip() for v in med.variables.split(",") if v.strip()]
    if any(not _COLUMN_RE.match(v) for v in names):
        raise SpecError(f"'{med.variables}' must be variable names separated by commas", key="mediation.variables")
    if spec.sampler.engine != "mcmc":
        raise SpecError("the mediation model is sampled by MCMC (engine = 'mcmc')", key="sampler.engine")
    extra = sorted(set(spec.priors) - {"tau"})
    if extra:
        raise SpecError(f"a mediation model takes only a tau prior in [priors] (LKJ shapes go in "
                        f"[mediation]), not {extra[0]}", key=f"priors.{extra[0]}")


def _validate_mediation_paths(spec: ModelSpec) -> None:
    """type = "mediation_paths": x, m, y names; keys of [mediation] the path model does not use left
    at their defaults; MCMC; [priors] keys of :data:`PATH_PRIOR_KEYS`."""
    med, default = spec.mediation, MediationSection()
    _validate_mediation_names(med)
    if med.paths.strip():
        raise SpecError("the path-based model is the single-mediator model x -> m -> y; general path models "
                        "(paths = ...) need type = 'mediation' and correlation tables", key="mediation.paths")
    for key in ("eta_rho", "mc_draws", "likelihood"):
        if getattr(med, key) != getattr(default, key):
            raise SpecError(f"{key} belongs to type = 'mediation' (the correlation-matrix model); the path-based "
                            "model does not use it", key=f"mediation.{key}")
    if not (math.isfinite(med.eta) and med.eta > 0):
        raise SpecError(f"the LKJ shape of rho_ab must be > 0, got {med.eta}", key="mediation.eta")
    names = [v.strip() for v in med.variables.split(",") if v.strip()]
    if any(not _COLUMN_RE.match(v) for v in names):
        raise SpecError(f"'{med.variables}' must be variable names separated by commas", key="mediation.variables")
    if spec.sampler.engine != "mcmc":
        raise SpecError("the path-based mediation model is sampled by MCMC (engine = 'mcmc')", key="sampler.engine")
    for key in spec.priors:
        if key not in PATH_PRIOR_KEYS:
            raise SpecError(f"the path-based mediation model takes the priors {', '.join(PATH_PRIOR_KEYS)}, not "
                            f"{key}", key=f"priors.{key}")


def _validate_priors(spec: ModelSpec) -> None:
    m = spec.model
    if spec.preset not in PRESETS:
        try:
            preset(spec.preset)
        except SpecError as exc:  # name the key as the spec file spells it
            raise SpecError(str(exc).removeprefix("spec key 'preset': "), key="priors.preset") from None
    keys = set(spec.priors)
    if {"tau", "tau2"} <= keys:
        raise SpecError("give the heterogeneity prior once: as tau or as tau2, not both", key="priors.tau2")
    if keys & {"sigma_cluster", "sigma_effect"} and m.type != "three_level":
        key = sorted(keys & {"sigma_cluster", "sigma_effect"})[0]
        raise SpecError(f"{key} is a three-level SD; this model is type = '{m.type}'", key=f"priors.{key}")
    if "nu" in keys and m.effects != "student_t":
        raise SpecError("nu is the degrees of freedom of Student-t effects; set effects = 'student_t'",
                        key="priors.nu")
    columns = _mods_columns(m.mods) if m.mods.strip() else set()
    scale_columns = _mods_columns(m.scale) if m.scale else set()
    for key in keys:
        if key == "alpha" or key.startswith("alpha["):
            if m.scale is None:
                raise SpecError("an alpha prior is a scale coefficient's: set model.scale", key=f"priors.{key}")
            inner = _ALPHA_KEY_RE.match(key)
            if inner and inner.group(1) != "intercept":
                unknown = [part for part in inner.group(1).split(":")
                           if not _names_coefficient(part, scale_columns)]
                if unknown:
                    raise SpecError(f"'{unknown[0]}' is not a moderator in scale = '{m.scale}'"
                                    f"{_closest(unknown[0], scale_columns)}", key=f"priors.{key}")
            continue
        if key == "beta" or key.startswith("beta["):
            if not columns:
                raise SpecError("a coefficient prior needs moderators (model.mods is empty)",
                                key=f"priors.{key}")
            inner = _BETA_KEY_RE.match(key)
            if inner:
                # a coefficient is named VARIABLE (numeric) or VARIABLE + LEVEL (allocrandom)
                unknown = [part for part in inner.group(1).split(":") if not _names_coefficient(part, columns)]
                if unknown:
                    raise SpecError(f"'{unknown[0]}' is not a moderator in mods = '{m.mods}'"
                                    f"{_closest(unknown[0], columns)}", key=f"priors.{key}")
    if spec.sampler.engine == "exact":
        if m.effects != "normal" or m.type not in ("random_effects", "meta_regression", "three_level"):
            raise SpecError("engine = 'exact' solves the normal-normal random-effects model, meta-regression "
                            f"and three-level model only; this spec has type = '{m.type}', effects = "
                            f"'{m.effects}'", key="sampler.engine")
        if m.subgroup_tau:
            raise SpecError("engine = 'exact' has one tau; subgroup_tau needs engine = 'mcmc'",
                            key="sampler.engine")
        for key, prior in spec.resolved_priors().items():
            if key.startswith("alpha") and prior.family != "normal":
                raise SpecError(f"engine = 'exact' needs normal priors on the scale coefficients; {key} has "
                                f"'{prior}'", key=f"priors.{key}")
            if (key == "mu" or key.startswith("beta")) and prior.family not in ("normal", "flat"):
                raise SpecError(f"engine = 'exact' needs normal priors on the coefficients (or flat()); {key} has "
                                f"'{prior}'", key=f"priors.{key}")
