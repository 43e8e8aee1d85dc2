"""Per-layer lines: the value against the step, one line per layer, coloured by depth.

The x axis is always at the true step values. Missing cells break a line; a finite value between
two missing ones is drawn as a dot so it does not vanish; +inf/-inf are marked with triangles at
the top/bottom edge; on a log y axis values <= 0 are left out and named in the legend.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> fig = lines_figure(Heatmap(np.random.rand(5, 3), steps=[1, 2, 3, 4, 5], layers=[1, 2, 3]))
>>> len(fig.axes[0].collections[0].get_segments())   # one line per layer
3
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._format import step_label
from ..store.heatmap import Heatmap
from .labels import default_title, metric_label, nice_ticks
from .mpl import colorbar_kwargs, new_figure, save_figure
from .options import RenderOptions, RenderWarning
from .output import check_output_path
from .scale import DEPTH, KIND_LABELS, auto_linthresh, cell_kinds, depth_colors, finite_values


def draw_lines(
    ax: Any,
    hm: Heatmap,
    opts: RenderOptions,
    *,
    xlabel: bool = True,
    ylabel: bool = True,
    ylim: tuple[float, float] | None = None,
) -> tuple[Any, set[str]]:
    """Draw one line per layer of ``hm`` into ``ax``; return the depth colour mapping and the kinds marked."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    if opts.annotate:
        warnings.warn(
            "--annotate prints values in heatmap cells; it is ignored for --kind lines.",
            RenderWarning,
            stacklevel=3,
        )
    vals = np.asarray(hm.values, dtype=np.float64)
    n_steps, n_layers = vals.shape
    cmap = opts.cmap or DEPTH
    colors = depth_colors(n_layers, cmap)
    x = np.asarray(hm.steps, dtype=np.float64)
    y = np.where(np.isfinite(vals), vals, np.nan)
    if opts.scale == "log":
        y = np.where(y > 0, y, np.nan)
    segs = [np.column_stack([x, y[:, j]]) for j in range(n_layers)]
    lw = 1.6 if n_layers <= 16 else (1.0 if n_layers <= 48 else 0.7)
    ax.add_collection(LineCollection(segs, colors=colors, linewidths=lw, gid="layer-lines"), autolim=True)
    # A finite value whose neighbours are both missing has no segment to draw: give it a dot.
    fin = np.isfinite(y)
    prev = np.vstack([np.zeros((1, n_layers), bool), fin[:-1]])
    nxt = np.vstack([fin[1:], np.zeros((1, n_layers), bool)])
    lone = fin & ~prev & ~nxt
    if n_steps <= 40:
        lone = fin  # few steps: mark every recorded value
    if lone.any():
        ii, jj = np.nonzero(lone)
        ax.scatter(x[ii], y[ii, jj], s=10 if n_steps <= 40 else 6, c=colors[jj], zorder=3, linewidths=0)
    kinds = cell_kinds(vals, opts.scale)
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    for kind, ypos, marker in (("+inf", 0.985, "^"), ("-inf", 0.015, "v")):
        if kind in kinds:
            ii, jj = np.nonzero(kinds[kind])
            ax.scatter(
                x[ii],
                np.full(ii.size, ypos),
                transform=edge,
                marker=marker,
                s=28,
                c=colors[jj],
                edgecolors="black",
                linewidths=0.5,
                zorder=4,
                clip_on=False,
                gid=f"marks-{kind}",
            )
    if opts.scale == "log":
        ax.set_yscale("log")
    elif opts.scale == "symlog":
        ax.set_yscale("symlog", linthresh=opts.linthresh or auto_linthresh(finite_values([vals])))
    if x.size:
        pad = (x[-1] - x[0]) * 0.01 or 0.5
        ax.set_xlim(x[0] - pad, x[-1] + pad)
    ax.autoscale_view(scalex=False, scaley=True)
    lo, hi = ylim if ylim is not None else (opts.vmin, opts.vmax)
    if lo is not None or hi is not None:
        ax.set_ylim(lo, hi)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: step_label(v)))
    ax.grid(True, color="#e6e6e6", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    if xlabel:
        ax.set_xlabel("Step")
    if ylabel:
        ax.set_ylabel(opts.label or metric_label(hm))
    # Depth colour bar: one colour per layer (discrete), whatever the number of layers.
    lcm = ListedColormap(colors) if n_layers else colormaps[cmap]
    bounds = np.arange(n_layers + 1) + 0.5 if n_layers else np.array([0.5, 1.5])
    sm = ScalarMappable(norm=BoundaryNorm(bounds, max(1, n_layers)), cmap=lcm)
    return sm, set(kinds)


def add_depth_colorbar(
    fig: Any, sm: Any, ax: Any, layers: list[int], where: str, length_in: float = 4.0
) -> Any:
    n = len(layers)
    if n == 1:
        return None  # one series (site logits: one value per step): a depth key would say nothing
    cb = fig.colorbar(sm, ax=ax, **colorbar_kwargs(where, length_in))
    if n:
        if layers == list(range(layers[0], layers[0] + n)):
            ticks = nice_ticks(layers[0], layers[-1], 12)
            cb.set_ticks([t - layers[0] + 1 for t in ticks], labels=[str(t) for t in ticks])
        else:
            idx = np.linspace(0, n - 1, min(n, 12)).round().astype(int)
            cb.set_ticks([i + 1 for i in idx], labels=[str(layers[i]) for i in idx])
    cb.minorticks_off()
    cb.set_label("Layer (depth)")
    return cb


def line_kind_handles(kinds: set[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    out = []
    if "nan" in kinds:
        out.append(Line2D([], [], color="#808080", linestyle=(0, (1, 2)), label="missing / NaN (gap)"))
    if "+inf" in kinds:
        out.append(
            Line2D(
                [],
                [],
                marker="^",
                color="none",
                markerfacecolor="#bbbbbb",
                markeredgecolor="black",
                label=KIND_LABELS["+inf"] + " (top edge)",
            )
        )
    if "-inf" in kinds:
        out.append(
            Line2D(
                [],
                [],
                marker="v",
                color="none",
                markerfacecolor="#bbbbbb",
                markeredgecolor="black",
                label=KIND_LABELS["-inf"] + " (bottom edge)",
            )
        )
    if "nonpos" in kinds:
        out.append(Line2D([], [], color="none", label=KIND_LABELS["nonpos"] + ": left out"))
    return out


def lines_figure(hm: Heatmap, options: RenderOptions | None = None, *, ax: Any = None, **kw: Any) -> Any:
    """The per-layer line figure of ``hm`` (not saved); with ``ax``, drawn into that axes."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    figsize = opts.figsize or ((8.0, 4.8) if opts.colorbar == "right" else (7.4, 5.4))
    own = ax is None
    if own:
        fig = new_figure(figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
        figsize = tuple(fig.get_size_inches())
    sm, kinds = draw_lines(ax, hm, opts)
    ttl = opts.title if opts.title is not None else default_title(hm)
    if ttl:
        ax.set_title(ttl)
    add_depth_colorbar(
        fig,
        sm,
        ax,
        list(hm.layers),
        opts.colorbar,
        length_in=figsize[1] - 1.2 if opts.colorbar == "right" else figsize[0] - 1.6,
    )
    handles = line_kind_handles(kinds)
    if handles:
        (fig if own else ax).legend(
            handles=handles,
            loc="outside lower center" if own else "best",
            ncols=len(handles),
            frameon=False,
            fontsize="small",
        )
    return fig


def plot_lines(
    hm: Heatmap, path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write the per-layer lines of ``hm`` to ``path`` (.png, .svg or .pdf)."""
    out = check_output_path(path)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    return save_figure(lines_figure(hm, opts.replace(kind="lines")), out, opts.dpi)
