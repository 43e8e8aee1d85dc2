"""The plotly vocabulary every interactive figure shares: escaping, exact hover text, colour
scales, colour bars, the page layout and the metric switcher.

Every user-supplied string (run, metric, site, layer names, titles) goes through :func:`esc`
before plotly sees it: plotly renders titles, labels and hover text as a subset of HTML and
substitutes ``%{...}`` in hover templates, so a layer named ``<b>x</b>`` or ``%{z}`` is shown
literally, never interpreted.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._format import format_value
from ..store.heatmap import Heatmap
from .labels import switcher_label
from .options import RenderOptions
from .scale import ColorScale, symlog

PLOT_HEIGHT = 640  # px, when no figsize is given; the width follows the page
CONFIG = {
    "responsive": True,
    "displaylogo": False,
    "scrollZoom": False,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
# Rows a heatmap draws before its steps are grouped into blocks (render.reduce): one per pixel row
# of the plot. More would be dropped again by the browser when it scales the image down, spike
# or not (a zoom redraws the visible steps at full detail). At the default size 2000 steps
# become blocks of 5.
MAX_ROWS_PER_PX = 1
FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def max_rows(opts: RenderOptions) -> int:
    """How many rows a heatmap of this size shows before its steps are grouped into blocks."""
    height = opts.figsize[1] * 100 if opts.figsize else PLOT_HEIGHT
    plot_px = height - 80 - (175 if opts.colorbar == "bottom" else 105)
    return max(100, int(MAX_ROWS_PER_PX * plot_px))


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


def colorbar_dict(cs: ColorScale, label: str, where: str) -> dict[str, Any]:
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


def layer_labels(hm: Heatmap) -> list[str]:
    """Category per column: '3 · h.2' (escaped), or just '3' when the name is the number."""
    out = []
    for layer, name in zip(hm.layers, hm.layer_names):
        out.append(esc(layer) if str(name) == str(layer) else f"{esc(layer)} \u00b7 {esc(name)}")
    return out


def base_layout(opts: RenderOptions, title: str, bg: str, switcher: bool = False) -> dict[str, Any]:
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


def switcher_menu(
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
                "label": esc(switcher_label(hms[k], hms)),
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
