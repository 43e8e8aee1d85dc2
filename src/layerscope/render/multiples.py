"""Small multiples: several metrics and/or sites of a run in one figure, on a grid.

Rows are metrics and columns sites when both vary; otherwise panels fill rows of up to three.
Colour scales are shared (one colour bar) or independent (one per panel); by default they are
shared exactly when every panel shows the same metric, since e.g. rms and kurtosis have no common
unit. ``kind="lines"`` draws per-layer line panels with one depth colour bar instead.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> hms = [Heatmap(np.random.rand(4, 3), steps=[1, 2, 3, 4], layers=[1, 2, 3], metric=m)
...        for m in ("rms", "std")]
>>> fig = multiples_figure(hms)
>>> [ax.get_title() for ax in fig.axes if ax.get_label() == "panel"]
['rms', 'std']
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store.heatmap import Heatmap
from .alerts import alert_counts, draw_alerts
from .labels import _unique, default_suptitle, metric_label, panel_title, shared_label
from .lines import add_depth_colorbar, draw_lines, line_kind_handles
from .mpl import add_colorbar, add_kind_legend, new_figure, save_figure
from .options import RenderOptions
from .output import check_output_path
from .scale import cell_kinds, color_scale, finite_values, shared_default
from .static import draw_heatmap


def grid_shape(hms: Sequence[Heatmap], ncols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for the panels: one column per site when metrics and sites both vary."""
    n = len(hms)
    if ncols is None:
        metrics, sites = _unique([h.metric for h in hms]), _unique([h.site for h in hms])
        if len(metrics) > 1 and len(sites) > 1 and len(metrics) * len(sites) == n:
            ncols = len(sites)
        else:
            ncols = n if n <= 3 else (2 if n == 4 else 3)
    ncols = max(1, min(int(ncols), n))
    return math.ceil(n / ncols), ncols


def multiples_figure(hms: Sequence[Heatmap], options: RenderOptions | None = None, **kw: Any) -> Any:
    """One figure with a panel per heatmap (heatmaps or per-layer lines, per ``kind``)."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = list(hms)
    if not hms:
        raise ConfigError("no heatmaps to draw; pass at least one.")
    nrows, ncols = grid_shape(hms, opts.ncols)
    shared = shared_default(hms, opts)
    n_steps = max(h.values.shape[0] for h in hms)
    n_layers = max(h.values.shape[1] for h in hms)
    lines = opts.kind == "lines"
    right = opts.colorbar == "right"
    per_panel_bar = not shared and not lines
    pw = float(np.clip(2.4 + 0.1 * n_layers, 3.6, 6.5)) + (0.9 if per_panel_bar and right else 0.0)
    ph = float(np.clip(1.9 + 0.17 * min(n_steps, 30), 3.0, 5.0)) + (
        0.7 if per_panel_bar and not right else 0.0
    )
    if lines:
        pw, ph = 4.6, 3.2
    figsize = opts.figsize or (
        min(24.0, ncols * pw + (1.1 if right and not per_panel_bar else 0.3)),
        min(30.0, nrows * ph + 0.7 + (0.8 if not right and not per_panel_bar else 0.0)),
    )
    fig = new_figure(figsize)
    axes = [fig.add_subplot(nrows, ncols, k + 1, label="panel") for k in range(len(hms))]
    cell_w = figsize[0] / ncols - (1.6 if per_panel_bar and right else 0.8)
    cell_h = figsize[1] / nrows - (1.4 if per_panel_bar and not right else 0.8)
    kinds: set[str] = set()
    if lines:
        _draw_line_panels(fig, axes, hms, opts, shared, nrows, ncols)
        kinds = set().union(*(cell_kinds(h.values, opts.scale) for h in hms))
    else:
        shared_cs = (
            color_scale([h.values for h in hms], opts, what="the panels", metric=hms[0].metric)
            if shared
            else None
        )
        mappable = None
        marks: dict[str, Any] = {}  # marker -> legend handle
        counts = [0, 0]  # alerts of the panels' own metrics, of other metrics at their sites
        for k, (ax, hm) in enumerate(zip(axes, hms)):
            cs = shared_cs or color_scale(
                [hm.values], opts, what=f"{hm.metric!r} ({hm.site})", metric=hm.metric
            )
            row, col = divmod(k, ncols)
            below_empty = (row + 1) * ncols + col >= len(hms)
            mappable, drawn = draw_heatmap(
                ax, hm, cs, opts, axes_size=(cell_w, cell_h), xlabel=below_empty, ylabel=col == 0
            )
            kinds |= drawn
            if opts.alerts:
                for h in draw_alerts(ax, hm, opts.true_steps, (cell_w, cell_h)):
                    marks.setdefault(h.get_marker(), h)
                n_mine, n_other = alert_counts(hm)
                counts[0] += n_mine
                counts[1] += n_other
            ax.set_title(panel_title(hm, hms), fontsize="medium")
            if not shared:
                # The panel's title already names what its bar measures; a side label on a bar
                # between two panels would sit on the next panel's step labels. Only a label the
                # caller asked for is written, above the bar.
                add_colorbar(
                    fig,
                    mappable,
                    ax,
                    cs,
                    opts.label or "",
                    opts.colorbar,
                    length_in=cell_h if right else cell_w,
                    label_on_top=ncols > 1,
                )
        if shared_cs is not None and mappable is not None:
            label = opts.label or shared_label(hms)
            add_colorbar(
                fig,
                mappable,
                axes,
                shared_cs,
                label,
                opts.colorbar,
                length_in=figsize[1] - 1.0 if right else figsize[0] - 1.2,
            )
        # One legend entry per kind of marker, counting the alerts of every panel.
        if "o" in marks:
            marks["o"].set_label(f"watch alert ({counts[0]})")
        if "^" in marks:
            marks["^"].set_label(f"other alerts at the panel's site ({counts[1]})")
        add_kind_legend(fig, sorted(kinds), [marks[k] for k in ("o", "^") if k in marks])
    ttl = opts.title if opts.title is not None else default_suptitle(hms)
    if ttl:
        fig.suptitle(ttl)
    return fig


def _draw_line_panels(
    fig: Any, axes: list[Any], hms: list[Heatmap], opts: RenderOptions, shared: bool, nrows: int, ncols: int
) -> None:
    ylim = None
    if shared and opts.scale == "linear" and (opts.vmin is None or opts.vmax is None):
        f = finite_values([h.values for h in hms])
        if f.size:
            pad = (f.max() - f.min()) * 0.05 or abs(f.max()) * 0.05 or 1.0
            ylim = (
                opts.vmin if opts.vmin is not None else f.min() - pad,
                opts.vmax if opts.vmax is not None else f.max() + pad,
            )
    sms = []
    kinds: set[str] = set()
    for k, (ax, hm) in enumerate(zip(axes, hms)):
        row, col = divmod(k, ncols)
        below_empty = (row + 1) * ncols + col >= len(hms)
        sm, drawn = draw_lines(
            ax,
            hm,
            opts.replace(label=opts.label or metric_label(hm)),
            xlabel=below_empty,
            ylabel=True,
            ylim=ylim,
        )
        sms.append(sm)
        kinds |= drawn
        ax.set_title(panel_title(hm, hms), fontsize="medium")
    if len(_unique([",".join(map(str, h.layers)) for h in hms])) == 1:
        full = fig.get_size_inches()
        add_depth_colorbar(
            fig,
            sms[0],
            axes,
            list(hms[0].layers),
            opts.colorbar,
            length_in=full[1] - 1.0 if opts.colorbar == "right" else full[0] - 1.2,
        )
    else:  # different layer sets: each panel keeps its own depth key
        for ax, sm, hm in zip(axes, sms, hms):
            add_depth_colorbar(fig, sm, ax, list(hm.layers), opts.colorbar)
    handles = line_kind_handles(kinds)
    if handles:
        fig.legend(
            handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize="small"
        )


def plot_multiples(
    hms: Sequence[Heatmap], path: str | os.PathLike[str], options: RenderOptions | None = None, **kw: Any
) -> Path:
    """Write the small-multiples figure of ``hms`` to ``path`` (.png, .svg or .pdf)."""
    out = check_output_path(path)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    return save_figure(multiples_figure(hms, opts), out, opts.dpi)
