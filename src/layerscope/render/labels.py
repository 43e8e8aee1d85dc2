"""What both backends (matplotlib and plotly) write on a figure: titles, axis and colour-bar labels,
which ticks to label, and where the rows of a heatmap sit on the step axis.

Nothing here draws; every function maps numbers and names to numbers and strings, so the static
and the interactive figure of one heatmap say the same thing, and each can be tested alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .._format import step_label
from ..store.heads import describe as describe_reduce
from ..store.heatmap import Heatmap

# --------------------------------------------------------------------------------------------
# Titles and labels
# --------------------------------------------------------------------------------------------


def site_suffix(site: str | None) -> str:
    """`` (mlp_act)`` for a site other than the block output, else ``""``."""
    return "" if not site or site == "output" else f" ({site})"


def metric_label(hm: Heatmap) -> str:
    """Colour-bar (lines: y-axis) label: the metric, with its site unless it is the block output.

    >>> metric_label(Heatmap(np.zeros((1, 1)), [1], [1], metric="rms", site="mlp_act"))
    'rms (mlp_act)'

    A per-head series read with a reduction says how the heads were folded:

    >>> metric_label(Heatmap(np.zeros((1, 1)), [1], [1], metric="max_logit", site="attn",
    ...                      meta={"reduce": "max", "heads": 12}))
    'max_logit (attn, max over 12 heads)'
    """
    how = hm.meta.get("reduce") if isinstance(hm.meta, dict) else None
    if how is None or not hm.meta.get("heads"):
        return hm.metric + site_suffix(hm.site)
    # A per-head series read as one value per layer: say how the heads were folded.
    agg = describe_reduce(how, int(hm.meta["heads"]))
    return f"{hm.metric} ({hm.site}, {agg})" if hm.site and hm.site != "output" else f"{hm.metric} ({agg})"


def default_title(hm: Heatmap) -> str:
    """``rms (mlp_act) per layer over training — run demo``: the metric, its site, the run.

    >>> default_title(Heatmap(np.zeros((1, 1)), [1], [1], metric="rms", run="demo"))
    'rms per layer over training — run demo'
    """
    per = "" if _per_step(hm) else " per layer"
    parts = [f"{metric_label(hm)}{per} over training"]
    if hm.run:
        parts.append(f"run {hm.run}")
    return " \u2014 ".join(parts)


def _per_step(hm: Heatmap) -> bool:
    """A series of one value per step (site ``logits``), not one per layer."""
    return isinstance(hm.meta, dict) and bool(hm.meta.get("per_step"))


def _unique(xs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def panel_title(hm: Heatmap, hms: Sequence[Heatmap]) -> str:
    """What tells this panel apart from the others: the metric, the site and the run, when they vary."""
    parts = []
    if len(_unique([h.metric for h in hms])) > 1 or len(_unique([h.site for h in hms])) == 1:
        how = hm.meta.get("reduce") if isinstance(hm.meta, dict) and hm.meta.get("heads") else None
        parts.append(
            hm.metric + (f" ({describe_reduce(how, int(hm.meta['heads']))})" if how is not None else "")
        )
    if len(_unique([h.site for h in hms])) > 1:
        parts.append(hm.site)
    if len(_unique([h.run for h in hms])) > 1 and hm.run:
        parts.append(hm.run)
    return " \u00b7 ".join(parts) or hm.metric


def switcher_label(hm: Heatmap, hms: Sequence[Heatmap]) -> str:
    """The entry of ``hm`` in a metric/site switcher (the metric alone when there is one panel)."""
    return panel_title(hm, hms) if len(hms) > 1 else hm.metric


def default_suptitle(hms: Sequence[Heatmap]) -> str:
    """The title over small multiples: the metric(s) and the run when there is one."""
    metrics = _unique([h.metric for h in hms])
    runs = _unique([h.run for h in hms if h.run])
    per = "over training" if all(_per_step(h) for h in hms) else "per layer over training"
    head = f"{metrics[0]} {per}" if len(metrics) == 1 else per
    if len(metrics) > 1:
        head = ", ".join(metrics) + " " + head
    return head + (f" \u2014 run {runs[0]}" if len(runs) == 1 else "")


def shared_label(hms: Sequence[Heatmap]) -> str:
    """The label of one colour bar shared by several panels."""
    if len(_unique([h.metric for h in hms])) > 1:
        return "value"
    return metric_label(hms[0]) if len(_unique([h.site for h in hms])) == 1 else hms[0].metric


def layer_text(layer: int, name: str) -> str:
    """``layer 3 (h.2)``, or ``layer 3`` when the name is the number."""
    return f"layer {layer}" if str(name) == str(layer) else f"layer {layer} ({name})"


# --------------------------------------------------------------------------------------------
# Ticks
# --------------------------------------------------------------------------------------------


def _nice_strides(minimum: float) -> Iterator[int]:
    """Integer strides 1, 2, 5, 10, 20, 25, 50, 100, ... from the first >= ``minimum``."""
    k = 0
    while True:
        for m in (1, 2, 2.5, 5):
            s = m * 10**k
            if s == int(s) and s >= minimum:
                yield int(s)
        k += 1


def nice_ticks(lo: int, hi: int, max_ticks: int) -> list[int]:
    """At most ``max_ticks`` integer ticks: ``lo``, round multiples of a 1-2-2.5-5 stride, ``hi``.

    Interior ticks closer than 3/4 of a stride to an end are dropped so no two labels crowd.

    >>> nice_ticks(1, 96, 24)[:4], nice_ticks(1, 96, 24)[-2:]
    ([1, 5, 10, 15], [90, 96])
    >>> nice_ticks(10, 120, 20)
    [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    """
    lo, hi = int(lo), int(hi)
    if hi <= lo:
        return [lo]
    max_ticks = max(2, int(max_ticks))
    for stride in _nice_strides((hi - lo) / max(1, max_ticks - 1)):
        first = math.ceil(lo / stride) * stride
        interior = [
            t for t in range(first, hi + 1, stride) if t - lo >= 0.75 * stride and hi - t >= 0.75 * stride
        ]
        ticks = [lo, *interior, hi]
        if len(ticks) <= max_ticks:
            return ticks
    return [lo, hi]  # pragma: no cover - the loop always finds a stride


def tick_positions(n: int, max_ticks: int) -> list[int]:
    """Indices of at most ``max_ticks`` evenly spread ticks over ``n`` items, first and last included.

    >>> tick_positions(10, 4)
    [0, 3, 6, 9]
    """
    if n <= max_ticks:
        return list(range(n))
    stride = int(np.ceil((n - 1) / (max_ticks - 1)))
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        if n - 1 - idx[-1] < stride / 2:
            idx[-1] = n - 1
        else:
            idx.append(n - 1)
    return idx


def layer_ticks(layers: Sequence[int], max_labels: int) -> tuple[list[float], list[str]]:
    """Column positions (1-based) and labels for the layer axis, at most ``max_labels``.

    Layers 1..N get round ticks (1, 5, 10, ..., N); any other set is labelled by thinning columns.

    >>> layer_ticks(range(1, 13), 5)
    ([1.0, 5.0, 12.0], ['1', '5', '12'])
    """
    layers = [int(x) for x in layers]
    n = len(layers)
    if n <= max_labels:
        return [float(j + 1) for j in range(n)], [str(x) for x in layers]
    if layers == list(range(layers[0], layers[0] + n)):
        t = nice_ticks(layers[0], layers[-1], max_labels)
        return [float(x - layers[0] + 1) for x in t], [str(x) for x in t]
    idx = tick_positions(n, max_labels)
    return [float(j + 1) for j in idx], [str(layers[j]) for j in idx]


def spread_rows(steps: Sequence[int], k: int) -> list[int]:
    """``k`` rows spread evenly over ``steps`` (first and last included), each moved to the
    roundest step near it: the steps a profile or a few-steps view shows by default.

    >>> spread_rows(list(range(10, 1010, 10)), 3)
    [0, 49, 99]
    """
    n = len(steps)
    if n <= k:
        return list(range(n))
    return _round_rows(list(steps), max(2, k))


# --------------------------------------------------------------------------------------------
# Rows on the step axis
# --------------------------------------------------------------------------------------------


def is_even(steps: Sequence[int]) -> bool:
    """True when consecutive steps are equally far apart (or there are fewer than 3)."""
    d = np.diff(np.asarray(steps, dtype=np.int64))
    return bool(d.size < 2 or np.all(d == d[0]))


def step_edges(steps: Sequence[int]) -> np.ndarray:
    """Row edges in step units: midpoints between recorded steps, half a gap beyond each end.

    >>> step_edges([10, 20, 50]).tolist()
    [5.0, 15.0, 35.0, 65.0]
    """
    s = np.asarray(steps, dtype=np.float64)
    if s.size == 0:
        return np.array([-0.5, 0.5])
    if s.size == 1:
        half = max(0.5, abs(s[0]) * 0.05)
        return np.array([s[0] - half, s[0] + half])
    mid = (s[1:] + s[:-1]) / 2
    return np.concatenate([[s[0] - (s[1] - s[0]) / 2], mid, [s[-1] + (s[-1] - s[-2]) / 2]])


@dataclass(frozen=True)
class RowAxis:
    """Where the rows of a heatmap sit on the step axis and which of them are labelled.

    ``edges`` (len S+1) and ``centers`` (len S) are in axis units: step values when the steps are
    evenly spaced or ``true_steps`` is asked for, else row indices. ``ticks``/``labels`` are the
    labelled positions (at most ``max_labels``).
    """

    edges: np.ndarray
    centers: np.ndarray
    ticks: list[float]
    labels: list[str]
    in_steps: bool  # axis units are steps (True) or row indices (False)
    uniform: bool  # every row has the same height (imshow can draw it)


def row_axis(steps: Sequence[int], true_steps: bool, max_labels: int) -> RowAxis:
    """Lay out the rows of ``steps``: true step positions when asked for or when spacing is even.

    With even spacing both layouts are the same picture; the step axis then gets round ticks.
    With uneven spacing and no ``true_steps``, rows are equal and each label is a row's own step,
    picked as the rows nearest round step values.
    """
    steps = [int(s) for s in steps]
    n = len(steps)
    even = is_even(steps)
    if n == 0:
        return RowAxis(np.array([-0.5, 0.5]), np.zeros(0), [], [], False, True)
    if even or true_steps:
        edges = step_edges(steps)
        centers = np.asarray(steps, dtype=np.float64)
        ticks = (
            [float(s) for s in steps]
            if n <= max_labels
            else [float(t) for t in nice_ticks(steps[0], steps[-1], max_labels)]
        )
        return RowAxis(edges, centers, ticks, [step_label(t) for t in ticks], True, even)
    edges = np.arange(n + 1, dtype=np.float64) - 0.5
    centers = np.arange(n, dtype=np.float64)
    rows = list(range(n)) if n <= max_labels else _round_rows(steps, max_labels)
    return RowAxis(
        edges, centers, [float(r) for r in rows], [step_label(steps[r]) for r in rows], False, True
    )


def _roundness(step: int) -> int:
    """How round a step is: its count of trailing zeros (0 for 0, which is round anyway)."""
    s, k = abs(int(step)), 0
    while s and s % 10 == 0:
        s, k = s // 10, k + 1
    return k if step else 99


def _round_rows(steps: Sequence[int], max_labels: int) -> list[int]:
    """Evenly spread rows (first and last included); each interior one moved, within half a
    spacing, to the row whose step is roundest, so labels read 500, 1k, 2k rather than 537, 1.06k."""
    n = len(steps)
    base = [int(i) for i in np.linspace(0, n - 1, max_labels).round()]
    half = max(0, int((n - 1) / (max_labels - 1) / 2) - 1)
    rows = [0]
    for b in base[1:-1]:
        lo, hi = max(rows[-1] + 1, b - half), min(n - 2, b + half)
        if lo > hi:
            continue
        rows.append(max(range(lo, hi + 1), key=lambda r: (_roundness(steps[r]), -abs(r - b))))
    return [*rows, n - 1]
