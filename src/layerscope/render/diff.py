"""Run vs run: the difference of two heatmaps on their common steps and layers, and where it is largest.

:func:`align` keeps the steps and layers both runs recorded; :func:`difference` gives B - A (or
the relative change 100 * (B - A) / |A|, in %) as a Heatmap to draw with a diverging colour map
centred at 0; :func:`summarize` returns the facts (largest cell, layers and steps that differ
most, direction, onset) as numbers *and* the sentences written from them, so every number a
sentence quotes is in :meth:`DiffSummary.to_dict`.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> a = Heatmap(np.zeros((3, 2)), steps=[1, 2, 3], layers=[1, 2], run="a")
>>> b = Heatmap(np.array([[0, 0], [0, 0.5], [0, 2.0]]), steps=[1, 2, 3], layers=[1, 2], run="b")
>>> s = summarize(a, b)
>>> s.facts["max"]["step"], s.facts["max"]["layer"], s.facts["max"]["diff"]
(3, 2, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._format import format_percent, format_signed, format_value
from ..errors import ConfigError, NotFoundError
from ..store.heatmap import Heatmap

TOP = 3  # layers / steps named in "where they differ most"
ONSET = 0.5  # the onset step: where |B - A| first reaches this share of its maximum


@dataclass(frozen=True)
class Aligned:
    """Two heatmaps cut to their common steps (rows) and layers (columns)."""

    steps: list[int]
    layers: list[int]
    layer_names: list[str]
    a: np.ndarray  # (S, L)
    b: np.ndarray  # (S, L)
    steps_only_a: list[int]
    steps_only_b: list[int]
    layers_only_a: list[int]
    layers_only_b: list[int]


def align(a: Heatmap, b: Heatmap) -> Aligned:
    """Keep the steps and layers recorded in both; say what was left out.

    >>> import numpy as np
    >>> al = align(Heatmap(np.ones((3, 2)), [1, 2, 3], [1, 2]), Heatmap(np.ones((2, 3)), [2, 4], [1, 2, 3]))
    >>> al.steps, al.layers, al.steps_only_a, al.steps_only_b, al.layers_only_b
    ([2], [1, 2], [1, 3], [4], [3])
    """
    steps = sorted(set(a.steps) & set(b.steps))
    layers = sorted(set(a.layers) & set(b.layers))
    who = f"runs {a.run or 'A'!r} and {b.run or 'B'!r}"
    if not steps:
        raise NotFoundError(
            f"{who} share no recorded step (A: {_span(a.steps)}, B: {_span(b.steps)}); compare runs recorded "
            "at the same steps, or re-record one with the other's --every."
        )
    if not layers:
        raise NotFoundError(
            f"{who} share no layer (A: {_span(a.layers)}, B: {_span(b.layers)}); "
            "compare runs of the same model."
        )
    ia = [list(a.steps).index(s) for s in steps]
    ib = [list(b.steps).index(s) for s in steps]
    ja = [list(a.layers).index(x) for x in layers]
    jb = [list(b.layers).index(x) for x in layers]
    va = np.asarray(a.values, dtype=np.float64)[np.ix_(ia, ja)]
    vb = np.asarray(b.values, dtype=np.float64)[np.ix_(ib, jb)]
    return Aligned(
        steps=steps,
        layers=layers,
        layer_names=[a.layer_names[j] for j in ja],
        a=va,
        b=vb,
        steps_only_a=sorted(set(a.steps) - set(b.steps)),
        steps_only_b=sorted(set(b.steps) - set(a.steps)),
        layers_only_a=sorted(set(a.layers) - set(b.layers)),
        layers_only_b=sorted(set(b.layers) - set(a.layers)),
    )


def _span(xs: Sequence[int]) -> str:
    return f"{xs[0]}..{xs[-1]}" if len(xs) else "none"


def diff_values(a: np.ndarray, b: np.ndarray, relative: bool = False) -> np.ndarray:
    """B - A per cell, or 100 * (B - A) / |A| (%). NaN where either is missing or inf - inf;
    relative change from A = 0 is 0 when B = 0, else +-inf."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = b - a
        if not relative:
            return d
        r = 100.0 * d / np.abs(a)
        r = np.where((a == 0) & (b == 0), 0.0, r)
        r = np.where(np.isinf(a) & np.isfinite(b), np.nan, r)
    return r


def difference(a: Heatmap, b: Heatmap, relative: bool = False) -> Heatmap:
    """The heatmap of B - A (``relative``: 100 * (B - A) / |A|, in %) on common steps and layers.

    Its metric reads ``Δ rms`` (or ``Δ rms (%)``) and its run ``B − A``; ``meta["compare"]`` says how.
    """
    if a.metric != b.metric or a.site != b.site:
        raise ConfigError(
            f"cannot compare {a.metric!r} ({a.site}) with {b.metric!r} ({b.site}); "
            "compare the same metric and site."
        )
    al = align(a, b)
    vals = diff_values(al.a, al.b, relative)
    return Heatmap(
        values=vals,
        steps=al.steps,
        layers=al.layers,
        layer_names=al.layer_names,
        metric=f"\u0394 {a.metric}" + (" (%)" if relative else ""),
        site=a.site,
        run=f"{b.run or 'B'} \u2212 {a.run or 'A'}",
        meta={
            "compare": {
                "a": a.run,
                "b": b.run,
                "metric": a.metric,
                "site": a.site,
                "mode": "relative" if relative else "absolute",
            }
        },
    )


@dataclass(frozen=True)
class DiffSummary:
    """Where two runs differ: ``facts`` (JSON-ready numbers) and ``sentences`` written from them."""

    facts: dict[str, Any]
    sentences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.facts, "sentences": list(self.sentences)}

    def text(self) -> str:
        return "\n".join(self.sentences)


def _layer_text(layer: int, name: str) -> str:
    return f"layer {layer}" if str(name) == str(layer) else f"layer {layer} ({name})"


def _num(x: float | None) -> float | None:
    """A float for JSON: None for NaN/inf."""
    return None if x is None or not math.isfinite(x) else float(x)


def summarize(a: Heatmap, b: Heatmap, relative: bool = False, top: int = TOP) -> DiffSummary:
    """The facts and sentences of "where A and B differ most" for one metric and site."""
    al = align(a, b)
    d = diff_values(al.a, al.b, relative)
    fa, fb = np.isfinite(al.a), np.isfinite(al.b)
    fd = np.isfinite(d) & fa & fb
    unit = "%" if relative else ""
    name_a, name_b = a.run or "A", b.run or "B"
    # The quantity, and its magnitude, as the sentences name them.
    noun = "relative change" if relative else f"{name_b} \u2212 {name_a}"
    what = f"the {noun}" if relative else noun
    mag = "|relative change|" if relative else f"|{name_b} \u2212 {name_a}|"
    facts: dict[str, Any] = {
        "a": a.run,
        "b": b.run,
        "metric": a.metric,
        "site": a.site,
        "mode": "relative" if relative else "absolute",
        "unit": unit,
        "n_steps": len(al.steps),
        "n_layers": len(al.layers),
        "first_step": al.steps[0],
        "last_step": al.steps[-1],
        "steps_only_a": al.steps_only_a,
        "steps_only_b": al.steps_only_b,
        "layers_only_a": al.layers_only_a,
        "layers_only_b": al.layers_only_b,
        "n_cells": int(d.size),
        "n_compared": int(fd.sum()),
        "n_only_a": int((fa & ~np.isfinite(al.b)).sum()),
        "n_only_b": int((fb & ~np.isfinite(al.a)).sum()),
        "n_infinite": int((np.isinf(al.a) | np.isinf(al.b)).sum()),
    }
    s: list[str] = []
    span = f"{al.steps[0]}\u2013{al.steps[-1]}" if len(al.steps) > 1 else f"{al.steps[0]}"
    s.append(
        f"Compared {a.metric} (site {a.site}) of run {name_b} against run {name_a} on {len(al.steps)} common "
        f"{'step' if len(al.steps) == 1 else 'steps'} ({span}) x {len(al.layers)} common "
        f"{'layer' if len(al.layers) == 1 else 'layers'}: {facts['n_compared']} of {facts['n_cells']} "
        "cells have a finite value in both."
        + (
            f" The relative change is 100 x ({name_b} \u2212 {name_a}) / |{name_a}|, in %."
            if relative
            else ""
        )
    )
    left = []
    for key, label in (
        ("steps_only_a", f"steps only in {name_a}"),
        ("steps_only_b", f"steps only in {name_b}"),
        ("layers_only_a", f"layers only in {name_a}"),
        ("layers_only_b", f"layers only in {name_b}"),
    ):
        if facts[key]:
            xs = facts[key]
            left.append(f"{len(xs)} {label} ({', '.join(map(str, xs[:4]))}{', ...' if len(xs) > 4 else ''})")
    if left:
        s.append("Left out: " + "; ".join(left) + ".")
    if not fd.any():
        facts.update(
            {
                "identical": False,
                "max": None,
                "mean_abs": None,
                "mean_diff": None,
                "share_b_higher": None,
                "share_b_lower": None,
                "top_layers": [],
                "top_steps": [],
                "onset_step": None,
            }
        )
        s.append("No cell has a finite value in both runs, so there is no difference to report.")
        return DiffSummary(facts, s)
    ad = np.where(fd, np.abs(d), np.nan)
    identical = bool(np.nanmax(ad) == 0 and facts["n_only_a"] == 0 and facts["n_only_b"] == 0)
    i, j = np.unravel_index(int(np.nanargmax(ad)), ad.shape)
    mx: dict[str, Any] = {
        "step": al.steps[i],
        "layer": al.layers[j],
        "layer_name": al.layer_names[j],
        "a": _num(float(al.a[i, j])),
        "b": _num(float(al.b[i, j])),
        "diff": float(d[i, j]),
    }
    with np.errstate(invalid="ignore"):
        per_layer = np.nanmean(ad, axis=0) if ad.shape[0] else np.zeros(0)
        per_step = np.nanmean(ad, axis=1) if ad.shape[1] else np.zeros(0)
    # Only layers/steps that differ at all are ranked (ties keep depth/step order).
    lay_order = [
        k for k in np.argsort(-np.nan_to_num(per_layer, nan=-1.0), kind="stable") if per_layer[k] > 0
    ]
    step_order = [k for k in np.argsort(-np.nan_to_num(per_step, nan=-1.0), kind="stable") if per_step[k] > 0]
    top_layers = [
        {"layer": al.layers[k], "layer_name": al.layer_names[k], "mean_abs": float(per_layer[k])}
        for k in lay_order[:top]
    ]
    top_steps = [{"step": al.steps[k], "mean_abs": float(per_step[k])} for k in step_order[:top]]
    row_max = np.nanmax(np.where(np.isfinite(ad), ad, -1.0), axis=1)
    onset_idx = int(np.argmax(row_max >= ONSET * float(ad[i, j]))) if ad[i, j] > 0 else None
    dv = d[fd]
    facts.update(
        {
            "identical": identical,
            "max": mx,
            "mean_abs": float(np.mean(np.abs(dv))),
            "mean_diff": float(np.mean(dv)),
            "share_b_higher": float(np.mean(dv > 0)),
            "share_b_lower": float(np.mean(dv < 0)),
            "top_layers": top_layers,
            "top_steps": top_steps,
            "onset_step": al.steps[onset_idx] if onset_idx is not None else None,
        }
    )
    if identical:
        s.append("The runs are identical on every compared cell.")
        return DiffSummary(facts, s)

    def v(x: float) -> str:  # percentages in plain digits (issue 23): 2420%, not 2.42e+03%
        return format_percent(x, 3) if unit == "%" else format_value(x, 3)

    def sv(x: float) -> str:
        return format_signed(x, 3, unit)

    ab = (
        f" ({name_a} {format_value(mx['a'], 3) if mx['a'] is not None else 'inf'}, "
        f"{name_b} {format_value(mx['b'], 3) if mx['b'] is not None else 'inf'})"
    )
    s.append(
        f"Largest difference: {what} is {sv(mx['diff'])} at {_layer_text(mx['layer'], mx['layer_name'])}, "
        f"step {mx['step']}{ab}."
    )
    if top_layers:
        first = top_layers[0]
        txt = (
            f"By layer, the mean {mag} is largest at {_layer_text(first['layer'], first['layer_name'])} "
            f"({v(first['mean_abs'])})"
        )
        rest = [f"{t['layer']} ({v(t['mean_abs'])})" for t in top_layers[1:]]
        if rest:
            txt += ", then layer" + ("s " if len(rest) > 1 else " ") + " and ".join(rest)
        s.append(txt + ".")
    if top_steps and len(al.steps) > 1:
        first_s = top_steps[0]
        txt = f"By step, it is largest at step {first_s['step']} ({v(first_s['mean_abs'])})"
        rest = [f"{t['step']} ({v(t['mean_abs'])})" for t in top_steps[1:]]
        if rest:
            txt += ", then " + " and ".join(rest)
        s.append(txt + ".")
    hi_pct, lo_pct = facts["share_b_higher"] * 100, facts["share_b_lower"] * 100
    s.append(
        f"{name_b} is higher than {name_a} in {format_percent(hi_pct, 2)} of the compared cells and lower in "
        f"{format_percent(lo_pct, 2)} (mean {noun}: {sv(facts['mean_diff'])})."
    )
    if facts["onset_step"] is not None and len(al.steps) > 1:
        s.append(f"{mag} first reaches half its maximum at step {facts['onset_step']}.")
    if facts["n_only_a"] or facts["n_only_b"] or facts["n_infinite"]:
        s.append(
            f"{facts['n_only_a']} cells have a finite value only in {name_a}, {facts['n_only_b']} only in "
            f"{name_b}; {facts['n_infinite']} are infinite in at least one run."
        )
    return DiffSummary(facts, s)
