"""Light imports: the exact and frequentist paths never load PyMC, PyTensor, ArviZ or matplotlib.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds
whatever other tests imported) and prints the heavy modules found in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

DATA = pathlib.Path(__file__).parent / "reference" / "data"
HEAVY = ("pymc", "arviz", "matplotlib", "pytensor")
#: A fresh interpreter importing numpy/scipy/pandas and fitting a small table takes about 2 s
#: here; generous so that a loaded 2-core machine does not fail the test.
SUBPROCESS_TIMEOUT_S = 120

#: A 50 x 3 matrix-vector product by OpenBLAS vs NumPy's own BLAS: summation order may differ.
GEMV_RTOL = 1e-12

#: ... and the command-line exact and frequentist paths do without scipy.stats too (~0.5 s an import)
HEAVY_CLI = HEAVY + ("scipy.stats",)


def _heavy_modules_after(code: str, heavy=HEAVY) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy modules it left in sys.modules."""
    report = f"print(json.dumps(sorted(m for m in {tuple(heavy)!r} if m in sys.modules)))"
    script = "import json, sys\n" + textwrap.dedent(code) + "\n" + report + "\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_package_is_light():
    assert _heavy_modules_after("import bayes_se") == []


def test_exact_fit_through_api_is_light():
    code = """
        import bayes_se, bayes_se.exact, bayes_se.frequentist, bayes_se.data, bayes_se.api
        import bayes_se.spec, bayes_se.priors
        import pandas as pd
        table = pd.DataFrame({"study": list("abcde"), "yi": [0.1, 0.3, 0.2, 0.5, -0.1],
                              "vi": [0.01, 0.02, 0.03, 0.04, 0.05]})
        res = bayes_se.fit(table, engine="exact")
        assert abs(res.summary().loc["mu", "mean"]) < 1
    """
    assert _heavy_modules_after(code) == []


@pytest.mark.parametrize("argv", [
    ["fit", "--engine", "exact", "--data", str(DATA / "dat.bcg.csv"), "--json"],
    ["freq", str(DATA / "dat.bcg.csv"), "--json"],
    ["freq", str(DATA / "dat.bcg.csv"), "--method", "DL", "--test", "knha"],
], ids=["fit-exact-bcg", "freq-reml-bcg", "freq-dl-knha-bcg"])
def test_cli_exact_and_freq_paths_are_light(argv):
    code = f"""
        import contextlib, io
        from bayes_se import cli
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main({argv!r})
        assert rc == 0, rc
    """
    assert _heavy_modules_after(code, HEAVY_CLI) == []


def test_simulate_module_is_light():
    """The simulation study's default methods (exact + DL/REML/KH) stay on the light path."""
    code = """
        import os, tempfile
        from bayes_se.simulation import simulate
        out = os.path.join(tempfile.mkdtemp(), "sim.csv")
        simulate({"k": [5], "tau": [0.2]}, reps=2, out=out, seed=1, workers=1, progress=False)
    """
    assert _heavy_modules_after(code) == []


def _run_blas_script(setup: str, tmp_path) -> None:
    """Run ``setup`` (which must set ``found``: SciPy's OpenBLAS exists) in a fresh interpreter
    with its own compile directory, then check that ``X @ b`` compiles to a C BLAS Gemv when
    ``found`` and gives NumPy's result."""
    head = f"""
        import os
        os.environ["PYTENSOR_FLAGS"] = "base_compiledir={tmp_path}"
        import numpy as np
    """
    gemv_check = f"""
        import pytensor, pytensor.tensor as pt
        X, b = pt.matrix("X"), pt.vector("b")
        f = pytensor.function([X, b], X @ b)
        ops = [type(node.op).__name__ for node in f.maker.fgraph.toposort()]
        assert (not found) or any(name.startswith("CGemv") for name in ops), ops
        rng = np.random.default_rng(0)
        Xv, bv = rng.normal(size=(50, 3)), rng.normal(size=3)
        assert np.allclose(f(Xv, bv), Xv @ bv, rtol={GEMV_RTOL}, atol=0)
        print("ok")
    """
    code = "".join(textwrap.dedent(part) for part in (head, setup, gemv_check))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_blas_configure_links_scipy_openblas_and_computes_gemv(tmp_path):
    """bayes_se.blas.configure (before PyTensor is imported) gives PyTensor a C BLAS Gemv whose
    result equals NumPy's; without SciPy's bundled OpenBLAS it declines and changes nothing."""
    _run_blas_script("""
        from bayes_se import blas
        found = blas.scipy_openblas() is not None
        assert blas.configure() == found
    """, tmp_path)


def test_blas_configure_after_pymc_import_links_without_pytensors_blas_search(tmp_path):
    """With PyMC imported first (as in a notebook), configure() still links SciPy's OpenBLAS,
    keeping the compiler flags PyMC set, and without running PyTensor's own search for a system
    BLAS (0.3 s and a warning); the linked Gemv gives NumPy's result."""
    _run_blas_script("""
        import pymc, pytensor
        calls = []
        param = pytensor.config._config_var_dict["blas__ldflags"]  # PyTensor's lazy default
        original = param._default
        param._default = lambda: calls.append(1) or original()
        pymc_flags = pytensor.config.gcc__cxxflags
        from bayes_se import blas
        found = blas.scipy_openblas() is not None
        assert blas.configure() == found
        assert calls == [], "PyTensor searched for a BLAS"
        assert pymc_flags.strip() in pytensor.config.gcc__cxxflags
        assert blas.configure() is False  # chosen now: a second call changes nothing
    """, tmp_path)


# -- static import graph: no cycles, no sibling's private names ---------------------------------

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "bayes_se"


def _modules() -> dict:
    """``{dotted name: (path, is_package)}`` for every module of bayes_se."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _resolve(module: str, is_pkg: bool, node) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module
    base = module.split(".")[: None if is_pkg else -1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict:
    """Edges ``module -> modules of bayes_se it imports``, from ``import`` and ``from ... import``
    statements anywhere in the module (functions included); ``from pkg import name`` counts as
    importing ``pkg.name`` when that is a submodule, else ``pkg``. The implicit import of a
    module's parent packages is not an edge (a parent's ``__init__`` has always begun first)."""
    import ast

    mods = _modules()

    def owner(name):  # the longest prefix of a dotted name that is a module of bayes_se
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for module, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_pkg, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                if target.split(".")[0] == "bayes_se" and owner(target) not in (None, module):
                    graph[module].add(owner(target))
    return graph


def find_cycle(graph: dict) -> list | None:
    """One cycle ``[a, b, ..., a]`` of a directed graph, or None (depth-first search)."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_sees_lazy_relative_and_submodule_imports():
    graph = import_graph()
    # a function-level import (mediation.add_derived imports builders.masem inside the function)
    assert "bayes_se.builders.masem" in graph["bayes_se.mediation"]
    # `from bayes_se.frequentist import rma` inside a function is an edge to the submodule
    assert "bayes_se.frequentist.rma" in graph["bayes_se.cli"]
    assert "bayes_se.frequentist.mv_result" in graph["bayes_se.frequentist.multilevel"]


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_name_uses() -> list[str]:
    """Uses of another bayes_se module's private (``_name``) names: ``from m import _name`` (absolute
    or relative), ``module._name`` on an imported bayes_se module, and ``obj._name`` or a keyword
    ``_name=`` where ``_name`` is defined (def, class, assignment, attribute or dataclass field) in
    another bayes_se module and nowhere in this one."""
    import ast

    mods = _modules()
    trees = {m: ast.parse(path.read_text(encoding="utf-8")) for m, (path, _) in mods.items()}
    defined = {}
    for module, tree in trees.items():
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        defined[module] = {n for n in names if _private(n)}
    elsewhere = {m: set().union(*(d for o, d in defined.items() if o != m)) for m in mods}
    found = []
    for module, tree in trees.items():
        path, is_pkg = mods[module]
        where = f"{path.relative_to(PACKAGE.parent)}"
        module_aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_pkg, node)
                if base.split(".")[0] != "bayes_se":
                    continue
                for a in node.names:
                    if _private(a.name):
                        found.append(f"{where}:{node.lineno}: from {base} import {a.name}")
                    elif f"{base}.{a.name}" in mods:
                        module_aliases.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "bayes_se":
                        module_aliases.add(a.asname or a.name.split(".")[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                on_module = isinstance(node.value, (ast.Name, ast.Attribute)) and \
                    ast.unparse(node.value).split(".")[0] in module_aliases
                if on_module or (node.attr in elsewhere[module] and node.attr not in defined[module]):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.keyword) and node.arg and _private(node.arg):
                if node.arg in elsewhere[module] and node.arg not in defined[module]:
                    found.append(f"{where}:{node.lineno}: keyword {node.arg}=")
    return found


def test_no_module_uses_a_siblings_private_names():
    uses = private_name_uses()
    assert uses == [], "private names used across modules:\n" + "\n".join(uses)
