"""Typed observations: what the detectors found, as numbers, before any sentence is written.

An :class:`Observation` is one finding on the map: its ``kind``, the layers and steps it concerns,
a ``direction`` where it has one, the cells it names, and its ``facts``, a dataclass per kind
holding every number the sentences about it quote (already rounded as quoted). The narrative
(:mod:`.narrative`) turns an observation into sentences; :meth:`Observation.to_dict` gives the JSON
(``kind, layers, steps, direction, cells, text, facts``, in that order).

To add a kind: a ``Facts`` subclass here, registered in :data:`KINDS`; a detector that returns an
``Observation`` of it (:mod:`.detect`); its sentences in :mod:`.narrative`'s tables; its facts in
``report.schema.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

Cell = list[int]  # [step, layer]


def _optional() -> Any:
    """A fact that is left out of the JSON when it is None (kept for keys that appear only sometimes)."""
    return field(default=None, metadata={"optional": True})


def _plain(x: Any) -> Any:
    if isinstance(x, Facts):
        return x.to_dict()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


@dataclass(frozen=True)
class Facts:
    """The numbers behind one observation; a subclass per kind, its fields in JSON order."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(v)
        return out


@dataclass(frozen=True)
class NoiseCheck(Facts):
    """The noise test a structural observation passed, in reported units (recorded units on a
    linear scale, decades on a log scale): its statistic ``value`` beat ``threshold``, what noise
    of level ``sigma`` alone would reach over the ``n_searched`` places searched, ``ratio`` times."""

    sigma: float | None
    threshold: float | None
    value: float | None
    ratio: float | None  # None when the threshold is 0 (a map without noise)
    n_searched: int


@dataclass(frozen=True)
class DepthGradientFacts(Facts):
    from_layer: int
    to_layer: int
    from_value: float | None  # median over steps at the first / last layer with values
    to_value: float | None
    drawdown_pct: float  # largest move back allowed, % of the range
    n_steps_holding: int  # steps whose own profile is monotone the same way
    n_steps: int  # steps with values
    noise: NoiseCheck  # the end-to-end change against two medians' noise


@dataclass(frozen=True)
class StepTrendFacts(Facts):
    from_step: int
    to_step: int
    from_value: float | None  # median across layers at the first / last step with values
    to_value: float | None
    n_layers_following: int  # layers whose last value is at least change_pct of the range beyond their first
    n_layers: int  # layers with values
    change_pct: float
    noise: NoiseCheck  # the end-to-end change against two (smoothed) medians' noise


@dataclass(frozen=True)
class HotspotFacts(Facts):
    threshold: float | None  # the value at the hotspot fraction of the range
    top_pct: float
    n_cells: int
    cells_pct: float  # % of the cells with a value
    max: float | None
    max_step: int
    max_layer: int
    noise: NoiseCheck  # the highest (smoothed) level above the map's median, against the largest noise


@dataclass(frozen=True)
class ConsistentFacts(Facts):
    """``consistently_low`` and ``consistently_high``."""

    bound: float | None
    pct: float
    min: float | None
    max: float | None
    noise: NoiseCheck  # the gap between these layers' medians and the others', against median noise
    # the widest own range among these layers (max / min), when their values are positive
    own_factor: float | None = _optional()
    own_layer: int | None = _optional()
    own_min: float | None = _optional()
    own_max: float | None = _optional()


@dataclass(frozen=True)
class SaturationFacts(Facts):
    tol_pct: float
    from_min: int  # earliest / latest step from which a layer stays near its peak
    from_max: int
    peak_min: float | None
    peak_max: float | None
    decline_max: float | None  # largest (peak - last value) among these layers
    decline_pct_max: float
    declining: bool  # the decline is larger than the noise of the smoothed series
    noise: NoiseCheck  # the smallest rise among these layers, against what noise spans in a series


@dataclass(frozen=True)
class JumpEvent(Facts):
    step_before: int
    step: int
    layers: list[int]
    n_layers: int
    change_min: float | None  # |change| over these layers, recorded units
    change_max: float | None
    noise_ratio: float | None  # how many times the jump beat the noise test it passed


@dataclass(frozen=True)
class SuddenChangeFacts(Facts):
    n_events: int
    events: list[JumpEvent]
    jump_pct: float
    noise: NoiseCheck  # the weakest event's test


@dataclass(frozen=True)
class OutlierFacts(Facts):
    n_cells: int
    values: list[float | None]
    margin_pct: float
    truncated: bool  # more cells than Thresholds.max_cells: the lists are cut
    noise: NoiseCheck  # the smallest margin, against the largest of that many noise draws


@dataclass(frozen=True)
class InfiniteFacts(Facts):
    """``infinite_values``. Reports before this kind existed wrote these as ``outlier`` with
    ``infinite: true``; the flag stays, so a reader looking for it still finds these cells."""

    n_cells: int
    n_pos: int
    n_neg: int
    signs: list[int]  # +1 (+inf) or -1 (-inf) for each listed cell, in the order of ``cells``
    truncated: bool
    infinite: bool = True


@dataclass(frozen=True)
class MissingFacts(Facts):
    n_cells: int
    n_total: int
    pct: float
    full_layers: list[int]  # layers without any value
    full_steps: list[int]  # steps without a value in any layer
    n_scattered: int  # the other missing cells
    truncated: bool


KINDS: dict[str, type[Facts]] = {
    "depth_gradient": DepthGradientFacts,
    "step_trend": StepTrendFacts,
    "hotspot": HotspotFacts,
    "consistently_low": ConsistentFacts,
    "consistently_high": ConsistentFacts,
    "saturation": SaturationFacts,
    "sudden_change": SuddenChangeFacts,
    "outlier": OutlierFacts,
    "infinite_values": InfiniteFacts,
    "missing_values": MissingFacts,
}
"""Every observation kind and the type of its facts."""


@dataclass(frozen=True)
class Observation:
    """One finding on the map (see the module docstring)."""

    kind: str
    layers: list[int]
    steps: list[int]
    facts: Facts
    direction: str | None = None  # "increasing" / "decreasing" for gradients, trends and jumps
    cells: list[Cell] = field(default_factory=list)

    def __post_init__(self) -> None:
        want = KINDS.get(self.kind)
        if want is None or not isinstance(self.facts, want):
            raise TypeError(f"observation {self.kind!r} needs facts of type {want}, got {type(self.facts)}")

    def to_dict(self, text: str) -> dict[str, Any]:
        """The JSON form, with the sentence ``text`` the narrative wrote for it."""
        return {
            "kind": self.kind,
            "layers": list(self.layers),
            "steps": list(self.steps),
            "direction": self.direction,
            "cells": [list(c) for c in self.cells],
            "text": text,
            "facts": self.facts.to_dict(),
        }
