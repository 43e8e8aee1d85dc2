"""Colour, as both backends use it: colour scales, the cells a colour cannot show, depth colours.

Nothing here draws; each function maps numbers to numbers (or colours) so it can be tested
without a figure. Titles, labels and ticks are in :mod:`.labels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store.heatmap import Heatmap
from .options import RenderOptions, check_cmap

SEQUENTIAL = "magma"  # the reference figure: dark purple (low) to light yellow (high)
DIVERGING = "RdBu_r"  # blue below the centre, red above, white at it
DEPTH = "viridis"  # per-layer lines: dark = shallow, yellow = deep
STEPS = "plasma"  # profiles at a few steps: dark = early, yellow = late (not viridis: that is depth)
COUNTS = "magma"  # histogram counts (log scale), as the heatmap

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


def shared_default(hms: Sequence[Heatmap], opts: RenderOptions) -> bool:
    """Whether several panels share one colour scale: as asked, else exactly when they all show
    the same metric (rms and kurtosis have no common unit)."""
    if opts.shared_scale is not None:
        return opts.shared_scale
    return len({h.metric for h in hms}) == 1


def depth_colors(n_layers: int, cmap: str = DEPTH) -> np.ndarray:
    """(n_layers, 4) RGBA: layer 1 at the dark end of ``cmap``, the deepest layer at the light end.

    The light end is trimmed (to 92%) so the deepest line stays visible on white.
    """
    from matplotlib import colormaps

    pos = np.linspace(0.0, 0.92, n_layers) if n_layers > 1 else np.array([0.0])
    return colormaps[cmap](pos)


def ordered_colors(n: int, cmap: str = STEPS) -> np.ndarray:
    """(n, 4) RGBA for ``n`` ordered things (the steps of a profile): early dark, late light,
    the light end trimmed as in :func:`depth_colors`."""
    return depth_colors(n, cmap)


def rgb_text(rgba: Sequence[float]) -> str:
    """``rgb(r,g,b)`` (0..255) of a matplotlib colour, for plotly and CSS."""
    return "rgb({},{},{})".format(*(round(float(c) * 255) for c in rgba[:3]))
