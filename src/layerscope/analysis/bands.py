"""Bands: adjacent layers that behave alike, grouped so that the Markdown describes a 96-layer map
in a dozen bullets (``layers_detail`` keeps every layer). Numbers only; the bullets' text is
:func:`.summary.band_text`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import patterns as P
from .detect import LayerDetail
from .text import TREND_WORDS
from .view import MapView

_SPAN_KEYS = (
    "min",
    "max",
    "first",
    "last",
    "first_step",
    "last_step",
    "peak",
    "peak_step",
    "low",
    "low_step",
    "plateau_from",
)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """Adjacent layers described together; ``trend``/``level`` are ``"mixed"`` when they differ.
    The spans are ``[lowest, highest]`` over the band's layers (recorded units, rounded)."""

    layers: list[int]
    trend: str | None
    level: str | None
    details: list[LayerDetail]  # the layers with values
    min: float | None = None
    max: float | None = None
    first: list[Any] | None = None
    last: list[Any] | None = None
    first_step: list[Any] | None = None
    last_step: list[Any] | None = None
    peak: list[Any] | None = None
    peak_step: list[Any] | None = None
    low: list[Any] | None = None
    low_step: list[Any] | None = None
    plateau_from: list[int] | None = None
    trend_counts: dict[str, int] | None = None  # mixed bands: how many layers have each trend

    def to_dict(self, text: str) -> dict[str, Any]:
        d: dict[str, Any] = {"layers": self.layers, "trend": self.trend, "level": self.level}
        if self.details:
            for k in _SPAN_KEYS:
                d[k] = getattr(self, k)
            if self.trend_counts is not None:
                d["trend_counts"] = self.trend_counts
        d["text"] = text
        return d


def band(details: list[LayerDetail], cols: list[int]) -> Band:
    xs = [details[j] for j in cols]
    layers = [x.layer for x in xs]
    mixed = len({str(x.trend) for x in xs}) > 1 or len({str(x.level) for x in xs}) > 1
    trend = "mixed" if mixed else xs[0].trend
    level = "mixed" if mixed else xs[0].level
    with_vals = [x for x in xs if x.n_values]
    if not with_vals:
        return Band(layers, trend, level, [])

    def span(key: str) -> list[Any]:
        vals = [getattr(x, key) for x in with_vals]
        return [min(vals), max(vals)]

    plats = [x.plateau_from for x in with_vals if x.plateau_from is not None]
    counts: dict[str, int] | None = None
    if mixed:
        counts = {}
        for x in xs:
            counts[TREND_WORDS[x.trend]] = counts.get(TREND_WORDS[x.trend], 0) + 1
    return Band(
        layers,
        trend,
        level,
        with_vals,
        min=min(x.min for x in with_vals if x.min is not None),
        max=max(x.max for x in with_vals if x.max is not None),
        first=span("first"),
        last=span("last"),
        first_step=span("first_step"),
        last_step=span("last_step"),
        peak=span("max"),
        peak_step=span("peak_step"),
        low=span("min"),
        low_step=span("min_step"),
        plateau_from=[min(plats), max(plats)] if plats else None,
        trend_counts=counts,
    )


def bands(v: MapView, details: list[LayerDetail]) -> list[Band]:
    """Adjacent layers that share trend, level and plateau and move alike, at most max_bands."""
    t = v.t
    keys = [(x.trend, x.level, x.plateau_from is not None) for x in details]
    groups: list[list[int]] = []
    # on a map dominated by noise, differences between layers' series are noise too
    tols = (
        (t.band_tol, 2 * t.band_tol, 4 * t.band_tol, math.inf) if v.structured or v.span == 0 else (math.inf,)
    )
    for tol in tols:
        groups = P.group_bands(keys, v.smooth, tol)
        if len(groups) <= t.max_bands:
            break
    if len(groups) > t.max_bands:  # still too many: equal chunks of adjacent layers, described as mixed
        size = math.ceil(v.L / t.max_bands)
        groups = [list(range(i, min(v.L, i + size))) for i in range(0, v.L, size)]
    return [band(details, g) for g in groups]
