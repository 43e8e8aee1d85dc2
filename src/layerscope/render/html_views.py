"""Interactive views beside the heatmap: the profile at a step (with a step slider, and following
the hover on the map) and the histograms over training (small multiples across layers).

The page's script (``assets/views.js``, also used by the dashboard) reads the data that
:func:`link_data` embeds: the full matrix of each heatmap (base64 float64), its steps and how it
was reduced, so the slider, the hover and a zoom can show exact rows without a server.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> fig = profile_figure([Heatmap(np.ones((5, 3)), steps=range(1, 6), layers=[1, 2, 3])], at="last")
>>> fig["data"][-1]["name"]
'selected: step 5'
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._format import format_step, format_value, step_label
from ..store.heatmap import Heatmap
from ..store.histogram import Histograms
from ._plotly import FONT, PLOT_HEIGHT, colorscale, esc, max_rows, value_texts
from .hist import bin_window, choose_layers, edge_label, edge_ticks, hist_title
from .labels import layer_text, layer_ticks, metric_label, spread_rows
from .options import RenderOptions
from .profile import DEFAULT_STEPS, profile_rows, profile_title
from .reduce import reduce_counts
from .scale import COUNTS, auto_linthresh, finite_values, ordered_colors, rgb_text, symlog

PROFILE_HEIGHT = 420  # px
HIST_PANEL_PX = 230  # height of one histogram panel
HIST_ROWS_PER_PANEL = 240  # steps shown per panel before they are grouped into blocks


def _y(values: np.ndarray, opts: RenderOptions, lt: float | None) -> list[float | None]:
    """A profile's y values for plotly: None where absent or off the scale; symlog-transformed."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        if not math.isfinite(v) or (opts.scale == "log" and v <= 0):
            out.append(None)
        else:
            out.append(float(symlog(np.array([v]), lt)[0]) if lt is not None else v)
    return out


def _symlog_ticks(vals: np.ndarray, lt: float) -> dict[str, Any]:
    f = finite_values([vals])
    m = float(np.abs(f).max()) if f.size else 1.0
    ticks = [0.0] + [
        s * 10.0**p
        for p in range(int(np.ceil(np.log10(lt))), int(np.floor(np.log10(max(m, lt)))) + 2)
        for s in (1, -1)
    ]
    return {"tickvals": symlog(np.array(ticks), lt).tolist(), "ticktext": [format_value(t, 2) for t in ticks]}


def profile_figure(
    hms: Sequence[Heatmap], options: RenderOptions | None = None, *, at: str | None = None, **kw: Any
) -> dict[str, Any]:
    """The profile (value against depth) of the first heatmap at a few steps, coloured by step.

    ``at="last"`` adds the bold line the page's step slider and the hover on the map move (it
    starts at the last step). The other heatmaps of a switcher page are drawn by the script.
    """
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hm = list(hms)[0]
    vals = np.asarray(hm.values, dtype=np.float64)
    lt = (opts.linthresh or auto_linthresh(finite_values([vals]))) if opts.scale == "symlog" else None
    rows = profile_rows(hm, opts.at_steps, DEFAULT_STEPS)
    colors = ordered_colors(len(rows), opts.cmap if opts.kind == "profile" and opts.cmap else "plasma")
    names = [esc(n) for n in hm.layer_names]
    label = esc(opts.label or metric_label(hm))
    data: list[dict[str, Any]] = []
    texts = value_texts(vals)
    for c, r in zip(colors, rows):
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(hm.layers) <= 24 else "lines",
                "x": list(hm.layers),
                "y": _y(vals[r], opts, lt),
                "customdata": texts[r],
                "text": names,
                "name": f"step {format_step(hm.steps[r])}",
                "line": {"color": rgb_text(c), "width": 1.4},
                "marker": {"size": 4},
                "opacity": 0.75 if at else 1.0,
                "hovertemplate": (
                    f"step {format_step(hm.steps[r])}<br>layer %{{x}} · %{{text}}<br>{label} = "
                    "%{customdata}<extra></extra>"
                ),
            }
        )
    if at and len(hm.steps):
        r = len(hm.steps) - 1
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": list(hm.layers),
                "y": _y(vals[r], opts, lt),
                "customdata": texts[r],
                "text": names,
                "name": f"selected: step {format_step(hm.steps[r])}",
                "line": {"color": "#111", "width": 3},
                "marker": {"size": 6, "color": "#111"},
                "hovertemplate": f"step %{{meta}}<br>layer %{{x}} · %{{text}}<br>{label} = %{{customdata}}<extra></extra>",
                "meta": format_step(hm.steps[r]),
                "uid": "current",
            }
        )
    xt, xl = layer_ticks(hm.layers, 24)
    yaxis: dict[str, Any] = {
        "title": {"text": label},
        "type": "log" if opts.scale == "log" else "linear",
        "gridcolor": "#e6e6e6",
        "zeroline": False,
    }
    if lt is not None:
        yaxis.update(_symlog_ticks(vals, lt))
    title = opts.title if opts.title is not None else profile_title(hm)
    layout = {
        "title": {"text": esc(title), "x": 0.5, "xanchor": "center"},
        "font": {"family": FONT, "size": 13, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "height": int(opts.figsize[1] * 100) if opts.figsize else PROFILE_HEIGHT,
        "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
        "xaxis": {
            "title": {"text": "Layer"},
            "tickvals": [hm.layers[int(t) - 1] for t in xt],
            "ticktext": xl,
            "gridcolor": "#e6e6e6",
            "zeroline": False,
        },
        "yaxis": yaxis,
        "legend": {"title": {"text": "profile at"}, "font": {"size": 11}},
        "hovermode": "closest",
        "hoverlabel": {"bgcolor": "white", "font": {"family": "ui-monospace, Menlo, Consolas, monospace"}},
    }
    return {"data": data, "layout": layout}


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>`` can end it early."""
    return (
        json.dumps(obj, allow_nan=False, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def link_data(
    hms: Sequence[Heatmap], heat_fig: dict[str, Any], heat_id: str, profile_id: str, opts: RenderOptions
) -> str:
    """The step slider and the JSON the page's script links the map, the slider and the profile with."""
    reductions = heat_fig.get("meta", {}).get("layerscope") or [{} for _ in hms]
    panels = []
    for hm, red in zip(hms, reductions):
        vals = np.asarray(hm.values, dtype=np.float64)
        lt = (opts.linthresh or auto_linthresh(finite_values([vals]))) if opts.scale == "symlog" else None
        panels.append(
            {
                "trace": red.get("trace"),
                "factor": red.get("factor", 1),
                "steps": [int(s) for s in hm.steps],
                "layers": [int(x) for x in hm.layers],
                "names": [esc(n) for n in hm.layer_names],
                "label": esc(opts.label or metric_label(hm)),
                "scale": opts.scale,
                "ztransform": red.get("scale", opts.scale),
                "linthresh": red.get("linthresh") if red.get("linthresh") is not None else lt,
                "values": _b64(vals),
            }
        )
    n = len(hms[0].steps)
    cfg: dict[str, Any] = {"heat": heat_id or None, "profile": profile_id, "panels": panels, "maxRows": None}
    if heat_fig.get("meta"):
        cfg["maxRows"] = max_rows(opts)
    return (
        f'<div class="slider"><label for="{profile_id}-step">Profile at step '
        f'<output id="{profile_id}-step-out">{format_step(hms[0].steps[-1]) if n else ""}</output></label>'
        f'<input type="range" id="{profile_id}-step" min="0" max="{max(0, n - 1)}" value="{max(0, n - 1)}" '
        f'step="1" aria-label="step"></div>\n'
        f'<script type="application/json" data-layerscope-link="1">{script_json(cfg)}</script>'
    )


# --------------------------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------------------------


def hist_figure(h: Histograms, options: RenderOptions | None = None, **kw: Any) -> dict[str, Any]:
    """Small multiples of histograms over training, one panel per layer, log10 count colours."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    shown = choose_layers(h, opts.layers)
    lo, hi = bin_window(shown)
    n = len(shown.layers)
    ncols = max(1, min(int(opts.ncols or (1 if n == 1 else (2 if n <= 4 else (3 if n <= 9 else 4)))), n))
    nrows = math.ceil(n / ncols)
    pos = shown.counts[shown.counts > 0]
    zmax = float(np.log10(pos.max())) if pos.size else 1.0
    bins = list(range(lo, hi))
    ranges = [shown.bin_range(b) for b in bins]
    bin_text = [f"[{edge_label(a)}, {edge_label(b)})" for a, b in ranges]
    xt, xl = edge_ticks(shown.edges, lo, hi, 7)
    gap_x, gap_y = 0.03 * (ncols > 1), 0.09 * (nrows > 1)  # between panels, in paper units
    w, hgt = (1 - gap_x * (ncols - 1)) / ncols, (1 - gap_y * (nrows - 1)) / nrows
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "title": {"text": esc(opts.title if opts.title is not None else hist_title(h)), "x": 0.5},
        "font": {"family": FONT, "size": 12, "color": "#222"},
        "paper_bgcolor": "white",
        "height": int(opts.figsize[1] * 100)
        if opts.figsize
        else max(PLOT_HEIGHT // 2, 90 + nrows * HIST_PANEL_PX),
        "margin": {"l": 70, "r": 30, "t": 80, "b": 60},
        "annotations": [],
        "hoverlabel": {"bgcolor": "white", "font": {"family": "ui-monospace, Menlo, Consolas, monospace"}},
    }
    cmap = colorscale(opts.cmap or COUNTS)
    for k, (layer, name) in enumerate(zip(shown.layers, shown.layer_names)):
        row, col = divmod(k, ncols)
        ax = "" if k == 0 else str(k + 1)
        counts, starts, stops = reduce_counts(shown.layer(layer)[:, lo:hi], HIST_ROWS_PER_PANEL)
        steps = [int(shown.steps[int(a)]) for a in starts]
        ylab = [
            format_step(shown.steps[int(a)]) if b - a == 1 else f"{format_step(shown.steps[int(a)])}–{format_step(shown.steps[int(b) - 1])}"
            for a, b in zip(starts, stops)
        ]  # fmt: skip
        with np.errstate(divide="ignore"):
            z = np.where(counts > 0, np.log10(np.where(counts > 0, counts, 1.0)), np.nan)
        data.append(
            {
                "type": "heatmap",
                "x": [b + 0.5 for b in bins],
                "y": [str(s) for s in steps],
                "z": z,
                "zmin": 0.0,
                "zmax": zmax if zmax > 0 else 1.0,
                "colorscale": cmap,
                "showscale": k == 0,
                "colorbar": {
                    "title": {"text": "count (log10)", "side": "top"},
                    "thickness": 14,
                    "outlinewidth": 0,
                    "tickvals": list(range(int(math.floor(zmax)) + 1)),
                    "ticktext": [format_value(10.0**p, 2) for p in range(int(math.floor(zmax)) + 1)],
                },
                "customdata": [[f"{c:.10g}" for c in r] for r in counts.tolist()],
                "text": [[f"{yl} · {bt}" for bt in bin_text] for yl in ylab],
                "hovertemplate": f"{esc(layer_text(layer, name))}<br>step %{{text}}<br>%{{customdata}} values<extra></extra>",
                "xaxis": f"x{ax}",
                "yaxis": f"y{ax}",
                "hoverongaps": False,
            }
        )
        x0 = col * (w + gap_x)
        y1 = 1 - row * (hgt + gap_y)
        tick_rows = spread_rows(steps, 6)
        layout[f"xaxis{ax}"] = {
            "domain": [x0, x0 + w],
            "anchor": f"y{ax}",
            "tickvals": xt,
            "ticktext": xl if row == nrows - 1 or k + ncols >= n else [""] * len(xl),
            "tickangle": 0,
            "range": [lo, hi],
            "showgrid": False,
            "zeroline": False,
            "title": {"text": "value (bin edges)" if row == nrows - 1 else ""},
        }
        layout[f"yaxis{ax}"] = {
            "domain": [max(0.0, y1 - hgt), y1],
            "anchor": f"x{ax}",
            "type": "category",
            "autorange": "reversed",
            "tickvals": [str(steps[r]) for r in tick_rows],
            "ticktext": [step_label(steps[r]) if col == 0 else "" for r in tick_rows],
            "showgrid": False,
            "title": {"text": "Steps" if col == 0 else ""},
        }
        layout["annotations"].append(
            {
                "text": esc(layer_text(layer, name)),
                "xref": "paper",
                "yref": "paper",
                "x": x0 + w / 2,
                "y": y1,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 12},
            }
        )
    layout["plot_bgcolor"] = cmap[0][1]  # no value in a bin: the darkest colour, as in the PNG
    return {"data": data, "layout": layout}


__all__ = ["hist_figure", "link_data", "profile_figure", "script_json"]
