"""Golden reports: the JSON and Markdown of a broad set of maps, compared byte for byte with the files
under ``tests/data/report_golden/``.

The cases are every map the report tests build (``test_analysis.py``, the CLI, the bundle, the
docstrings) and a broad set of synthetic ones (noise of three kinds, patterns buried in noise,
uneven steps, signed values, decades, gaps, extremes, hostile names). A change to the analysis that
changes a report shows here as a diff of these files, to be explained in its commit.

Regenerate deliberately, after checking that the change is meant::

    PYTHONPATH=src python tests/unit/test_report_golden.py --write          # rewrite every file
    PYTHONPATH=src python tests/unit/test_report_golden.py --summary        # what changed, per case
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.stores import ATTN_HEADS, ATTN_LAYERS, ATTN_STEPS, planted_attn, planted_events
from tests.unit.test_analysis import quoted_numbers_not_in_json

from layerscope.analysis import Extras, Thresholds, report
from layerscope.store import HeadSeries
from layerscope.store.heatmap import Heatmap

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "report_golden"

S, L = 10, 12
STEPS = [30_000 * (i + 1) for i in range(S)]
T = np.linspace(0.0, 1.0, S)[:, None]  # (S, 1) training progress
D = np.linspace(0.0, 1.0, L)[None, :]  # (1, L) depth

Case = tuple[Heatmap, dict[str, Any]]
CASES: dict[str, Callable[[], Case]] = {}


def case(name: str) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    def deco(fn: Callable[[], Case]) -> Callable[[], Case]:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return deco


def hm(
    v: np.ndarray,
    steps: list[int] | None = None,
    metric: str = "rms",
    site: str = "output",
    run: str = "test",
    names: list[str] | None = None,
) -> Heatmap:
    v = np.asarray(v, dtype=float)
    return Heatmap(
        v,
        steps=steps if steps is not None else [100 * (i + 1) for i in range(v.shape[0])],
        layers=list(range(1, v.shape[1] + 1)),
        layer_names=names or [],
        metric=metric,
        site=site,
        run=run,
    )


def analysed(v: np.ndarray, **kw: Any) -> Case:
    """As ``test_analysis.analyse``: the 10-step maps get the 30k-step axis."""
    return hm(v, steps=STEPS if np.shape(v)[0] == S else None), kw


# ---- the maps of tests/unit/test_analysis.py ------------------------------------------------------


def reference_like() -> np.ndarray:
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


def with_gaps() -> np.ndarray:
    v = grow()
    v[3, 5] = np.nan
    v[:, 7] = np.nan
    v[2, 2] = np.inf
    v[5, 9] = -np.inf
    return v


PATTERNS: dict[str, Callable[[], np.ndarray]] = {
    "reference": reference_like,
    "grow": grow,
    "peak_decline": peak_decline,
    "hot_band": hot_band,
    "phase_change": phase_change,
    "falling": lambda: 1.0 - 0.8 * T * np.ones((1, L)),
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

for _name, _fn in PATTERNS.items():
    CASES[f"pattern_{_name}"] = lambda _fn=_fn: analysed(_fn())
    # test_every_number_in_the_markdown_is_in_the_json and the degenerate-map test use the
    # default step axis for maps that are not 10 steps long; analysed() does the same.


@case("tiny_noise")
def _() -> Case:
    return analysed(0.5 + 1e-6 * np.random.default_rng(7).standard_normal((S, L)))


@case("spike_row")
def _() -> Case:
    v = np.full((S, L), 0.2)
    v[4] = 0.9
    return analysed(v)


@case("decreasing_with_depth")
def _() -> Case:
    return analysed(1.0 - 0.9 * D * np.ones((S, 1)))


@case("u_shape_and_oscillation")
def _() -> Case:
    v = np.tile(0.5 + 0.5 * (2 * T - 1) ** 2, (1, L))
    v[:, 6:] = 0.5 + 0.4 * np.sin(np.arange(S) * 2.0)[:, None]
    return analysed(v)


@case("isolated_outlier")
def _() -> Case:
    v = grow()
    v[4, 3] = 50.0
    return analysed(v)


@case("block_and_stripe")
def _() -> Case:
    v = np.zeros((S, L))
    v[3:7, 4:8] = 1.0
    v[:, 10] = 1.0
    return analysed(v)


@case("log_span_linear")
def _() -> Case:
    return analysed(10.0 ** (-3 + 6 * D + 0.5 * T), scale="linear")


for _a, _b in [(1000.0, 0.0), (1.0, 7.0), (1e-6, 0.0)]:
    CASES[f"reference_x{_a:g}_plus{_b:g}"] = lambda _a=_a, _b=_b: analysed(_a * reference_like() + _b)


@case("grow_hotspot_0.99")
def _() -> Case:
    return analysed(grow(), thresholds=Thresholds(hotspot=0.99))


@case("grow_hotspot_0.5")
def _() -> Case:
    return analysed(grow(), thresholds=Thresholds(hotspot=0.5))


@case("jump_after_first_step")
def _() -> Case:
    v = np.full((S, L), 0.8)
    v[0] = 0.1
    return analysed(v)


for _metric in ("kurtosis", "max_abs", "top_ratio", "mean", "std"):
    CASES[f"grow_metric_{_metric}"] = lambda _m=_metric: (hm(grow(), metric=_m), {})


@case("grow_site_mlp_act")
def _() -> Case:
    return hm(grow(), site="mlp_act"), {}


@case("large_5000x200")
def _() -> Case:
    rng = np.random.default_rng(5)
    v = 0.1 + np.linspace(0, 1, 5000)[:, None] * np.linspace(0, 1, 200)[None, :]
    v = v + 0.01 * rng.standard_normal(v.shape)
    v[rng.integers(0, 5000, 50), rng.integers(0, 200, 50)] = np.nan
    return hm(v), {}


@case("ninety_six_layers")
def _() -> Case:
    return hm(0.1 + T * np.linspace(0, 1, 96)[None, :]), {}


# ---- the maps of the CLI, bundle, dashboard and docstring tests ---------------------------------


@case("cli_store_reference")
def _() -> Case:
    v = reference_like()
    v[4, 6] = np.nan
    names = [f"transformer.h.{i}" for i in range(12)]
    return hm(v, steps=STEPS, run="base", names=names), {}


@case("bundle_rms")
def _() -> Case:
    return hm(np.outer(np.arange(1, 6), np.arange(1, 4)) * 0.1, run=""), {}


@case("bundle_mean")
def _() -> Case:
    return hm(np.full((5, 3), -0.5) + np.arange(3), metric="mean", run="r"), {}


@case("bundle_negative")
def _() -> Case:
    return hm(-np.ones((5, 3)), metric="mean"), {}


@case("serve_run_a")
def _() -> Case:
    v = np.array([[1.0, 2.0, 3.0], [2.0, np.nan, 4.0], [3.0, 4.0, np.inf]])
    return hm(v, steps=[10, 20, 30], run="a", names=[f"blocks.{i}" for i in range(3)]), {}


@case("doc_linspace")
def _() -> Case:
    return Heatmap(np.linspace(0, 1, 12).reshape(3, 4), steps=[1, 2, 3], layers=[1, 2, 3, 4]), {}


@case("doc_outer")
def _() -> Case:
    v = np.outer(np.arange(1, 4), np.arange(1, 5)) / 12.0
    return Heatmap(v, steps=[100, 200, 300], layers=[1, 2, 3, 4], metric="rms"), {}


@case("doc_eye")
def _() -> Case:
    return Heatmap(np.eye(3), steps=[1, 2, 3], layers=[1, 2, 3]), {}


@case("doc_half")
def _() -> Case:
    return Heatmap(np.full((3, 2), 0.5), steps=[1, 2, 3], layers=[1, 2]), {}


# ---- small random matrices with special values (as the property test draws them) -----------------

_SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-300])
for _k in range(30):

    def _special(k: int = _k) -> Case:
        rng = np.random.default_rng(1000 + k)
        shape = (int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        v = rng.uniform(-1e6, 1e6, shape).astype(np.float32).astype(np.float64)
        if k % 3:
            v = np.abs(v) * 10.0 ** rng.uniform(-6, 0, shape)
        pick = rng.random(shape) < 0.15
        v[pick] = rng.choice(_SPECIALS, int(pick.sum()))
        return hm(v), {"scale": "linear" if k % 4 == 3 else "auto"}

    CASES[f"special_{_k:02d}"] = _special


# ---- noise of the kinds activation statistics have, and patterns buried in it --------------------


def noise(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Pure noise around 1: additive Gaussian, multiplicative log-normal, heavy-tailed Student t."""
    if kind == "gauss":
        return 1.0 + 0.1 * rng.standard_normal(shape)
    if kind.startswith("lognormal"):
        spread = float(kind.removeprefix("lognormal"))
        return np.exp(spread * rng.standard_normal(shape))
    if kind == "t3":
        return 1.0 + 0.1 * rng.standard_t(3, shape)
    raise ValueError(kind)


NOISE_SHAPES = [(8, 6), (30, 12), (60, 24), (200, 96)]  # (steps, layers)
NOISE_KINDS = ["gauss", "lognormal0.3", "lognormal1", "t3"]
for _i, _kind in enumerate(NOISE_KINDS):
    for _j, _shape in enumerate(NOISE_SHAPES):
        CASES[f"noise_{_kind}_{_shape[0]}x{_shape[1]}"] = lambda _k=_kind, _s=_shape, _seed=10 * _i + _j: (
            hm(noise(_k, _s, np.random.default_rng(_seed)), metric="max_abs"),
            {},
        )


def pattern(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A unit-amplitude pattern on (steps, layers)."""
    s, l_ = shape
    t = np.linspace(0, 1, s)[:, None]
    d = np.linspace(0, 1, l_)[None, :]
    if name == "band":
        out = np.zeros(shape)
        out[:, l_ // 3 : 2 * l_ // 3] = 1.0
        return out
    if name == "depth":
        return np.broadcast_to(d, shape).copy()
    if name == "trend":
        return np.broadcast_to(t, shape).copy()
    if name == "jump":
        out = np.zeros(shape)
        out[s // 2 :] = 1.0
        return out
    raise ValueError(name)


for _p in ("band", "depth", "trend", "jump"):
    for _i, _kind in enumerate(("gauss", "lognormal0.5", "t3")):

        def _buried(p: str = _p, kind: str = _kind, seed: int = _i) -> Case:
            # SNR 3: the pattern's amplitude is 3x the noise's spread (on the log scale for log-normal).
            rng = np.random.default_rng(50 + seed)
            shape = (40, 16)
            if kind.startswith("lognormal"):
                sd = float(kind.removeprefix("lognormal"))
                v = np.exp(3 * sd * pattern(p, shape) + sd * rng.standard_normal(shape))
            else:
                v = 1.0 + 3 * 0.1 * pattern(p, shape) + (noise(kind, shape, rng) - 1.0)
            return hm(v), {}

        CASES[f"buried_{_p}_{_kind}"] = _buried


# ---- the rest of the space: axes, signs, decades, gaps, extremes, names ---------------------------


@case("uneven_steps")
def _() -> Case:
    steps = [1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10_000]
    return hm(grow(), steps=steps), {}


@case("steps_in_millions")
def _() -> Case:
    return hm(reference_like(), steps=[250_000 * (i + 1) for i in range(S)]), {}


@case("signed_mean")
def _() -> Case:
    rng = np.random.default_rng(21)
    return hm(0.5 * (D - 0.5) * np.ones((S, 1)) + 0.01 * rng.standard_normal((S, L)), metric="mean"), {}


@case("negative_falling")
def _() -> Case:
    return hm(-1.0 - T * D), {}


@case("decades_with_noise")
def _() -> Case:
    rng = np.random.default_rng(22)
    return hm(10.0 ** (-2 + 4 * D + 0.1 * rng.standard_normal((S, L)))), {}


@case("decades_forced_log")
def _() -> Case:
    return hm(0.1 + T * D), {"scale": "log"}


@case("half_missing")
def _() -> Case:
    rng = np.random.default_rng(23)
    v = grow()
    v[rng.random(v.shape) < 0.5] = np.nan
    return hm(v), {}


@case("missing_step_row")
def _() -> Case:
    v = grow()
    v[5] = np.nan
    v[:, 0] = np.nan
    return hm(v), {}


@case("constant_with_outlier")
def _() -> Case:
    v = np.full((S, L), 2.0)
    v[3, 4] = 9.0
    return hm(v), {}


@case("constant_with_inf")
def _() -> Case:
    v = np.full((S, L), 2.0)
    v[3, 4] = np.inf
    v[7, 1] = -np.inf
    return hm(v), {}


@case("many_infinite")
def _() -> Case:
    v = grow()
    v[::2, ::3] = np.inf
    return hm(v), {}


@case("extremes")
def _() -> Case:
    v = np.array([[1e308, -1e308, 5e-324], [0.0, 1e-300, 1e300], [3.0, np.nan, -2.0]])
    return hm(v), {}


@case("huge_constant_offset")
def _() -> Case:
    return hm(1e6 + 1e-3 * grow()), {}


@case("two_by_two")
def _() -> Case:
    return hm(np.array([[0.1, 0.2], [0.3, 0.5]])), {}


@case("three_by_three_jump")
def _() -> Case:
    return hm(np.array([[0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.9, 0.9, 0.9]])), {}


@case("single_layer_jump")
def _() -> Case:
    v = np.full((20, 1), 0.3)
    v[12:] = 0.9
    return hm(v), {}


@case("single_step_noise")
def _() -> Case:
    return hm(1.0 + 0.1 * np.random.default_rng(24).standard_normal((1, 24))), {}


@case("staggered_plateaus")
def _() -> Case:
    t = np.linspace(0, 1, 40)[:, None]
    onset = np.linspace(0.2, 0.8, 16)[None, :]
    return hm(np.minimum(t / onset, 1.0) * (1 + np.arange(16))[None, :]), {}


@case("slow_rise_long")
def _() -> Case:
    rng = np.random.default_rng(25)
    t = np.linspace(0, 1, 400)[:, None]
    return hm(1.0 + t * D[:, :8] + 0.02 * rng.standard_normal((400, 8))), {}


@case("down_jump_some_layers")
def _() -> Case:
    v = np.full((20, 10), 0.9)
    v[8:, 2:6] = 0.2
    return hm(v), {}


@case("hostile_names")
def _() -> Case:
    names = ["<script>alert(1)</script>", "a`b", "**bold**", "x\ny", "[l](javascript:alert(1))"]
    v = 0.1 + np.linspace(0, 1, 6)[:, None] * np.linspace(0, 1, 5)[None, :]
    return hm(v, metric="r`m*s", site="<b>s</b>", run="<img src=x onerror=alert(1)>", names=names), {}


# ---- a stored run's sections: attention heads, output logits, watch alerts (tests/stores.py) -------


def _planted_heads(metric: str, reduce: str) -> Case:
    vals = planted_attn()
    names = [f"h.{i}" for i in range(ATTN_LAYERS)]
    heads = {
        m: HeadSeries(
            vals[(m, "attn")], ATTN_STEPS, list(range(1, ATTN_LAYERS + 1)), names, m, "attn", "planted"
        )
        for m in ("max_logit", "entropy", "sink")
    }
    cube = vals[(metric, "attn")]
    v = cube.max(axis=2) if reduce == "max" else cube.mean(axis=2)
    h = hm(v, steps=ATTN_STEPS, metric=metric, site="attn", run="planted", names=names)
    extras = Extras(heads=heads, n_heads=ATTN_HEADS, reduce=reduce, events=planted_events())
    return h, {"extras": extras}


CASES["attn_max_logit_planted"] = lambda: _planted_heads("max_logit", "max")
CASES["attn_entropy_planted"] = lambda: _planted_heads("entropy", "mean")
CASES["attn_sink_planted"] = lambda: _planted_heads("sink", "mean")


@case("logits_planted")
def _() -> Case:
    vals = planted_attn()
    series = {m: vals[(m, "logits")][:, -1] for m in ("max_logit", "log_z", "entropy")}
    h = Heatmap(
        series["log_z"][:, None], ATTN_STEPS, [ATTN_LAYERS], ["lm_head"], "log_z", "logits", "planted"
    )
    extras = Extras(
        logits=series,
        logits_steps=ATTN_STEPS,
        logits_layer=ATTN_LAYERS,
        logits_layer_name=f"h.{ATTN_LAYERS - 1}",
        events=planted_events(),
    )
    return h, {"extras": extras}


@case("alerts_on_rms")
def _() -> Case:
    names = [f"h.{i}" for i in range(ATTN_LAYERS)]
    h = hm(planted_attn()[("rms", "output")], steps=ATTN_STEPS, run="planted", names=names)
    return h, {"extras": Extras(events=planted_events())}


# ---- the test -------------------------------------------------------------------------------------


def render(name: str) -> tuple[str, str]:
    """The JSON and Markdown of case ``name``, as they are stored."""
    h, kw = CASES[name]()
    rep = report(h, **kw)
    return rep.to_json() + "\n", rep.to_markdown()


@pytest.mark.parametrize("name", sorted(CASES))
def test_report_matches_golden(name: str) -> None:
    js, md = render(name)
    want_js = (GOLDEN / f"{name}.json").read_text(encoding="utf-8")
    want_md = (GOLDEN / f"{name}.md").read_text(encoding="utf-8")
    assert js == want_js, f"{name}: the JSON report changed; see the module docstring"
    assert md == want_md, f"{name}: the Markdown report changed; see the module docstring"


@pytest.mark.parametrize("name", sorted(n for n in CASES if "planted" in n or n.startswith("alerts_")))
def test_every_number_of_a_stored_run_s_sections_is_in_the_json(name: str) -> None:
    h, kw = CASES[name]()
    rep = report(h, **kw)
    assert quoted_numbers_not_in_json(rep.to_markdown(), rep.to_dict()) == []


def test_every_golden_file_has_a_case() -> None:
    stored = {p.stem for p in GOLDEN.glob("*.json")} | {p.stem for p in GOLDEN.glob("*.md")}
    assert stored == set(CASES)


# ---- regenerating ---------------------------------------------------------------------------------


def _kinds(js: str) -> list[str]:
    d = json.loads(js)
    return [f"{o['kind']}:{o['direction'] or ''}".rstrip(":") for o in d["observations"]]


def main(argv: list[str]) -> int:
    write = "--write" in argv
    changed = 0
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in sorted(CASES):
        js, md = render(name)
        pj, pm = GOLDEN / f"{name}.json", GOLDEN / f"{name}.md"
        old_js = pj.read_text(encoding="utf-8") if pj.exists() else None
        old_md = pm.read_text(encoding="utf-8") if pm.exists() else None
        if (old_js, old_md) != (js, md):
            changed += 1
            before = _kinds(old_js) if old_js else None
            print(f"{name}: {'json ' if old_js != js else ''}{'md' if old_md != md else ''}".rstrip())
            if before != _kinds(js):
                print(f"    observations {before} -> {_kinds(js)}")
        if write:
            pj.write_text(js, encoding="utf-8")
            pm.write_text(md, encoding="utf-8")
    for p in sorted(GOLDEN.iterdir()):
        if p.stem not in CASES:
            print(f"{p.name}: no such case" + (" (removed)" if write else ""))
            if write:
                p.unlink()
    print(f"{changed} of {len(CASES)} cases differ from the stored files" + (" (rewritten)" if write else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
