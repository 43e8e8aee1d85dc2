"""Recorded histogram counts in the form histogram loggers take (TensorBoard's raw histograms,
W&B's ``np_histogram``): only the bins that hold values, with finite edges."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import NotFoundError
from ..store import StepRecord, Store


class HistogramData:
    """One layer's recorded histogram at one step, in the form histogram loggers take: the
    non-empty bins' ``counts`` and their ``edges`` (len + 1, finite), with min, max, count, sum and
    sum of squares. The two open bins (below the first edge, from the last edge up) are closed at
    the recorded min/max when the step recorded them, else one decade beyond the edge; sum and sum
    of squares come from the recorded mean and rms when there, else from the bin midpoints."""

    __slots__ = ("counts", "edges", "max", "min", "num", "sum", "sum_squares")

    def __init__(self, counts: np.ndarray, edges: np.ndarray, stats: dict[str, float]) -> None:
        self.counts, self.edges = counts, edges
        self.num = float(counts.sum())
        self.min, self.max = float(edges[0]), float(edges[-1])
        mid = (edges[:-1] + edges[1:]) / 2
        self.sum = stats["mean"] * self.num if "mean" in stats else float((mid * counts).sum())
        self.sum_squares = stats["rms"] ** 2 * self.num if "rms" in stats else float((mid**2 * counts).sum())


def layer_stats(rec: StepRecord, site: str, j: int) -> dict[str, float]:
    out = {}
    for name in ("min", "max", "mean", "rms", "max_abs"):
        vals = rec.values.get((name, site))
        if vals is not None and j < len(vals) and math.isfinite(float(vals[j])):
            out[name] = float(vals[j])
    return out


def histogram_data(counts: np.ndarray, edges: np.ndarray, stats: dict[str, float]) -> HistogramData | None:
    """The non-empty span of one layer's counts (``len(edges) + 1`` bins) with finite edges, or
    None when the layer counted nothing at that step.

    >>> h = histogram_data(np.array([0, 2.0, 3.0, 0]), np.array([-1.0, 0.0, 1.0]), {})
    >>> h.counts.tolist(), h.edges.tolist(), h.num
    ([2.0, 3.0], [-1.0, 0.0, 1.0], 5.0)
    """
    used = np.flatnonzero(counts > 0)
    if not used.size:
        return None
    lo, hi = int(used[0]), int(used[-1]) + 1
    full = np.concatenate([[-np.inf], edges, [np.inf]])  # bin b spans full[b]..full[b + 1]
    e = full[lo : hi + 1].copy()
    if not np.isfinite(e[0]):
        low = stats.get("min", -stats["max_abs"] if "max_abs" in stats else None)
        e[0] = (
            low
            if low is not None and low < e[1]
            else (e[1] * 10 if e[1] < 0 else e[1] - 10 * max(1.0, abs(e[1])))
        )
    if not np.isfinite(e[-1]):
        high = stats.get("max", stats.get("max_abs"))
        e[-1] = (
            high
            if high is not None and high > e[-2]
            else (e[-2] * 10 if e[-2] > 0 else e[-2] + 10 * max(1.0, abs(e[-2])))
        )
    return HistogramData(counts[lo:hi], e, stats)


def attach_hists(st: Store, run: str, records: list[StepRecord], sites: Sequence[str] | None) -> None:
    """Put the run's recorded histogram counts on the records of the same steps."""
    by_step = {r.step: r for r in records}
    cfg_sites = st.run_config(run).get("sites") or ["output"]
    for site in cfg_sites:
        if sites is not None and site not in sites:
            continue
        try:
            counts, steps, _ = st.load_hist(run, site)
        except NotFoundError:
            continue
        for i, s in enumerate(steps):
            rec = by_step.get(int(s))
            if rec is None:
                rec = by_step[int(s)] = StepRecord(int(s), {})
                records.append(rec)
            rec.hists = {**(rec.hists or {}), site: counts[i]}
    records.sort(key=lambda r: r.step)
