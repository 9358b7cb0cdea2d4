"""Figure style shared by every bayes_se plot: colour-blind-safe colours, journal widths, export.

Colours are the Okabe-Ito palette (Okabe & Ito 2008), distinguishable under the common colour-vision
deficiencies. Widths are the usual journal column widths: 85 mm (single column) and 175 mm (double
column). Fonts are at least 7 pt at those widths, the minimum most journals accept.

References
----------
Okabe, M. & Ito, K. (2008). Color Universal Design (CUD): how to make figures and presentations
that are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import pathlib

from bayes_se.errors import SpecError

#: The Okabe-Ito palette, name -> hex.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
#: Colour cycle for categories (black last: it is kept for observed data).
CYCLE = [OKABE_ITO[n] for n in ("blue", "vermillion", "bluish_green", "orange", "reddish_purple",
                                "sky_blue", "yellow", "black")]
#: Roles of colours across the plots.
OBSERVED = OKABE_ITO["black"]
POSTERIOR = OKABE_ITO["blue"]
PRIOR = OKABE_ITO["orange"]
POOLED = OKABE_ITO["vermillion"]
REPLICATED = OKABE_ITO["sky_blue"]

MM_PER_INCH = 25.4
#: Journal figure widths in millimetres.
WIDTHS_MM = {"single": 85.0, "double": 175.0}
#: Smallest font size (pt) used anywhere in a figure.
MIN_FONT_PT = 7.0
#: matplotlib settings applied while a bayes_se figure is drawn (through ``matplotlib.rc_context``,
#: so the user's global settings are left alone).
RC = {
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "figure.titlesize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
    # labels are text: a '$' in a study label must not start mathtext (see literal())
    "text.parse_math": False,
}
FORMATS = ("png", "svg", "pdf")


def width_inches(width) -> float:
    """A width given as ``"single"``, ``"double"`` or a number of millimetres, in inches."""
    if isinstance(width, str):
        if width not in WIDTHS_MM:
            raise SpecError(f"width must be one of {sorted(WIDTHS_MM)} or millimetres, got {width!r}",
                            key="width")
        return WIDTHS_MM[width] / MM_PER_INCH
    try:
        mm = float(width)
    except (TypeError, ValueError):
        raise SpecError(f"width must be 'single', 'double' or millimetres, got {width!r}", key="width") from None
    if not mm > 0:
        raise SpecError(f"width must be positive, got {width!r}", key="width")
    return mm / MM_PER_INCH


def literal(texts):
    """Draw user-provided text literally: turn off matplotlib's mathtext (``$...$``) parsing.

    Every study label, moderator level, variable or prior name a plot shows goes through here (or
    :func:`literal_ticks`), so a label such as ``A$x$`` or ``$$`` is drawn as typed, never as maths
    or a parse error. :data:`RC` sets ``text.parse_math`` off for text created inside
    :func:`style` as well; this also covers tick labels of axes a caller created beforehand.

    Parameters
    ----------
    texts : matplotlib.text.Text, an iterable of them, or a Legend (its texts)

    Returns
    -------
    The argument.
    """
    items = texts.get_texts() if hasattr(texts, "get_texts") else texts
    for text in ([items] if hasattr(items, "set_parse_math") else items):
        text.set_parse_math(False)
    return texts


def literal_ticks(ax, axis: str, ticks, labels) -> None:
    """``ax.set_xticks`` / ``ax.set_yticks`` (``axis`` "x" or "y") with literal (:func:`literal`) labels."""
    labels = [str(label) for label in labels]
    getattr(ax, f"set_{axis}ticks")(ticks, labels)
    for sibling in getattr(ax, f"get_shared_{axis}_axes")().get_siblings(ax):  # sharex/sharey: same labels
        literal(getattr(sibling, f"get_{axis}ticklabels")())


def style():
    """A context manager applying :data:`RC` (``with style(): ...``)."""
    import matplotlib
    from cycler import cycler

    return matplotlib.rc_context({**RC, "axes.prop_cycle": cycler(color=CYCLE)})


def new_figure(width="single", height_mm: float = 70.0, **subplots):
    """A pyplot-free :class:`matplotlib.figure.Figure` of the given width with subplots.

    Call inside :func:`style` so the fonts apply. Returns ``(fig, axes)`` as ``plt.subplots``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_inches(width), height_mm / MM_PER_INCH), layout="constrained")
    axes = fig.subplots(**subplots)
    return fig, axes


def figure_and_axes(ax, width="single", height_mm: float = 70.0):
    """The user's axes and its figure, or a new single-axes figure when ``ax`` is None."""
    if ax is not None:
        return ax.figure, ax
    return new_figure(width, height_mm)


def panel_axes(ax, n: int, width, height_mm: float, nrows: int, ncols: int):
    """``(figure, 2-D array of axes)`` for a plot of ``n`` panels: the user's axes, or a new figure.

    ``ax`` may be None (a new ``nrows x ncols`` figure), one Axes when ``n == 1``, or a sequence
    (or array) of at least ``n`` Axes of one figure, filled in order; panels left over are hidden.
    """
    import numpy as np

    if ax is None:
        return new_figure(width, height_mm, nrows=nrows, ncols=ncols, squeeze=False)
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size < n:
        raise SpecError(f"this plot draws {n} panels; ax= gave {axes.size} axes", key="ax")
    return axes[0].figure, axes.reshape(1, -1)


def save_figure(fig, path, width="single", formats=FORMATS, dpi: int = 300) -> list:
    """Save ``fig`` at a journal width in several formats.

    The figure is set to ``width`` and keeps its height (which the plots size to their content,
    e.g. the number of studies); fonts keep their point size and the constrained layout reflows.
    It is then written once per format next to ``path`` (its suffix is replaced).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or pathlib.Path
        Output path; ``figure`` and ``figure.png`` both give ``figure.png``, ``figure.svg``, ...
    width : {"single", "double"} or float
        85 mm, 175 mm, or a width in millimetres.
    formats : sequence of {"png", "svg", "pdf"}
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise SpecError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)!r}", key="formats")
    w_new = width_inches(width)
    fig.set_size_inches(w_new, fig.get_size_inches()[1])
    base = pathlib.Path(path)
    if base.suffix.lstrip(".") in FORMATS:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        out = base.with_name(base.name + "." + fmt)
        fig.savefig(out, format=fmt, dpi=dpi)
        written.append(out)
    return written
