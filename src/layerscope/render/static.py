"""Static heatmaps (PNG/SVG/PDF) with matplotlib, in the reference figure's conventions:
x = Layer 1..N, y = Steps (first step at the top, labels like 30k / 1.2M), a perceptually uniform
colormap from dark purple (low) to light yellow (high), and a labelled colour bar.

Cells without a colour are drawn distinctly and named in a legend (only the kinds present):
missing/NaN in neutral grey, +inf and -inf hatched in opposite directions, and on a log scale the
values <= 0 dotted. Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so
drawing is safe in threads and never opens a window.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> hm = Heatmap(np.random.rand(10, 12) * 0.008, steps=range(30_000, 330_000, 30_000), layers=range(1, 13))
>>> [t.get_text() for t in heatmap_figure(hm).axes[0].get_yticklabels()][:4]
['30k', '60k', '90k', '120k']
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_value
from .._io import write_atomic
from ..errors import ConfigError, NotFoundError, StoreError
from ..store.heatmap import Heatmap
from .options import MAX_ANNOTATE, RenderOptions, RenderWarning
from .scale import (
    KIND_LABELS,
    MISSING_GREY,
    ColorScale,
    RowAxis,
    cell_kinds,
    color_scale,
    layer_ticks,
    row_axis,
)

FORMATS = (".png", ".svg", ".pdf")
ALL_FORMATS = (*FORMATS, ".html")
FONT_PT = 10.0  # matplotlib's default text size; tick spacing is computed from it

# Non-finite (and off-log-scale) cells drawn over the colours: face, hatch. NaN is the 'bad' colour.
HATCHES = {"+inf": ("#f4f4f4", "////"), "-inf": ("#f4f4f4", "\\\\\\\\"), "nonpos": ("#ffffff", "....")}
HATCH_COLOR = "#303030"


def tick_positions(n: int, max_ticks: int) -> list[int]:
    """Indices of at most ``max_ticks`` evenly spread ticks over ``n`` items, first and last included."""
    if n <= max_ticks:
        return list(range(n))
    stride = int(np.ceil((n - 1) / (max_ticks - 1)))
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        if n - 1 - idx[-1] < stride / 2:
            idx[-1] = n - 1
        else:
            idx.append(n - 1)
    return idx


def check_output_path(path: str | os.PathLike[str], formats: tuple[str, ...] = FORMATS) -> Path:
    """Validate an output path before any work: known suffix, existing writable folder."""
    p = Path(path)
    if p.suffix.lower() not in formats:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r}; end the file name with one of {', '.join(formats)}."
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise NotFoundError(
            f"folder {str(parent)!r} for {str(path)!r} does not exist; "
            "create it or choose another output path."
        )
    if not parent.is_dir():
        raise StoreError(f"{str(parent)!r} is a file, not a folder; choose another output path.")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"folder {str(parent)!r} is not writable; choose another output path.")
    if p.exists() and p.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give a file name such as {str(p / 'heatmap.png')!r}.")
    return p


def new_figure(figsize: tuple[float, float]) -> Any:
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


def metric_label(hm: Heatmap) -> str:
    """Colour-bar label: the metric, with its site unless it is the block output."""
    return hm.metric if not hm.site or hm.site == "output" else f"{hm.metric} ({hm.site})"


def default_title(hm: Heatmap) -> str:
    parts = [f"{hm.metric} per layer over training"]
    if hm.run:
        parts.append(f"run {hm.run}")
    return " \u2014 ".join(parts)


def default_figsize(n_steps: int, n_layers: int, opts: RenderOptions) -> tuple[float, float]:
    """A size that keeps cells legible: wider with more layers, taller with more steps (capped)."""
    if opts.annotate and n_steps <= MAX_ANNOTATE and n_layers <= MAX_ANNOTATE:
        w = min(22.0, max(6.0, 2.8 + 0.55 * n_layers))
        h = min(18.0, max(4.5, 1.8 + 0.34 * n_steps))
    else:
        w = min(16.0, max(6.0, 3.0 + 0.28 * n_layers))
        h = min(12.0, 1.3 * w, max(4.5, 2.0 + 0.3 * min(n_steps, 30)))  # no taller than ~4:3 portrait
    if opts.colorbar == "bottom":
        h += 0.7
        w -= 0.6
    return (w, h)


def label_budget(width_in: float, height_in: float, digits: int = 3) -> tuple[int, int]:
    """How many layer (x) and step (y) labels fit on an axes of this size without touching."""
    x_pt = digits * 0.6 * FONT_PT + 4.0
    n_x = int(np.clip(width_in * 72 / x_pt, 3, 24))
    n_y = int(np.clip(height_in * 72 / (2.0 * FONT_PT), 3, 20))
    return n_x, n_y


# --------------------------------------------------------------------------------------------
# Drawing one heatmap into an axes
# --------------------------------------------------------------------------------------------


def draw_heatmap(
    ax: Any,
    hm: Heatmap,
    cs: ColorScale,
    opts: RenderOptions,
    *,
    axes_size: tuple[float, float],
    xlabel: bool = True,
    ylabel: bool = True,
) -> tuple[Any, set[str]]:
    """Draw ``hm`` into ``ax`` with colour scale ``cs``; return the mappable and the cell kinds drawn.

    ``axes_size`` (inches) is the estimated size of ``ax``; it decides how many ticks fit.
    """
    from matplotlib import colormaps

    vals = np.asarray(hm.values, dtype=np.float64)
    n_steps, n_layers = vals.shape
    n_x, n_y = label_budget(*axes_size, digits=len(str(max(hm.layers, default=1))))
    rows = row_axis(hm.steps, opts.true_steps, n_y)
    cm = colormaps[cs.cmap].with_extremes(bad=MISSING_GREY)
    norm = cs.norm()
    draw_vals = np.where(vals > 0, vals, np.nan) if cs.kind == "log" else vals
    masked = np.ma.masked_invalid(draw_vals)
    if n_steps and n_layers and rows.uniform:
        # One RGBA image, fast at 2000 x 96. When there are more rows (columns) than pixels, blocks
        # of rows are averaged in colour first, so a one-step spike still tints its pixel row
        # instead of being skipped; then 'nearest' keeps cell edges crisp (matplotlib's own
        # antialiasing would also blur the layer boundaries).
        from matplotlib.cm import ScalarMappable

        rgba = cm(norm(masked))
        px_rows = max(1, int(axes_size[1] * opts.dpi * 0.95))
        px_cols = max(1, int(axes_size[0] * opts.dpi * 0.95))
        rgba = block_mean(block_mean(rgba, -(-n_steps // px_rows), 0), -(-n_layers // px_cols), 1)
        ax.imshow(
            rgba,
            aspect="auto",
            interpolation="nearest",
            origin="upper",
            extent=(0.5, n_layers + 0.5, rows.edges[-1], rows.edges[0]),
        )
        mappable = ScalarMappable(norm=norm, cmap=cm)
    else:
        mappable = ax.pcolormesh(
            np.arange(n_layers + 1) + 0.5,
            rows.edges,
            masked,
            cmap=cm,
            norm=norm,
            shading="flat",
            rasterized=True,
        )  # rasterized: a small PDF/SVG at any size
        ax.set_ylim(rows.edges[-1], rows.edges[0])
        ax.set_xlim(0.5, n_layers + 0.5)
        if n_steps == 0 or n_layers == 0:
            mappable.set_array(np.zeros(0))
    kinds = cell_kinds(vals, cs.kind)
    for kind, mask in kinds.items():
        if kind in HATCHES:
            _hatch_cells(ax, mask, rows, kind)
    xt, xl = layer_ticks(hm.layers, n_x)
    ax.set_xticks(xt, xl)
    ax.set_yticks(rows.ticks, rows.labels)
    ax.tick_params(length=3)
    if xlabel:
        ax.set_xlabel("Layer")
    if ylabel:
        ax.set_ylabel("Steps")
    if opts.annotate:
        annotate_cells(ax, vals, rows, cm, norm, axes_size)
    return mappable, set(kinds)


def block_mean(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Average consecutive blocks of ``k`` entries along ``axis`` (the last block may be shorter).

    >>> block_mean(np.arange(5.0)[:, None], 2, 0).ravel().tolist()
    [0.5, 2.5, 4.0]
    """
    if k <= 1:
        return a
    n = a.shape[axis]
    starts = np.arange(0, n, k)
    sums = np.add.reduceat(a, starts, axis=axis)
    counts = np.diff(np.append(starts, n)).astype(np.float64)
    shape = [1] * a.ndim
    shape[axis] = len(starts)
    return sums / counts.reshape(shape)


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) of the True runs in a boolean row."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _hatch_cells(ax: Any, mask: np.ndarray, rows: RowAxis, kind: str) -> None:
    """Cover the ``mask`` cells with a hatched patch per horizontal run (few patches, even for whole rows)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    face, hatch = HATCHES[kind]
    rects = []
    for i in np.flatnonzero(mask.any(axis=1)):
        y0, y1 = rows.edges[i], rows.edges[i + 1]
        for a, b in _runs(mask[i]):
            rects.append(Rectangle((a + 0.5, y0), b - a, y1 - y0))
    coll = PatchCollection(
        rects, facecolor=face, edgecolor="none", hatch=hatch, hatchcolor=HATCH_COLOR, linewidth=0, zorder=2
    )
    coll.set_gid(f"cells-{kind}")
    ax.add_collection(coll)


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB colours (..., 3) in 0..1."""
    c = np.asarray(rgb, dtype=np.float64)[..., :3]
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def text_colors(rgba: np.ndarray) -> np.ndarray:
    """Black or white, whichever contrasts more with each background colour (WCAG ratio)."""
    lum = relative_luminance(rgba)
    return np.where((lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05), "black", "white")


def annotate_cells(
    ax: Any, vals: np.ndarray, rows: RowAxis, cm: Any, norm: Any, axes_size: tuple[float, float]
) -> bool:
    """Print each finite cell's value (3 significant digits) in black or white for contrast.

    Skipped with a :class:`RenderWarning` (returns False) above 40 x 40 cells, or when the cells
    are too small for 4.5 pt text at this figure size.
    """
    n_steps, n_layers = vals.shape
    if n_steps > MAX_ANNOTATE or n_layers > MAX_ANNOTATE:
        warnings.warn(
            f"--annotate skipped: {n_steps} steps x {n_layers} layers is more than "
            f"{MAX_ANNOTATE} x {MAX_ANNOTATE} cells, too many to read; select fewer steps or layers "
            "(e.g. a CSV slice) to annotate.",
            RenderWarning,
            stacklevel=3,
        )
        return False
    texts = [[format_value(v, 3) if np.isfinite(v) else "" for v in row] for row in vals]
    chars = max((len(t) for row in texts for t in row), default=1) or 1
    span = abs(rows.edges[-1] - rows.edges[0]) or 1.0
    cell_h_pt = float(np.min(np.diff(rows.edges))) / span * axes_size[1] * 72
    cell_w_pt = axes_size[0] * 72 / max(1, n_layers)
    size = min(10.0, 0.6 * cell_h_pt, cell_w_pt / (0.62 * chars + 0.6))
    if size < 4.5:
        warnings.warn(
            f"--annotate skipped: cells are {cell_w_pt:.0f} x {cell_h_pt:.0f} pt, too small for readable "
            "numbers; pass a larger --figsize.",
            RenderWarning,
            stacklevel=3,
        )
        return False
    with np.errstate(invalid="ignore"):
        rgba = cm(norm(np.ma.masked_invalid(vals)))
    colors = text_colors(rgba)
    for i in range(n_steps):
        for j in range(n_layers):
            if texts[i][j]:
                ax.text(
                    j + 1,
                    rows.centers[i],
                    texts[i][j],
                    ha="center",
                    va="center",
                    fontsize=size,
                    color=colors[i, j],
                    zorder=3,
                    gid="cell-value",
                )
    return True


# --------------------------------------------------------------------------------------------
# Colour bar and legend
# --------------------------------------------------------------------------------------------


def colorbar_kwargs(where: str, length_in: float) -> dict[str, Any]:
    """Colour bar placement: as long as the axes it labels (``length_in``), about 0.17 in thick."""
    aspect = max(12.0, length_in / 0.17)
    if where == "right":
        return {"location": "right", "fraction": 0.05, "pad": 0.02, "aspect": aspect}
    return {"location": "bottom", "fraction": 0.06, "pad": 0.02, "aspect": aspect * 0.9, "shrink": 0.9}


def add_colorbar(
    fig: Any, mappable: Any, ax: Any, cs: ColorScale, label: str, where: str, length_in: float = 5.0
) -> Any:
    kw = colorbar_kwargs(where, length_in)
    kw["extend"] = cs.extend
    cb = fig.colorbar(mappable, ax=ax, **kw)
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


def add_kind_legend(fig: Any, kinds: Sequence[str]) -> Any:
    handles = kind_handles(kinds)
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


# --------------------------------------------------------------------------------------------
# One heatmap, one figure
# --------------------------------------------------------------------------------------------


def _opts(options: RenderOptions | None, kw: dict[str, Any]) -> RenderOptions:
    if options is not None and kw:
        return options.replace(**kw)
    return options if options is not None else RenderOptions.from_kwargs(**kw)


def heatmap_figure(hm: Heatmap, options: RenderOptions | None = None, **kw: Any) -> Any:
    """The figure of one heatmap (not saved): cells, ticks, colour bar, legend, title."""
    opts = _opts(options, kw)
    if opts.kind == "lines":
        from .lines import lines_figure

        return lines_figure(hm, opts)
    n_steps, n_layers = hm.values.shape
    figsize = opts.figsize or default_figsize(n_steps, n_layers, opts)
    cs = color_scale([hm.values], opts, what=f"{hm.metric!r}", metric=hm.metric)
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    kinds = cell_kinds(hm.values, cs.kind)
    ttl = opts.title if opts.title is not None else default_title(hm)
    axes_size = (
        figsize[0] - (1.25 if opts.colorbar == "right" else 0.0) - 0.9,
        figsize[1]
        - (0.45 if ttl else 0.1)
        - 0.6
        - (0.9 if opts.colorbar == "bottom" else 0.0)
        - (0.35 if kinds else 0.0),
    )
    mappable, drawn = draw_heatmap(ax, hm, cs, opts, axes_size=axes_size)
    if ttl:
        ax.set_title(ttl)
    add_colorbar(
        fig,
        mappable,
        ax,
        cs,
        opts.label or metric_label(hm),
        opts.colorbar,
        length_in=axes_size[1] if opts.colorbar == "right" else axes_size[0],
    )
    add_kind_legend(fig, sorted(drawn))
    return fig


def plot_heatmap(
    hm: Heatmap, path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write ``hm`` as a heatmap image; the format comes from the file suffix (.png, .svg, .pdf).

    Options are :class:`~layerscope.render.options.RenderOptions` fields (cmap, vmin, vmax, scale,
    annotate, colorbar, title, figsize, dpi, true_steps, ...).
    """
    out = check_output_path(path)
    opts = _opts(options, kw)
    fig = heatmap_figure(hm, opts)
    return save_figure(fig, out, opts.dpi)
