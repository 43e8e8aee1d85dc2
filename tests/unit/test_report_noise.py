"""The report stays silent where there is only noise, and still finds patterns buried in it.

Noise of the kinds activation statistics have: additive Gaussian, multiplicative log-normal (a
spread of 0.3 to 1 in natural log, as max_abs, kurtosis and top_ratio fluctuate) and heavy-tailed
Student t (3 degrees of freedom); maps of 6 to 96 layers x 8 to 200 steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from layerscope.analysis import report
from layerscope.store.heatmap import Heatmap

STRUCTURAL = {
    "depth_gradient",
    "step_trend",
    "hotspot",
    "sudden_change",
    "saturation",
    "consistently_low",
    "consistently_high",
    "outlier",
}
KINDS = ("gauss", "lognormal", "t3")
N_MAPS = 300


def noise_map(seed: int) -> tuple[str, np.ndarray]:
    """Map ``seed``: its noise kind and (steps, layers) values, at a random level and spread."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % 3]
    corner = seed % 10  # the extreme shapes get their share of maps
    if corner == 0:
        shape = (8, 6)
    elif corner == 1:
        shape = (200, 96)
    else:
        shape = (int(rng.integers(8, 201)), int(rng.integers(6, 97)))
    if kind == "gauss":
        v = rng.uniform(-1, 5) + rng.uniform(0.01, 1.0) * rng.standard_normal(shape)
    elif kind == "lognormal":
        v = np.exp(rng.uniform(-6, 3) + rng.uniform(0.3, 1.0) * rng.standard_normal(shape))
    else:
        v = rng.uniform(-1, 5) + rng.uniform(0.01, 1.0) * rng.standard_t(3, shape)
    return kind, v


def heatmap(v: np.ndarray, metric: str = "max_abs") -> Heatmap:
    return Heatmap(
        v,
        steps=[10 * (i + 1) for i in range(v.shape[0])],
        layers=list(range(1, v.shape[1] + 1)),
        metric=metric,
    )


def claims(d: dict[str, Any]) -> list[str]:
    return [o["kind"] for o in d["observations"] if o["kind"] in STRUCTURAL]


def test_noise_maps_get_no_structural_claim() -> None:
    claimed = {}
    for seed in range(N_MAPS):
        kind, v = noise_map(seed)
        found = claims(report(heatmap(v)).to_dict())
        if found:
            claimed[seed] = (kind, v.shape, found)
    assert len(claimed) <= N_MAPS // 100, claimed


SNR = 3.0
PATTERN_SHAPES = [(40, 16), (120, 32)]  # (steps, layers)


def buried(pattern: str, kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A unit pattern times SNR x the noise's standard deviation (of its log for log-normal noise),
    plus that noise, around a level of 1."""
    rng = np.random.default_rng(seed)
    s, l_ = shape
    t = np.linspace(0, 1, s)[:, None]
    d = np.linspace(0, 1, l_)[None, :]
    if pattern == "hot_band":
        p = np.zeros(shape)
        p[:, l_ // 3 : 2 * l_ // 3] = 1.0
    elif pattern == "depth_gradient":
        p = np.broadcast_to(d, shape).copy()
    elif pattern == "step_trend":
        p = np.broadcast_to(t, shape).copy()
    else:  # jump: every layer moves up at the middle step
        p = np.zeros(shape)
        p[s // 2 :] = 1.0
    if kind == "gauss":
        sd = 0.1
        return 1.0 + SNR * sd * p + sd * rng.standard_normal(shape)
    if kind == "lognormal":
        sd = 0.5
        return np.exp(SNR * sd * p + sd * rng.standard_normal(shape))
    scale = 0.1  # t3: standard deviation scale * sqrt(3)
    return 1.0 + SNR * scale * math.sqrt(3.0) * p + scale * rng.standard_t(3, shape)


def found(pattern: str, d: dict[str, Any], shape: tuple[int, int]) -> bool:
    s, l_ = shape
    obs = {o["kind"]: o for o in d["observations"]}
    if pattern == "hot_band":
        band = set(range(l_ // 3 + 1, 2 * l_ // 3 + 1))
        o = obs.get("hotspot")
        return o is not None and len(set(o["layers"]) & band) >= 0.8 * len(o["layers"])
    if pattern == "depth_gradient":
        o = obs.get("depth_gradient")
        return o is not None and o["direction"] == "increasing"
    if pattern == "step_trend":
        o = obs.get("step_trend")
        return o is not None and o["direction"] == "increasing"
    step = 10 * (s // 2 + 1)
    return any(
        o["kind"] == "sudden_change"
        and o["direction"] == "increasing"
        and any(e["step"] == step and e["n_layers"] >= l_ // 2 for e in o["facts"]["events"])
        for o in d["observations"]
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", ["hot_band", "depth_gradient", "step_trend", "jump"])
def test_patterns_buried_in_noise_at_snr_3_are_found(pattern: str, kind: str) -> None:
    for shape in PATTERN_SHAPES:
        for seed in range(3):
            d = report(heatmap(buried(pattern, kind, shape, seed))).to_dict()
            assert found(pattern, d, shape), (shape, seed, [o["kind"] for o in d["observations"]])


def test_every_structural_observation_states_the_noise_it_beat() -> None:
    seen = set()
    for pattern in ("hot_band", "depth_gradient", "step_trend", "jump"):
        for kind in KINDS:
            d = report(heatmap(buried(pattern, kind, (40, 16), 7))).to_dict()
            for o in d["observations"]:
                if o["kind"] in STRUCTURAL:
                    seen.add(o["kind"])
                    nc = o["facts"]["noise"]
                    assert nc["sigma"] > 0 and nc["threshold"] > 0 and nc["n_searched"] >= 1, o
                    assert nc["value"] >= nc["threshold"] and nc["ratio"] >= 1, o
    assert {"hotspot", "depth_gradient", "step_trend", "sudden_change"} <= seen


def test_multiplicative_noise_is_judged_on_a_log_scale() -> None:
    rng = np.random.default_rng(3)
    d = report(heatmap(np.exp(0.8 * rng.standard_normal((60, 24))))).to_dict()
    assert d["scale"] == "log" and d["noise"]["multiplicative"] is True and d["noise"]["material"] is True
    additive = report(heatmap(5.0 + 0.3 * rng.standard_normal((60, 24)))).to_dict()
    assert additive["scale"] == "linear" and additive["noise"]["multiplicative"] is False


def test_heavy_tails_are_seen_and_a_real_glitch_still_stands_out() -> None:
    rng = np.random.default_rng(4)
    t3 = 1.0 + 0.1 * rng.standard_t(3, (120, 32))
    gauss = 1.0 + 0.1 * rng.standard_normal((120, 32))
    heavy = report(heatmap(t3)).to_dict()["noise"]["tail_df"]
    light = report(heatmap(gauss)).to_dict()["noise"]["tail_df"]
    assert 2 < heavy < 4  # t3 recognised (read slightly heavy, on purpose)
    assert light is None or light > 2 * heavy  # None: no heavier than the normal's
    gauss[60, 10] = 3.0  # a 20-sigma glitch in Gaussian noise
    d = report(heatmap(gauss)).to_dict()
    (out,) = [o for o in d["observations"] if o["kind"] == "outlier"]
    assert out["cells"] == [[610, 11]] and out["facts"]["noise"]["ratio"] > 1
