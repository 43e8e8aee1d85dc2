"""Pure numpy pattern detectors over a (steps x layers) matrix. No I/O, no text, no globals.

Conventions: ``a`` is a float64 matrix of shape (S, L) with NaN where a cell is absent (or has been
set aside: non-finite, outlier). ``n`` is the same matrix normalised to the map's range, so 0 is the
map's minimum and 1 its maximum. Every function is deterministic and vectorised over the whole
matrix except where a per-layer loop over L short 1-D series is clearer (L <= a few hundred).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from .noise import robust_sigma


def round_sig(x: float | None, digits: int) -> float | None:
    """``x`` rounded to ``digits`` significant digits; None for None/NaN/inf (JSON has no NaN).

    >>> round_sig(0.0081234, 3), round_sig(float("nan"), 3), round_sig(1234.5, 2)
    (0.00812, None, 1200.0)
    """
    if x is None or not math.isfinite(x):
        return None
    r = float(f"{x:.{digits}g}")
    return r if math.isfinite(r) else float(x)  # 1.795e308 would round up to inf; it prints the same


def significant_digits(lo: float, hi: float, minimum: int = 3, maximum: int = 10) -> int:
    """Digits needed to tell values within [lo, hi] apart: 3 normally, more for a narrow range far
    from zero (1000.1 .. 1000.9 needs 6).

    >>> significant_digits(0.0001, 0.0081), significant_digits(1000.1, 1000.9)
    (3, 6)
    """
    span = hi - lo
    mag = max(abs(lo), abs(hi))
    if not (math.isfinite(span) and math.isfinite(mag)) or span <= 0 or mag == 0:
        return minimum
    return int(min(maximum, max(minimum, math.ceil(math.log10(mag / span)) + 2)))


def choose_scale(values: np.ndarray, requested: str, log_ratio: float) -> str:
    """``"linear"`` or ``"log"`` for the finite ``values``; ``requested`` is auto/linear/log.

    Auto picks log when every finite value is positive and the 95th percentile is at least
    ``log_ratio`` times the 5th (percentiles, so that one outlier does not decide it).
    """
    if requested in ("linear", "log"):
        return requested
    v = values[np.isfinite(values)]
    if v.size < 2 or v.min() <= 0:
        return "linear"
    p5, p95 = np.percentile(v, [5, 95])
    return "log" if p95 >= log_ratio * p5 else "linear"


def noise_sigma(a: np.ndarray) -> float:
    """Robust cell-to-cell noise of ``a`` (S, L): see :func:`.noise.robust_sigma`. Returns 0 when
    there are not enough cells to tell."""
    return robust_sigma(a)[0]


def trend_points(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced points of a series of ``n`` (ends included),
    on which a (smoothed) trend is judged, so that a long series' leftover wiggles do not add up.

    >>> trend_points(5, 50).tolist(), trend_points(101, 5).tolist()
    ([0, 1, 2, 3, 4], [0, 25, 50, 75, 100])
    """
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))


def neighbour_planes(a: np.ndarray) -> list[np.ndarray]:
    """The 8 neighbours of every cell as 8 (S, L) arrays, NaN outside the map."""
    s, l_ = a.shape
    p = np.full((s + 2, l_ + 2), np.nan)
    p[1:-1, 1:-1] = a
    out = []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            out.append(p[1 + di : 1 + di + s, 1 + dj : 1 + dj + l_])
    return out


def isolation_margin(a: np.ndarray) -> np.ndarray:
    """How far each cell stands out from its neighbourhood (NaN where it cannot be judged).

    A cell with all 8 neighbours is measured against the second highest (lowest) of them, so that a
    pair of cells still stands out while a one-cell-wide stripe (2 partners) or the corner of a
    block (3) does not. A cell on the map's edge or beside a gap (2-7 finite neighbours) is
    measured against the highest (lowest), since there a stripe has only one partner. With fewer
    than 2 finite neighbours a cell is never judged. The margin is the larger of the two sides."""
    neg = np.full(a.shape, -np.inf)
    pos = np.full(a.shape, np.inf)
    hi1, hi2, lo1, lo2 = neg.copy(), neg.copy(), pos.copy(), pos.copy()
    count = np.zeros(a.shape, dtype=np.int16)
    for nb in neighbour_planes(a):
        fin = np.isfinite(nb)
        count += fin
        x_hi = np.where(fin, nb, -np.inf)
        hi2 = np.maximum(hi2, np.minimum(hi1, x_hi))
        hi1 = np.maximum(hi1, x_hi)
        x_lo = np.where(fin, nb, np.inf)
        lo2 = np.minimum(lo2, np.maximum(lo1, x_lo))
        lo1 = np.minimum(lo1, x_lo)
    ref_hi = np.where(count == 8, hi2, hi1)
    ref_lo = np.where(count == 8, lo2, lo1)
    with np.errstate(invalid="ignore"):
        m = np.maximum(a - ref_hi, ref_lo - a)
    return np.where((count >= 2) & np.isfinite(a) & np.isfinite(m), m, np.nan)


def isolated_cells(a: np.ndarray, margin: float) -> np.ndarray:
    """Cells that stand out from their neighbourhood (:func:`isolation_margin`) by more than ``margin``."""
    if a.size == 0 or not np.isfinite(margin) or margin <= 0:
        return np.zeros(a.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(isolation_margin(a), nan=-np.inf) > margin


def median3x3(a: np.ndarray) -> np.ndarray:
    """Each cell replaced by the median of its 3 x 3 neighbourhood (itself included; fewer cells on
    the edges and beside gaps). Keeps straight edges and linear ramps, removes single-cell noise.
    NaN stays NaN."""
    if a.size == 0:
        return a.copy()
    planes = np.sort(np.stack([a, *neighbour_planes(a)]), axis=0)  # NaN sort last
    cnt = np.isfinite(planes).sum(axis=0)
    lo = np.take_along_axis(planes, np.maximum(cnt - 1, 0)[None] // 2, axis=0)[0]
    hi = np.take_along_axis(planes, (cnt // 2)[None], axis=0)[0]
    out = np.where(cnt > 0, 0.5 * (lo + hi), np.nan)
    out[~np.isfinite(a)] = np.nan
    return out


def find_outliers(a: np.ndarray, frac: float, noise_k: float, sigma: float, passes: int = 3) -> np.ndarray:
    """Isolated cells (see :func:`isolated_cells`) whose margin is at least ``frac`` of the range of
    the remaining cells and ``noise_k * sigma``; repeated (up to ``passes``) after setting them
    aside, so that a huge spike does not hide a smaller one. Returns a bool mask."""
    return outliers_and_margins(a, frac, noise_k * sigma, passes)[0]


def outliers_and_margins(
    a: np.ndarray, frac: float, floor: float, passes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find_outliers` with an absolute ``floor``: the mask, and each flagged cell's margin
    (:func:`isolation_margin` in the pass that flagged it; NaN elsewhere)."""
    mask = np.zeros(a.shape, dtype=bool)
    margins = np.full(a.shape, np.nan)
    work = a.copy()
    for _ in range(passes):
        fin = np.isfinite(work)
        if fin.sum() < 3:
            break
        r = float(work[fin].max() - work[fin].min())
        need = max(frac * r, floor)
        if not np.isfinite(need) or need <= 0:
            break
        m = isolation_margin(work)
        with np.errstate(invalid="ignore"):
            new = np.nan_to_num(m, nan=-np.inf) > need
        if not new.any():
            break
        mask |= new
        margins[new] = m[new]
        work[new] = np.nan
    return mask, margins


def smoothing_window(n: int, frac: float) -> int:
    """Odd moving-average window for a series of ``n`` points: 1 (none) for short series.

    >>> smoothing_window(10, 1 / 20), smoothing_window(5000, 1 / 20)
    (1, 251)
    """
    half = int(n * frac / 2)
    return 2 * half + 1


def smooth_columns(n: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of each column over ``window`` rows, NaN-aware (averages the finite
    cells in the window; the window shrinks at the ends). NaN stays NaN."""
    if window <= 1 or n.shape[0] <= 1:
        return n.copy()
    fin = np.isfinite(n)
    v = np.where(fin, n, 0.0)
    s = n.shape[0]
    c = np.vstack([np.zeros((1, n.shape[1])), np.cumsum(v, axis=0)])
    k = np.vstack([np.zeros((1, n.shape[1])), np.cumsum(fin, axis=0)])
    h = window // 2
    idx = np.arange(s)
    lo = np.clip(idx - h, 0, s)
    hi = np.clip(idx + h + 1, 0, s)
    tot = c[hi] - c[lo]
    cnt = k[hi] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = tot / cnt
    out[~fin] = np.nan
    return out


def classify_trend(y: np.ndarray, flat: float, leg: float, irregular_path: float) -> str | None:
    """Trend of one smoothed, normalised series ``y`` (finite values in step order).

    ``flat`` if it spans less than ``flat``; ``rise_then_fall`` when its peak is inside and both the
    rise to it and the fall after it are at least ``leg`` (``fall_then_rise`` mirrored);
    ``irregular`` when it has both, or travels more than ``irregular_path`` times the shortest path
    through its first value, extremes and last value; else ``rising``/``falling`` by its ends.
    None for an empty series.

    >>> classify_trend(np.array([0, .5, 1, .6]), 0.1, 0.05, 2.0)
    'rise_then_fall'
    """
    n = y.size
    if n == 0:
        return None
    if n == 1:
        return "flat"
    amp = float(y.max() - y.min())
    if amp < flat:
        return "flat"
    f, last = float(y[0]), float(y[-1])
    im, it = int(np.argmax(y)), int(np.argmin(y))
    top, bot = float(y[im]), float(y[it])
    peak_inner = 0 < im < n - 1 and top - f >= leg and top - last >= leg
    trough_inner = 0 < it < n - 1 and f - bot >= leg and last - bot >= leg
    if im < it:
        path = (top - f) + (top - bot) + (last - bot)
    else:
        path = (f - bot) + (top - bot) + (top - last)
    travel = float(np.abs(np.diff(y)).sum())
    if (peak_inner and trough_inner) or travel > irregular_path * max(path, 1e-300):
        return "irregular"
    if peak_inner:
        return "rise_then_fall"
    if trough_inner:
        return "fall_then_rise"
    return "rising" if last > f else "falling"


def plateau_start(
    y: np.ndarray, tol: float, max_decline: float, min_tail: float, rising: bool = True
) -> int | None:
    """Index from which a rising series ``y`` stays near its peak (mirrored for a falling one).

    The first index within ``tol`` of the rise below the peak, provided the series never drops more
    than ``max_decline`` of the rise below the peak afterwards and at least ``max(2, min_tail * n)``
    points remain. None when the series keeps moving to the end, or never moved.

    >>> plateau_start(np.array([0, .4, .8, .95, 1, .97, .96, .96]), 0.1, 0.25, 0.25)
    3
    """
    y = np.asarray(y, dtype=np.float64)
    if not rising:
        y = -y
    n = y.size
    if n < 3:
        return None
    top = float(y.max())
    rise = top - float(y[0])
    if rise <= 0:
        return None
    k0 = int(np.argmax(y >= top - tol * rise))
    if k0 == 0 or n - k0 < max(2, math.ceil(min_tail * n)):
        return None
    if float(y[k0:].min()) < top - max_decline * rise:
        return None
    return k0


def _fill_along_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-fill NaN along axis 1 (leading NaN take the row's first finite value).
    Returns the filled matrix and a bool per row: has any finite value."""
    fin = np.isfinite(m)
    has = fin.any(axis=1)
    cols = np.arange(m.shape[1])
    idx = np.where(fin, cols[None, :], 0)
    idx = np.maximum.accumulate(idx, axis=1)
    first = np.argmax(fin, axis=1)
    idx = np.where(np.maximum.accumulate(fin, axis=1), idx, first[:, None])
    filled = np.take_along_axis(m, idx, axis=1)
    return filled, has


def monotone_rows(m: np.ndarray, min_change: float, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """For every row of ``m`` (profiles along axis 1): does it increase (end - start >= min_change
    and never falls more than ``tol`` below its running maximum), and does it decrease (mirrored)?
    Gaps are ignored. Returns two bool arrays, one value per row."""
    if m.size == 0:
        z = np.zeros(m.shape[0], dtype=bool)
        return z, z.copy()
    filled, has = _fill_along_rows(m)
    net = filled[:, -1] - filled[:, 0]
    up_dd = (np.maximum.accumulate(filled, axis=1) - filled).max(axis=1)
    down_dd = (filled - np.minimum.accumulate(filled, axis=1)).max(axis=1)
    inc = has & (net >= min_change) & (up_dd <= tol)
    dec = has & (-net >= min_change) & (down_dd <= tol)
    return inc, dec


def profile_direction(p: np.ndarray, min_change: float, tol: float) -> str | None:
    """``"increasing"``/``"decreasing"``/None for a 1-D profile (NaN ignored); see monotone_rows.

    >>> profile_direction(np.array([0, .1, .5, .9, 1]), 0.2, 0.1)
    'increasing'
    >>> profile_direction(np.array([0, 1, 0]), 0.2, 0.1) is None
    True
    """
    inc, dec = monotone_rows(p[None, :], min_change, tol)
    return "increasing" if inc[0] else "decreasing" if dec[0] else None


def nanmedian_axis(m: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian without the all-NaN warning (all-NaN slices give NaN)."""
    if m.size == 0:
        return np.full(m.shape[1 - axis], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(m, axis=axis)


def jump_events(
    n: np.ndarray, jump: float, ratio: float, floor: float, min_layers: int
) -> list[tuple[int, str, np.ndarray, np.ndarray]]:
    """Step transitions where several layers jump together.

    A cell jumps between rows i and i+1 when its change is at least ``jump``, ``ratio`` times the
    layer's median absolute change and ``floor``. A transition is an event (per direction) when at
    least ``min_layers`` layers jump the same way. Returns ``(i + 1, direction, layer_idx,
    changes)`` sorted by row, ``i + 1`` being the row where the new value is first seen.
    """
    if n.shape[0] < 2 or n.shape[1] == 0:
        return []
    d = np.diff(n, axis=0)  # (S-1, L)
    med = nanmedian_axis(np.abs(d), axis=0)
    thr = np.maximum(np.maximum(jump, ratio * np.nan_to_num(med, nan=0.0)), floor)[None, :]
    with np.errstate(invalid="ignore"):
        up = d >= thr
        down = d <= -thr
    events = []
    for mask, direction in ((up, "increasing"), (down, "decreasing")):
        rows = np.flatnonzero(mask.sum(axis=1) >= min_layers)
        for i in rows:
            cols = np.flatnonzero(mask[i])
            events.append((int(i) + 1, direction, cols, d[i, cols]))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted integer indices as (first, last) pairs.

    >>> runs([0, 1, 2, 5, 7, 8])
    [(0, 2), (5, 5), (7, 8)]
    """
    out: list[tuple[int, int]] = []
    for i in sorted(set(int(x) for x in indices)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def group_bands(keys: Sequence[tuple[object, ...]], y: np.ndarray, tol: float) -> list[list[int]]:
    """Split column indices 0..L-1 into bands of adjacent columns that share ``keys[j]`` and whose
    smoothed normalised series ``y[:, j]`` differ from the band's first column by at most ``tol``
    on average (over the steps where both have values; no common step -> different)."""
    bands: list[list[int]] = []
    for j in range(len(keys)):
        if bands:
            a = bands[-1][0]
            if keys[j] == keys[a]:
                both = np.isfinite(y[:, a]) & np.isfinite(y[:, j])
                if not both.any() and not np.isfinite(y[:, a]).any() and not np.isfinite(y[:, j]).any():
                    bands[-1].append(j)  # two layers without values
                    continue
                if both.any() and float(np.mean(np.abs(y[both, a] - y[both, j]))) <= tol:
                    bands[-1].append(j)
                    continue
        bands.append([j])
    return bands
