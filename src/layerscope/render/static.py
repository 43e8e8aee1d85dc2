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
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_value
from ..store.heatmap import Heatmap
from .alerts import alert_cells, draw_alerts
from .labels import RowAxis, default_title, layer_ticks, metric_label, row_axis
from .mpl import (
    HATCH_COLOR,
    HATCHES,
    add_colorbar,
    add_kind_legend,
    kind_handles,
    label_budget,
    new_figure,
    save_figure,
)
from .options import MAX_ANNOTATE, RenderOptions, RenderWarning
from .output import check_output_path
from .reduce import reduce_rows
from .scale import MISSING_GREY, ColorScale, cell_kinds, color_scale


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
        # One RGBA image, fast at 2000 x 96. When there are more rows than pixels, each block of
        # rows shows its most extreme value (render.reduce), so a one-step spike keeps its full
        # colour instead of being skipped; more columns than pixels are averaged in colour. Then
        # 'nearest' keeps cell edges crisp (antialiasing would blur the layer boundaries).
        from matplotlib.cm import ScalarMappable

        px_rows = max(1, int(axes_size[1] * opts.dpi * 0.95))
        px_cols = max(1, int(axes_size[0] * opts.dpi * 0.95))
        shown = reduce_rows(draw_vals, px_rows).values  # each block's most extreme value
        rgba = block_mean(cm(norm(np.ma.masked_invalid(shown))), -(-n_layers // px_cols), 1)
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
# One heatmap, one figure
# --------------------------------------------------------------------------------------------


def resolve_options(options: RenderOptions | None, kw: dict[str, Any]) -> RenderOptions:
    """``options`` with ``kw`` applied (or options built from ``kw``): what every figure function takes."""
    if options is not None and kw:
        return options.replace(**kw)
    return options if options is not None else RenderOptions.from_kwargs(**kw)


def axes_inches(ax: Any) -> tuple[float, float]:
    """The size of an existing axes, in inches (for drawing into a user's ``ax=``)."""
    w, h = ax.figure.get_size_inches()
    pos = ax.get_position()
    return (max(1.0, float(w * pos.width)), max(1.0, float(h * pos.height)))


def heatmap_figure(hm: Heatmap, options: RenderOptions | None = None, *, ax: Any = None, **kw: Any) -> Any:
    """The figure of one heatmap (not saved): cells, ticks, colour bar, legend, title.

    With ``ax`` (a matplotlib Axes), draws into it, puts the colour bar beside it, and returns its
    figure, so a notebook can place the map in its own layout and restyle it.
    The run's watch alerts (``hm.events``) at this site are marked on their cells, named in the
    legend (``alerts=False`` leaves them off; see :mod:`.alerts`).
    """
    opts = resolve_options(options, kw)
    n_steps, n_layers = hm.values.shape
    cs = color_scale([hm.values], opts, what=f"{hm.metric!r}", metric=hm.metric)
    kinds = cell_kinds(hm.values, cs.kind)
    marked = opts.alerts and bool(alert_cells(hm))
    ttl = opts.title if opts.title is not None else default_title(hm)
    if ax is None:
        figsize = opts.figsize or default_figsize(n_steps, n_layers, opts)
        fig = new_figure(figsize)
        ax = fig.add_subplot()
        axes_size = (
            figsize[0] - (1.25 if opts.colorbar == "right" else 0.0) - 0.9,
            figsize[1]
            - (0.45 if ttl else 0.1)
            - 0.6
            - (0.9 if opts.colorbar == "bottom" else 0.0)
            - (0.35 if kinds or marked else 0.0),
        )
        own = True
    else:
        fig, axes_size, own = ax.figure, axes_inches(ax), False
    mappable, drawn = draw_heatmap(ax, hm, cs, opts, axes_size=axes_size)
    alert_handles = draw_alerts(ax, hm, opts.true_steps, axes_size) if marked else []
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
    if own:
        add_kind_legend(fig, sorted(drawn), alert_handles)
    elif drawn or alert_handles:
        handles = kind_handles(sorted(drawn)) + alert_handles
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncols=len(handles),
            frameon=False,
            fontsize="small",
        )
    return fig


def plot_heatmap(
    hm: Heatmap, path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write ``hm`` as a heatmap image; the format comes from the file suffix (.png, .svg, .pdf).

    Options are :class:`~layerscope.render.options.RenderOptions` fields (cmap, vmin, vmax, scale,
    annotate, colorbar, title, figsize, dpi, true_steps, ...).
    """
    out = check_output_path(path)
    opts = resolve_options(options, kw)
    fig = heatmap_figure(hm, opts)
    return save_figure(fig, out, opts.dpi)
