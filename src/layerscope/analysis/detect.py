"""Detection: from a heatmap to numbers — the analysis scale, per-layer details, typed observations
and bands of similar layers. No sentence is written here (that is :mod:`.narrative`).

:class:`MapView` prepares the matrix once (analysis scale, noise, outliers set aside, values
normalised to the map's range); :func:`layer_details`, :func:`observations` and :func:`bands` read
it. Every detector is a function ``(view, details) -> Observation | None`` built from the pure
numpy helpers of :mod:`.patterns`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import cells as C
from . import patterns as P
from .observations import (
    ConsistentFacts,
    DepthGradientFacts,
    HotspotFacts,
    Observation,
    SaturationFacts,
    StepTrendFacts,
    SuddenChangeFacts,
)
from .view import MapView

# --------------------------------------------------------------------------------------------
# Per layer
# --------------------------------------------------------------------------------------------


_DETAIL_KEYS = (
    "layer",
    "name",
    "trend",
    "level",
    "first",
    "last",
    "min",
    "max",
    "peak_step",
    "plateau_from",
    "first_step",
    "last_step",
    "min_step",
    "n_values",
)


@dataclass(frozen=True)
class LayerDetail:
    """One layer's trend, level and key values (recorded units, rounded as quoted)."""

    layer: int
    name: str
    trend: str | None = None
    level: str | None = None
    first: float | None = None
    last: float | None = None
    min: float | None = None
    max: float | None = None
    peak_step: int | None = None
    plateau_from: int | None = None
    first_step: int | None = None
    last_step: int | None = None
    min_step: int | None = None
    n_values: int = 0
    # normalised (0..1 of the range) first, last and largest value; not in the JSON
    nfirst: float | None = None
    nlast: float | None = None
    nmax: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _DETAIL_KEYS}


def layer_detail(v: MapView, j: int) -> LayerDetail:
    f, t = v.fmt, v.t
    idx = np.flatnonzero(v.ok[:, j])
    if idx.size == 0:
        return LayerDetail(v.layers[j], v.hm.layer_names[j])
    raw = v.values[idx, j]
    med = float(np.median(v.norm[idx, j]))
    if v.span > 0:
        level = "low" if med < t.level_low else "high" if med > t.level_high else "mid"
    else:
        level = "mid"
    pts = idx[P.trend_points(idx.size, t.trend_points)]  # rows the trend is judged at
    y = v.smooth[pts, j]
    trend = P.classify_trend(y, v.flat_thr, v.leg_thr, t.irregular_path)
    plateau = None
    if trend in ("rising", "rise_then_fall", "falling", "fall_then_rise"):
        k = P.plateau_start(
            y,
            t.plateau_tol,
            t.plateau_max_decline,
            t.plateau_min_tail,
            rising=trend in ("rising", "rise_then_fall"),
        )
        plateau = v.steps[pts[k]] if k is not None else None
    ipk, imn = int(np.argmax(raw)), int(np.argmin(raw))
    return LayerDetail(
        layer=v.layers[j],
        name=v.hm.layer_names[j],
        trend=trend,
        level=level,
        first=f.r(float(raw[0])),
        last=f.r(float(raw[-1])),
        min=f.r(float(raw[imn])),
        max=f.r(float(raw[ipk])),
        peak_step=v.steps[idx[ipk]],
        plateau_from=plateau,
        first_step=v.steps[idx[0]],
        last_step=v.steps[idx[-1]],
        min_step=v.steps[idx[imn]],
        n_values=int(idx.size),
        nfirst=float(v.norm[idx[0], j]),
        nlast=float(v.norm[idx[-1], j]),
        nmax=float(v.norm[idx, j].max()),
    )


def layer_details(v: MapView) -> list[LayerDetail]:
    """One :class:`LayerDetail` per layer, in depth order."""
    return [layer_detail(v, j) for j in range(v.L)]


# --------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------


def _median_noise(v: MapView, n: int, p: float) -> float:
    """What noise alone moves the median of ``n`` cells by (probability ``p``), as a fraction of the range."""
    return v.noise.median(max(1, n), p) / v.span if v.span > 0 else 0.0


def depth_gradient(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    has = v.ok.any(axis=0)
    if has.sum() < t.min_gradient_points:
        return None
    prof = P.nanmedian_axis(v.norm[:, has], axis=0)
    n_med = int(v.ok[:, has].sum(axis=0).min())  # the fewest steps a layer's median rests on
    a = t.noise_alpha
    net_noise = 2 * _median_noise(v, n_med, a / 4)  # two medians, either way
    tol = max(t.monotone_tol, 2 * _median_noise(v, n_med, a / (2 * int(has.sum()))))
    direction = P.profile_direction(prof, max(t.gradient, net_noise), tol)
    if direction is None:
        return None
    cols = np.flatnonzero(has)
    inc, dec = P.monotone_rows(v.norm[:, has], t.gradient, t.monotone_tol)
    rows = np.flatnonzero(inc if direction == "increasing" else dec)
    steps = [v.steps[i] for i in rows]
    raw_med = P.nanmedian_axis(v.clean_values[:, cols[[0, -1]]], axis=0)
    facts = DepthGradientFacts(
        from_layer=v.layers[cols[0]],
        to_layer=v.layers[cols[-1]],
        from_value=f.r(float(raw_med[0])),
        to_value=f.r(float(raw_med[1])),
        drawdown_pct=f.pct(100 * tol),
        n_steps_holding=len(steps),
        n_steps=int(v.ok.any(axis=1).sum()),
        noise=v.check(abs(float(prof[-1] - prof[0])), net_noise, int(has.sum())),
    )
    return Observation("depth_gradient", [v.layers[j] for j in cols], steps, facts, direction)


def step_trend(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    has = v.ok.any(axis=1)
    if has.sum() < t.min_gradient_points:
        return None
    rows = np.flatnonzero(has)
    prof = P.nanmedian_axis(v.norm[rows], axis=1)
    n_med = int(v.ok[rows].sum(axis=1).min())  # the fewest layers a step's median rests on
    a = t.noise_alpha
    w = P.smoothing_window(rows.size, 0.1) if v.noisy else 1  # noisy: judge the smoothed profile
    if w > 1:
        prof = P.smooth_columns(prof[:, None], w)[:, 0]
    ends = w // 2 + 1  # medians averaged at each end
    net_noise = 2 * _median_noise(v, n_med, a / 4) / math.sqrt(ends)
    tol = max(t.monotone_tol, 2 * _median_noise(v, n_med, a / (2 * rows.size)) / math.sqrt(w))
    direction = P.profile_direction(prof, max(t.gradient, net_noise), tol)
    if direction is None:
        return None
    sign = 1.0 if direction == "increasing" else -1.0
    follow = [
        x.layer
        for x in details
        if x.nfirst is not None and x.nlast is not None and sign * (x.nlast - x.nfirst) >= t.gradient
    ]
    raw_med = P.nanmedian_axis(v.clean_values[rows[[0, -1]]], axis=1)
    facts = StepTrendFacts(
        from_step=v.steps[rows[0]],
        to_step=v.steps[rows[-1]],
        from_value=f.r(float(raw_med[0])),
        to_value=f.r(float(raw_med[1])),
        n_layers_following=len(follow),
        n_layers=sum(1 for x in details if x.nfirst is not None),
        change_pct=f.pct(100 * t.gradient),
        noise=v.check(abs(float(prof[-1] - prof[0])), net_noise, int(rows.size)),
    )
    return Observation("step_trend", follow, [v.steps[i] for i in rows], facts, direction)


def hotspot(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    dok = np.isfinite(v.norm)
    with np.errstate(invalid="ignore"):
        hot = dok & (v.norm >= t.hotspot)
    if not hot.any():
        return None
    # the highest level must stand above the map's median by more than the largest of N noise
    # draws: of one cell, or (smoothed map) of the median of the k cells around it (4 in a corner)
    n = int(dok.sum())
    above = np.where(hot, v.norm - float(np.median(v.norm[dok])), np.nan)
    if v.noisy:
        k = np.zeros(v.norm.shape, dtype=np.int64) + v.ok
        for nb in P.neighbour_planes(v.clean):
            k += np.isfinite(nb)
        by_k = np.full(10, np.inf)
        for x in np.unique(k[hot]):
            by_k[x] = v.noise.median(int(x), t.noise_alpha / n) / v.span
        floor_map = by_k[k]
    else:
        floor_map = np.full(v.norm.shape, v.noise.cell(t.noise_alpha / n) / v.span)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(hot, above / np.where(floor_map > 0, floor_map, np.inf), np.nan)
    best = np.unravel_index(int(np.nanargmax(np.nan_to_num(score, nan=-np.inf))), score.shape)
    level, floor = float(above[best]), float(floor_map[best])
    if level < floor:
        return None
    ii, jj = np.nonzero(hot)
    flat = np.where(hot & v.ok, v.clean, -np.inf)
    if not np.isfinite(flat).any():
        flat = np.where(v.ok, v.clean, -np.inf)
    i_max, j_max = np.unravel_index(int(np.argmax(flat)), flat.shape)
    facts = HotspotFacts(
        threshold=f.r(v.at_frac(t.hotspot)),
        top_pct=f.pct(100 * (1 - t.hotspot)),
        n_cells=int(hot.sum()),
        cells_pct=f.pct(100 * hot.sum() / max(1, dok.sum())),
        max=f.r(float(v.values[i_max, j_max])),
        max_step=v.steps[i_max],
        max_layer=v.layers[j_max],
        noise=v.check(level, floor, n),
    )
    layers = sorted({v.layers[j] for j in jj})
    return Observation("hotspot", layers, sorted({v.steps[i] for i in ii}), facts)


def consistent(v: MapView, details: list[LayerDetail], low: bool) -> Observation | None:
    t, f = v.t, v.fmt
    dok = np.isfinite(v.norm)
    has = dok.any(axis=0)
    with np.errstate(invalid="ignore"):
        if low:
            ok = np.where(dok, v.norm <= t.consistent_low, True).all(axis=0) & has
        else:
            ok = np.where(dok, v.norm >= t.consistent_high, True).all(axis=0) & has
    if not ok.any() or ok.sum() == has.sum():
        return None  # nothing stands apart if every layer is in it
    cols = np.flatnonzero(ok)
    # these layers' medians must stand apart from the other layers' by more than medians' noise
    meds = P.nanmedian_axis(v.norm_cells, axis=0)
    sign = 1.0 if low else -1.0
    rest = np.flatnonzero(has & ~ok)
    gap = float(sign * (np.median(meds[rest]) - (meds[cols].max() if low else meds[cols].min())))
    n_med = int(v.ok[:, has].sum(axis=0).min())
    floor = 2 * _median_noise(v, n_med, t.noise_alpha / (4 * int(has.sum())))
    if gap < floor:
        return None
    vals = v.clean_values[:, cols]
    frac = t.consistent_low if low else t.consistent_high
    # how much these layers still move on their own scale (the shared colour scale hides it)
    best = None
    for j in cols:
        col = v.clean_values[v.ok[:, j], j]
        if col.size and col.min() > 0:
            fac = float(col.max() / col.min())
            if best is None or fac > best[0]:
                best = (fac, j, float(col.min()), float(col.max()))
    own: dict[str, Any] = {}
    if best is not None:
        own = dict(
            own_factor=f.r(best[0]), own_layer=v.layers[best[1]], own_min=f.r(best[2]), own_max=f.r(best[3])
        )
    facts = ConsistentFacts(
        bound=f.r(v.at_frac(frac)),
        pct=f.pct(100 * (frac if low else 1 - frac)),
        min=f.r(float(np.nanmin(vals))),
        max=f.r(float(np.nanmax(vals))),
        noise=v.check(gap, floor, int(has.sum())),
        **own,
    )
    steps = sorted({v.steps[i] for i in np.flatnonzero(v.ok[:, cols].any(axis=1))})
    kind = "consistently_low" if low else "consistently_high"
    return Observation(kind, [v.layers[j] for j in cols], steps, facts)


def saturation(v: MapView, details: list[LayerDetail], jumped: set[tuple[int, int]]) -> Observation | None:
    """Layers that rise and then stay near their peak; not those whose plateau starts at a jump."""
    t, f = v.t, v.fmt
    sat = [
        x
        for x in details
        if x.plateau_from is not None
        and x.trend in ("rising", "rise_then_fall")
        and (x.layer, x.plateau_from) not in jumped
        and (x.nmax or 0.0) - (x.nfirst or 0.0) >= v.series_noise  # the rise beats the noise
    ]
    if not sat:
        return None
    steps = sorted({x.plateau_from for x in sat if x.plateau_from is not None})
    peaks = [x.max for x in sat if x.max is not None]
    declines = [max(0.0, x.max - x.last) for x in sat if x.max is not None and x.last is not None]
    declining = max((x.nmax or 0.0) - (x.nlast or 0.0) for x in sat) >= v.leg_thr
    rise = min((x.nmax or 0.0) - (x.nfirst or 0.0) for x in sat)
    facts = SaturationFacts(
        tol_pct=f.pct(100 * t.plateau_tol),
        from_min=steps[0],
        from_max=steps[-1],
        peak_min=min(peaks),
        peak_max=max(peaks),
        decline_max=f.r(max(declines)),
        decline_pct_max=f.pct(100 * t.plateau_max_decline),
        declining=bool(declining),
        noise=v.check(rise, v.series_noise, v.L),
    )
    return Observation("saturation", [x.layer for x in sat], steps, facts)


def observations(v: MapView, details: list[LayerDetail]) -> list[Observation]:
    """Every observation, in report order: map-wide structure, per-layer levels, saturation, jumps,
    then the cells set aside (outliers, infinite, missing)."""
    out: list[Observation] = []
    if v.span > 0:
        for fn in (depth_gradient, step_trend, hotspot):
            o = fn(v, details)
            if o:
                out.append(o)
        sudden = C.sudden_changes(v)
        # a layer that jumps up and then stays is described by the jump, not as saturating
        jumped = {
            (lay, step)
            for o in sudden
            if o.direction == "increasing" and isinstance(o.facts, SuddenChangeFacts)
            for e in o.facts.events
            for lay in e.layers
            for step in v.steps_after(e.step, 2 if v.noisy else 0)  # smoothing can delay a plateau
        }
        for o in (
            consistent(v, details, low=True),
            consistent(v, details, low=False),
            saturation(v, details, jumped),
        ):
            if o:
                out.append(o)
        out.extend(sudden)
    for o in (C.outliers(v), C.infinite_values(v), C.missing_values(v)):
        if o:
            out.append(o)
    return out
