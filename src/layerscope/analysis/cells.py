"""Detection over cells and transitions: sudden changes between consecutive steps, isolated
outliers, infinite and missing cells. Each structural one passes a noise test (:mod:`.noise`)."""

from __future__ import annotations

import math

import numpy as np

from . import patterns as P
from .observations import (
    InfiniteFacts,
    JumpEvent,
    MissingFacts,
    Observation,
    OutlierFacts,
    SuddenChangeFacts,
)
from .view import MapView


def _jumps(v: MapView) -> dict[tuple[int, str], tuple[np.ndarray, float]]:
    """(row, direction) -> (layer columns that jumped, how many times the jump beat its noise test).

    A cell jumps between rows i-1 and i when its change is at least ``jump`` of the range,
    ``jump_ratio`` times the layer's median step-to-step change and the largest noise difference
    of the cells searched; a transition counts when ``jump_min_layers`` layers jump the same way.
    When the noise is material, a transition also counts when the median change across layers
    passes the same tests against the noise of a median (a broad jump each layer alone hides)."""
    t = v.t
    n = v.norm_cells
    out: dict[tuple[int, str], tuple[np.ndarray, float]] = {}
    n_with = int(v.ok.any(axis=0).sum())
    if n.shape[0] < 2 or n_with == 0 or v.span <= 0:
        return out
    min_layers = min(t.jump_min_layers, n_with)
    n_tests = 2 * (n.shape[0] - 1)
    cell_floor = v.noise.diff(t.noise_alpha / (n_tests * n_with)) / v.span
    d = np.diff(n, axis=0)  # (S-1, L)
    med = P.nanmedian_axis(np.abs(d), axis=0)
    thr = np.maximum(np.maximum(t.jump, t.jump_ratio * np.nan_to_num(med, nan=0.0)), cell_floor)[None, :]
    with np.errstate(invalid="ignore"):
        for direction, mask in (("increasing", d >= thr), ("decreasing", d <= -thr)):
            for i in np.flatnonzero(mask.sum(axis=1) >= min_layers):
                cols = np.flatnonzero(mask[i])
                beat = (
                    float(np.sort(np.abs(d[i, cols]))[-min_layers] / cell_floor)
                    if cell_floor > 0
                    else math.inf
                )
                out[(int(i) + 1, direction)] = (cols, beat)
    if not v.noisy:
        return out
    counts = np.isfinite(d).sum(axis=1)
    j = P.nanmedian_axis(d, axis=1)  # the median change across layers, per transition
    typical = float(np.nanmedian(np.abs(j))) if np.isfinite(j).any() else 0.0
    diff_noise = type(v.noise)(v.noise.sigma * math.sqrt(2.0), v.noise.df)
    for i in np.flatnonzero((counts >= 3) & np.isfinite(j)):
        floor = diff_noise.median(int(counts[i]), t.noise_alpha / n_tests) / v.span
        size = abs(float(j[i]))
        if size < max(t.jump, t.jump_ratio * typical, floor):
            continue
        direction = "increasing" if j[i] > 0 else "decreasing"
        with np.errstate(invalid="ignore"):
            cols = np.flatnonzero(np.sign(j[i]) * d[i] >= 0.5 * size)
        old = out.get((int(i) + 1, direction))
        beat = size / floor if floor > 0 else math.inf
        if old is not None:
            cols, beat = np.union1d(old[0], cols), max(old[1], beat)
        out[(int(i) + 1, direction)] = (cols, beat)
    return out


def sudden_changes(v: MapView) -> list[Observation]:
    """Step transitions where several layers jump the same way: one observation per direction."""
    t, f = v.t, v.fmt
    events = _jumps(v)
    out = []
    for direction in ("increasing", "decreasing"):
        evs = sorted((i, cols, beat) for (i, dr), (cols, beat) in events.items() if dr == direction)
        if not evs:
            continue
        facts_events: list[JumpEvent] = []
        all_layers: set[int] = set()
        for i, cols, beat in evs:
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
                    noise_ratio=P.round_sig(beat, 3),
                )
            )
        weakest = min(evs, key=lambda e: e[2])
        i, cols, beat = weakest
        size = float(np.median(np.abs(v.norm_cells[i, cols] - v.norm_cells[i - 1, cols])))
        facts = SuddenChangeFacts(
            n_events=len(evs),
            events=facts_events,
            jump_pct=f.pct(100 * t.jump),
            noise=v.check(size, size / beat if beat > 0 and math.isfinite(beat) else 0.0, 2 * (v.S - 1)),
        )
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
    margin = v.outlier_margins[v.outliers]  # each in the pass that set it aside
    weakest = float(np.min(margin)) / v.span if v.span > 0 else 0.0
    facts = OutlierFacts(
        n_cells=int(v.outliers.sum()),
        values=values,
        margin_pct=f.pct(100 * t.outlier),
        truncated=truncated,
        noise=v.check(weakest, v.outlier_floor / v.span if v.span > 0 else 0.0, v.n_cells),
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
