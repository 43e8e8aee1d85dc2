"""The profile: a metric against depth at a few steps, one line per step, coloured by step
(dark = early, light = late). Where the heatmap shows everything, the profile answers "how does
the value change from the first layer to the last, and how did that shape move during training".

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> hm = Heatmap(np.outer(np.arange(1, 11), np.arange(1, 5)), steps=range(100, 1100, 100), layers=range(1, 5))
>>> [hm.steps[r] for r in profile_rows(hm, None)]
[100, 300, 500, 600, 800, 1000]
>>> fig = profile_figure(hm, at_steps=(100, 1000))
>>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
['step 100', 'step 1000']
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_step, step_label
from ..errors import ConfigError
from ..store.heatmap import Heatmap
from .labels import layer_ticks, metric_label, site_suffix, spread_rows
from .mpl import new_figure, save_figure
from .options import RenderOptions
from .output import check_output_path
from .scale import auto_linthresh, finite_values, ordered_colors

DEFAULT_STEPS = 6  # profiles drawn when no step is named: enough to see a trend, few enough to tell apart
LEGEND_MAX = 10  # more lines than this get a step colour bar instead of a legend


def profile_rows(hm: Heatmap, at_steps: Sequence[int] | None, k: int = DEFAULT_STEPS) -> list[int]:
    """The rows of ``hm`` a profile draws: those of ``at_steps`` (each must have been recorded), or
    ``k`` spread over the run (first and last included, each moved to a round step nearby)."""
    if at_steps is None:
        return spread_rows(hm.steps, k)
    rows = []
    for s in at_steps:
        try:
            rows.append(list(hm.steps).index(int(s)))
        except ValueError:
            raise ConfigError(_not_recorded(hm, int(s))) from None
    return sorted(set(rows))


def _not_recorded(hm: Heatmap, step: int) -> str:
    steps = list(hm.steps)
    if not steps:
        return f"step {step} was not recorded: run {hm.run!r} has no recorded steps."
    i = bisect.bisect_left(steps, step)
    near = sorted({steps[j] for j in (i - 1, i) if 0 <= j < len(steps)})
    return (
        f"step {format_step(step)} was not recorded in run {hm.run!r}; the nearest recorded "
        f"{'step is' if len(near) == 1 else 'steps are'} {' and '.join(map(format_step, near))} "
        f"(recorded: {len(steps)} steps, {format_step(steps[0])}..{format_step(steps[-1])}); pass those."
    )


def profile_title(hm: Heatmap) -> str:
    """``rms across depth at 6 steps — run demo``."""
    head = f"{hm.metric}{site_suffix(hm.site)} across depth"
    return head + (f" \u2014 run {hm.run}" if hm.run else "")


def draw_profile(ax: Any, hm: Heatmap, opts: RenderOptions, rows: Sequence[int]) -> list[Any]:
    """One line per row of ``rows`` (value against layer) into ``ax``; returns the line handles."""
    vals = np.asarray(hm.values, dtype=np.float64)
    x = np.asarray(hm.layers, dtype=np.float64)
    colors = ordered_colors(len(rows), opts.cmap or "plasma")
    handles = []
    for c, r in zip(colors, rows):
        y = np.where(np.isfinite(vals[r]), vals[r], np.nan)
        if opts.scale == "log":
            y = np.where(y > 0, y, np.nan)
        (line,) = ax.plot(
            x, y, color=c, linewidth=1.6, marker="o" if len(x) <= 24 else None, markersize=3,
            label=f"step {format_step(hm.steps[r])}", gid="profile-line",
        )  # fmt: skip
        handles.append(line)
    if opts.scale == "log":
        ax.set_yscale("log")
    elif opts.scale == "symlog":
        ax.set_yscale("symlog", linthresh=opts.linthresh or auto_linthresh(finite_values([vals])))
    if opts.vmin is not None or opts.vmax is not None:
        ax.set_ylim(opts.vmin, opts.vmax)
    xt, xl = layer_ticks(hm.layers, 16)
    ax.set_xticks([hm.layers[int(t) - 1] for t in xt], xl)
    if len(x):
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
    ax.grid(True, color="#e6e6e6", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("Layer")
    ax.set_ylabel(opts.label or metric_label(hm))
    return handles


def profile_figure(hm: Heatmap, options: RenderOptions | None = None, *, ax: Any = None, **kw: Any) -> Any:
    """The profile figure of ``hm`` at ``at_steps`` (default: 6 spread steps); with ``ax``, drawn into it."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    rows = profile_rows(hm, opts.at_steps)
    own = ax is None
    if own:
        fig = new_figure(opts.figsize or (7.6, 4.6))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    handles = draw_profile(ax, hm, opts, rows)
    ttl = opts.title if opts.title is not None else profile_title(hm)
    if ttl:
        ax.set_title(ttl)
    if len(rows) <= LEGEND_MAX:
        ax.legend(handles=handles, fontsize="small", frameon=False, loc="best", title=None)
    else:
        _step_colorbar(fig, ax, hm, rows, opts)
    return fig


def _step_colorbar(fig: Any, ax: Any, hm: Heatmap, rows: Sequence[int], opts: RenderOptions) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colors = ordered_colors(len(rows), opts.cmap or "plasma")
    sm = ScalarMappable(
        norm=BoundaryNorm(np.arange(len(rows) + 1) - 0.5, len(rows)), cmap=ListedColormap(colors)
    )
    cb = fig.colorbar(sm, ax=ax, location="right", fraction=0.05, pad=0.02)
    idx = spread_rows([hm.steps[r] for r in rows], 8)
    cb.set_ticks(idx, labels=[step_label(hm.steps[rows[i]]) for i in idx])
    cb.minorticks_off()
    cb.set_label("Step")


def plot_profile(
    hm: Heatmap, path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write the profile of ``hm`` to ``path`` (.png, .svg or .pdf)."""
    out = check_output_path(path)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    return save_figure(profile_figure(hm, opts), out, opts.dpi)
