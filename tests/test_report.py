"""The report as a reader gets it: sections in order, escaped text, safe writes, tables that match
the objects, and a page that headless Chromium renders without console errors."""

from __future__ import annotations

import base64
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

import bayes_se.report as report
from bayes_se.compare import compare_frequentist
from bayes_se.data import load_effects
from bayes_se.diagnostics import Verdict
from bayes_se.errors import BayesSEError
from bayes_se.exact import exact_posterior
from bayes_se.priors import preset
from bayes_se.report import SECTION_IDS, write_report
from bayes_se.prior_sensitivity import sensitivity
from conftest import REFERENCE

XSS = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def bcg():
    frame = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")[["study", "yi", "vi", "ablat", "alloc"]]
    frame.loc[0, "study"] = XSS  # a hostile study label must show as text
    return load_effects(frame, moderators=["ablat", "alloc"])


@pytest.fixture(scope="module")
def bcg_parts(bcg):
    fit = exact_posterior(bcg)
    sens = sensitivity(bcg, ["default", "vague", "tau=half_cauchy(0.5)"])
    freq = compare_frequentist(fit, bcg)
    return fit, sens, freq


@pytest.fixture(scope="module")
def bcg_report(bcg, bcg_parts, tmp_path_factory):
    fit, sens, freq = bcg_parts
    out = tmp_path_factory.mktemp("bcg") / "report"
    boxscore = pd.DataFrame({"direction": ["benefit", "harm"], "studies": [11, 2]})
    mediation = pd.DataFrame({"path": ["a", "b", "indirect"], "estimate": [0.3, 0.2, 0.06]})
    other = {f"Common-effect check {XSS}": fit.summary(theta=False).head(2)}
    write_report(out, data=bcg, fit=fit, freq=freq, sensitivity=sens, boxscore=boxscore, mediation=mediation,
                 other_models=other, priors=preset("default"), title=f"BCG {XSS}", rob=_bcg_rob(bcg))
    return out


def _bcg_rob(bcg):
    """A made-up RoB 2 table of the 13 BCG trials (D1 from the allocation; overall = worst domain)."""
    rows = []
    for i, (s, alloc) in enumerate(zip(bcg.study, bcg.frame["alloc"])):
        judged = ["Low" if alloc == "random" else "High", "Low" if i < 8 else "Some concerns", "Low",
                  "Low" if i % 3 else "Some concerns", "Low"]
        overall = "High" if "High" in judged else "Some concerns" if "Some concerns" in judged else "Low"
        rows += [(s, f"D{d + 1}", j) for d, j in enumerate(judged)] + [(s, "Overall", overall)]
    return pd.DataFrame(rows, columns=["study", "domain", "judgement"])


def _section_ids(text):
    return re.findall(r'<section id="([^"]+)"', text)


def test_bcg_report_files(bcg_report):
    assert (bcg_report / "report.html").is_file() and (bcg_report / "report.md").is_file()
    assert (bcg_report / "figures").is_dir() and (bcg_report / "tables").is_dir()
    for png in (bcg_report / "figures").glob("*.png"):
        assert (bcg_report / "figures" / (png.stem + ".svg")).is_file()
    assert not [p for p in bcg_report.parent.iterdir() if p.name.startswith(".report")], "staging dir left behind"


def test_bcg_report_sections_in_order(bcg_report):
    html = (bcg_report / "report.html").read_text(encoding="utf-8")
    assert _section_ids(html) == list(SECTION_IDS)
    md = (bcg_report / "report.md").read_text(encoding="utf-8")
    titles = re.findall(r"^## (.+)$", md, flags=re.M)
    assert titles[0] == "Main result" and titles[-1] == "Data"  # the answer first, the data table last
    assert len(titles) == len(SECTION_IDS)
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (bcg_report / link).is_file()
    assert "Vote counts are not evidence of an effect&#x27;s size" in html
    assert "Kruschke 2021" in html


def test_bcg_report_escapes_user_text(bcg_report):
    html = (bcg_report / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # title, heading, data table
    md = (bcg_report / "report.md").read_text(encoding="utf-8")
    assert XSS not in md and "&lt;script&gt;" in md


def test_bcg_report_tables_equal_objects(bcg_report, bcg_parts):
    fit, sens, freq = bcg_parts
    tables = bcg_report / "tables"
    got = pd.read_csv(tables / "sensitivity.csv", index_col="prior")
    pd.testing.assert_frame_equal(got, sens.table.set_index("prior"), check_exact=True)
    got = pd.read_csv(tables / "comparison.csv", index_col="method")
    pd.testing.assert_frame_equal(got, freq.table, check_exact=True)
    from bayes_se.compare import as_fit

    got = pd.read_csv(tables / "posterior_full.csv", index_col="parameter")
    pd.testing.assert_frame_equal(got, as_fit(fit).summary(), check_exact=True)


def test_bcg_report_funnel_shows_trimfill(bcg_report, bcg_parts):
    """The bias section runs trim-and-fill on the REML fit and draws its funnel with the filled studies."""
    from bayes_se.frequentist import trimfill

    tf = trimfill(bcg_parts[2].freq["REML"])
    assert tf.k0 == 1  # metafor: trimfill(rma(yi, vi)) imputes one study on the right for dat.bcg
    assert (bcg_report / "figures" / "funnel.png").stat().st_size > 1000
    md = (bcg_report / "report.md").read_text(encoding="utf-8")
    section = md[md.index("## Small-study effects and publication bias"):]
    section = section[:section.index("\n## ", 1)]
    assert "imputes 1 study on the right" in section and f"adjusted estimate is {tf.fit.beta[0]:.3g}" in section
    assert "figures/funnel.png" in section
    # the default battery adds PET, PEESE, PET-PEESE and the 3PSM to the table, with their estimates,
    # and no second copy of the Egger / rank / trim-and-fill rows
    from bayes_se.frequentist import bias_battery

    battery = bias_battery(bcg_parts[2].freq["REML"]).set_index("method")
    table = pd.read_csv(bcg_report / "tables" / "bias_battery.csv", index_col=0)
    for method in ("PET", "PEESE", "PET-PEESE", "Selection model (3PSM)"):
        assert table.loc[method, "estimate"] == pytest.approx(battery.loc[method, "estimate"], rel=1e-9), method
    assert len(table) == 8 and not {"Egger regression test", "Rank correlation test"} & set(table.index)


def test_report_refuses_to_overwrite(bcg, bcg_parts, tmp_path):
    fit = bcg_parts[0]
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BayesSEError, match="not empty.*force=True"):
        write_report(out, data=bcg, fit=fit)
    assert (out / "keep.txt").read_text() == "mine"
    write_report(out, data=bcg, fit=fit, force=True)
    assert not (out / "keep.txt").exists() and (out / "report.html").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BayesSEError, match="is a file"):
        write_report(tmp_path / "file", data=bcg, fit=fit)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(empty, data=bcg, fit=fit) == empty


def test_report_write_is_atomic(bcg, bcg_parts, tmp_path, monkeypatch):
    fit = bcg_parts[0]
    out = tmp_path / "r"
    write_report(out, data=bcg, fit=fit)
    before = (out / "report.html").read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_markdown", fail)  # fails after the HTML and figures are staged
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(out, data=bcg, fit=fit, force=True)
    assert (out / "report.html").read_bytes() == before  # the old report is untouched
    with pytest.raises(RuntimeError):
        write_report(tmp_path / "new", data=bcg, fit=fit)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging directories left


def test_missing_or_failing_plot_is_a_visible_note(bcg, bcg_parts, tmp_path, monkeypatch):
    fake = types.ModuleType("fake_plots")

    def plot_forest(fit, data=None, **kwargs):
        raise RuntimeError("no axes today")

    fake.plot_forest = plot_forest
    monkeypatch.setitem(sys.modules, "fake_plots", fake)
    monkeypatch.setattr(report, "PLOTS_MODULE", "fake_plots")
    out = write_report(tmp_path / "r", data=bcg, fit=bcg_parts[0], ensemble=False)  # its plot is its own
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "plot_forest failed for this fit (RuntimeError: no axes today)" in html
    assert "bayes_se.plots.plot_densities is not available" in html
    assert list((out / "figures").iterdir()) == []


def _failed_fit():
    """A BayesianFit whose diagnostics failed (built from arrays: no sampler needed)."""
    import arviz as az

    from bayes_se.results import BayesianFit

    rng = np.random.default_rng(1)
    idata = az.from_dict(posterior={"mu": rng.normal(-0.7, 0.2, (2, 200)),
                                    "tau": np.abs(rng.normal(0.5, 0.1, (2, 200)))})
    verdict = Verdict(passed=False, max_r_hat=1.08, min_ess_bulk=35.0, min_ess_tail=20.0, divergences=12,
                      min_bfmi=0.5, problems=["R-hat of tau is 1.08 (> 1.01)", "12 divergent transitions"])
    return BayesianFit(idata=idata, settings={"model": "random_effects", "seed": 5, "chains": 2, "draws": 200,
                                              "tune": 200, "target_accept": 0.9}, diagnostics=verdict)


def test_failed_diagnostics_come_first_and_loud(bcg, tmp_path):
    out = write_report(tmp_path / "r", data=bcg, fit=_failed_fit())
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r"<p class=\"verdict failed\">DIAGNOSTICS FAILED", html)
    first = html.index('<section id="diagnostics">')
    assert _section_ids(html)[0] == "diagnostics"
    alert = html.index('class="alert"')
    assert first < alert < html.index('<section id="data">')
    assert "12 divergent transitions" in html[alert:html.index('<section id="data">')]
    assert "DIAGNOSTICS FAILED" in (out / "report.md").read_text(encoding="utf-8").split("## Data")[0]


# ---------------------------------------------------------------------------------------------
# headless browser
# ---------------------------------------------------------------------------------------------
def _chromium():
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if hasattr(os, "geteuid") and os.geteuid() == 0 and os.environ.get("CI"):
        subprocess.run("apt-get update && apt-get install -y chromium", shell=True, check=True,
                       stdout=subprocess.DEVNULL, timeout=900)
        if os.path.exists(CHROMIUM):
            return CHROMIUM
    pytest.skip(f"{CHROMIUM} is not installed (install Debian's chromium; CI installs it when running as root)")


def _run_chromium(binary, tmp, *args):
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)


def test_bcg_report_renders_in_headless_chromium(bcg_report, tmp_path):
    from PIL import Image

    binary = _chromium()
    url = (bcg_report / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    res = _run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1200,4000", url)
    assert res.returncode == 0, res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 4000)
    dom = _run_chromium(binary, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for log in (res.stderr, dom.stderr):
        bad = [line for line in log.splitlines() if "CONSOLE(" in line or "Uncaught" in line]
        assert not bad, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout and "<script" not in dom.stdout.lower()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', dom.stdout)
    assert sources, "no figures in the rendered page"
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
            assert im.format == "PNG"
    assert _section_ids(dom.stdout) == list(SECTION_IDS)
