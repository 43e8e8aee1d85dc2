"""What every matplotlib figure of layerscope shares: the figure itself (no pyplot state), saving,
colour bars, and the legend of cells a colour cannot show.

Figures are built with ``matplotlib.figure.Figure``, so drawing is safe in threads and never opens
a window; :func:`save_figure` writes through the atomic writer.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_value
from .._io import write_atomic
from .scale import KIND_LABELS, MISSING_GREY, ColorScale

FONT_PT = 10.0  # matplotlib's default text size; tick spacing is computed from it

# Non-finite (and off-log-scale) cells drawn over the colours: face, hatch. NaN is the 'bad' colour.
HATCHES = {"+inf": ("#f4f4f4", "////"), "-inf": ("#f4f4f4", "\\\\\\\\"), "nonpos": ("#ffffff", "....")}
HATCH_COLOR = "#303030"


def new_figure(figsize: tuple[float, float]) -> Any:
    """A figure with the constrained layout, outside pyplot (nothing global, no window)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _layout_once(fig: Any, dpi: int) -> None:
    """Run the constrained layout now, with images hidden, then switch the layout engine off.

    savefig would otherwise lay out with a 'disabled' draw that still resamples every image (it
    only skips blitting it): a wasted ~0.3 s for a 2000 x 96 map. Images sit inside their axes,
    so hiding them does not change the layout.
    """
    if fig.get_layout_engine() is None:
        return
    images = [im for ax in fig.axes for im in ax.get_images() if im.get_visible()]
    fig.set_dpi(dpi)
    for im in images:
        im.set_visible(False)
    try:
        fig.draw_without_rendering()
    finally:
        for im in images:
            im.set_visible(True)
    fig.set_layout_engine("none")


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) through :func:`write_atomic`."""
    fmt = Path(path).suffix.lower().lstrip(".")
    _layout_once(fig, dpi)
    # zlib level 4 instead of 6: a third of the encoding time for a few % more bytes on noisy maps.
    extra = {"pil_kwargs": {"compress_level": 4}} if fmt == "png" else {}
    return write_atomic(path, lambda name: fig.savefig(name, dpi=dpi, format=fmt, **extra))


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (a notebook's inline image, a logger's picture)."""
    _layout_once(fig, dpi)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    return buf.getvalue()


def label_budget(width_in: float, height_in: float, digits: int = 3) -> tuple[int, int]:
    """How many layer (x) and step (y) labels fit on an axes of this size without touching."""
    x_pt = digits * 0.6 * FONT_PT + 4.0
    n_x = int(np.clip(width_in * 72 / x_pt, 3, 24))
    n_y = int(np.clip(height_in * 72 / (2.0 * FONT_PT), 3, 20))
    return n_x, n_y


# --------------------------------------------------------------------------------------------
# Colour bars and the legend of cells without a colour
# --------------------------------------------------------------------------------------------


def colorbar_kwargs(where: str, length_in: float) -> dict[str, Any]:
    """Colour bar placement: as long as the axes it labels (``length_in``), about 0.17 in thick."""
    aspect = max(12.0, length_in / 0.17)
    if where == "right":
        return {"location": "right", "fraction": 0.05, "pad": 0.02, "aspect": aspect}
    return {"location": "bottom", "fraction": 0.06, "pad": 0.02, "aspect": aspect * 0.9, "shrink": 0.9}


def add_colorbar(
    fig: Any,
    mappable: Any,
    ax: Any,
    cs: ColorScale,
    label: str,
    where: str,
    length_in: float = 5.0,
    *,
    label_on_top: bool = False,
) -> Any:
    """A colour bar for ``cs`` beside ``ax`` (or a list of axes), labelled ``label``.

    ``label_on_top`` puts a right-hand bar's label above it instead of along its outer side:
    between panels of small multiples the side label would sit where the next panel's y label is.
    """
    kw = colorbar_kwargs(where, length_in)
    kw["extend"] = cs.extend
    cb = fig.colorbar(mappable, ax=ax, **kw)
    if label_on_top and where == "right":
        if label:
            cb.ax.set_title(label, fontsize="small", loc="center", pad=6)
    else:
        cb.set_label(label)
    if cs.kind == "linear":
        cb.formatter.set_useMathText(True)  # 1e-3 offsets as x10^-3, not a bare 1e-3 above the bar
    elif cs.kind == "log" and (cs.hi > 1e250 or cs.lo < 1e-250 or cs.hi / cs.lo > 1e100):
        # matplotlib's LogLocator steps past the ends by a stride of decades, and near 1e308 its
        # ticks overflow to inf (an OverflowError while laying out). At most ~8 decade ticks inside.
        from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullLocator

        e0, e1 = int(np.ceil(np.log10(cs.lo))), int(np.floor(np.log10(cs.hi)))
        stride = next(k for k in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500) if (e1 - e0) / k <= 8)
        start = -(-e0 // stride) * stride  # ticks at multiples of the stride: 10^0, 10^50, ...
        axis = cb.ax.yaxis if where == "right" else cb.ax.xaxis
        axis.set_major_locator(FixedLocator([10.0**e for e in range(start, e1 + 1, stride)]))
        axis.set_major_formatter(LogFormatterSciNotation())
        axis.set_minor_locator(NullLocator())
    elif cs.kind == "log" and cs.hi / cs.lo < 1000:
        # Under three decades the default shows one or two 'a x 10^b' labels; plain numbers at
        # 1-2-5 (every integer multiple under one decade) read better.
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        subs = [float(k) for k in range(1, 10)] if cs.hi / cs.lo < 10 else [1.0, 2.0, 5.0]
        axis = cb.ax.yaxis if where == "right" else cb.ax.xaxis
        axis.set_major_locator(LogLocator(10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _p: format_value(v, 2)))
        axis.set_minor_formatter(NullFormatter())
    return cb


def kind_handles(kinds: Sequence[str]) -> list[Any]:
    """Legend patches for the non-finite cell kinds present, in a fixed order."""
    from matplotlib.patches import Patch

    out = []
    for kind in KIND_LABELS:
        if kind not in kinds:
            continue
        if kind == "nan":
            out.append(Patch(facecolor=MISSING_GREY, edgecolor="none", label=KIND_LABELS[kind]))
        else:
            face, hatch = HATCHES[kind]
            out.append(
                Patch(
                    facecolor=face,
                    edgecolor="#808080",
                    linewidth=0.5,
                    hatch=hatch,
                    hatchcolor=HATCH_COLOR,
                    label=KIND_LABELS[kind],
                )
            )
    return out


def add_kind_legend(fig: Any, kinds: Sequence[str], extra: Sequence[Any] = ()) -> Any:
    """The legend under the figure naming the kinds of cells without a colour, then ``extra``
    handles (the watch alerts' markers); None if there is nothing to name."""
    handles = kind_handles(kinds) + list(extra)
    if not handles:
        return None
    return fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        frameon=False,
        fontsize="small",
        handlelength=1.6,
        handleheight=1.2,
        columnspacing=1.5,
    )
