"""Histograms over training: for one layer, value bins across and steps down, colour = the count
on a log scale (fastai's ``color_dim``, TensorBoard's histogram dashboard turned into a map); for
several layers, one such panel each (small multiples) on one shared colour scale.

The bins are the run's fixed edges (by default 0 and +-10^(k/4), 1e-6..1e6), drawn at equal
width, so the default edges read as a symmetric log axis. Only the bins some shown layer uses are
drawn. A bin with no value at a step is drawn in the darkest colour; the ticks name bin edges.

>>> import numpy as np
>>> from layerscope.store.histogram import Histograms
>>> edges = [-1.0, -0.1, 0.0, 0.1, 1.0]
>>> c = np.zeros((3, 2, 6)); c[:, :, 3] = 50; c[2, 1, 5] = 1
>>> fig = hist_figure(Histograms(c, steps=[10, 20, 30], layers=[1, 2], edges=edges))
>>> [ax.get_title() for ax in fig.axes if ax.get_label() == "panel"]
['layer 1', 'layer 2']
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_value
from ..errors import ConfigError
from ..store.histogram import Histograms
from .labels import layer_text, row_axis, site_suffix, spread_rows, tick_positions
from .mpl import label_budget, new_figure, save_figure
from .options import RenderOptions
from .output import check_output_path
from .reduce import reduce_counts
from .scale import COUNTS

MAX_PANELS = 12  # layers drawn when none are named and there are more than 16


def default_layers(layers: Sequence[int], k: int = MAX_PANELS) -> list[int]:
    """Every layer when there are at most 16; else ``k`` spread evenly (first and last included).

    >>> default_layers(range(1, 13))[-1], default_layers(range(1, 97))
    (12, [1, 10, 18, 27, 36, 44, 53, 61, 70, 79, 87, 96])
    """
    layers = [int(x) for x in layers]
    if len(layers) <= 16:
        return layers
    return [layers[i] for i in np.linspace(0, len(layers) - 1, k).round().astype(int)]


def choose_layers(h: Histograms, layers: Sequence[int] | None) -> Histograms:
    """``h`` cut to ``layers`` (default: :func:`default_layers`); an unknown layer names the range."""
    return h.select(default_layers(h.layers) if layers is None else list(layers))


def bin_window(h: Histograms) -> tuple[int, int]:
    """The bins to draw: those any shown layer uses at any step, with one empty bin of margin."""
    lo, hi = h.occupied()
    if hi <= lo:
        raise ConfigError(
            f"the histograms of run {h.run!r} at site {h.site!r} hold no counts (every value was "
            "non-finite, or nothing was recorded); check the nonfinite_frac metric."
        )
    return max(0, lo - 1), min(h.n_bins, hi + 1)


def edge_label(e: float) -> str:
    """A bin edge as a tick label: ``0``, ``0.01``, ``-1``, ``1e-6``, ``1e4``.

    >>> [edge_label(x) for x in (0.0, 0.01, -1.0, 1e-6, 10000.0, 0.0316)]
    ['0', '0.01', '-1', '1e-6', '1e4', '0.032']
    """
    if e == 0:
        return "0"
    p = math.log10(abs(e))
    if abs(p - round(p)) < 1e-9 and abs(round(p)) >= 4:
        return ("-" if e < 0 else "") + f"1e{round(p)}"
    return format_value(e, 2)


def _decade(e: float) -> int | None:
    """``n`` when ``e`` is +-10^n, else None."""
    if e == 0:
        return None
    p = math.log10(abs(e))
    return round(p) if abs(p - round(p)) < 1e-9 else None


def edge_ticks(
    edges: Sequence[float] | np.ndarray, lo: int, hi: int, max_ticks: int
) -> tuple[list[float], list[str]]:
    """Tick positions (in bin units: edge ``k`` sits at ``k + 1``) and labels for bins ``lo..hi``.

    On log-spaced edges (the default) the ticks are 0 and +-10^n at every m-th decade, symmetric
    about 0 (``-1, -0.001, 0, 0.001, 1``); on other edges, evenly spread edges.

    >>> from layerscope.stats.functional import default_hist_edges
    >>> edge_ticks(default_hist_edges(), 20, 80, 5)[1]
    ['-1', '-0.001', '0', '0.001', '1']
    """
    e = np.asarray(edges, dtype=np.float64)
    inside = [k for k in range(len(e)) if lo <= k + 1 <= hi]
    if not inside:
        return [], []
    decades = {k: d for k in inside if (d := _decade(float(e[k]))) is not None}
    zero = [k for k in inside if e[k] == 0]
    if len(decades) >= 2:
        # Around 0 the decades are one bin apart (1e-6, 0, 1e-6): keep the ticks at least a
        # fraction of the axis apart, 0 and the large decades first.
        gap = (hi - lo) / (2.0 * max_ticks)
        for stride in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20):
            cand = zero + sorted(
                (k for k, d in decades.items() if d % stride == 0), key=lambda k: -abs(decades[k])
            )
            picked: list[int] = []
            for k in cand:
                if all(abs(k - q) >= gap for q in picked):
                    picked.append(k)
            picked.sort()
            if len(picked) <= max_ticks:
                break
    else:
        picked = [inside[i] for i in tick_positions(len(inside), max_ticks)]
    return [float(k + 1) for k in picked], [edge_label(float(e[k])) for k in picked]


def count_norm(h: Histograms) -> Any:
    """One log colour scale for every shown panel: from the smallest non-zero count to the largest."""
    from matplotlib.colors import LogNorm

    pos = h.counts[h.counts > 0]
    lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (1.0, 10.0)
    return LogNorm(lo, hi if hi > lo else lo * 10)


def draw_hist(
    ax: Any,
    h: Histograms,
    layer: int,
    window: tuple[int, int],
    norm: Any,
    opts: RenderOptions,
    *,
    axes_size: tuple[float, float],
    xlabel: bool = True,
    ylabel: bool = True,
) -> Any:
    """One layer's bins x steps into ``ax``; returns the mappable (for the shared colour bar)."""
    from matplotlib import colormaps

    lo, hi = window
    counts = h.layer(layer)[:, lo:hi]
    n_x, n_y = label_budget(*axes_size)
    rows = row_axis(h.steps, opts.true_steps, n_y)
    cm = colormaps[opts.cmap or COUNTS]
    cm = cm.with_extremes(bad=cm(0.0), under=cm(0.0))  # no value in a bin: the darkest colour
    if rows.uniform and len(h.steps):
        px_rows = max(1, int(axes_size[1] * opts.dpi * 0.95))
        shown, _, _ = reduce_counts(counts, px_rows)
        im = ax.imshow(
            np.ma.masked_less_equal(shown, 0),
            cmap=cm,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
            origin="upper",
            extent=(lo, hi, rows.edges[-1], rows.edges[0]),
        )
    else:
        im = ax.pcolormesh(
            np.arange(lo, hi + 1), rows.edges, np.ma.masked_less_equal(counts, 0), cmap=cm, norm=norm,
            shading="flat", rasterized=True,
        )  # fmt: skip
        ax.set_ylim(rows.edges[-1], rows.edges[0])
        ax.set_xlim(lo, hi)
    ax.set_facecolor(cm(0.0))
    xt, xl = edge_ticks(h.edges, lo, hi, max(3, min(7, n_x // 2)))
    ax.set_xticks(xt, xl)
    ax.set_yticks(rows.ticks, rows.labels if ylabel else [""] * len(rows.ticks))
    ax.tick_params(length=3, labelsize="small")
    if xlabel:
        ax.set_xlabel("Value (bin edges)")
    if ylabel:
        ax.set_ylabel("Steps")
    return im


def hist_title(h: Histograms) -> str:
    """``hist (mlp_act) over training — run demo``."""
    return f"Histograms{site_suffix(h.site)} over training" + (f" \u2014 run {h.run}" if h.run else "")


def hist_figure(h: Histograms, options: RenderOptions | None = None, **kw: Any) -> Any:
    """Small multiples of ``h``: one bins x steps panel per layer (``options.layers``), one colour bar."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    shown = choose_layers(h, opts.layers)
    window = bin_window(shown)
    norm = count_norm(shown)
    n = len(shown.layers)
    ncols = max(1, min(int(opts.ncols or (1 if n == 1 else (2 if n <= 4 else (3 if n <= 9 else 4)))), n))
    nrows = math.ceil(n / ncols)
    pw, ph = (6.4, 4.6) if n == 1 else (3.4, 2.7)
    figsize = opts.figsize or (min(24.0, ncols * pw + 1.2), min(30.0, nrows * ph + 0.9))
    fig = new_figure(figsize)
    axes = [fig.add_subplot(nrows, ncols, k + 1, label="panel") for k in range(n)]
    cell = (figsize[0] / ncols - 0.9, figsize[1] / nrows - 0.9)
    im = None
    for k, (ax, layer, name) in enumerate(zip(axes, shown.layers, shown.layer_names)):
        row, col = divmod(k, ncols)
        below_empty = (row + 1) * ncols + col >= n
        im = draw_hist(
            ax, shown, layer, window, norm, opts, axes_size=cell, xlabel=below_empty, ylabel=col == 0
        )
        ax.set_title(layer_text(layer, name), fontsize="medium")
    if im is not None:
        cb = fig.colorbar(
            im, ax=axes, location="right", fraction=0.04, pad=0.02, aspect=max(12.0, figsize[1] / 0.17)
        )
        cb.set_label(opts.label or "values in the bin (count, log scale)")
    ttl = opts.title if opts.title is not None else hist_title(h)
    if ttl:
        fig.suptitle(ttl)
    return fig


def plot_hist(
    h: Histograms, path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write the histogram view of ``h`` to ``path`` (.png, .svg or .pdf)."""
    out = check_output_path(path)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    return save_figure(hist_figure(h, opts), out, opts.dpi)


__all__ = ["default_layers", "edge_ticks", "hist_figure", "plot_hist", "spread_rows"]
