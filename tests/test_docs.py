"""Every code block in ``docs/*.md`` runs.

``python`` blocks of one page run in order in one namespace, in a scratch folder that links the
repository's ``data``, ``models`` and ``tests`` folders (so the paths in the docs are the paths a
user of a clone types, and whatever a page writes lands in the scratch folder). ``bash`` blocks run each line that
starts with ``bayes-se`` through the CLI in-process and require exit status 0. Other fences
(``toml``, ``text``, output listings) are not code.
"""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(page: pathlib.Path):
    return [(lang, code) for lang, code in FENCE.findall(page.read_text(encoding="utf-8"))
            if lang in ("python", "bash")]


@pytest.mark.parametrize("page", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_doc_code_blocks_run(page, monkeypatch, tmp_path, capsys):
    from bayes_se import cli

    for name in ("data", "models", "tests", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": f"docs_{page.stem}", "DOCS_TMP": tmp_path}
    for lang, code in blocks(page):
        if lang == "python":
            exec(compile(code, f"{page.name}", "exec"), namespace)  # noqa: S102 - our own docs
            continue
        for line in code.splitlines():
            line = line.strip()
            if not line.startswith("bayes-se "):
                continue
            argv = shlex.split(line)[1:]
            code_ = cli.main(argv)
            err = capsys.readouterr().err
            assert code_ == 0, f"{page.name}: `{line}` exited {code_}: {err}"
