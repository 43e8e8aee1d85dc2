"""The coord-check's two pictures, drawn from a :class:`~layerscope.store.coord.CoordData`.

- :func:`coord_heatmap`: one panel per step, layers across and widths down, the colour
  ``log2(stat / stat at the smallest width)``: white is flat (width-stable), red grows with the
  width, blue shrinks; the colour bar is symmetric about 0 and labelled in doublings.
- :func:`coord_lines`: microsoft/mup's own view: the statistic against the width on log-log axes,
  one panel per step, one line per layer coloured by depth (the mean over seeds).

>>> import numpy as np
>>> from layerscope.store.coord import CoordData
>>> d = CoordData(np.ones((1, 3, 2, 4)), widths=[32, 64, 128], seeds=[0], steps=[1, 2], layers=[1, 2, 3, 4])
>>> len(coord_heatmap(d).axes), len(coord_lines(d).axes)   # 2 panels + 1 colour bar; 2 panels + 1
(3, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..store.coord import CoordData
from .mpl import new_figure, save_figure
from .output import check_output_path
from .scale import DEPTH, DIVERGING, MISSING_GREY, depth_colors


def relative_log2(data: CoordData) -> np.ndarray:
    """(n_widths, n_steps, n_layers): ``log2`` of the seed-mean over its value at the smallest width."""
    mean = data.mean_over_seeds()
    with np.errstate(all="ignore"):
        rel = np.log2(mean / mean[:1])
    return np.where(np.isfinite(rel), rel, np.nan)


def _title(data: CoordData) -> str:
    return f"{data.metric} at {data.site}, run {data.run}" if data.run else f"{data.metric} at {data.site}"


def coord_heatmap(data: CoordData, path: str | os.PathLike[str] | None = None, dpi: int = 150) -> Any:
    """Layer x width maps, one per step, of ``log2(stat / stat at the smallest width)``.

    With ``path`` (.png/.svg/.pdf) the figure is written there and its path returned; else the
    matplotlib Figure.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    out = check_output_path(path) if path is not None else None
    rel = relative_log2(data)
    n_w, n_t, n_l = rel.shape
    lim = float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else 1.0
    lim = max(
        lim, 1.0
    )  # at least a factor of 2 each way: a flat check stays pale, its noise is not stretched
    fig = new_figure((min(3.0 + 2.6 * n_t, 16.0), 1.6 + 0.32 * n_w + 0.6))
    axes = fig.subplots(1, n_t, sharey=True, squeeze=False)[0]
    cmap = colormaps[DIVERGING].copy()
    cmap.set_bad(MISSING_GREY)
    norm = Normalize(-lim, lim)
    im = None
    for t, ax in enumerate(axes):
        im = ax.imshow(
            np.ma.masked_invalid(rel[:, t, :]), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
        )
        ax.set_title(f"step {data.steps[t]}" + (" (init)" if data.steps[t] == 1 else ""), fontsize=9)
        ax.set_xticks(range(n_l), [str(la) for la in data.layers], fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
        if n_l > 16:
            ax.xaxis.set_major_locator(_every(max(1, n_l // 8)))
    axes[0].set_yticks(range(n_w), [str(w) for w in data.widths], fontsize=7)
    axes[0].set_ylabel("width", fontsize=8)
    cb = fig.colorbar(im, ax=list(axes), location="right", fraction=0.04, pad=0.02)
    cb.set_label(
        f"log2({data.metric} / {data.metric} at width {data.widths[0]})\n0 = flat (width-stable)", fontsize=8
    )
    cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"Coordinate check: {_title(data)}", fontsize=10)
    if out is None:
        return fig
    return save_figure(fig, out, dpi)


def _every(n: int) -> Any:
    from matplotlib.ticker import MultipleLocator

    return MultipleLocator(n)


def coord_lines(data: CoordData, path: str | os.PathLike[str] | None = None, dpi: int = 150) -> Any:
    """mup's coord-check view: the statistic against the width (log-log), a panel per step,
    a line per layer coloured by depth (viridis: dark = shallow). Mean over seeds; with several
    seeds the band spans their smallest to largest value."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import NullLocator

    out = check_output_path(path) if path is not None else None
    mean = data.mean_over_seeds()
    vals = np.asarray(data.values, dtype=np.float64)
    n_w, n_t, n_l = mean.shape
    colors = depth_colors(n_l, DEPTH)
    w = np.asarray(data.widths, dtype=np.float64)
    fig = new_figure((min(2.0 + 2.8 * n_t, 16.0), 3.2))
    axes = fig.subplots(1, n_t, sharey=True, squeeze=False)[0]
    for t, ax in enumerate(axes):
        for j in range(n_l):
            y = mean[:, t, j]
            ok = np.isfinite(y) & (y > 0)
            ax.plot(w[ok], y[ok], "-o", color=colors[j], lw=1.2, ms=2.5)
            if vals.shape[0] > 1:
                with np.errstate(all="ignore"):
                    lo, hi = np.nanmin(vals[:, :, t, j], axis=0), np.nanmax(vals[:, :, t, j], axis=0)
                band = ok & np.isfinite(lo) & (lo > 0)
                ax.fill_between(w[band], lo[band], hi[band], color=colors[j], alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(w, [str(int(x)) for x in w], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())  # the widths are the ticks; y keeps its minor labels
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.set_xlabel("width", fontsize=8)
        ax.set_title(f"step {data.steps[t]}" + (" (init)" if data.steps[t] == 1 else ""), fontsize=9)
        ax.grid(True, which="major", alpha=0.3, lw=0.5)
    axes[0].set_ylabel(data.metric, fontsize=8)
    cmap = ListedColormap(colors)
    sm = ScalarMappable(norm=BoundaryNorm(np.arange(0.5, n_l + 1.5), n_l), cmap=cmap)
    cb = fig.colorbar(sm, ax=list(axes), location="right", fraction=0.04, pad=0.02)
    step = max(1, n_l // 8)
    cb.set_ticks(list(range(1, n_l + 1, step)))
    cb.set_label("layer (depth)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"Coordinate check: {_title(data)} (flat lines = width-stable)", fontsize=10)
    if out is None:
        return fig
    return save_figure(fig, out, dpi)


def write_coord_figures(data: CoordData, folder: str | os.PathLike[str], prefix: str = "coord") -> list[Path]:
    """Both pictures of ``data`` into ``folder``: ``{prefix}-heatmap.png`` and ``{prefix}-lines.png``."""
    folder = Path(folder)
    return [
        coord_heatmap(data, folder / f"{prefix}-heatmap.png"),
        coord_lines(data, folder / f"{prefix}-lines.png"),
    ]
