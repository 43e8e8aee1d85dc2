"""Pure helpers the renderers share: colour scales, non-finite cell kinds, tick choice, row geometry.

Nothing here draws; each function maps numbers to numbers so it can be tested without a figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .options import RenderOptions, check_cmap

SEQUENTIAL = "magma"  # the reference figure: dark purple (low) to light yellow (high)
DIVERGING = "RdBu_r"  # blue below the centre, red above, white at it
DEPTH = "viridis"  # per-layer lines: dark = shallow, yellow = deep

# Cells the colour scale cannot show, in legend order, with their legend labels.
KIND_LABELS = {
    "nan": "missing / NaN",
    "+inf": "+inf",
    "-inf": "\u2212inf",
    "nonpos": "\u2264 0 (off the log scale)",
}
MISSING_GREY = "#bdbdbd"  # neutral, between the dark and light ends of every stock colormap


@dataclass(frozen=True)
class ColorScale:
    """The mapping from values to colours of one heatmap (or one shared scale of several).

    ``kind`` is linear, log or symlog; ``center`` is set for a diverging map; ``extend`` says
    which ends the data runs past (drawn as arrows on the colour bar).
    """

    kind: str
    lo: float
    hi: float
    cmap: str
    center: float | None = None
    linthresh: float | None = None
    extend: str = "neither"

    def norm(self) -> Any:
        """The matplotlib Normalize for this scale."""
        from matplotlib.colors import LogNorm, Normalize, SymLogNorm, TwoSlopeNorm

        if self.kind == "log":
            return LogNorm(self.lo, self.hi)
        if self.kind == "symlog":
            return SymLogNorm(self.linthresh or 1.0, vmin=self.lo, vmax=self.hi, base=10)
        if self.center is not None and self.lo < self.center < self.hi:
            return TwoSlopeNorm(self.center, self.lo, self.hi)
        return Normalize(self.lo, self.hi)

    def transform(self, v: np.ndarray) -> np.ndarray:
        """Values -> the axis the colours are linear in (log10, symlog); NaN where not drawable."""
        v = np.asarray(v, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "log":
                out = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            elif self.kind == "symlog":
                out = symlog(v, self.linthresh or 1.0)
            else:
                out = v.copy()
        out[~np.isfinite(v)] = np.nan
        return out


def symlog(v: np.ndarray, linthresh: float) -> np.ndarray:
    """sign(v) * log10(1 + |v| / linthresh): linear near 0, logarithmic beyond ``linthresh``."""
    return np.sign(v) * np.log10(1.0 + np.abs(v) / linthresh)


def finite_values(arrays: Sequence[np.ndarray]) -> np.ndarray:
    parts = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    allv = np.concatenate(parts) if parts else np.zeros(0)
    return allv[np.isfinite(allv)]


SIGNED_METRICS = frozenset({"mean", "min", "max", "diff", "delta"})  # may be either sign by definition
SIGNED_SHARE = 0.1  # data counts as signed when the smaller side reaches 10% of the larger one


def is_signed(arrays: Sequence[np.ndarray], metric: str | None = None) -> bool:
    """True when values of both signs matter: the metric is signed by definition (mean, min, max)
    and takes both signs, or either side reaches 10% of the other's largest magnitude (so a few
    slightly negative cells of a positive metric do not switch the map to diverging).

    >>> few_negative, both = np.array([-0.01, 1.0]), np.array([-0.5, 1.0])
    >>> is_signed([few_negative]), is_signed([both]), is_signed([few_negative], "mean")
    (False, True, True)
    """
    f = finite_values(arrays)
    if not (f.size and f.min() < 0 < f.max()):
        return False
    if metric is not None and metric.lower() in SIGNED_METRICS:
        return True
    lo, hi = -float(f.min()), float(f.max())
    return min(lo, hi) >= SIGNED_SHARE * max(lo, hi)


def auto_linthresh(finite: np.ndarray) -> float:
    """Symlog threshold: the 5th percentile of |v| > 0, at least 1e-6 of the largest |v|."""
    a = np.abs(finite)
    a = a[a > 0]
    if not a.size:
        return 1.0
    return float(max(np.percentile(a, 5), a.max() * 1e-6))


def color_scale(
    arrays: Sequence[np.ndarray], opts: RenderOptions, what: str = "the values", metric: str | None = None
) -> ColorScale:
    """Choose the colour scale for ``arrays`` (one heatmap, or all panels sharing a scale).

    Linear: from min(0, data) to the data max (the reference figure starts at 0); signed data
    (:func:`is_signed`), or ``opts.center``, gets a diverging map symmetric about the centre.
    Log: from the smallest positive value. Symlog: symmetric about 0. ``opts.vmin``/``vmax``
    override either end.

    >>> s = color_scale([np.array([[-2.0, 1.0]])], RenderOptions())
    >>> (s.lo, s.hi, s.cmap, s.center)
    (-2.0, 2.0, 'RdBu_r', 0.0)
    """
    f = finite_values(arrays)
    cmap = check_cmap(opts.cmap) if opts.cmap else None
    if opts.scale == "log":
        pos = f[f > 0]
        if not pos.size and (opts.vmin is None or opts.vmax is None):
            low = f"the smallest is {f.min():g}" if f.size else "there are no finite values"
            raise ConfigError(
                f"a log scale needs positive values, but {what} has none ({low}); "
                "use symlog (--symlog) or linear."
            )
        lo = opts.vmin if opts.vmin is not None else float(pos.min())
        hi = opts.vmax if opts.vmax is not None else float(pos.max())
        if not hi > lo:
            lo, hi = (lo / 10, lo * 10) if opts.vmin is None and opts.vmax is None else (lo, lo * 10)
        return ColorScale("log", lo, hi, cmap or SEQUENTIAL, extend=_extend(f[f > 0], lo, hi))
    if opts.scale == "symlog":
        lt = opts.linthresh or auto_linthresh(f)
        m = float(np.abs(f).max()) if f.size else 1.0
        m = m if m > 0 else 1.0
        lo = opts.vmin if opts.vmin is not None else -m
        hi = opts.vmax if opts.vmax is not None else m
        if not hi > lo:
            hi = lo + (abs(lo) or 1.0)
        center = 0.0 if lo < 0 < hi else None
        return ColorScale(
            "symlog",
            lo,
            hi,
            cmap or (DIVERGING if center is not None else SEQUENTIAL),
            center=center,
            linthresh=lt,
            extend=_extend(f, lo, hi),
        )
    if opts.center is not None or is_signed([f], metric):
        c = opts.center if opts.center is not None else 0.0
        m = float(np.abs(f - c).max()) if f.size else 1.0
        m = m if m > 0 else 1.0
        lo = opts.vmin if opts.vmin is not None else c - m
        hi = opts.vmax if opts.vmax is not None else c + m
        if not hi > lo:
            hi = lo + (abs(lo) or 1.0)
        return ColorScale("linear", lo, hi, cmap or DIVERGING, center=c, extend=_extend(f, lo, hi))
    lo = opts.vmin if opts.vmin is not None else (min(0.0, float(f.min())) if f.size else 0.0)
    hi = opts.vmax if opts.vmax is not None else (float(f.max()) if f.size else 1.0)
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    return ColorScale("linear", lo, hi, cmap or SEQUENTIAL, extend=_extend(f, lo, hi))


def _extend(f: np.ndarray, lo: float, hi: float) -> str:
    below = bool(f.size and f.min() < lo)
    above = bool(f.size and f.max() > hi)
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (below, above)
    ]


def cell_kinds(values: np.ndarray, scale: str = "linear") -> dict[str, np.ndarray]:
    """Masks of the cells a colour cannot show, only for kinds present, in legend order.

    ``nan``: missing or NaN; ``+inf``/``-inf``; ``nonpos``: finite but <= 0 on a log scale.

    >>> sorted(cell_kinds(np.array([[1.0, np.nan, np.inf]])))
    ['+inf', 'nan']
    """
    v = np.asarray(values, dtype=np.float64)
    masks = {
        "nan": np.isnan(v),
        "+inf": np.isposinf(v),
        "-inf": np.isneginf(v),
        "nonpos": (np.isfinite(v) & (v <= 0)) if scale == "log" else np.zeros(v.shape, bool),
    }
    return {k: m for k, m in masks.items() if m.any()}


# --------------------------------------------------------------------------------------------
# Ticks and row geometry
# --------------------------------------------------------------------------------------------


def _nice_strides(minimum: float) -> Any:
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
    from .._format import format_step

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
        return RowAxis(edges, centers, ticks, [format_step(t) for t in ticks], True, even)
    edges = np.arange(n + 1, dtype=np.float64) - 0.5
    centers = np.arange(n, dtype=np.float64)
    rows = list(range(n)) if n <= max_labels else _round_rows(steps, max_labels)
    return RowAxis(
        edges, centers, [float(r) for r in rows], [format_step(steps[r]) for r in rows], False, True
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


def layer_ticks(layers: Sequence[int], max_labels: int) -> tuple[list[float], list[str]]:
    """Column positions (1-based) and labels for the layer axis, at most ``max_labels``.

    Layers 1..N get round ticks (1, 5, 10, ..., N); any other set is labelled by thinning columns.
    """
    layers = [int(x) for x in layers]
    n = len(layers)
    if n <= max_labels:
        return [float(j + 1) for j in range(n)], [str(x) for x in layers]
    if layers == list(range(layers[0], layers[0] + n)):
        t = nice_ticks(layers[0], layers[-1], max_labels)
        return [float(x - layers[0] + 1) for x in t], [str(x) for x in t]
    from .static import tick_positions

    idx = tick_positions(n, max_labels)
    return [float(j + 1) for j in idx], [str(layers[j]) for j in idx]
