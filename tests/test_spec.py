"""Model specs: the shipped specs load, TOML round trips, and every validation error's message."""

from __future__ import annotations

import pathlib

import pytest

from bayes_se.errors import SpecError
from bayes_se.priors import Prior, parse_prior, preset
from bayes_se.spec import ModelSpec, load_spec, spec_from_dict

MODELS = pathlib.Path(__file__).resolve().parent.parent / "models"
SPEC_FILES = sorted(MODELS.glob("*.toml"))


def test_spec_files_are_shipped():
    assert {p.name for p in SPEC_FILES} == {"random_effects.toml", "guidance_moderator.toml", "location_scale.toml",
                                            "three_level.toml", "mediation.toml", "mediation_paths.toml"}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_file_loads_and_round_trips(path):
    spec = load_spec(path)
    assert load_spec(str(path)) == spec
    again = load_spec(spec.to_toml())
    assert again == spec
    assert again.to_toml() == spec.to_toml()


def test_random_effects_spec():
    spec = load_spec(MODELS / "random_effects.toml")
    assert spec.model.type == "random_effects" and spec.model.mods == ""
    assert spec.data.effect == "yi" and spec.data.variance == "vi"
    assert spec.sampler.chains == 4 and spec.sampler.seed == 20251121
    assert spec.summary.smallest_effect == 0.2
    assert spec.resolved_priors() == preset("default")


def test_guidance_moderator_spec():
    spec = load_spec(MODELS / "guidance_moderator.toml")
    assert spec.model.type == "meta_regression" and spec.model.mods == "guided"
    priors = spec.resolved_priors()
    assert str(priors["beta[guided]"]) == "beta[guided] ~ Normal(0, 0.5)"
    assert str(priors["tau"]) == "tau ~ HalfNormal(0.5)"


def test_three_level_spec():
    spec = load_spec(MODELS / "three_level.toml")
    assert spec.model.type == "three_level" and spec.data.cluster == "district"
    priors = spec.resolved_priors()
    assert priors["sigma_cluster"].target == "sigma_cluster"
    assert str(priors["sigma_effect"]) == "sigma_effect ~ HalfNormal(0.5)"


def test_empty_spec_takes_defaults():
    spec = load_spec("")
    assert spec == ModelSpec()
    assert spec.model.type == "random_effects" and spec.sampler.engine == "mcmc"
    assert spec.summary.level == 0.95 and spec.preset == "default"


def test_se_column_alone_replaces_the_variance_default():
    spec = load_spec('[data]\nse = "sei"\n')
    assert spec.data.se == "sei" and spec.data.variance == ""
    assert load_spec(spec.to_toml()) == spec


def test_priors_section_parses_each_prior():
    spec = load_spec("""
[model]
type = "meta_regression"
mods = "weeks.c + setting"
effects = "student_t"
[priors]
preset = "rhodes2015_general"
mu = "normal(mu=0, sigma=2)"
"beta[weeks.c]" = "normal(0, 0.25)"
nu = "exponential(0.0345)"
""")
    priors = spec.resolved_priors()
    assert priors["mu"] == Prior("normal", {"mu": 0, "sigma": 2}, "mu")
    assert str(priors["tau"]) == "log(tau2) ~ t_5(-3.44, 2.59)"
    assert priors["nu"].family == "exponential"
    assert load_spec(spec.to_toml()) == spec


def test_tau2_prior_replaces_the_preset_tau():
    spec = load_spec('[priors]\ntau2 = "inverse_gamma(1, 0.15)"\n')
    assert str(spec.resolved_priors()["tau"]) == "tau2 ~ InvGamma(1, 0.15)"


def test_with_priors():
    spec = load_spec(MODELS / "random_effects.toml")
    new = spec.with_priors({"tau": "log_t(5, -2.85, 1.93)", "mu": parse_prior("normal(0, 2)")})
    assert str(new.resolved_priors()["tau"]) == "log(tau2) ~ t_5(-2.85, 1.93)"
    assert new.priors["mu"].params["sigma"] == 2
    assert spec.priors["tau"].family == "half_normal"  # the original is unchanged
    swapped = new.with_priors({"tau2": "inverse_gamma(1, 0.15)", "preset": "vague"})
    assert "tau" not in swapped.priors and swapped.preset == "vague"
    with pytest.raises(SpecError, match="spec key 'priors.mu'"):
        spec.with_priors({"mu": "half_normal(1)"})


def test_with_mods():
    spec = load_spec(MODELS / "random_effects.toml")
    reg = spec.with_mods("guided + weeks.c")
    assert reg.model.type == "meta_regression" and reg.model.mods == "guided + weeks.c"
    assert reg.with_mods("").model.type == "random_effects"
    with pytest.raises(SpecError, match="spec key 'model.mods'"):
        spec.with_mods("log(dose)")


def test_spec_from_dict():
    assert spec_from_dict({"sampler": {"chains": 2}}).sampler.chains == 2


# ---------------------------------------------------------------------------------------------
# every validation error, with its message
# ---------------------------------------------------------------------------------------------
ERRORS = [
    # TOML itself and reading
    ("[model\ntype = 1", None, ["not valid TOML", "line 1"]),
    # unknown sections and keys, with the closest name
    ("[modle]\ntype = 'random_effects'", "modle", ["unknown section [modle]", "did you mean 'model'"]),
    ("[sampling]\nchains = 2", "sampling", ["unknown section [sampling]", "did you mean 'sampler'"]),
    ("model = 3", "model", ["[model] must be a table of keys, got a integer"]),
    ("[model]\ntyp = 'random_effects'", "model.typ", ["unknown key", "did you mean 'type'",
                                                     "[model] takes type, effects, mods, subgroup_tau"]),
    ("[sampler]\nchain = 2", "sampler.chain", ["did you mean 'chains'"]),
    ("[summary]\nsmallest = 0.2", "summary.smallest", ["did you mean 'smallest_effect'"]),
    ("[data]\nvariances = 'vi'", "data.variances", ["did you mean 'variance'"]),
    # wrong types
    ("[sampler]\nchains = '4'", "sampler.chains", ["must be an integer, got string '4'"]),
    ("[sampler]\nchains = 4.0", "sampler.chains", ["must be an integer, got number 4.0"]),
    ("[sampler]\nchains = true", "sampler.chains", ["must be an integer, got boolean True"]),
    ("[sampler]\ntarget_accept = '0.9'", "sampler.target_accept", ["must be a number, got string"]),
    ("[summary]\nlevel = true", "summary.level", ["must be a number, got boolean"]),
    ("[model]\nmods = 1", "model.mods", ["must be a string, got integer 1"]),
    ("[data]\neffect = ['yi']", "data.effect", ["must be a string, got array"]),
    ("[priors]\npreset = 1", "priors.preset", ["must be a string, got integer 1"]),
    ("[priors]\nmu = 0", "priors.mu", ["must be a prior string such as 'normal(0, 1)', got integer 0"]),
    # bad values
    ("[model]\ntype = 'random_effect'", "model.type", ["'random_effect' is not one of random_effects, "
                                                      "meta_regression, three_level, mediation",
                                                      "did you mean 'random_effects'"]),
    ("[model]\neffects = 'cauchy'", "model.effects", ["'cauchy' is not one of normal, student_t"]),
    ("[sampler]\nengine = 'nuts'", "sampler.engine", ["'nuts' is not one of mcmc, exact"]),
    ("[sampler]\nchains = 0", "sampler.chains", ["must be >= 1, got 0"]),
    ("[sampler]\ndraws = 0", "sampler.draws", ["must be >= 1, got 0"]),
    ("[sampler]\ntune = -1", "sampler.tune", ["must be >= 0, got -1"]),
    ("[sampler]\nseed = -5", "sampler.seed", ["must be >= 0, got -5"]),
    ("[sampler]\ntarget_accept = 1.0", "sampler.target_accept", ["strictly between 0 and 1, got 1.0"]),
    ("[sampler]\ntarget_accept = 0", "sampler.target_accept", ["strictly between 0 and 1, got 0.0"]),
    ("[summary]\nlevel = 95", "summary.level", ["strictly between 0 and 1, got 95.0"]),
    ("[summary]\nsmallest_effect = inf", "summary.smallest_effect", ["must be a finite number"]),
    ("[data]\neffect = ''", "data.effect", ["the effect-size column must be named"]),
    ("[data]\neffect = 'my effect'", "data.effect", ["'my effect' is not a column name"]),
    ("[model]\nsubgroup_tau = '1group'", "model.subgroup_tau", ["'1group' is not a column name"]),
    ("[data]\nvariance = ''", "data.variance", ["name the sampling variance column"]),
    ("[data]\nvariance = 'vi'\nse = 'sei'", "data.se", ["give either variance = \"vi\" or se = \"sei\""]),
    ("[model]\ntype = 'three_level'", "data.cluster", ["needs the cluster column"]),
    ("[model]\ntype = 'meta_regression'", "model.mods", ["needs moderators"]),
    # moderator formulas
    ("[model]\nmods = 'log(dose)'", "model.mods", ["character '(' at position 4 of 'log(dose)' is not "
                                                    "allowed", "column names, '+', ':', '*'"]),
    ("[model]\nmods = 'a - b'", "model.mods", ["character '-' at position 3"]),
    ("[model]\nmods = 'a ^ 2'", "model.mods", ["character '^'"]),
    ("[model]\nmods = 'a + + b'", "model.mods", ["expected a column name"]),
    # priors
    ("[priors]\npreset = 'rhodes'", "priors.preset", ["unknown prior preset 'rhodes'", "known presets: default"]),
    ("[priors]\nmu = 'normal(0, -1)'", "priors.mu", ["sigma must be > 0"]),
    ("[priors]\nmu = 'normal(0, 1'", "priors.mu", ["cannot read prior", "position 12"]),
    ("[priors]\nmu = 'half_normal(1)'", "priors.mu", ["half_normal is a prior for a positive quantity"]),
    ("[priors]\ntau = 'normal(0, 1)'", "priors.tau", ["puts mass below 0"]),
    ("[priors]\ntau = 'halfnormal(0.5, 1)'", "priors.tau", ["half_normal takes 1 argument(s)"]),
    ("[priors]\ntau = 'gamma(2, 1)'", "priors.tau", ["unknown prior family 'gamma'", "known families"]),
    ("[priors]\ntua = 'half_normal(1)'", "priors.tua", ["unknown prior parameter", "did you mean 'tau'"]),
    ("[priors]\ntau = 'mu = normal(0, 1)'", "priors.tau", ["written for 'mu' but given for 'tau'"]),
    ("[priors]\ntau = 'half_normal(1)'\ntau2 = 'inverse_gamma(1, 1)'", "priors.tau2",
     ["give the heterogeneity prior once"]),
    ("[priors]\nsigma_cluster = 'half_normal(1)'", "priors.sigma_cluster", ["three-level SD"]),
    ("[priors]\nnu = 'exponential(0.1)'", "priors.nu", ["set effects = 'student_t'"]),
    ("[priors]\nbeta = 'normal(0, 1)'", "priors.beta", ["needs moderators"]),
    ("[model]\nmods = 'guided'\n[priors]\n'beta[guidd]' = 'normal(0, 1)'", "priors.beta[guidd]",
     ["'guidd' is not a moderator in mods = 'guided'", "did you mean 'guided'"]),
    # the exact engine
    ("[model]\neffects = 'student_t'\n[sampler]\nengine = 'exact'", "sampler.engine",
     ["engine = 'exact' solves the normal-normal", "effects = 'student_t'"]),
    ("[model]\ntype = 'three_level'\neffects = 'student_t'\n[data]\ncluster = 'district'\n[sampler]\n"
     "engine = 'exact'", "sampler.engine", ["type = 'three_level'", "effects = 'student_t'"]),
    ("[model]\nrho = 0.5", "model.rho", ["needs type = 'three_level'"]),
    ("[model]\ntype = 'three_level'\nrho = 1.0\n[data]\ncluster = 'district'", "model.rho",
     ["strictly between -1 and 1"]),
    ("[model]\nsubgroup_tau = 'setting'\n[sampler]\nengine = 'exact'", "sampler.engine",
     ["subgroup_tau needs engine = 'mcmc'"]),
    ("[priors]\nmu = 'student_t(3, 0, 1)'\n[sampler]\nengine = 'exact'", "priors.mu",
     ["needs normal priors on the coefficients"]),
]


@pytest.mark.parametrize("text, key, fragments", ERRORS, ids=[e[1] or "toml" for e in ERRORS])
def test_validation_error(text, key, fragments):
    with pytest.raises(SpecError) as exc:
        load_spec(text)
    message = str(exc.value)
    assert exc.value.key == key
    if key:
        assert message.startswith(f"spec key '{key}': ")
    for fragment in fragments:
        assert fragment in message


def test_missing_file():
    with pytest.raises(SpecError, match="cannot read spec file 'no/such/spec.toml'"):
        load_spec("no/such/spec.toml")


def test_not_a_path_or_text():
    with pytest.raises(SpecError, match="a spec is a path or TOML text, got int"):
        load_spec(3)


def test_exact_engine_accepted_for_normal_models():
    spec = load_spec("[model]\ntype = 'meta_regression'\nmods = 'guided'\n[sampler]\nengine = 'exact'")
    assert spec.sampler.engine == "exact"


def test_mediation_spec_loads_and_round_trips():
    from bayes_se.spec import mediation_paths

    spec = load_spec(MODELS / "mediation.toml")
    assert spec.model.type == "mediation"
    assert (spec.mediation.x, spec.mediation.m, spec.mediation.y) == ("intervention", "self_efficacy", "symptoms")
    assert load_spec(spec.to_toml()) == spec
    assert mediation_paths("perf ~ acog + asom + conf; conf ~ acog + asom") == {
        "perf": ["acog", "asom", "conf"], "conf": ["acog", "asom"]}


@pytest.mark.parametrize(
    "text, key, needle",
    [
        ('[model]\ntype = "mediation"\n[mediation]\nx = "a"\nm = "a"\ny = "b"\n', "mediation.y", "three different"),
        ('[model]\ntype = "mediation"\n[mediation]\npaths = "y = x"\n', "mediation.paths", "equation"),
        ('[model]\ntype = "mediation"\n[mediation]\neta = 0.0\n', "mediation.eta", "> 0"),
        ('[model]\ntype = "mediation"\n[sampler]\nengine = "exact"\n', "sampler.engine", "MCMC"),
        ('[model]\ntype = "mediation"\n[priors]\nmu = "normal(0, 1)"\n', "priors.mu", "only a tau prior"),
        ('[model]\ntype = "random_effects"\n[mediation]\nx = "a"\n', "model.type", "type = 'mediation'"),
        ('[model]\ntype = "mediation"\n[mediation]\nlayout = "tall"\n', "mediation.layout", "tall"),
    ],
)
def test_mediation_spec_errors(text, key, needle):
    with pytest.raises(SpecError) as err:
        load_spec(text)
    assert err.value.key == key and needle in str(err.value)


def test_target_accept_left_out_means_the_model_default():
    """TOML has no null: a spec without target_accept keeps None (the sampler picks the model's
    default), round-trips without the key, and a number given is a float."""
    spec = load_spec("[model]\ntype = 'random_effects'\n")
    assert spec.sampler.target_accept is None
    assert "target_accept" not in spec.to_toml()
    assert load_spec(spec.to_toml()) == spec
    assert load_spec("[sampler]\ntarget_accept = 0.95\n").sampler.target_accept == 0.95
