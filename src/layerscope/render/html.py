"""Interactive HTML (plotly): one self-contained file that works offline.

plotly.js is embedded inline (never a CDN), so the page draws with networking off. Hovering a cell
shows the layer, its name, the step and the exact value (Python's shortest round-trip text of the
float64, so it can be copied back into code); missing/NaN cells read "missing / NaN" and
infinite ones "+inf"/"-inf". Several heatmaps get a metric/site switcher (a dropdown).

Every user-supplied string (run, metric, site, layer names, titles) is escaped before plotly sees
it: plotly renders titles, labels and hover text as a subset of HTML and substitutes ``%{...}`` in
hover templates, so a layer named ``<b>x</b>`` or ``%{z}`` is shown literally, never interpreted.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> fig = heatmap_figure([Heatmap(np.array([[0.1, np.nan]]), steps=[5], layers=[1, 2])])
>>> fig["data"][0]["customdata"]
[['0.1', 'missing / NaN']]
"""

from __future__ import annotations

import html as _html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_step, format_value
from .._io import write_text_atomic
from ..store.heatmap import Heatmap
from .options import MAX_ANNOTATE, RenderOptions
from .scale import KIND_LABELS, MISSING_GREY, ColorScale, cell_kinds, color_scale, is_even, nice_ticks, symlog
from .static import default_title, metric_label

PLOT_HEIGHT = 640  # px, when no figsize is given; the width follows the page
CONFIG = {
    "responsive": True,
    "displaylogo": False,
    "scrollZoom": False,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def esc(text: Any) -> str:
    """Escape a user string for plotly (and HTML): tags shown literally, ``%{`` not a template."""
    return _html.escape(str(text), quote=True).replace("%", "&#37;")


def value_texts(values: np.ndarray) -> list[list[str]]:
    """Hover text per cell: the exact float (shortest round-trip repr), or what the cell is."""
    out = []
    for row in np.asarray(values, dtype=np.float64).tolist():
        out.append(
            [
                repr(v)
                if v == v and v not in (float("inf"), float("-inf"))
                else ("missing / NaN" if v != v else ("+inf" if v > 0 else "\u2212inf"))
                for v in row
            ]
        )
    return out


def colorscale(name: str, n: int = 33) -> list[list[Any]]:
    """A matplotlib colormap as a plotly colorscale (``n`` stops), so HTML and PNG match."""
    from matplotlib import colormaps

    cm = colormaps[name]
    out = []
    for t in np.linspace(0.0, 1.0, n):
        r, g, b, _ = cm(float(t))
        out.append([float(t), f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})"])
    return out


def _colorbar(cs: ColorScale, label: str, where: str) -> dict[str, Any]:
    cb: dict[str, Any] = {"title": {"text": esc(label)}, "outlinewidth": 0, "thickness": 16}
    if where == "right":
        cb["title"]["side"] = "right"  # along the bar; a horizontal bar keeps it at its left end
    if where == "bottom":
        cb.update(
            {
                "orientation": "h",
                "yref": "container",
                "y": 0.07,
                "yanchor": "bottom",
                "x": 0.5,
                "xanchor": "center",
                "len": 0.9,
            }
        )
    if cs.kind == "log":
        lo, hi = np.log10(cs.lo), np.log10(cs.hi)
        ks: list[float] = [float(k) for k in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)] or [
            float(lo),
            float(hi),
        ]
        cb.update(
            {
                "tickvals": [float(k) for k in ks],
                "ticktext": [f"1e{int(k)}" if k == int(k) else format_value(10**k) for k in ks],
            }
        )
    elif cs.kind == "symlog":
        lt = cs.linthresh or 1.0
        vals = [0.0]
        m = max(abs(cs.lo), abs(cs.hi))
        k = int(np.ceil(np.log10(lt)))
        while 10.0**k <= m * 1.0001:
            vals += [10.0**k, -(10.0**k)]
            k += 1
        vals = sorted(v for v in vals if cs.lo <= v <= cs.hi)
        cb.update(
            {"tickvals": symlog(np.array(vals), lt).tolist(), "ticktext": [format_value(v, 2) for v in vals]}
        )
    return cb


def _layer_labels(hm: Heatmap) -> list[str]:
    """Category per column: '3 · h.2' (escaped), or just '3' when the name is the number."""
    out = []
    for layer, name in zip(hm.layers, hm.layer_names):
        out.append(esc(layer) if str(name) == str(layer) else f"{esc(layer)} \u00b7 {esc(name)}")
    return out


def _panel_label(hm: Heatmap, hms: Sequence[Heatmap]) -> str:
    from .multiples import panel_title

    return panel_title(hm, hms) if len(hms) > 1 else hm.metric


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------


def _heatmap_panel(
    hm: Heatmap, opts: RenderOptions, cs: ColorScale, visible: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Traces (heatmap, infinity marks, legend keys) and axis layout for one heatmap."""
    vals = np.asarray(hm.values, dtype=np.float64)
    n_steps, n_layers = vals.shape
    xcats = _layer_labels(hm)
    numeric_y = opts.true_steps or is_even(hm.steps)
    y: Any = [int(s) for s in hm.steps] if numeric_y else [str(s) for s in hm.steps]
    zc = cs.transform(vals)
    label = opts.label or metric_label(hm)
    ystep = "%{y:d}" if numeric_y else "%{y}"
    hover = f"layer %{{x}}<br>step {ystep}<br>{esc(label)} = %{{customdata}}<extra></extra>"
    trace: dict[str, Any] = {
        "type": "heatmap",
        "name": esc(label),
        "x": xcats,
        "y": y,
        "z": zc,
        "customdata": value_texts(vals),
        "hovertemplate": hover,
        "hoverongaps": True,
        "colorscale": colorscale(cs.cmap),
        "zmin": float(cs.transform(np.array([cs.lo]))[0]),
        "zmax": float(cs.transform(np.array([cs.hi]))[0]),
        "colorbar": _colorbar(cs, label, opts.colorbar),
        "visible": visible,
        "xgap": 0,
        "ygap": 0,
    }
    if cs.center is not None and cs.kind == "linear":
        trace["zmid"] = cs.center
    if opts.annotate and n_steps <= MAX_ANNOTATE and n_layers <= MAX_ANNOTATE:
        trace["text"] = [[format_value(v, 3) if np.isfinite(v) else "" for v in row] for row in vals]
        trace["texttemplate"] = "%{text}"
    traces = [trace]
    kinds = cell_kinds(vals, cs.kind)
    marks = {"+inf": "triangle-up", "-inf": "triangle-down", "nonpos": "circle-open"}
    for kind, symbol in marks.items():
        if kind in kinds:
            ii, jj = np.nonzero(kinds[kind])
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": [xcats[j] for j in jj],
                    "y": [y[i] for i in ii],
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "marker": {"symbol": symbol, "color": "#202020", "size": 9 if n_steps <= 60 else 6},
                    "visible": visible,
                    "name": esc(KIND_LABELS[kind]),
                }
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
    if numeric_y:
        ticks = [int(s) for s in hm.steps] if n_steps <= n_y else nice_ticks(hm.steps[0], hm.steps[-1], n_y)
        yaxis = {
            "type": "linear",
            "title": {"text": "Steps"},
            "tickvals": ticks,
            "ticktext": [format_step(t) for t in ticks],
            "autorange": "reversed",
            "showgrid": False,
            "zeroline": False,
        }
    else:
        from .scale import row_axis

        rows = row_axis(hm.steps, False, n_y)
        yaxis = {
            "type": "category",
            "title": {"text": "Steps"},
            "tickvals": [y[int(r)] for r in rows.ticks],
            "ticktext": rows.labels,
            "autorange": "reversed",
            "showgrid": False,
        }
    return traces, {"xaxis": xaxis, "yaxis": yaxis}


def heatmap_figure(hms: Sequence[Heatmap], options: RenderOptions | None = None, **kw: Any) -> dict[str, Any]:
    """A plotly figure (as a dict) of one or several heatmaps, with a switcher for several."""
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = list(hms)
    from .multiples import shared_default

    shared = len(hms) > 1 and shared_default(hms, opts)
    shared_cs = color_scale([h.values for h in hms], opts, "the heatmaps", hms[0].metric) if shared else None
    data: list[dict[str, Any]] = []
    panels = []
    for k, hm in enumerate(hms):
        cs = shared_cs or color_scale([hm.values], opts, f"{hm.metric!r} ({hm.site})", hm.metric)
        traces, axes = _heatmap_panel(hm, opts, cs, visible=k == 0)
        panels.append((len(data), len(traces), axes, _title(hm, hms, opts)))
        data += traces
    layout = _layout(opts, panels[0][3], bg=MISSING_GREY, switcher=len(hms) > 1)
    layout.update(panels[0][2])
    if len(hms) > 1:
        layout["updatemenus"] = [_switcher(hms, panels, len(data))]
    return {"data": data, "layout": layout}


def _title(hm: Heatmap, hms: Sequence[Heatmap], opts: RenderOptions) -> str:
    if opts.title is not None:
        return esc(opts.title)
    base = default_title(hm)
    if hm.site and hm.site != "output":
        base = base.replace(f"{hm.metric} per layer", f"{hm.metric} ({hm.site}) per layer", 1)
    return esc(base)


def _layout(opts: RenderOptions, title: str, bg: str, switcher: bool = False) -> dict[str, Any]:
    lay: dict[str, Any] = {
        "title": {"text": title, "x": 0.5, "xanchor": "center"},
        "font": {"family": FONT, "size": 13, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": bg,
        # Bottom up: the legend of missing/infinite cells, the horizontal colour bar if asked for, the axis.
        "margin": {
            "l": 70,
            "r": 30,
            "t": 80 if title or switcher else 30,
            "b": 175 if opts.colorbar == "bottom" else 105,
        },
        "legend": {
            "orientation": "h",
            "x": 0.5,
            "xanchor": "center",
            "yref": "container",
            "y": 0.005,
            "yanchor": "bottom",
            "bgcolor": "rgba(255,255,255,0)",
        },
        "hoverlabel": {
            "bgcolor": "white",
            "font": {"family": "ui-monospace, Menlo, Consolas, monospace", "size": 13},
        },
        "height": int(opts.figsize[1] * 100) if opts.figsize else PLOT_HEIGHT,
    }
    if opts.figsize:
        lay["width"] = int(opts.figsize[0] * 100)
    return lay


def _switcher(
    hms: Sequence[Heatmap], panels: list[tuple[int, int, dict[str, Any], str]], n: int
) -> dict[str, Any]:
    buttons = []
    for k, (start, count, axes, title) in enumerate(panels):
        vis = [start <= i < start + count for i in range(n)]
        relayout: dict[str, Any] = {"title.text": title}
        for ax_name, ax in axes.items():
            for key, val in ax.items():
                if key == "title":
                    relayout[f"{ax_name}.title.text"] = val["text"]
                else:
                    relayout[f"{ax_name}.{key}"] = val
        buttons.append(
            {
                "label": esc(_panel_label(hms[k], hms)),
                "method": "update",
                "args": [{"visible": vis}, relayout],
            }
        )
    return {
        "type": "dropdown",
        "buttons": buttons,
        "active": 0,
        "x": 0.0,
        "xanchor": "left",
        "y": 1.02,
        "yanchor": "bottom",
        "showactive": True,
        "bgcolor": "white",
        "name": "switcher",
    }


# --------------------------------------------------------------------------------------------
# Per-layer lines
# --------------------------------------------------------------------------------------------


def lines_figure(hms: Sequence[Heatmap], options: RenderOptions | None = None, **kw: Any) -> dict[str, Any]:
    """A plotly figure (as a dict): value against step, one line per layer coloured by depth."""
    from .lines import depth_colors
    from .scale import DEPTH, auto_linthresh, finite_values

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
        names = _layer_labels(hm)
        for j in range(n_layers):
            rgb = "rgb({},{},{})".format(*(round(c * 255) for c in colors[j][:3]))
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
        panels.append((start, len(data) - start, {"xaxis": xaxis, "yaxis": yaxis}, _title(hm, hms, opts)))
    layout = _layout(opts, panels[0][3], bg="white", switcher=len(hms) > 1)
    layout.update(panels[0][2])
    layout["hovermode"] = "closest"
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    if len(hms) > 1:
        layout["updatemenus"] = [_switcher(hms, panels, len(data))]
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


def figure_div(fig: dict[str, Any], div_id: str) -> str:
    """A ``<div>`` plus the script that draws ``fig`` into it (plotly.js must be on the page)."""
    import plotly.io as pio

    return pio.to_html(
        fig,
        config=CONFIG,
        include_plotlyjs=False,
        full_html=False,
        validate=False,
        div_id=div_id,
        default_height=f"{fig['layout'].get('height', PLOT_HEIGHT)}px",
    )


def plotly_script() -> str:
    """plotly.js, inline: the page never fetches anything."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


PAGE_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.5em; margin: 0.6em 0 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; }
.figure { background: white; border: 1px solid #e3e3e3; border-radius: 6px; margin: 12px 0; padding: 4px; }
.meta { color: #666; font-size: 0.9em; } code { background: #f0f0f0; padding: 0 3px; border-radius: 3px; }
nav a { margin-right: 1em; } .report { background: white; border: 1px solid #e3e3e3; border-radius: 6px;
       padding: 4px 20px; line-height: 1.45; }
"""


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page: ``title`` is escaped here, ``body`` must be HTML already."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_html.escape(title)}</title>\n<style>{PAGE_CSS}</style>\n{plotly_script()}\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_html(
    hms: Heatmap | Sequence[Heatmap],
    path: str | os.PathLike[str],
    options: RenderOptions | None = None,
    **kw: Any,
) -> Path:
    """Write one self-contained interactive page of ``hms`` (heatmaps, or lines with kind='lines')."""
    from .static import check_output_path

    out = check_output_path(path, (".html", ".htm"))
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hms = [hms] if isinstance(hms, Heatmap) else list(hms)
    fig = lines_figure(hms, opts) if opts.kind == "lines" else heatmap_figure(hms, opts)
    title = opts.title if opts.title else _html.unescape(fig["layout"]["title"]["text"])
    body = f'<div class="figure">{figure_div(fig, "layerscope-plot")}</div>'
    return write_text_atomic(out, page(title or "layerscope", body))
