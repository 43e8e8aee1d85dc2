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

from ..errors import ConfigError
from ..store.heatmap import Heatmap
from . import patterns as P
from .observations import (
    Cell,
    ConsistentFacts,
    DepthGradientFacts,
    HotspotFacts,
    InfiniteFacts,
    JumpEvent,
    MissingFacts,
    Observation,
    OutlierFacts,
    SaturationFacts,
    StepTrendFacts,
    SuddenChangeFacts,
)
from .text import Fmt
from .thresholds import Thresholds


class MapView:
    """One heatmap prepared for detection. Shapes are (S, L): S steps (rows) x L layers (columns).

    ``scaled`` is the matrix on the analysis scale (log10, or linear in units of the largest
    magnitude so that nothing overflows); ``clean`` the same without non-finite cells and outliers
    (NaN there; ``ok`` marks the rest); ``norm`` the clean cells as fractions of the map's range
    (0 = its minimum, 1 = its maximum); ``smooth`` ``norm`` smoothed along the steps.
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
        big = float(np.abs(self.values[fin]).max()) if fin.any() else 0.0
        self.unit = big if self.scale == "linear" and big > 0 else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(fin, self.values, np.nan)
            self.scaled = np.log10(a) if self.scale == "log" else a / self.unit
        self.sigma = P.noise_sigma(self.scaled)
        self.outliers = (
            P.find_outliers(self.scaled, t.outlier, t.outlier_noise_k, self.sigma)
            if self.scaled.size
            else np.zeros(self.values.shape, bool)
        )
        self.clean = np.where(self.outliers, np.nan, self.scaled)
        self.ok = np.isfinite(self.clean)
        self.clean_values = np.where(self.ok, self.values, np.nan)  # recorded units
        if self.ok.any():
            self.lo, self.hi = float(self.clean[self.ok].min()), float(self.clean[self.ok].max())
        else:
            self.lo = self.hi = float("nan")
        self.span = self.hi - self.lo if self.ok.any() else 0.0  # the map's range, analysis scale
        if self.span > 0:
            self.norm = (self.clean - self.lo) / self.span
        else:
            self.norm = np.where(self.ok, 0.5, np.nan)
        self.sigma_n = self.sigma / self.span if self.span > 0 else 0.0
        if self.span > 0 and self.ok.sum() >= 3:
            var = float(np.var(self.clean[self.ok]))
            self.noise_share = min(1.0, self.sigma**2 / var) if var > 0 else 0.0
        else:
            self.noise_share = 0.0
        self.structured = self.span > 0 and self.noise_share < t.noise_share
        clean_raw = self.values[self.ok]
        digits = P.significant_digits(float(clean_raw.min()), float(clean_raw.max())) if clean_raw.size else 3
        self.fmt = Fmt(digits, self.steps)
        self.window = P.smoothing_window(self.S, t.smooth_frac)
        self.smooth = P.smooth_columns(self.norm, self.window)
        sig_eff = self.sigma_n / math.sqrt(self.window)
        self.flat_thr = max(t.flat, t.flat_noise_k * sig_eff)
        self.leg_thr = max(t.leg, t.leg_noise_k * sig_eff)

    def inv(self, x: float) -> float:
        """Analysis scale -> recorded units."""
        return float(10.0**x) if self.scale == "log" else float(x) * self.unit

    def at_frac(self, frac: float) -> float:
        """The recorded value at ``frac`` of the way up the map's range."""
        return self.inv(self.lo + frac * self.span)

    def first_step_with_values(self) -> int | None:
        rows = np.flatnonzero(self.ok.any(axis=1))
        return self.steps[rows[0]] if rows.size else None

    def cell_list(self, mask: np.ndarray) -> tuple[list[Cell], bool]:
        """``[step, layer]`` of the cells in ``mask`` (row-major, at most max_cells), and whether cut."""
        ii, jj = np.nonzero(mask)
        n = self.t.max_cells
        cells = [[self.steps[i], self.layers[j]] for i, j in zip(ii[:n], jj[:n])]
        return cells, len(ii) > n


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


def depth_gradient(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    has = v.ok.any(axis=0)
    if has.sum() < t.min_gradient_points:
        return None
    prof = P.nanmedian_axis(v.norm[:, has], axis=0)
    direction = P.profile_direction(prof, t.gradient, t.monotone_tol)
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
        drawdown_pct=f.pct(100 * t.monotone_tol),
        n_steps_holding=len(steps),
        n_steps=int(v.ok.any(axis=1).sum()),
    )
    return Observation("depth_gradient", [v.layers[j] for j in cols], steps, facts, direction)


def step_trend(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    has = v.ok.any(axis=1)
    if has.sum() < t.min_gradient_points:
        return None
    rows = np.flatnonzero(has)
    prof = P.nanmedian_axis(v.norm[rows], axis=1)
    direction = P.profile_direction(prof, t.gradient, t.monotone_tol)
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
    )
    return Observation("step_trend", follow, [v.steps[i] for i in rows], facts, direction)


def hotspot(v: MapView, details: list[LayerDetail]) -> Observation | None:
    t, f = v.t, v.fmt
    with np.errstate(invalid="ignore"):
        hot = v.ok & (v.norm >= t.hotspot)
    if not hot.any():
        return None
    ii, jj = np.nonzero(hot)
    flat = np.where(v.ok, v.clean, -np.inf)
    i_max, j_max = np.unravel_index(int(np.argmax(flat)), flat.shape)
    facts = HotspotFacts(
        threshold=f.r(v.at_frac(t.hotspot)),
        top_pct=f.pct(100 * (1 - t.hotspot)),
        n_cells=int(hot.sum()),
        cells_pct=f.pct(100 * hot.sum() / max(1, v.ok.sum())),
        max=f.r(float(v.values[i_max, j_max])),
        max_step=v.steps[i_max],
        max_layer=v.layers[j_max],
    )
    layers = sorted({v.layers[j] for j in jj})
    return Observation("hotspot", layers, sorted({v.steps[i] for i in ii}), facts)


def consistent(v: MapView, details: list[LayerDetail], low: bool) -> Observation | None:
    t, f = v.t, v.fmt
    has = v.ok.any(axis=0)
    with np.errstate(invalid="ignore"):
        if low:
            ok = np.where(v.ok, v.norm <= t.consistent_low, True).all(axis=0) & has
        else:
            ok = np.where(v.ok, v.norm >= t.consistent_high, True).all(axis=0) & has
    if not ok.any() or ok.sum() == has.sum():
        return None  # nothing stands apart if every layer is in it
    cols = np.flatnonzero(ok)
    vals = v.clean_values[:, cols]
    frac = t.consistent_low if low else t.consistent_high
    # how much these layers still move on their own scale (the shared colour scale hides it)
    best = None
    for j in cols:
        col = v.clean_values[v.ok[:, j], j]
        if col.min() > 0:
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
    ]
    if not sat:
        return None
    steps = sorted({x.plateau_from for x in sat if x.plateau_from is not None})
    peaks = [x.max for x in sat if x.max is not None]
    declines = [max(0.0, x.max - x.last) for x in sat if x.max is not None and x.last is not None]
    declining = max((x.nmax or 0.0) - (x.nlast or 0.0) for x in sat) >= v.leg_thr
    facts = SaturationFacts(
        tol_pct=f.pct(100 * t.plateau_tol),
        from_min=steps[0],
        from_max=steps[-1],
        peak_min=min(peaks),
        peak_max=max(peaks),
        decline_max=f.r(max(declines)),
        decline_pct_max=f.pct(100 * t.plateau_max_decline),
        declining=bool(declining),
    )
    return Observation("saturation", [x.layer for x in sat], steps, facts)


def sudden_changes(v: MapView, details: list[LayerDetail]) -> list[Observation]:
    """Step transitions where several layers jump the same way: one observation per direction."""
    t, f = v.t, v.fmt
    n_with = int(v.ok.any(axis=0).sum())
    if n_with == 0:
        return []
    min_layers = min(t.jump_min_layers, n_with)
    floor = t.jump_noise_k * v.sigma_n * math.sqrt(2.0)
    events = P.jump_events(v.norm, t.jump, t.jump_ratio, floor, min_layers)
    out = []
    for direction in ("increasing", "decreasing"):
        evs = [e for e in events if e[1] == direction]
        if not evs:
            continue
        facts_events: list[JumpEvent] = []
        all_layers: set[int] = set()
        for i, _, cols, _ in evs:
            ch = v.values[i, cols] - v.values[i - 1, cols]
            lay = [v.layers[j] for j in cols]
            all_layers.update(lay)
            facts_events.append(
                JumpEvent(
                    step_before=v.steps[i - 1],
                    step=v.steps[i],
                    layers=lay,
                    n_layers=len(lay),
                    change_min=f.r(float(np.min(np.abs(ch)))),
                    change_max=f.r(float(np.max(np.abs(ch)))),
                )
            )
        facts = SuddenChangeFacts(n_events=len(evs), events=facts_events, jump_pct=f.pct(100 * t.jump))
        steps = [e.step for e in facts_events]
        out.append(Observation("sudden_change", sorted(all_layers), steps, facts, direction))
    return out


def outliers(v: MapView) -> Observation | None:
    if not v.outliers.any():
        return None
    f, t = v.fmt, v.t
    cells, truncated = v.cell_list(v.outliers)
    ii, jj = np.nonzero(v.outliers)
    values = [f.r(float(v.values[i, j])) for i, j in zip(ii[: t.max_cells], jj[: t.max_cells])]
    facts = OutlierFacts(
        n_cells=int(v.outliers.sum()), values=values, margin_pct=f.pct(100 * t.outlier), truncated=truncated
    )
    return Observation(
        "outlier", sorted({c[1] for c in cells}), sorted({c[0] for c in cells}), facts, cells=cells
    )


def infinite_values(v: MapView) -> Observation | None:
    inf = np.isinf(v.values)
    if not inf.any():
        return None
    cells, truncated = v.cell_list(inf)
    n = int(inf.sum())
    n_pos = int(np.isposinf(v.values).sum())
    ii, jj = np.nonzero(inf)
    n_listed = len(cells)
    signs = [1 if v.values[i, j] > 0 else -1 for i, j in zip(ii[:n_listed], jj[:n_listed])]
    facts = InfiniteFacts(n_cells=n, n_pos=n_pos, n_neg=n - n_pos, signs=signs, truncated=truncated)
    return Observation(
        "infinite_values", sorted({c[1] for c in cells}), sorted({c[0] for c in cells}), facts, cells=cells
    )


def missing_values(v: MapView) -> Observation | None:
    miss = np.isnan(v.values)
    if not miss.any():
        return None
    f = v.fmt
    cells, truncated = v.cell_list(miss)
    n = int(miss.sum())
    full_layers = [v.layers[j] for j in np.flatnonzero(miss.all(axis=0))] if v.S else []
    full_steps = [v.steps[i] for i in np.flatnonzero(miss.all(axis=1))] if v.L else []
    rest = miss.copy()
    if full_layers:
        rest[:, miss.all(axis=0)] = False
    if full_steps:
        rest[miss.all(axis=1), :] = False
    facts = MissingFacts(
        n_cells=n,
        n_total=v.S * v.L,
        pct=f.pct(100 * n / (v.S * v.L)),
        full_layers=full_layers,
        full_steps=full_steps,
        n_scattered=int(rest.sum()),
        truncated=truncated,
    )
    return Observation(
        "missing_values", sorted({c[1] for c in cells}), sorted({c[0] for c in cells}), facts, cells=cells
    )


def observations(v: MapView, details: list[LayerDetail]) -> list[Observation]:
    """Every observation, in report order: map-wide structure, per-layer levels, saturation, jumps,
    then the cells set aside (outliers, infinite, missing)."""
    out: list[Observation] = []
    if v.structured:
        for fn in (depth_gradient, step_trend, hotspot):
            o = fn(v, details)
            if o:
                out.append(o)
    if v.span > 0:
        sudden = sudden_changes(v, details)
        # a layer that jumps up and then stays is described by the jump, not as saturating
        jumped = {
            (lay, e.step)
            for o in sudden
            if o.direction == "increasing" and isinstance(o.facts, SuddenChangeFacts)
            for e in o.facts.events
            for lay in e.layers
        }
        for o in (
            consistent(v, details, low=True),
            consistent(v, details, low=False),
            saturation(v, details, jumped),
        ):
            if o:
                out.append(o)
        out.extend(sudden)
    for o in (outliers(v), infinite_values(v), missing_values(v)):
        if o:
            out.append(o)
    return out
