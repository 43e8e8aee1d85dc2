"""One heatmap prepared for detection: the analysis scale (log10 where values span decades or the
noise is multiplicative), the noise model, outliers set aside, the map levels are judged on
(smoothed when the noise is material) and every value as a fraction of the map's range.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..store.heatmap import Heatmap
from . import noise as N
from . import patterns as P
from .observations import Cell, NoiseCheck
from .text import Fmt
from .thresholds import Thresholds


class MapView:
    """One heatmap prepared for detection. Shapes are (S, L): S steps (rows) x L layers (columns).

    ``scaled`` is the matrix on the analysis scale (log10, or linear in units of the largest
    magnitude so that nothing overflows); ``clean`` the same without non-finite cells and outliers
    (NaN there; ``ok`` marks the rest); ``den`` the map levels and structure are judged on (``clean``,
    or its 3 x 3 median when the noise is material); ``norm`` ``den`` as fractions of its range
    (0 = its minimum, 1 = its maximum) and ``norm_cells`` ``clean`` on the same scale; ``smooth``
    ``norm`` smoothed along the steps. ``noise`` is the :class:`~.noise.NoiseModel` of ``scaled``.
    """

    def __init__(self, hm: Heatmap, scale: str, t: Thresholds):
        self.hm, self.t = hm, t
        self.values = np.asarray(hm.values, dtype=np.float64)  # (S, L), recorded units
        self.steps = list(hm.steps)
        self.layers = list(hm.layers)
        self.S, self.L = self.values.shape
        fin = np.isfinite(self.values)
        self.finite = fin
        if scale == "log" and fin.any() and float(self.values[fin].min()) <= 0:
            raise ConfigError(
                "a log scale needs positive values, but the smallest value is "
                f"{float(self.values[fin].min())!r}; use scale='linear' (--scale linear)."
            )
        self.scale = P.choose_scale(self.values, scale, t.log_ratio)
        self.multiplicative = False
        big = float(np.abs(self.values[fin]).max()) if fin.any() else 0.0
        self._log_noise: N.NoiseModel | None = None
        if scale == "auto" and self.scale == "linear" and self._multiplicative(big):
            self.scale, self.multiplicative = "log", True
        self.unit = big if self.scale == "linear" and big > 0 else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(fin, self.values, np.nan)
            self.scaled = np.log10(a) if self.scale == "log" else a / self.unit
        self.noise = self._log_noise if self.multiplicative and self._log_noise else N.estimate(self.scaled)
        self.sigma = self.noise.sigma
        self.n_cells = max(1, int(fin.sum()))
        alpha = t.noise_alpha
        self.outlier_floor = self.noise.cell(alpha / (2 * self.n_cells))  # the largest of N noise draws
        if self.scaled.size:
            self.outliers, self.outlier_margins = P.outliers_and_margins(
                self.scaled, t.outlier, self.outlier_floor
            )
        else:
            self.outliers, self.outlier_margins = (
                np.zeros(self.values.shape, bool),
                np.zeros(self.values.shape),
            )
        self.clean = np.where(self.outliers, np.nan, self.scaled)
        self.ok = np.isfinite(self.clean)
        self.clean_values = np.where(self.ok, self.values, np.nan)  # recorded units
        raw_span = float(self.clean[self.ok].max() - self.clean[self.ok].min()) if self.ok.any() else 0.0
        # material: noise alone could move a cell by noise_material of the range
        self.noisy = raw_span > 0 and self.outlier_floor >= t.noise_material * raw_span
        self.den = P.median3x3(self.clean) if self.noisy else self.clean
        dok = np.isfinite(self.den)
        if dok.any():
            self.lo, self.hi = float(self.den[dok].min()), float(self.den[dok].max())
        else:
            self.lo = self.hi = float("nan")
        self.span = self.hi - self.lo if dok.any() else 0.0  # the map's range, analysis scale
        if self.span > 0:
            self.norm = (self.den - self.lo) / self.span
            self.norm_cells = (self.clean - self.lo) / self.span
        else:
            self.norm = np.where(self.ok, 0.5, np.nan)
            self.norm_cells = self.norm
        sd = self.noise.sd if math.isfinite(self.noise.sd) else self.sigma
        if self.span > 0 and self.ok.sum() >= 3:
            var = float(np.var(self.clean[self.ok]))
            self.noise_share = min(1.0, sd**2 / var) if var > 0 else 0.0
        else:
            self.noise_share = 0.0
        self.structured = self.span > 0 and self.noise_share < t.noise_share
        clean_raw = self.values[self.ok]
        digits = P.significant_digits(float(clean_raw.min()), float(clean_raw.max())) if clean_raw.size else 3
        self.fmt = Fmt(digits, self.steps)
        self.window = P.smoothing_window(self.S, t.smooth_frac)
        self.smooth = P.smooth_columns(self.norm, self.window)
        # what noise alone makes a smoothed layer series span, over every layer and trend point
        n_pts = max(1, min(self.S, t.trend_points))
        p = alpha / (2 * max(1, self.L) * n_pts)
        # a smoothed cell is the median of 9 cells, of 4 in a corner (2 or 3 on a map one cell wide)
        self.k_min = 4 if min(self.S, self.L) >= 2 else 2 if max(self.S, self.L) >= 2 else 1
        point = self.noise.median(self.k_min, p) if self.noisy else self.noise.mean(self.window, p)
        self.series_noise = 2 * point / self.span if self.span > 0 else 0.0  # fraction of the range
        self.flat_thr = max(t.flat, self.series_noise)
        self.leg_thr = max(t.leg, self.series_noise)

    def _multiplicative(self, big: float) -> bool:
        """Positive values whose noise is material and grows with the value (Box-Cox: the linear
        scale's noise is ``multiplicative`` times what the log scale's noise implies at the values'
        geometric mean)."""
        v = self.values[self.finite]
        if v.size < 8 or v.min() <= 0 or big <= 0:
            return False
        lin = N.estimate(np.where(self.finite, self.values, np.nan) / big)
        if lin.sigma <= 0:
            return False
        span = float((v.max() - v.min()) / big)
        if lin.cell(self.t.noise_alpha / (2 * v.size)) < self.t.noise_material * span:
            return False
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = N.estimate(np.log10(np.where(self.finite, self.values, np.nan)))
        self._log_noise = lg
        gm = float(10.0 ** np.mean(np.log10(v))) / big
        boxcox = lin.sigma > self.t.multiplicative * lg.sigma * math.log(10.0) * gm
        # or: the linear scale's tails are much heavier (a skewed, log-normal-like spread)
        return boxcox or (1.0 / lin.df - 1.0 / lg.df) >= 0.1

    def inv(self, x: float) -> float:
        """Analysis scale -> recorded units."""
        return float(10.0**x) if self.scale == "log" else float(x) * self.unit

    def units(self, x: float) -> float:
        """A size on the analysis scale (a noise level, a change) in reported units: recorded units
        on a linear scale, decades on a log scale."""
        return float(x) if self.scale == "log" else float(x) * self.unit

    def check(self, value: float, threshold: float, n_searched: int) -> NoiseCheck:
        """The noise test of one observation: ``value`` and ``threshold`` as fractions of the range."""
        r = P.round_sig
        ratio = value / threshold if threshold > 0 else math.inf
        return NoiseCheck(
            sigma=r(self.units(self.sigma), 3),
            threshold=r(self.units(threshold * self.span), 3),
            value=r(self.units(value * self.span), 3),
            ratio=r(ratio, 3),
            n_searched=int(n_searched),
        )

    def at_frac(self, frac: float) -> float:
        """The recorded value at ``frac`` of the way up the map's range."""
        return self.inv(self.lo + frac * self.span)

    def steps_after(self, step: int, n: int) -> list[int]:
        """``step`` and the ``n`` recorded steps after it."""
        i = self.steps.index(step)
        return self.steps[i : i + n + 1]

    def first_step_with_values(self) -> int | None:
        rows = np.flatnonzero(self.ok.any(axis=1))
        return self.steps[rows[0]] if rows.size else None

    def cell_list(self, mask: np.ndarray) -> tuple[list[Cell], bool]:
        """``[step, layer]`` of the cells in ``mask`` (row-major, at most max_cells), and whether cut."""
        ii, jj = np.nonzero(mask)
        n = self.t.max_cells
        cells = [[self.steps[i], self.layers[j]] for i, j in zip(ii[:n], jj[:n])]
        return cells, len(ii) > n
