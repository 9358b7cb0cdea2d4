"""The prior grammar: prior text read by a tokenizer and parser of our own, never evaluated.

``parse_prior("half_normal(0.5)")``, ``parse_assignment("tau ~ HalfNormal(0.5)")``,
``prior_for("tau", "half_normal(0.5)")`` and :func:`prior_overrides`, the one reader of override
strings (CLI ``--prior``, sensitivity grids, Python lists). ``str(prior)`` reads back.
"""

from __future__ import annotations

import dataclasses
import re

from bayes_se.errors import SpecError
from bayes_se.priors.distribution import (FAMILIES, FAMILY_ALIASES, SD_PARAMS, Prior, assign_prior,
                                            unknown_family_message)

# ---------------------------------------------------------------------------------------------
# tokenizer and grammar (hand-written so that no user text is ever evaluated)
# ---------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<punct>[(),=~\[\]]))"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise SpecError(f"cannot read prior '{text}': unexpected character {text[pos]!r} at "
                            f"position {pos + 1}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    tokens.append(("end", "", len(text) + 1))
    return tokens


class _Parser:
    """statement := [lhs ('~' | '=')] call ; lhs := NAME ['[' NAME ']'] | 'log' '(' NAME ')'
    call := FAMILY '(' [arg (',' arg)*] ')' ; arg := [NAME '='] NUMBER"""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self, k=0):
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def take(self, kind, value=None, what=None):
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            self.fail(f"expected {what or (repr(value) if value else kind)}", tok)
        self.i += 1
        return tok

    def fail(self, msg, tok):
        got = "end of text" if tok[0] == "end" else repr(tok[1])
        raise SpecError(f"cannot read prior '{self.text}': {msg} at position {tok[2]}, got {got}")

    def statement(self):
        lhs, log_lhs = None, False
        t0, t1 = self.peek(), self.peek(1)
        if t0[0] == "name" and t0[1] == "log" and t1[1] == "(":
            # 'log(tau2) ~ ...' unless it is the family call 'log(...)' which is not a family
            self.i += 2
            lhs = self.take("name", what="a parameter name")[1]
            self.take("punct", ")")
            log_lhs = True
            self.take_assign()
        elif t0[0] == "name" and t1[1] in ("~", "=", "["):
            lhs = self.take("name")[1]
            if self.peek()[1] == "[":
                self.i += 1
                inner = self.take("name", what="a moderator name")[1]
                self.take("punct", "]")
                lhs = f"{lhs}[{inner}]"
            self.take_assign()
        family, nu, args, kwargs = self.call()
        self.take("end", what="end of text")
        return lhs, log_lhs, family, nu, args, kwargs

    def take_assign(self):
        tok = self.peek()
        if tok[1] not in ("~", "="):
            self.fail("expected '~' or '='", tok)
        self.i += 1

    def call(self):
        tok = self.take("name", what="a prior family name")
        family, nu = _family_from_name(tok[1], self.text)
        self.take("punct", "(")
        args, kwargs = [], {}
        if self.peek()[1] != ")":
            while True:
                if self.peek()[0] == "name" and self.peek(1)[1] == "=":
                    key = self.take("name")[1]
                    self.i += 1
                    val = float(self.take("number", what="a number")[1])
                    if key in kwargs:
                        raise SpecError(f"{family}: argument {key} given twice in '{self.text}'")
                    kwargs[key] = val
                else:
                    if kwargs:
                        self.fail("positional argument after a keyword argument", self.peek())
                    args.append(float(self.take("number", what="a number")[1]))
                if self.peek()[1] == ",":
                    self.i += 1
                    continue
                break
        self.take("punct", ")", what="',' or ')'")
        return family, nu, args, kwargs


def _family_from_name(name: str, text: str) -> tuple[str, float | None]:
    """Map a written family name to (family, nu embedded in the name as in t_5 / HalfT_3)."""
    if name in FAMILIES:
        return name, None
    m = re.fullmatch(r"(?i)(t|halft)_(\d+(?:\.\d+)?)", name)
    if m:
        return ("student_t" if m.group(1).lower() == "t" else "half_student_t"), float(m.group(2))
    key = name.lower().replace("_", "")
    if key in FAMILY_ALIASES:
        return FAMILY_ALIASES[key], None
    raise SpecError(unknown_family_message(name) + f" (in '{text}')")


def _build(family, nu, args, kwargs, text) -> Prior:
    names = FAMILIES[family][0]
    if nu is not None:  # t_5(mu, sigma) / HalfT_5(sigma): nu comes from the name
        names = tuple(n for n in names if n != "nu")
    if len(args) > len(names):
        raise SpecError(f"{family} takes {len(names)} argument(s) ({', '.join(names)}), got "
                        f"{len(args) + len(kwargs)} in '{text}'")
    params = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise SpecError(f"{family} has no argument '{k}'; it takes ({', '.join(names)}) in '{text}'")
        if k in params:
            raise SpecError(f"{family}: argument {k} given twice in '{text}'")
        params[k] = v
    missing = [n for n in names if n not in params]
    if missing:
        raise SpecError(f"{family} takes {len(names)} argument(s) ({', '.join(names)}); missing "
                        f"{', '.join(missing)} in '{text}'")
    if nu is not None:
        params["nu"] = nu
    params = {n: params[n] for n in FAMILIES[family][0]}
    try:
        return Prior(family, params)
    except SpecError as exc:
        raise SpecError(f"{exc} in '{text}'") from None


_BETA_LHS_RE = re.compile(r"^\s*(beta\[[^\[\]=~]+\])\s*[=~]")  # beta[factor(x)2:z] = ...


def _parse(text: str):
    if not isinstance(text, str):
        raise SpecError(f"a prior must be text such as 'normal(0, 1)', got {text!r}")
    beta = _BETA_LHS_RE.match(text)
    inner = beta.group(1)[5:-1].strip() if beta else ""
    if beta and not re.fullmatch(r"[A-Za-z0-9_.]+", inner):  # a name the tokenizer cannot read
        lhs, prior = _parse(text[beta.end():])
        if lhs is not None:
            raise SpecError(f"cannot read prior '{text}': two '=' or '~'")
        return f"beta[{inner}]", prior
    lhs, log_lhs, family, nu, args, kwargs = _Parser(text).statement()
    if log_lhs:
        # 'log(tau2) ~ Normal(..)' is log_normal, 'log(tau2) ~ t_5(..)' is log_t
        family = {"normal": "log_normal", "student_t": "log_t"}.get(family, family)
        if family not in ("log_normal", "log_t"):
            raise SpecError(f"log({lhs}) takes a normal or t prior, got {family} in '{text}'", key=lhs)
    prior = _build(family, nu, args, kwargs, text)
    return lhs, prior


def parse_prior(text: str) -> Prior:
    """Read a prior from text.

    Accepts the spec form ``half_normal(0.5)``, keyword arguments ``normal(mu=0, sigma=1)``, and
    what ``str(prior)`` prints (``tau ~ HalfNormal(0.5)``, ``log(tau2) ~ t_5(-3.44, 2.59)``). When
    a left-hand side is given, the prior is checked against that parameter (:func:`assign_prior`).

    Raises
    ------
    SpecError
        Unknown family (listing the known ones), wrong number or names of arguments, a
        non-positive scale, lower >= upper, malformed text (with the position).
    """
    lhs, prior = _parse(text)
    if lhs is not None:
        prior = assign_prior(_lhs_param(lhs), prior)
        if lhs.endswith("2") and lhs[:-1] in SD_PARAMS:
            prior = dataclasses.replace(prior, target=lhs)
    return prior


def _lhs_param(lhs: str) -> str:
    # sigma_cluster2 as printed by str() is the variance of sigma_cluster
    if lhs.endswith("2") and lhs[:-1] in ("sigma_cluster", "sigma_effect"):
        return lhs[:-1]
    return lhs


def parse_assignment(text: str) -> tuple[str, Prior]:
    """Read ``"param = family(args)"`` (or ``param ~ ...``) and return ``(param, prior)``.

    ``param`` is one of ``mu``, ``tau``, ``tau2``, ``beta`` (all non-intercept coefficients),
    ``beta[NAME]``, ``sigma_cluster``, ``sigma_effect``, ``nu``.

    Examples
    --------
    >>> parse_assignment("mu=normal(0, 1)")
    ('mu', Prior(normal(mu=0, sigma=1), target='mu'))
    """
    lhs, prior = _parse(text)
    if lhs is None:
        raise SpecError(f"cannot read '{text}': expected 'parameter = family(arguments)'")
    param = _lhs_param(lhs)
    return param, assign_prior(param, prior)


def prior_overrides(entry, *, bare_preset: bool = False) -> tuple[str | None, dict[str, Prior]]:
    """The one reader of prior overrides: CLI ``--prior`` strings, grid entries, Python lists.

    ``entry`` is a string (pieces separated by ``;``) or a sequence of strings. A piece is an
    assignment (``tau = half_cauchy(0.5)``, ``beta[guided] ~ normal(0, 0.3)``) or ``preset=NAME``;
    with ``bare_preset`` a piece without ``=`` or ``~`` also names a preset (the grid syntax of
    :func:`bayes_se.prior_sensitivity.sensitivity`). At most one preset.

    Returns
    -------
    (str or None, dict)
        The preset named (None if none) and the assigned priors by parameter (``tau2`` kept as
        given: it replaces ``tau``).

    Raises
    ------
    SpecError
        Key ``priors``: not a string or strings, an empty entry, two presets, a malformed prior.
    """
    if isinstance(entry, str):
        pieces = entry.split(";")
    elif isinstance(entry, (list, tuple)) and all(isinstance(p, str) for p in entry):
        pieces = [q for p in entry for q in p.split(";")]
    else:
        raise SpecError(f"priors must be a string or a list of strings, got {entry!r}", key="priors")
    pieces = [p.strip() for p in pieces if p.strip()]
    if not pieces:
        raise SpecError(f"empty prior entry {entry!r}", key="priors")
    presets, priors = [], {}
    for piece in pieces:
        key, eq, value = piece.partition("=")
        if eq and key.strip() == "preset":
            presets.append(value.strip())
        elif bare_preset and "=" not in piece and "~" not in piece:
            presets.append(piece)
        else:
            param, prior = parse_assignment(piece)
            priors[param] = prior
    if len(presets) > 1:
        raise SpecError(f"'{'; '.join(pieces)}' names {len(presets)} presets ({', '.join(presets)}); "
                        "give at most one", key="priors")
    return (presets[0] if presets else None), priors


def prior_for(param: str, text: str) -> Prior:
    """Parse ``text`` as the prior of ``param`` (the form a spec's ``[priors]`` table uses).

    Errors are raised as :class:`SpecError` naming ``param`` as the key.
    """
    try:
        lhs, prior = _parse(text)
        if lhs is not None and _lhs_param(lhs) != param:
            raise SpecError(f"the prior is written for '{lhs}' but given for '{param}'")
        return assign_prior(param, prior)
    except SpecError as exc:
        if exc.key == param:
            raise
        raise SpecError(str(exc), key=param) from None


