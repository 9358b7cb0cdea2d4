"""Files that ship inside the package: the model specs and the bundled datasets.

The repository keeps them where users see them, in the root folders ``models/`` and ``data/``;
``pyproject.toml`` maps those two folders into the package at build time (setuptools
``package-dir``), as the data-only subpackages ``bayes_se.model_specs`` and
``bayes_se.bundled_data``. There is one copy of every file: an installed package reads it with
:mod:`importlib.resources`; a clone run in place (``PYTHONPATH``, or an editable install, whose
import hook cannot map a subpackage that has no ``__init__.py``) reads the root folder beside the
``bayes_se`` folder.

A packaged spec's description is its first line, a ``#`` comment (``bayes-se models`` lists it).
"""

from __future__ import annotations

import importlib.resources
import pathlib

from bayes_se.errors import BayesSEError

#: The package that holds ``models/*.toml`` once built, and the repository folder it comes from.
SPECS_PACKAGE, SPECS_FOLDER = "bayes_se.model_specs", "models"
#: The package that holds ``data/`` once built, and the repository folder it comes from.
DATA_PACKAGE, DATA_FOLDER = "bayes_se.bundled_data", "data"


def _root(package: str, folder: str):
    """The folder of ``package`` (a :class:`importlib.resources.abc.Traversable`)."""
    try:
        return importlib.resources.files(package)
    except ModuleNotFoundError:  # a clone run in place: the root folder beside bayes_se/
        source = pathlib.Path(__file__).resolve().parent.parent / folder
        if source.is_dir():
            return source
    raise BayesSEError(f"the packaged '{folder}' files are missing (neither {package} nor {source} "
                       "exists): reinstall bayes_se")


def specs_root():
    """Folder of the packaged model specs (``models/`` of the repository)."""
    return _root(SPECS_PACKAGE, SPECS_FOLDER)


def data_root():
    """Folder of the bundled data (``data/`` of the repository, with its README and licences)."""
    return _root(DATA_PACKAGE, DATA_FOLDER)


def data_file(*parts: str):
    """A file or folder of the bundled data, e.g. ``data_file("self_efficacy_sim", "between.csv")``.

    On an installed package (and a clone) this is a :class:`pathlib.Path`.
    """
    node = data_root()
    for part in parts:
        node = node / part
    return node


def spec_names() -> tuple[str, ...]:
    """Names of the packaged model specs (file names without ``.toml``), sorted."""
    return tuple(sorted(p.name.removesuffix(".toml") for p in specs_root().iterdir()
                        if p.name.endswith(".toml") and p.is_file()))


def spec_file(name: str):
    """The packaged spec ``name`` (``"three_level"`` or ``"three_level.toml"``).

    Raises
    ------
    BayesSEError
        For an unknown name; the message lists the available ones.
    """
    names = spec_names()
    stem = str(name).removesuffix(".toml")
    if stem not in names:
        raise BayesSEError(f"no packaged model spec '{name}'; available: {', '.join(names)}")
    return specs_root() / f"{stem}.toml"


def spec_text(name: str) -> str:
    """The text of the packaged spec ``name``, comments included."""
    return spec_file(name).read_text(encoding="utf-8")


def spec_description(name: str) -> str:
    """The one-line description of a packaged spec: its first line, a ``#`` comment."""
    lines = spec_text(name).splitlines()
    first = lines[0] if lines else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


def spec_source(spec):
    """``spec`` itself, or the packaged spec it names.

    A string or path that is not an existing file, has no folder part and is the name of a packaged
    spec (``"three_level"``, ``"three_level.toml"``) becomes that packaged file; anything else
    (a path, TOML text, a :class:`~bayes_se.spec.ModelSpec`) is returned unchanged.
    """
    if isinstance(spec, (str, pathlib.PurePath)):
        text = str(spec)
        if ("\n" not in text and "/" not in text and "\\" not in text and not pathlib.Path(text).exists()
                and text.removesuffix(".toml") in spec_names()):
            return spec_file(text)
    return spec
