"""A run's watch alerts on a heatmap: the cells (step row, layer column) they mark, the words their
legend and hover say (shared by the static and the interactive figure), and the matplotlib markers.

A map read from a store carries the run's alerts (``Heatmap.events``, from ``Store.events``). The
alerts of the map's own metric and site are its *marks*; those of other metrics at the same site are
*others*, drawn smaller (a layer whose kurtosis jumped is worth seeing on its rms map too). An alert
of a per-head series marks its layer, and names the head (a map of one head, ``reduce=N``, shows
that head's only). Alerts at steps outside the map, at layers it does not show, or without a layer
(a run-wide event) are not drawn.

>>> import numpy as np
>>> from layerscope.store import Event, Heatmap
>>> ev = Event(20, "alert", "max_abs jump", site="output", metric="max_abs", layer=2, value=48.0)
>>> hm = Heatmap(np.ones((3, 3)), [10, 20, 30], [1, 2, 3], metric="max_abs", events=[ev])
>>> [(c.row, c.col, c.primary) for c in alert_cells(hm)]
[(1, 1, True)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._format import format_value
from ..store.heatmap import Heatmap
from ..store.records import Event
from .labels import layer_text, row_axis

# Markers: an open circle, black inside a white halo, readable on dark and light cells alike and
# hollow so the cell's colour stays visible; other metrics' alerts a small open triangle.
MARK_EDGE, MARK_HALO = "#000000", "#ffffff"
OTHER_EDGE = "#e8e8e8"
MAX_HEAD_LABELS = 24  # per-head alerts get an 'h3' label beside the marker up to this many cells


@dataclass(frozen=True)
class AlertCell:
    """One marked cell: ``row``/``col`` index ``hm.steps``/``hm.layers``; ``alerts`` are the alerts
    that mark it, in the order the run recorded them. ``primary``: one of them is of the map's own
    metric (drawn prominently); otherwise they are of other metrics at the same site."""

    row: int
    col: int
    alerts: tuple[Event, ...]
    primary: bool

    @property
    def heads(self) -> list[int]:
        """The heads named by the cell's alerts of a per-head series (0-based, ascending)."""
        return sorted({a.head for a in self.alerts if a.head is not None})


def alert_value_text(value: float) -> str:
    """The value that fired an alert, as the hover and the list say it (``nan``/``+inf`` spelled out).

    >>> alert_value_text(48.0), alert_value_text(float("nan")), alert_value_text(float("-inf"))
    ('48', 'nan', '-inf')
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return format_value(value, 4)


def alert_line(ev: Event, layer_name: str = "") -> str:
    """One alert in words: ``step 120 · layer 3 (h.2) head 1 · max_logit@attn = 48.1 · rule``."""
    where = layer_text(int(ev.layer), layer_name or str(ev.layer)) if ev.layer is not None else "run"
    if ev.head is not None:
        where += f" head {ev.head}"
    return f"step {ev.step} \u00b7 {where} \u00b7 {ev.metric}@{ev.site} = {alert_value_text(ev.value)} \u00b7 {ev.rule}"


def _row_of(steps: np.ndarray, step: int) -> int | None:
    """The row of ``step``: its own, or the nearest recorded one inside the map's step range."""
    if not len(steps) or step < steps[0] or step > steps[-1]:
        return None
    i = int(np.searchsorted(steps, step))
    if i < len(steps) and steps[i] == step:
        return i
    return i if steps[i] - step < step - steps[i - 1] else i - 1


def alert_cells(hm: Heatmap, events: Sequence[Event] | None = None) -> list[AlertCell]:
    """The cells of ``hm`` that the run's alerts (``hm.events`` unless ``events`` is given) at the
    map's site mark, one per cell, primary cells first, each group by step then layer."""
    evs = hm.events if events is None else events
    steps = np.asarray(hm.steps, dtype=np.int64)
    col_of = {int(layer): j for j, layer in enumerate(hm.layers)}
    # A map of one head (load(..., reduce=2)) shows that head's alerts, not its neighbours'.
    head = hm.meta.get("reduce")
    one_head = head if isinstance(head, int) and not isinstance(head, bool) else None
    cells: dict[tuple[int, int], list[Event]] = {}
    for ev in evs:
        if ev.kind != "alert" or ev.site != hm.site or ev.layer is None:
            continue
        if one_head is not None and ev.metric == hm.metric and ev.head is not None and ev.head != one_head:
            continue
        row, col = _row_of(steps, int(ev.step)), col_of.get(int(ev.layer))
        if row is not None and col is not None:
            cells.setdefault((row, col), []).append(ev)
    out = [AlertCell(r, c, tuple(a), any(e.metric == hm.metric for e in a)) for (r, c), a in cells.items()]
    return sorted(out, key=lambda c: (not c.primary, c.row, c.col))


def split_cells(cells: Sequence[AlertCell]) -> tuple[list[AlertCell], list[AlertCell]]:
    """(primary, other) cells."""
    return [c for c in cells if c.primary], [c for c in cells if not c.primary]


def legend_labels(hm: Heatmap, cells: Sequence[AlertCell]) -> tuple[str, str]:
    """The legend entries: ``watch alert (N)`` (with the heads of a per-head map) and
    ``other alerts at <site> (M: metric, ...)``; N and M count alerts, not cells."""
    primary, _ = split_cells(cells)
    n, _ = alert_counts(hm, cells)
    heads = sorted(
        {h for c in primary for a in c.alerts if a.metric == hm.metric and (h := a.head) is not None}
    )
    first = f"watch alert ({n})"
    if heads:
        shown = ", ".join(str(h) for h in heads[:6]) + (", \u2026" if len(heads) > 6 else "")
        first = f"watch alert ({n}; head{'s' if len(heads) > 1 else ''} {shown})"
    m_alerts = [a for c in cells for a in c.alerts if a.metric != hm.metric]
    metrics = sorted({a.metric for a in m_alerts})
    listed = ", ".join(metrics[:3]) + (", \u2026" if len(metrics) > 3 else "")
    second = f"other alerts at {hm.site} ({len(m_alerts)}: {listed})" if m_alerts else ""
    return first, second


def alert_counts(hm: Heatmap, cells: Sequence[AlertCell] | None = None) -> tuple[int, int]:
    """(alerts of the map's own metric, alerts of other metrics at its site) that mark its cells."""
    cells = alert_cells(hm) if cells is None else cells
    alerts = [a for c in cells for a in c.alerts]
    mine = sum(1 for a in alerts if a.metric == hm.metric)
    return mine, len(alerts) - mine


def cell_text(hm: Heatmap, cell: AlertCell) -> list[str]:
    """The hover lines of one marked cell: each alert, the map's own metric first."""
    name = hm.layer_names[cell.col] if cell.col < len(hm.layer_names) else ""
    ordered = sorted(cell.alerts, key=lambda a: a.metric != hm.metric)
    return [alert_line(a, name) for a in ordered]


def marker_diameter_pt(hm: Heatmap, axes_size: tuple[float, float]) -> float:
    """A marker about a cell wide, never under 7 pt (a 2000-step map still shows its alerts) or
    over 14 pt."""
    n_steps, n_layers = max(1, len(hm.steps)), max(1, len(hm.layers))
    cell = min(axes_size[0] * 72 / n_layers, axes_size[1] * 72 / n_steps)
    return float(np.clip(0.8 * cell, 7.0, 14.0))


def draw_alerts(ax: Any, hm: Heatmap, true_steps: bool, axes_size: tuple[float, float]) -> list[Any]:
    """Mark the cells of ``hm``'s alerts on ``ax`` (drawn by :func:`~.static.draw_heatmap` with the
    same ``true_steps``); return the legend handles (none without alerts).

    The markers are scatter collections with gid ``watch-alerts`` / ``watch-alerts-other`` (an SVG
    names them so); an alert of a per-head series gets its head written beside it (``h3``).
    """
    cells = alert_cells(hm)
    if not cells:
        return []
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    centers = row_axis(hm.steps, true_steps, 3).centers
    d = marker_diameter_pt(hm, axes_size)
    primary, other = split_cells(cells)
    first, second = legend_labels(hm, cells)
    handles: list[Any] = []
    if primary:
        x = [c.col + 1 for c in primary]
        y = [float(centers[c.row]) for c in primary]
        halo = ax.scatter(x, y, s=d**2, facecolors="none", edgecolors=MARK_HALO, linewidths=3.2, zorder=4)
        halo.set_gid("watch-alerts-halo")
        mark = ax.scatter(x, y, s=d**2, facecolors="none", edgecolors=MARK_EDGE, linewidths=1.4, zorder=5)
        mark.set_gid("watch-alerts")
        heads = [c for c in primary if c.heads]
        if heads and len(heads) <= MAX_HEAD_LABELS:
            halo_fx = [patheffects.withStroke(linewidth=1.6, foreground=MARK_HALO)]
            for c in heads:
                ax.annotate(
                    "h" + ",".join(str(h) for h in c.heads),
                    (c.col + 1, float(centers[c.row])),
                    xytext=(d / 2 + 1.5, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color=MARK_EDGE,
                    path_effects=halo_fx,
                    zorder=6,
                    gid="watch-alert-head",
                    annotation_clip=True,
                )
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=9,
                markerfacecolor="none",
                markeredgecolor=MARK_EDGE,
                markeredgewidth=1.4,
                path_effects=[patheffects.withStroke(linewidth=3.2, foreground=MARK_HALO)],
                label=first,
            )
        )
    if other:
        x = [c.col + 1 for c in other]
        y = [float(centers[c.row]) for c in other]
        s = (0.7 * d) ** 2
        ax.scatter(x, y, s=s, marker="^", facecolors="none", edgecolors="#202020", linewidths=2.0, zorder=4)
        mo = ax.scatter(
            x, y, s=s, marker="^", facecolors="none", edgecolors=OTHER_EDGE, linewidths=0.9, zorder=5
        )
        mo.set_gid("watch-alerts-other")
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="^",
                markersize=7,
                markerfacecolor="none",
                markeredgecolor=OTHER_EDGE,
                markeredgewidth=0.9,
                path_effects=[patheffects.withStroke(linewidth=2.0, foreground="#202020")],
                label=second,
            )
        )
    return handles


__all__ = [
    "AlertCell",
    "alert_cells",
    "alert_counts",
    "alert_line",
    "alert_value_text",
    "cell_text",
    "draw_alerts",
    "legend_labels",
    "split_cells",
]
