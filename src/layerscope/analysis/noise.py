"""The noise model the report judges every structural claim against.

Cell-to-cell noise is modelled as independent draws from a scaled Student t distribution on the
analysis scale (log10 where the noise is multiplicative): a robust scale from the median absolute
second difference (which a linear trend does not move) and a tail weight ``df`` fitted to the
ratio of two quantiles of the residuals, so that heavy tails neither inflate the scale (as a
standard deviation would) nor hide behind it (as a Gaussian threshold would). Each claim then has
to beat what the most extreme of the statistics searched would reach by noise alone: the
``1 - alpha / n`` quantile of that statistic under the model (Bonferroni over the ``n`` cells,
steps or layers searched), computed exactly for a single cell (the t quantile), for a median of
``k`` cells (order statistics) and for a mean of ``k`` cells (the larger of the central-limit and
the single-big-jump tail).

Pure numpy and :mod:`math`; the t distribution's tail comes from the regularized incomplete beta
function (a continued fraction), inverted by bisection on a log scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_MAD_TO_SIGMA = 1.4826  # median |x| of a normal sample -> its standard deviation
DF_MAX = 200.0  # beyond this the t distribution is treated as normal
DF_MIN = 1.0


# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b).

    >>> round(betainc(2.0, 3.0, 0.4), 6)   # P(Beta(2, 3) <= 0.4)
    0.5248
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(x: float, df: float) -> float:
    """P(T > x) for Student's t with ``df`` degrees of freedom (the normal one beyond DF_MAX).

    >>> round(t_sf(2.0, 3.0), 5), round(t_sf(1.96, math.inf), 4)
    (0.06966, 0.025)
    """
    if df >= DF_MAX:
        return 0.5 * math.erfc(x / math.sqrt(2.0))
    if x < 0:
        return 1.0 - t_sf(-x, df)
    return 0.5 * betainc(df / 2.0, 0.5, df / (df + x * x))


@lru_cache(maxsize=4096)
def t_isf(p: float, df: float) -> float:
    """The x with P(T > x) = p, for 0 < p < 0.5 (Student's t; normal beyond DF_MAX).

    >>> round(t_isf(0.025, math.inf), 3), round(t_isf(0.025, 3.0), 3)
    (1.96, 3.182)
    """
    if not 0.0 < p < 0.5:
        raise ValueError(f"p={p} is not in (0, 0.5)")
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > p:
        lo, hi = hi, hi * 4.0
        if hi > 1e300:
            return math.inf
    for _ in range(200):  # bisection; geometric once the bracket spans decades
        mid = math.sqrt(lo * hi) if lo > 0 and hi / lo > 4 else 0.5 * (lo + hi)
        if t_sf(mid, df) > p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return 0.5 * (lo + hi)


def t_density0(df: float) -> float:
    """The density of Student's t at 0 (1/sqrt(2 pi) for the normal)."""
    if df >= DF_MAX:
        return 1.0 / math.sqrt(2.0 * math.pi)
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)


def _ratio(df: float, p_hi: float, p_lo: float) -> float:
    """Quantile ratio of |T|: Q_|T|(1 - 2 p_hi) / Q_|T|(1 - 2 p_lo)."""
    return t_isf(p_hi, df) / t_isf(p_lo, df)


_DF_GRID = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)


@lru_cache(maxsize=8)
def _ratio_table(p_hi: float, p_lo: float) -> tuple[tuple[float, float], ...]:
    return tuple((df, _ratio(df, p_hi, p_lo)) for df in (*_DF_GRID, math.inf))


def fit_df(abs_resid: np.ndarray) -> float:
    """Tail weight: the t degrees of freedom whose |T| has the same ratio of the 95th (90th for
    fewer than 200 residuals) to the 50th percentile as ``abs_resid``; inf when the tails are no
    heavier than the normal's, DF_MIN when heavier than Cauchy's."""
    n = abs_resid.size
    if n < 8:
        return math.inf
    p_hi = 0.025 if n >= 200 else 0.05  # upper tail of T beyond the quantile: |T| at 95% / 90%
    q_hi, q_lo = np.quantile(abs_resid, [1 - 2 * p_hi, 0.5])
    if q_lo <= 0:
        return math.inf  # mostly exact zeros: values on a grid (rounding), not a tail to fit
    r = float(q_hi / q_lo)
    table = _ratio_table(p_hi, 0.25)
    if r <= table[-1][1]:
        return math.inf
    if r >= table[0][1]:
        return DF_MIN
    for (df_a, r_a), (df_b, r_b) in zip(table, table[1:]):
        if r_b <= r <= r_a:
            if math.isinf(df_b):
                return df_a if r >= 0.5 * (r_a + r_b) else math.inf
            w = (r_a - r) / (r_a - r_b)  # interpolate in 1/df
            return 1.0 / ((1 - w) / df_a + w / df_b)
    return math.inf  # pragma: no cover - the table is monotone


def norm_isf(p: float) -> float:
    """The x with P(Z > x) = p for a standard normal Z."""
    return t_isf(p, math.inf)


# --------------------------------------------------------------------------------------------
# The model of one map's noise
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseModel:
    """Cell noise ~ ``scale`` x t(``df``), independent between cells, on the analysis scale.

    ``sigma`` is the robust (MAD-equivalent) standard deviation, the number reported as the map's
    noise. ``sd`` is the standard deviation the model implies (inf for df <= 2).

    >>> m = NoiseModel.gaussian(0.1)
    >>> round(m.cell(0.025), 4), round(m.median(9, 0.025) / m.cell(0.025), 2)
    (0.196, 0.41)
    """

    sigma: float
    df: float
    n_resid: int = 0

    @classmethod
    def gaussian(cls, sigma: float) -> NoiseModel:
        return cls(float(sigma), math.inf)

    @property
    def scale(self) -> float:
        """The t scale whose median |x| matches sigma's (sigma = 1.4826 * median |x|)."""
        return self.sigma / _MAD_TO_SIGMA / t_isf(0.25, self.df)

    @property
    def sd(self) -> float:
        if self.df >= DF_MAX:
            return self.sigma
        return self.scale * math.sqrt(self.df / (self.df - 2)) if self.df > 2 else math.inf

    def _q(self, p: float, df: float) -> float:
        return self.scale * t_isf(min(max(p, 1e-300), 0.499), df) if self.sigma > 0 else 0.0

    def cell(self, p: float) -> float:
        """One cell's noise exceeds this with probability ``p`` (one-sided)."""
        return self._q(p, self.df)

    def diff(self, p: float) -> float:
        """The difference of two cells exceeds this with probability ``p``: the larger of the
        normal approximation and the single-big-jump tail."""
        if self.sigma <= 0:
            return 0.0
        normal = math.sqrt(2.0) * self.sd * norm_isf(p) if math.isfinite(self.sd) else 0.0
        return max(normal, self.cell(p / 2.0), math.sqrt(2.0) * self.cell(p))

    def mean(self, k: int, p: float) -> float:
        """The mean of ``k`` cells exceeds this with probability ``p``."""
        k = max(1, int(k))
        if k == 1 or self.sigma <= 0:
            return self.cell(p)
        normal = self.sd / math.sqrt(k) * norm_isf(p) if math.isfinite(self.sd) else 0.0
        return max(normal, self.cell(p / k) / k)

    def median(self, k: int, p: float) -> float:
        """The median of ``k`` cells exceeds this with probability ``p`` (exact for odd ``k``:
        at least (k+1)/2 of the cells must exceed it; a normal approximation beyond 25 cells)."""
        k = max(1, int(k))
        if k == 1 or self.sigma <= 0:
            return self.cell(p)
        if k > 25:
            sd_med = self.scale / (2.0 * t_density0(self.df) * math.sqrt(k))
            return sd_med * norm_isf(p)
        m = k // 2 + 1  # cells that must exceed x
        lo, hi = 1e-300, 0.5  # the single-cell tail probability f with P(Bin(k, f) >= m) = p
        for _ in range(100):
            mid = math.sqrt(lo * hi)
            if betainc(m, k - m + 1, mid) > p:
                hi = mid
            else:
                lo = mid
            if hi / lo < 1.0001:
                break
        return self.cell(lo)


def robust_sigma(a: np.ndarray) -> tuple[float, np.ndarray]:
    """Robust cell noise of ``a`` (S, L) and the residuals it came from: second differences along
    the steps or along the layers, whichever gives the smaller scale (noise shows in both
    directions, structure usually in one), as 1.4826 * median |d2| / sqrt(6)."""
    best: tuple[float, np.ndarray] | None = None
    for axis in (0, 1):
        if a.shape[axis] < 3:
            continue
        d2 = np.diff(a, n=2, axis=axis)
        d2 = d2[np.isfinite(d2)]
        if not d2.size:
            continue
        s = float(_MAD_TO_SIGMA * np.median(np.abs(d2)) / math.sqrt(6.0))
        if best is None or s < best[0]:
            best = (s, d2)
    return best if best is not None else (0.0, np.zeros(0))


def tail_residuals(a: np.ndarray, axis: int) -> np.ndarray:
    """Residuals whose tails are those of the cell noise: each cell minus the median of its two
    neighbours on each side along ``axis`` (a linear trend leaves none)."""
    a = np.moveaxis(a, axis, 0)
    if a.shape[0] < 5:
        return np.zeros(0)
    n1, n2, n3, n4 = a[:-4], a[1:-3], a[3:-1], a[4:]
    with np.errstate(invalid="ignore"):
        # the median of 4 is the mean of the middle two: (sum - max - min) / 2
        hi = np.maximum(np.maximum(n1, n2), np.maximum(n3, n4))
        lo = np.minimum(np.minimum(n1, n2), np.minimum(n3, n4))
        r = a[2:-2] - 0.5 * (n1 + n2 + n3 + n4 - hi - lo)
    return r[np.isfinite(r)]


def estimate(a: np.ndarray) -> NoiseModel:
    """The noise model of ``a`` (S, L) on its analysis scale (NaN cells ignored)."""
    sigma, _ = robust_sigma(a)
    if sigma <= 0:
        return NoiseModel(0.0, math.inf)
    fin = a[np.isfinite(a)]
    if fin.size > 2 and sigma**2 < 0.01 * float(np.var(fin)):
        # structure is 100x the noise: the residuals' tails are its curvature, not noise
        return NoiseModel(sigma, math.inf)
    # the tail weight is read along the axis where the residuals are smaller (structure, a jump
    # or an edge, shows mostly along one), among those with enough of them
    cands = [r for r in (tail_residuals(a, 0), tail_residuals(a, 1)) if r.size >= 8]
    r = min(cands, key=lambda x: float(np.median(np.abs(x - np.median(x))))) if cands else np.zeros(0)
    # residuals from a 4-neighbour median have lighter tails than the cells (t3 cells read as t4):
    # 0.7 brings the fit back (calibrated by simulation on t2 to t10), erring on the heavy side
    # each side on its own, and the heavier counts: a skewed noise (log-normal on a linear scale)
    # has one long tail, which a symmetric fit would average away
    df = math.inf
    if r.size:
        c = r - np.median(r)
        both, side = fit_df(np.abs(c)), min(fit_df(c[c > 0]), fit_df(-c[c < 0]))
        # one side counts only when clearly heavier (a fit to half the residuals is noisier)
        df = 0.7 * (side if side < 0.6 * both else both)
    # few residuals cannot show a light tail: do not assume one
    cap = 4.0 if r.size < 60 else 8.0 if r.size < 300 else 30.0 if r.size < 3000 else math.inf
    return NoiseModel(sigma, min(df, cap), int(r.size))
