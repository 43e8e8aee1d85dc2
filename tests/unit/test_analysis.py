"""layerscope.report on matrices with known patterns: the JSON contract, the Markdown, degenerate maps."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import layerscope
from layerscope._format import format_step, format_value
from layerscope.analysis import Report, Thresholds, report
from layerscope.analysis import patterns as P
from layerscope.analysis.report import format_percent
from layerscope.errors import ConfigError
from layerscope.store.heatmap import Heatmap

S, L = 10, 12
STEPS = [30_000 * (i + 1) for i in range(S)]
T = np.linspace(0.0, 1.0, S)[:, None]  # (S, 1) training progress
D = np.linspace(0.0, 1.0, L)[None, :]  # (1, L) depth

TRENDS = {"flat", "rising", "falling", "rise_then_fall", "fall_then_rise", "irregular"}
KINDS = {
    "consistently_low",
    "consistently_high",
    "depth_gradient",
    "step_trend",
    "hotspot",
    "saturation",
    "sudden_change",
    "missing_values",
    "outlier",
}


def heatmap(v: np.ndarray, steps: list[int] | None = None, metric: str = "rms") -> Heatmap:
    v = np.asarray(v, dtype=float)
    return Heatmap(
        v,
        steps=steps or [100 * (i + 1) for i in range(v.shape[0])],
        layers=list(range(1, v.shape[1] + 1)),
        metric=metric,
        run="test",
    )


def analyse(v: np.ndarray, **kw: Any) -> dict[str, Any]:
    return report(heatmap(v, steps=STEPS if np.shape(v)[0] == S else None), **kw).to_dict()


def obs(d: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in d["observations"] if o["kind"] == kind]


def one(d: dict[str, Any], kind: str) -> dict[str, Any]:
    found = obs(d, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['kind'] for o in d['observations']]}"
    return found[0]


def trends(d: dict[str, Any]) -> list[str | None]:
    return [x["trend"] for x in d["layers_detail"]]


def levels(d: dict[str, Any]) -> list[str | None]:
    return [x["level"] for x in d["layers_detail"]]


# ---- the patterns ------------------------------------------------------------------------------


def reference_like() -> np.ndarray:
    """Layers 1-4 low, 5-8 rising at different rates, 9-12 peaking at 80% of training then a slight
    decline: the matrix behind the reference figure."""
    v = np.empty((S, L))
    for j in range(4):
        v[:, j] = 0.0002 + 0.0005 * T[:, 0] + 0.00005 * j
    for k, j in enumerate(range(4, 8)):
        v[:, j] = 0.0003 + (0.0018 + 0.0017 * k) * T[:, 0]
    peak = np.array([0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.0076, 0.0081, 0.0078, 0.0075])
    for k, j in enumerate(range(8, 12)):
        v[:, j] = peak + 0.00005 * k
    return v


def grow() -> np.ndarray:
    return 0.1 + T * D


def peak_decline() -> np.ndarray:
    """Layers 9-12 rise to a peak at 70-80% of training, then lose about half of it."""
    v = np.tile(0.2 + 0.02 * T, (1, L))
    shape = np.where(T < 0.75, T / 0.75, 1.0 - (T - 0.75) * 2.0)
    v[:, 8:] = 0.2 + 0.8 * shape
    return v


def hot_band() -> np.ndarray:
    rng = np.random.default_rng(3)
    v = np.full((S, L), 0.1) + 0.001 * rng.standard_normal((S, L))
    v[:, 4:8] = 0.9 + 0.001 * rng.standard_normal((S, 4))
    return v


def phase_change() -> np.ndarray:
    rng = np.random.default_rng(4)
    v = np.full((S, L), 0.2)
    v[6:, :] = 0.8
    return v + 0.01 * rng.standard_normal((S, L))


def falling() -> np.ndarray:
    return 1.0 - 0.8 * T * np.ones((1, L))


def with_gaps() -> np.ndarray:
    v = grow()
    v[3, 5] = np.nan  # one absent cell
    v[:, 7] = np.nan  # a layer never recorded
    v[2, 2] = np.inf
    v[5, 9] = -np.inf
    return v


PATTERNS = {
    "reference": reference_like,
    "grow": grow,
    "peak_decline": peak_decline,
    "hot_band": hot_band,
    "phase_change": phase_change,
    "falling": falling,
    "with_gaps": with_gaps,
    "constant": lambda: np.full((S, L), 0.5),
    "noise": lambda: np.random.default_rng(0).standard_normal((S, L)),
    "log_span": lambda: 10.0 ** (-3 + 6 * D + 0.5 * T),
    "one_step": lambda: np.linspace(0, 1, L)[None, :],
    "one_layer": lambda: np.linspace(0, 1, S)[:, None],
    "one_cell": lambda: np.array([[3.0]]),
    "all_nan": lambda: np.full((S, L), np.nan),
    "no_steps": lambda: np.zeros((0, L)),
    "no_layers": lambda: np.zeros((S, 0)),
}


# ---- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_json_contract(name: str) -> None:
    v = PATTERNS[name]()
    d = analyse(v)
    json.loads(json.dumps(d, allow_nan=False))  # strict JSON: no NaN/inf anywhere
    for key in (
        "metric",
        "site",
        "run",
        "layers",
        "steps",
        "value_min",
        "value_max",
        "layers_detail",
        "observations",
    ):
        assert key in d
    assert d["layers"] == list(range(1, v.shape[1] + 1))
    assert len(d["steps"]) == v.shape[0]
    assert len(d["layers_detail"]) == v.shape[1]  # one entry per layer, always
    for x in d["layers_detail"]:
        assert set(x) >= {
            "layer",
            "trend",
            "level",
            "first",
            "last",
            "min",
            "max",
            "peak_step",
            "plateau_from",
        }
        assert x["trend"] in TRENDS | {None} and x["level"] in {"low", "mid", "high", None}
        if x["trend"] is not None:
            assert x["min"] <= x["first"] <= x["max"] and x["min"] <= x["last"] <= x["max"]
            assert x["peak_step"] in d["steps"]
        assert x["plateau_from"] is None or x["plateau_from"] in d["steps"]
    steps, layers = set(d["steps"]), set(d["layers"])
    for o in d["observations"]:
        assert set(o) >= {"kind", "layers", "steps", "direction", "cells", "text"}
        assert o["kind"] in KINDS and o["direction"] in {"increasing", "decreasing", None}
        assert set(o["layers"]) <= layers and set(o["steps"]) <= steps
        assert all(c[0] in steps and c[1] in layers for c in o["cells"])
        assert o["text"]
    fin = v[np.isfinite(v)]
    if fin.size:
        assert d["value_min"] == float(f"{fin.min():.{d['digits']}g}")
        assert d["value_max"] == float(f"{fin.max():.{d['digits']}g}")
    else:
        assert d["value_min"] is None and d["value_max"] is None


# ---- every pattern -------------------------------------------------------------------------------


def test_flat_map_is_described_as_flat() -> None:
    d = analyse(np.full((S, L), 0.5))
    assert set(trends(d)) == {"flat"} and d["value_min"] == d["value_max"] == 0.5
    assert d["observations"] == []
    md = report(heatmap(np.full((S, L), 0.5))).to_markdown()
    assert "flat" in md and "0.5 throughout" in md


def test_flat_map_with_tiny_noise_claims_no_structure() -> None:
    rng = np.random.default_rng(7)
    d = analyse(0.5 + 1e-6 * rng.standard_normal((S, L)))
    assert set(trends(d)) == {"flat"}
    assert d["noise"]["structured"] is False
    assert not {"hotspot", "depth_gradient", "step_trend", "saturation"} & {
        o["kind"] for o in d["observations"]
    }


def test_growing_with_depth_and_steps() -> None:
    d = analyse(grow())
    assert one(d, "depth_gradient")["direction"] == "increasing"
    st_ = one(d, "step_trend")
    assert st_["direction"] == "increasing" and 12 in st_["layers"] and 1 not in st_["layers"]
    hot = one(d, "hotspot")
    assert hot["layers"] == [11, 12] and hot["steps"] == [STEPS[-1]]
    assert hot["facts"]["max_layer"] == 12 and hot["facts"]["max_step"] == STEPS[-1]
    assert trends(d)[0] == "flat" and all(t == "rising" for t in trends(d)[3:])
    assert one(d, "consistently_low")["layers"] == [1, 2, 3]
    assert levels(d)[0] == "low"


def test_peak_then_decline_band() -> None:
    d = analyse(peak_decline())
    assert trends(d)[8:] == ["rise_then_fall"] * 4
    assert all(x["peak_step"] in STEPS[6:8] for x in d["layers_detail"][8:])
    assert one(d, "hotspot")["layers"] == [9, 10, 11, 12]
    assert set(one(d, "hotspot")["steps"]) <= set(STEPS[5:9])
    assert not obs(d, "saturation")  # losing half the rise is a real decline, not a plateau
    assert all(x["plateau_from"] is None for x in d["layers_detail"][8:])


def test_reference_like_map() -> None:
    d = analyse(reference_like())
    assert trends(d)[:4] == ["flat"] * 4 and levels(d)[:4] == ["low"] * 4
    assert trends(d)[4:8] == ["rising"] * 4
    assert trends(d)[8:] == ["rise_then_fall"] * 4 and levels(d)[8:] == ["high"] * 4
    assert [x["peak_step"] for x in d["layers_detail"][8:]] == [240_000] * 4
    assert [x["plateau_from"] for x in d["layers_detail"][8:]] == [210_000] * 4
    sat = one(d, "saturation")
    assert (
        sat["layers"] == [9, 10, 11, 12] and sat["steps"] == [210_000] and sat["facts"]["declining"] is True
    )
    assert one(d, "consistently_low")["layers"] == [1, 2, 3, 4]
    assert one(d, "depth_gradient")["direction"] == "increasing"
    assert one(d, "step_trend")["direction"] == "increasing"
    assert one(d, "hotspot")["layers"] == [9, 10, 11, 12]
    assert [b["layers"] for b in d["bands"]] == [[1, 2, 3, 4], [5], [6], [7], [8], [9, 10, 11, 12]]
    assert d["layers_detail"][8]["max"] == 0.0081 and d["layers_detail"][8]["last"] == 0.0075


def test_hot_band_in_the_middle_has_no_depth_gradient() -> None:
    d = analyse(hot_band())
    assert not obs(d, "depth_gradient")  # the profile is not monotone
    assert one(d, "hotspot")["layers"] == [5, 6, 7, 8] and one(d, "hotspot")["steps"] == STEPS
    assert one(d, "consistently_high")["layers"] == [5, 6, 7, 8]
    assert one(d, "consistently_low")["layers"] == [1, 2, 3, 4, 9, 10, 11, 12]
    assert levels(d) == ["low"] * 4 + ["high"] * 4 + ["low"] * 4
    assert [b["layers"] for b in d["bands"]] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]


def test_phase_change_is_a_sudden_change() -> None:
    d = analyse(phase_change())
    (jump,) = obs(d, "sudden_change")
    assert (
        jump["direction"] == "increasing"
        and jump["steps"] == [STEPS[6]]
        and jump["layers"] == list(range(1, 13))
    )
    (event,) = jump["facts"]["events"]
    assert event["step_before"] == STEPS[5] and 0.5 < event["change_min"] <= event["change_max"] < 0.7
    assert not obs(d, "saturation")  # the level after a jump is the jump, not a saturation
    assert one(d, "step_trend")["direction"] == "increasing"


def test_transient_spike_row_jumps_up_then_down() -> None:
    v = np.full((S, L), 0.2)
    v[4] = 0.9
    d = analyse(v)
    ups = [o for o in obs(d, "sudden_change") if o["direction"] == "increasing"]
    downs = [o for o in obs(d, "sudden_change") if o["direction"] == "decreasing"]
    assert ups[0]["steps"] == [STEPS[4]] and downs[0]["steps"] == [STEPS[5]]
    assert not obs(d, "outlier")  # a whole row is not an isolated cell


def test_falling_map() -> None:
    d = analyse(falling())
    assert set(trends(d)) == {"falling"}
    assert one(d, "step_trend")["direction"] == "decreasing"
    assert one(d, "hotspot")["steps"] == [STEPS[0]]
    assert not obs(d, "depth_gradient")


def test_decreasing_with_depth() -> None:
    d = analyse(1.0 - 0.9 * D * np.ones((S, 1)))
    assert one(d, "depth_gradient")["direction"] == "decreasing"
    assert one(d, "hotspot")["layers"][0] == 1


def test_fall_then_rise_and_irregular() -> None:
    v = np.tile(0.5 + 0.5 * (2 * T - 1) ** 2, (1, L))  # U shape over training
    v[:, 6:] = 0.5 + 0.4 * np.sin(np.arange(S) * 2.0)[:, None]  # oscillates
    d = analyse(v)
    assert trends(d)[:6] == ["fall_then_rise"] * 6
    assert trends(d)[6:] == ["irregular"] * 6


def test_missing_inf_and_absent_cells() -> None:
    d = analyse(with_gaps())
    miss = one(d, "missing_values")
    expected = sorted([[STEPS[i], 8] for i in range(S)] + [[STEPS[3], 6]])
    assert sorted(miss["cells"]) == expected
    assert miss["facts"]["full_layers"] == [8] and miss["facts"]["n_cells"] == 11
    (inf,) = [o for o in obs(d, "outlier") if o["facts"].get("infinite")]
    assert sorted(inf["cells"]) == [[STEPS[2], 3], [STEPS[5], 10]]
    detail = d["layers_detail"][7]
    assert detail["trend"] is None and detail["level"] is None and detail["first"] is None
    assert d["n_missing"] == 11 and d["n_infinite"] == 2
    assert d["value_max"] == 1.1  # infinities are not part of the range
    assert 8 not in one(d, "depth_gradient")["layers"]


def test_isolated_outlier_is_reported_and_set_aside() -> None:
    v = grow()
    v[4, 3] = 50.0  # one glitch, 45x the map's range
    d = analyse(v)
    (out,) = [o for o in obs(d, "outlier") if not o["facts"].get("infinite")]
    assert out["cells"] == [[STEPS[4], 4]] and out["facts"]["values"] == [50.0]
    assert d["value_max"] == 50.0 and d["range_max"] == 1.1
    clean = analyse(grow())
    assert levels(d) == levels(clean) and trends(d) == trends(clean)
    assert d["layers_detail"][3]["max"] < 1


def test_block_corner_and_stripe_are_not_outliers() -> None:
    v = np.zeros((S, L))
    v[3:7, 4:8] = 1.0  # a block
    v[:, 10] = 1.0  # a one-layer stripe
    assert not obs(analyse(v), "outlier")


def test_log_scale_is_chosen_for_values_spanning_decades() -> None:
    d = analyse(10.0 ** (-3 + 6 * D + 0.5 * T))
    assert d["scale"] == "log" and d["value_factor"] > 1e5
    assert levels(d)[:4] == ["low"] * 4 and levels(d)[4:8] == ["mid"] * 4 and levels(d)[8:] == ["high"] * 4
    lin = analyse(10.0 ** (-3 + 6 * D + 0.5 * T), scale="linear")
    assert lin["scale"] == "linear" and levels(lin)[:8] == ["low"] * 8


def test_log_scale_refuses_non_positive_values() -> None:
    with pytest.raises(ConfigError, match="positive"):
        analyse(grow() - 0.5, scale="log")
    with pytest.raises(ConfigError, match="scale"):
        analyse(grow(), scale="cubic")


@pytest.mark.parametrize("a,b", [(1000.0, 0.0), (1.0, 7.0), (1e-6, 0.0)])
def test_report_is_scale_and_shift_invariant(a: float, b: float) -> None:
    base = analyse(reference_like())
    moved = analyse(a * reference_like() + b)
    assert trends(moved) == trends(base) and levels(moved) == levels(base)
    assert [(o["kind"], o["layers"], o["steps"], o["direction"]) for o in moved["observations"]] == [
        (o["kind"], o["layers"], o["steps"], o["direction"]) for o in base["observations"]
    ]


def test_thresholds_are_configurable() -> None:
    strict = analyse(grow(), thresholds=Thresholds(hotspot=0.99))
    loose = analyse(grow(), thresholds=Thresholds(hotspot=0.5))
    assert one(strict, "hotspot")["facts"]["n_cells"] < one(loose, "hotspot")["facts"]["n_cells"]
    assert loose["thresholds"]["hotspot"] == 0.5


@pytest.mark.parametrize(
    "name", ["one_step", "one_layer", "one_cell", "all_nan", "no_steps", "no_layers", "constant"]
)
def test_degenerate_maps_are_described(name: str) -> None:
    rep = report(heatmap(PATTERNS[name]()))
    md = rep.to_markdown()
    assert md.startswith("# `rms`") and "## Overview" in md
    if name in ("no_steps", "no_layers"):
        assert "empty" in md
    else:
        for section in (
            "## Components/Axes",
            "## Detailed analysis",
            "## Key observations",
            "## Interpretation",
        ):
            assert section in md
    if name == "one_step":
        assert "single recorded step" in md and not obs(rep.to_dict(), "step_trend")
    if name == "all_nan":
        assert "None of the 120 cells holds a finite value" in md


def test_single_step_still_sees_the_depth_profile() -> None:
    d = analyse(np.linspace(0, 1, L)[None, :])
    assert one(d, "depth_gradient")["direction"] == "increasing"
    assert set(trends(d)) == {"flat"}


def test_single_layer_has_a_trend_but_no_depth_gradient() -> None:
    d = analyse(np.linspace(0, 1, S)[:, None])
    assert trends(d) == ["rising"] and not obs(d, "depth_gradient")


@pytest.mark.timeout(120)
def test_large_map_stays_compact() -> None:
    rng = np.random.default_rng(5)
    v = 0.1 + np.linspace(0, 1, 5000)[:, None] * np.linspace(0, 1, 200)[None, :]
    v = v + 0.01 * rng.standard_normal(v.shape)
    v[rng.integers(0, 5000, 50), rng.integers(0, 200, 50)] = np.nan
    rep = report(heatmap(v))
    d = rep.to_dict()
    assert len(d["layers_detail"]) == 200 and len(d["bands"]) <= Thresholds().max_bands
    assert one(d, "depth_gradient")["direction"] == "increasing"
    assert one(d, "hotspot")["layers"][-1] == 200
    assert set(trends(d)[100:]) == {"rising"}
    md = rep.to_markdown()
    assert md.count("\n- **Layer") <= Thresholds().max_bands  # bands, not 200 paragraphs
    json.dumps(d, allow_nan=False)


def test_ninety_six_layers_are_grouped_into_bands() -> None:
    v = 0.1 + T * np.linspace(0, 1, 96)[None, :]
    d = report(heatmap(v)).to_dict()
    bands = d["bands"]
    assert 2 <= len(bands) <= 12
    assert [lay for b in bands for lay in b["layers"]] == list(range(1, 97))  # contiguous, complete


# ---- the Markdown ----------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?[kMB]?%?")


def _json_numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool) or obj is None:
        return []
    if isinstance(obj, (int, float)):
        return [obj]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _json_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _json_numbers(v)]
    return []


def quoted_numbers_not_in_json(md: str, d: dict[str, Any]) -> list[str]:
    """Numbers written in ``md`` that are not a rendering of some number in ``d`` (as a step, an
    integer, a value with the report's digits, or a stored percentage)."""
    ok: set[str] = set()
    for x in _json_numbers(d):
        ok.add(format_value(float(x), d["digits"]))
        ok.add(format_percent(float(x)))
        if float(x).is_integer():
            ok.add(str(int(x)))
            ok.add(format_step(int(x)))
    text = re.sub(r"`[^`]*`", " ", md)  # code spans: metric, run and layer names
    text = re.sub(r"^\d+\. ", "", text, flags=re.M)  # numbered-list markers
    bad = []
    for tok in _NUM.findall(text):
        if tok not in ok and tok.rstrip("%") + "%" not in ok:
            bad.append(tok)
    return bad


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_number_in_the_markdown_is_in_the_json(name: str) -> None:
    rep = report(heatmap(PATTERNS[name](), steps=STEPS if PATTERNS[name]().shape[0] == S else None))
    md = rep.to_markdown()
    assert quoted_numbers_not_in_json(md, rep.to_dict()) == []


def test_number_check_catches_an_invented_number() -> None:
    rep = report(heatmap(reference_like(), steps=STEPS))
    md = rep.to_markdown().replace("## Interpretation", "## Interpretation\n\nLayer 9 peaks at 0.00917.")
    assert quoted_numbers_not_in_json(md, rep.to_dict()) == ["0.00917"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
        elements=st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False, width=32),
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-300]),
        ),
    ),
    st.sampled_from(["auto", "linear"]),
)
def test_any_matrix_gets_a_strict_report_whose_numbers_are_in_the_json(v: np.ndarray, scale: str) -> None:
    rep = report(heatmap(v), scale=scale)
    d = json.loads(rep.to_json())
    assert len(d["layers_detail"]) == v.shape[1]
    assert quoted_numbers_not_in_json(rep.to_markdown(), d) == []


def test_markdown_sections_and_bands() -> None:
    md = report(heatmap(reference_like(), steps=STEPS)).to_markdown()
    heads = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert heads == [
        "## Overview",
        "## Components/Axes",
        "## Detailed analysis",
        "## Key observations",
        "## Interpretation",
    ]
    assert "- **Layers 1–4** (flat, low): between 0.0002 and 0.00085 throughout" in md
    assert "- **Layers 9–12** (rise then fall, high)" in md
    assert "every 30000" in md and "30000–300000" in md  # steps in text are exact (issue 23)


def test_interpretation_is_hedged_and_tied_to_observations() -> None:
    for name in ("reference", "grow", "hot_band", "phase_change", "with_gaps"):
        d = report(heatmap(PATTERNS[name](), steps=STEPS)).to_dict()
        refs = [i["observation"] for i in d["interpretation"] if i["observation"] is not None]
        assert refs and all(1 <= r <= len(d["observations"]) for r in refs)
        for item in d["interpretation"]:
            assert re.search(
                r"\b(may|might|need not|consistent with|suggest|could|less certain|not evidence|does not)\b",
                item["text"],
            ), item["text"]


def test_report_is_exported_lazily_from_the_package() -> None:
    assert layerscope.report is report and layerscope.Report is Report


def test_to_dict_is_a_copy() -> None:
    rep = report(heatmap(grow()))
    rep.to_dict()["observations"].clear()
    assert rep.to_dict()["observations"]


# ---- the pure detectors ------------------------------------------------------------------------


def test_classify_trend_shapes() -> None:
    c = lambda y: P.classify_trend(np.asarray(y, float), 0.1, 0.05, 2.0)
    assert c([0.5, 0.52, 0.51]) == "flat"
    assert c([0, 0.3, 0.6, 1]) == "rising"
    assert c([1, 0.6, 0.3, 0]) == "falling"
    assert c([0, 1, 0.5]) == "rise_then_fall"
    assert c([1, 0, 0.5]) == "fall_then_rise"
    assert c([0, 1, 0, 1, 0, 1, 0]) == "irregular"
    assert c([]) is None and c([0.3]) == "flat"


def test_plateau_start() -> None:
    assert P.plateau_start(np.array([0, 0.4, 0.8, 0.95, 1, 0.97, 0.96, 0.96]), 0.1, 0.25, 0.25) == 3
    assert P.plateau_start(np.linspace(0, 1, 10), 0.1, 0.25, 0.25) is None  # still rising at the end
    assert P.plateau_start(np.array([0, 0.5, 1, 0.5, 0.2, 0.1]), 0.1, 0.25, 0.25) is None  # falls back


def test_noise_sigma_ignores_linear_trends_and_finds_noise() -> None:
    assert P.noise_sigma(grow()) < 1e-12
    rng = np.random.default_rng(0)
    sigma = P.noise_sigma(0.3 * rng.standard_normal((200, 50)))
    assert 0.25 < sigma < 0.35


def test_smooth_columns_keeps_nan_and_means() -> None:
    a = np.array([[1.0], [np.nan], [3.0], [5.0]])
    out = P.smooth_columns(a, 3)
    assert math.isnan(out[1, 0]) and out[0, 0] == 1.0 and out[2, 0] == 4.0 and out[3, 0] == 4.0


def test_a_jump_right_after_the_first_step_is_read_as_early_training() -> None:
    v = np.full((S, L), 0.8)
    v[0] = 0.1  # everything moves at once between the first two recorded steps
    d = analyse(v)
    (jump,) = obs(d, "sudden_change")
    assert jump["steps"] == [STEPS[1]]
    (text,) = [
        i["text"] for i in d["interpretation"] if i["observation"] == d["observations"].index(jump) + 1
    ]
    assert "early in training" in text and "change of setup" in text


def test_interpretation_knows_which_statistic_it_reads() -> None:
    kurt = report(heatmap(grow(), metric="kurtosis")).to_dict()
    rms = report(heatmap(grow(), metric="rms")).to_dict()
    hot_k = next(i["text"] for i in kurt["interpretation"] if "largest" in i["text"])
    hot_r = next(i["text"] for i in rms["interpretation"] if "largest" in i["text"])
    assert "heavy-tailed" in hot_k and "max_abs" in hot_k
    assert "activation scale" in hot_r


def test_save_writes_markdown_or_json(tmp_path) -> None:
    rep = report(heatmap(reference_like(), steps=STEPS))
    md = rep.save(tmp_path / "report.md")
    js = rep.save(tmp_path / "report.json")
    assert md.read_text() == rep.to_markdown()
    assert json.loads(js.read_text()) == rep.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
