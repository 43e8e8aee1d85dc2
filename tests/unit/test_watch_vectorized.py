"""The watch evaluates every layer and head of a series at once; its alerts must be exactly those
of the rules' definitions applied one value at a time (a reference written here, per element)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from layerscope.watch import Rule, Watch, default_rules


def _reference(
    rules: list[Rule], steps: list[tuple[int, dict]]
) -> list[tuple[int, str, str, int, int | None]]:
    hist: dict[tuple, deque] = {}
    seen: dict[tuple, bool] = {}
    fired: set[tuple] = set()
    out = []
    for step, values in steps:
        for (metric, site), arr in values.items():
            a = np.asarray(arr, dtype=np.float64)
            a2 = a.reshape(a.shape[0], -1)
            for ri, r in enumerate(rules):
                if not r.applies(metric, site):
                    continue
                for li in range(a2.shape[0]):
                    for hi in range(a2.shape[1]):
                        v, k = float(a2[li, hi]), (ri, metric, site, li, hi)
                        hit = False
                        if r.kind == "nonfinite":
                            if math.isfinite(v):
                                seen[k] = True
                            elif not (math.isnan(v) and not seen.get(k, False)):
                                hit = True
                        elif math.isfinite(v):
                            if r.kind == "above":
                                hit = v > r.bound
                            elif r.kind == "predicate":
                                assert r.predicate is not None
                                hit = bool(r.predicate(v))
                            else:
                                h = hist.setdefault(k, deque(maxlen=r.window))
                                if len(h) >= r.warmup and abs(v) > r.floor:
                                    x = np.array(h)
                                    med = float(np.median(np.abs(x)))
                                    hit = (med > 0 and abs(v) > r.factor * med) or (
                                        x.std() > 0 and v > x.mean() + r.sigmas * x.std()
                                    )
                                h.append(v)
                        key = (r.name, site, metric, li + 1)
                        if hit and key not in fired:
                            fired.add(key)
                            out.append((step, r.name, metric, li + 1, hi if a.ndim == 2 else None))
    return out


def test_alerts_equal_the_per_value_definition_on_random_series() -> None:
    rng = np.random.default_rng(7)
    rules = [
        *default_rules(),
        Rule("jump", metric="rms", site="output", window=5, warmup=3, factor=3.0, sigmas=2.0),
        Rule("predicate", metric="rms", site="output", predicate=lambda v: v > 2.5),
    ]
    for trial in range(20):
        steps = []
        for s in range(60):
            heads = rng.lognormal(0.0, 0.3, (6, 4)) * (1 + (s > 40) * rng.uniform(0, 20))
            out = rng.lognormal(0.0, 0.2, 6) * (1 + (s % 17 == 0) * rng.uniform(0, 12))
            ratio = rng.uniform(0, 0.07, 6)
            for arr in (heads, out):
                holes = rng.random(arr.shape) < 0.05
                arr[holes] = rng.choice([np.nan, np.inf, -np.inf], holes.sum())
            if trial % 2 and s < 5:
                out[0] = np.nan  # a layer with no value yet: not an alert
            steps.append(
                (
                    10 * s,
                    {
                        ("max_logit", "attn"): heads,
                        ("max_abs", "output"): out,
                        ("rms", "output"): out * 1.1,
                        ("ratio", "update"): ratio,
                    },
                )
            )
        w = Watch(rules, print_to=None)
        got = [a for step, values in steps for a in w.check(step, values)]
        assert [(a.step, a.rule, a.metric, a.layer, a.head) for a in got] == _reference(rules, steps)
        assert got, "the planted jumps fire"
