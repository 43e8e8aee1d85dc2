"""Interactive HTML (plotly): one self-contained page that works offline.

plotly.js is embedded inline (never a CDN) or, with ``plotly="directory"``, written once beside
the page as ``plotly.min.js`` and shared by every page in that folder; either way the page draws
with networking off. Hovering a cell shows the layer, its name, the step and the exact value
(Python's shortest round-trip text of the float64, so it can be copied back into code);
missing/NaN cells read "missing / NaN" and infinite ones "+inf"/"-inf". Several heatmaps get a
metric/site switcher (a dropdown).

A map with more steps than the plot has pixel rows is reduced (:mod:`.reduce`): each row of
the overview is a block of steps showing its most extreme value, so a one-step spike stays
visible, and the hover names the exact step it came from. Zooming in redraws the visible steps
from the full matrix embedded in the page; below the map, the profile (value against depth) at
a step follows the hover and a step slider (:mod:`.html_views`).

Every user-supplied string is escaped (:func:`~layerscope.render._plotly.esc`).

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> fig = heatmap_figure([Heatmap(np.array([[0.1, np.nan]]), steps=[5], layers=[1, 2])])
>>> fig["data"][0]["customdata"]
[['0.1', 'missing / NaN']]
"""

from __future__ import annotations

import html as _html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_value, step_label
from .._io import write_text_atomic
from ..store.heatmap import Heatmap
from ._plotly import (
    PLOT_HEIGHT,
    base_layout,
    colorbar_dict,
    colorscale,
    esc,
    layer_labels,
    max_rows,
    switcher_menu,
    value_texts,
)
from .alerts import alert_cells, cell_text, legend_labels, split_cells
from .html_views import link_data, profile_figure
from .labels import default_title, is_even, metric_label, nice_ticks, row_axis, step_edges
from .options import MAX_ANNOTATE, RenderOptions
from .output import HTML_FORMATS, check_output_path
from .page import figure_div, page, plotly_assets
from .reduce import Reduced, reduce_rows
from .scale import (
    DEPTH,
    KIND_LABELS,
    MISSING_GREY,
    ColorScale,
    auto_linthresh,
    cell_kinds,
    color_scale,
    depth_colors,
    finite_values,
    rgb_text,
    shared_default,
    symlog,
)

__all__ = ["esc", "heatmap_figure", "lines_figure", "value_texts", "write_html"]


def step_tick_dict(steps: Sequence[int], max_ticks: int = 8) -> dict[str, Any]:
    """Axis ticks for a numeric step axis: round integer steps (never 2.5), short labels."""
    if not len(steps):
        return {}
    ticks = list(steps) if len(steps) <= max_ticks else nice_ticks(steps[0], steps[-1], max_ticks)
    return {"tickvals": [int(t) for t in ticks], "ticktext": [step_label(t) for t in ticks]}


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------


def _rows(hm: Heatmap, red: Reduced, numeric_y: bool) -> list[Any]:
    """The y of each shown row: its step (a block's centre when reduced), or a category label."""
    steps = np.asarray(hm.steps, dtype=np.int64)
    if numeric_y:
        if not red.reduced:
            return [int(s) for s in steps]
        return [float((steps[a] + steps[b - 1]) / 2) for a, b in zip(red.starts, red.stops)]
    return [str(int(steps[a])) for a in red.starts]


def _heatmap_panel(
    hm: Heatmap, opts: RenderOptions, cs: ColorScale, visible: bool
) -> tuple[list[dict[str, Any]], dict[str, Any], Reduced]:
    """Traces (heatmap, infinity marks, legend keys), axis layout and the reduction of one heatmap."""
    vals = np.asarray(hm.values, dtype=np.float64)
    n_steps, n_layers = vals.shape
    xcats = layer_labels(hm)
    numeric_y = opts.true_steps or is_even(hm.steps)
    red = reduce_rows(vals, max_rows(opts))
    y = _rows(hm, red, numeric_y)
    label = opts.label or metric_label(hm)
    if red.reduced:  # each cell names the step its value came from
        steps = np.asarray(hm.steps, dtype=np.int64)
        ystep = "%{text}"
    else:
        ystep = "%{y:d}" if numeric_y else "%{y}"
    hover = f"layer %{{x}}<br>step {ystep}<br>{esc(label)} = %{{customdata}}<extra></extra>"
    trace: dict[str, Any] = {
        "type": "heatmap",
        "name": esc(label),
        "x": xcats,
        "y": y,
        "z": cs.transform(red.values),
        "customdata": value_texts(red.values),
        "hovertemplate": hover,
        "hoverongaps": True,
        "colorscale": colorscale(cs.cmap),
        "zmin": float(cs.transform(np.array([cs.lo]))[0]),
        "zmax": float(cs.transform(np.array([cs.hi]))[0]),
        "colorbar": colorbar_dict(cs, label, opts.colorbar),
        "visible": visible,
        "xgap": 0,
        "ygap": 0,
    }
    if red.reduced:
        trace["text"] = steps[red.src].astype(str).tolist()
    if cs.center is not None and cs.kind == "linear":
        trace["zmid"] = cs.center
    if opts.annotate and n_steps <= MAX_ANNOTATE and n_layers <= MAX_ANNOTATE:
        trace["text"] = [[format_value(v, 3) if np.isfinite(v) else "" for v in row] for row in vals]
        trace["texttemplate"] = "%{text}"
    traces = [trace]
    kinds = cell_kinds(vals, cs.kind)
    block_of = np.repeat(np.arange(len(red.starts)), red.stops - red.starts)  # full row -> shown row
    marks = {"+inf": "triangle-up", "-inf": "triangle-down", "nonpos": "circle-open"}
    for kind, symbol in marks.items():
        if kind in kinds:
            ii, jj = np.nonzero(kinds[kind])
            ys = [int(hm.steps[int(i)]) for i in ii] if numeric_y else [y[int(block_of[i])] for i in ii]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": [xcats[j] for j in jj],
                    "y": ys,
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "marker": {"symbol": symbol, "color": "#202020", "size": 9 if n_steps <= 60 else 6},
                    "visible": visible,
                    "name": esc(KIND_LABELS[kind]),
                }
            )
    if opts.alerts:
        traces += alert_traces(
            hm,
            xcats,
            ys_of=lambda i: int(hm.steps[i]) if numeric_y else y[int(block_of[i])],
            visible=visible,
            big=n_steps <= 60,
        )
    for kind in KIND_LABELS:
        if kind in kinds:
            sym = {"nan": "square", **marks}[kind]
            color = MISSING_GREY if kind == "nan" else "#202020"
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": [None],
                    "y": [None],
                    "showlegend": True,
                    "name": esc(KIND_LABELS[kind]),
                    "hoverinfo": "skip",
                    "visible": visible,
                    "marker": {"symbol": sym, "size": 12, "color": color},
                }
            )
    n_x = min(24, n_layers)
    if n_layers <= n_x:
        xt = list(range(n_layers))
    else:
        xt = (
            [int(t) - int(hm.layers[0]) for t in nice_ticks(hm.layers[0], hm.layers[-1], n_x)]
            if list(hm.layers) == list(range(hm.layers[0], hm.layers[0] + n_layers))
            else np.linspace(0, n_layers - 1, n_x).round().astype(int).tolist()
        )
    xaxis = {
        "type": "category",
        "title": {"text": "Layer"},
        "tickvals": [xcats[j] for j in xt],
        "ticktext": [esc(hm.layers[j]) for j in xt],
        "showgrid": False,
        "zeroline": False,
        "range": [-0.5, n_layers - 0.5],
        "tickangle": 0,
    }
    height = opts.figsize[1] * 100 if opts.figsize else PLOT_HEIGHT
    n_y = int(np.clip((height - 80 - (175 if opts.colorbar == "bottom" else 105)) // 26, 3, 20))
    yaxis: dict[str, Any]
    if numeric_y:
        ticks = [int(s) for s in hm.steps] if n_steps <= n_y else nice_ticks(hm.steps[0], hm.steps[-1], n_y)
        yaxis = {
            "type": "linear",
            "title": {"text": "Steps"},
            "tickvals": ticks,
            "ticktext": [step_label(t) for t in ticks],
            "autorange": "reversed",
            "showgrid": False,
            "zeroline": False,
        }
    else:
        rows = row_axis([hm.steps[int(a)] for a in red.starts], False, n_y)
        yaxis = {
            "type": "category",
            "title": {"text": "Steps"},
            "tickvals": [y[int(r)] for r in rows.ticks],
            "ticktext": rows.labels,
            "autorange": "reversed",
            "showgrid": False,
        }
    if any(str(t.get("meta", "")).startswith("watch-alerts") for t in traces) and len(y):
        # Plotly pads an autoranged axis for the markers' size: a marker on the first or last row
        # would open a grey band beyond the map. A fixed range (the rows' outer edges) keeps it flush.
        if numeric_y:
            edges = step_edges(y)  # block centres may be fractional steps; step_edges takes them
            yaxis.update({"autorange": False, "range": [float(edges[-1]), float(edges[0])]})
        else:
            yaxis.update({"autorange": False, "range": [len(y) - 0.5, -0.5]})
    return traces, {"xaxis": xaxis, "yaxis": yaxis}, red


def alert_traces(
    hm: Heatmap, xcats: list[str], ys_of: Callable[[int], Any], visible: bool, big: bool
) -> list[dict[str, Any]]:
    """Scatter traces marking the cells of the run's alerts at this site (:mod:`.alerts`): an open
    circle (black in a white halo) per cell of this metric's alerts, a small open triangle for other
    metrics'; the hover lists each alert's step, layer, head, metric, value and rule, escaped."""
    cells = alert_cells(hm)
    out: list[dict[str, Any]] = []
    first, second = legend_labels(hm, cells)
    for group, label, symbol, size in (
        (split_cells(cells)[0], first, "circle-open", 15 if big else 12),
        (split_cells(cells)[1], second, "triangle-up-open", 10 if big else 8),
    ):
        if not group:
            continue
        x = [xcats[c.col] for c in group]
        ys = [ys_of(c.row) for c in group]
        text = ["<br>".join(esc(t) for t in cell_text(hm, c)) for c in group]
        common = {"type": "scatter", "mode": "markers", "x": x, "y": ys, "visible": visible}
        out.append(
            {
                **common,
                "hoverinfo": "skip",
                "showlegend": False,
                "name": "alert halo",
                "marker": {"symbol": symbol, "size": size, "color": "white", "line": {"width": 4.5}},
            }
        )
        out.append(
            {
                **common,
                "name": esc(label),
                "meta": "watch-alerts" if symbol == "circle-open" else "watch-alerts-other",
                "showlegend": True,
                "text": text,
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"symbol": symbol, "size": size, "color": "black", "line": {"width": 1.8}},
            }
        )
    return out


def _title(hm: Heatmap, opts: RenderOptions) -> str:
    return esc(opts.title if opts.title is not None else default_title(hm))


def heatmap_figure(hms: Sequence[Heatmap], options: RenderOptions | None = None, **kw: Any) -> dict[str, Any]:
    """A plotly figure (as a dict) of one or several heatmaps, with a switcher for several.

    ``fig["meta"]["layerscope"]`` says, per heatmap, which trace draws it and how it was reduced:
    what the page's script needs to redraw the steps of a zoom from the full matrix.
    """
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = list(hms)
    shared = len(hms) > 1 and shared_default(hms, opts)
    shared_cs = color_scale([h.values for h in hms], opts, "the heatmaps", hms[0].metric) if shared else None
    data: list[dict[str, Any]] = []
    panels = []
    reductions = []
    for k, hm in enumerate(hms):
        cs = shared_cs or color_scale([hm.values], opts, f"{hm.metric!r} ({hm.site})", hm.metric)
        traces, axes, red = _heatmap_panel(hm, opts, cs, visible=k == 0)
        reductions.append(
            {"trace": len(data), "factor": red.factor, "scale": cs.kind, "linthresh": cs.linthresh}
        )
        panels.append((len(data), len(traces), axes, _title(hm, opts)))
        data += traces
    layout = base_layout(opts, panels[0][3], bg=MISSING_GREY, switcher=len(hms) > 1)
    layout.update(panels[0][2])
    if len(hms) > 1:
        layout["updatemenus"] = [switcher_menu(hms, panels, len(data))]
    return {"data": data, "layout": layout, "meta": {"layerscope": reductions}}


# --------------------------------------------------------------------------------------------
# Per-layer lines
# --------------------------------------------------------------------------------------------


def lines_figure(hms: Sequence[Heatmap], options: RenderOptions | None = None, **kw: Any) -> dict[str, Any]:
    """A plotly figure (as a dict): value against step, one line per layer coloured by depth."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = list(hms)
    data: list[dict[str, Any]] = []
    panels = []
    for k, hm in enumerate(hms):
        vals = np.asarray(hm.values, dtype=np.float64)
        n_layers = vals.shape[1]
        colors = depth_colors(n_layers, opts.cmap or DEPTH)
        texts = np.array(value_texts(vals), dtype=object)
        label = opts.label or metric_label(hm)
        y = np.where(np.isfinite(vals), vals, np.nan)
        lt = None
        if opts.scale == "log":
            y = np.where(y > 0, y, np.nan)
        elif opts.scale == "symlog":
            lt = opts.linthresh or auto_linthresh(finite_values([vals]))
            y = symlog(y, lt)
        start = len(data)
        names = layer_labels(hm)
        for j in range(n_layers):
            rgb = rgb_text(colors[j])
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if len(hm.steps) <= 40 else "lines",
                    "x": [int(s) for s in hm.steps],
                    "y": y[:, j],
                    "customdata": texts[:, j].tolist(),
                    "name": f"layer {names[j]}",
                    "line": {"color": rgb, "width": 1.6 if n_layers <= 16 else 1.0},
                    "marker": {"size": 4},
                    "showlegend": False,
                    "visible": k == 0,
                    "connectgaps": False,
                    "hovertemplate": (
                        f"layer {names[j]}<br>step %{{x:d}}<br>{esc(label)} = %{{customdata}}<extra></extra>"
                    ),
                }
            )
        # The depth key: an invisible trace that only carries the colour bar.
        first, last = (int(hm.layers[0]), int(hm.layers[-1])) if n_layers else (1, 1)
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [None],
                "y": [None],
                "hoverinfo": "skip",
                "showlegend": False,
                "visible": k == 0,
                "marker": {
                    "color": [first, last],
                    "cmin": first - 0.5,
                    "cmax": last + 0.5,
                    "colorscale": colorscale(opts.cmap or DEPTH, 16),
                    "showscale": True,
                    "colorbar": {
                        "title": {"text": "Layer (depth)", "side": "right"},
                        "thickness": 14,
                        "outlinewidth": 0,
                    },
                },
            }
        )
        kinds = cell_kinds(vals, opts.scale)
        for kind, ypos, sym in (("+inf", 0.98, "triangle-up"), ("-inf", 0.02, "triangle-down")):
            if kind in kinds:
                ii, _ = np.nonzero(kinds[kind])
                data.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "yaxis": "y2",
                        "hoverinfo": "skip",
                        "x": [int(hm.steps[int(i)]) for i in ii],
                        "y": [ypos] * len(ii),
                        "visible": k == 0,
                        "name": esc(KIND_LABELS[kind]),
                        "showlegend": True,
                        "marker": {
                            "symbol": sym,
                            "size": 9,
                            "color": "#bbbbbb",
                            "line": {"color": "black", "width": 1},
                        },
                    }
                )
        yaxis: dict[str, Any] = {
            "title": {"text": esc(label)},
            "type": "log" if opts.scale == "log" else "linear",
            "gridcolor": "#e6e6e6",
            "zeroline": False,
        }
        if opts.scale == "symlog" and lt is not None:
            m = float(np.nanmax(np.abs(vals[np.isfinite(vals)]))) if np.isfinite(vals).any() else 1.0
            ticks = [0.0] + [
                s * 10.0**p
                for p in range(int(np.ceil(np.log10(lt))), int(np.floor(np.log10(m))) + 2)
                for s in (1, -1)
            ]
            yaxis.update(
                {
                    "tickvals": symlog(np.array(ticks), lt).tolist(),
                    "ticktext": [format_value(t, 2) for t in ticks],
                }
            )
        if opts.vmin is not None or opts.vmax is not None:
            f = finite_values([vals])
            lo = opts.vmin if opts.vmin is not None else (float(f.min()) if f.size else 0.0)
            hi = opts.vmax if opts.vmax is not None else (float(f.max()) if f.size else 1.0)
            rng = [lo, hi]
            if opts.scale == "log":
                rng = [float(np.log10(max(lo, 1e-300))), float(np.log10(max(hi, 1e-300)))]
            elif opts.scale == "symlog" and lt is not None:
                rng = symlog(np.array(rng), lt).tolist()
            yaxis["range"] = rng
        xaxis = {"title": {"text": "Step"}, "gridcolor": "#e6e6e6", "zeroline": False, "hoverformat": "d"}
        xaxis.update(step_tick_dict(hm.steps))
        panels.append((start, len(data) - start, {"xaxis": xaxis, "yaxis": yaxis}, _title(hm, opts)))
    layout = base_layout(opts, panels[0][3], bg="white", switcher=len(hms) > 1)
    layout.update(panels[0][2])
    layout["hovermode"] = "closest"
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    if len(hms) > 1:
        layout["updatemenus"] = [switcher_menu(hms, panels, len(data))]
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def write_html(
    hms: Heatmap | Sequence[Heatmap],
    path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    **kw: Any,
) -> Path:
    """Write one interactive page of ``hms``: heatmaps (with the profile at a step below them),
    per-layer lines (``kind="lines"``) or profiles (``kind="profile"``).

    ``options.plotly`` says where plotly.js goes: ``"inline"`` (default: one self-contained file)
    or ``"directory"`` (``plotly.min.js`` beside the page, written once, shared by every page there).
    """
    out = check_output_path(path, HTML_FORMATS)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = [hms] if isinstance(hms, Heatmap) else list(hms)
    if opts.kind == "lines":
        fig = lines_figure(hms, opts)
        body = f'<div class="figure">{figure_div(fig, "layerscope-plot")}</div>'
    elif opts.kind == "profile":
        fig = profile_figure(hms, opts)
        body = f'<div class="figure">{figure_div(fig, "layerscope-plot")}</div>'
        body += link_data(hms, fig, "", "layerscope-plot", opts)
    else:
        fig = heatmap_figure(hms, opts)
        prof = profile_figure(hms, opts.replace(title=None, figsize=None), at="last")
        body = (
            f'<div class="figure">{figure_div(fig, "layerscope-plot")}</div>\n'
            f'<div class="figure">{figure_div(prof, "layerscope-profile")}</div>\n'
            + link_data(hms, fig, "layerscope-plot", "layerscope-profile", opts)
        )
    title = opts.title if opts.title else _html.unescape(fig["layout"]["title"]["text"])
    head = plotly_assets(out.parent, opts.plotly)
    return write_text_atomic(out, page(title or "layerscope", body, head=head))
