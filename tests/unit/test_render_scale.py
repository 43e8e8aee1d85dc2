"""The pure helpers behind every figure: options, colour scales, cell kinds, ticks, row layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerscope._format import step_label
from layerscope.errors import ConfigError
from layerscope.render.labels import layer_ticks, nice_ticks, row_axis, step_edges
from layerscope.render.options import RenderOptions, parse_figsize
from layerscope.render.scale import cell_kinds, color_scale, is_signed
from layerscope.render.static import block_mean, text_colors

# --- options -------------------------------------------------------------------------------


def test_unknown_option_names_the_nearest_one():
    with pytest.raises(ConfigError, match=r"unknown plot option 'cmpa'.*did you mean 'cmap'"):
        RenderOptions.from_kwargs(cmpa="magma")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"vmin": 2.0, "vmax": 1.0}, "must be greater than vmin"),
        ({"scale": "log", "vmin": 0.0}, "log scale needs vmin > 0"),
        ({"scale": "cubic"}, "scale 'cubic'"),
        ({"colorbar": "left"}, "colorbar 'left'"),
        ({"dpi": 5}, "out of range"),
        ({"vmax": float("nan")}, "not finite"),
        ({"linthresh": -1.0}, "linthresh must be positive"),
        ({"kind": "bars"}, "kind 'bars'"),
    ],
)
def test_bad_option_values_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        RenderOptions(**kw)


def test_figsize_parsing():
    assert parse_figsize("7,4.5") == (7.0, 4.5)
    assert parse_figsize("7x4") == (7.0, 4.0)
    assert parse_figsize((3, 2)) == (3.0, 2.0)
    for bad in ("7", "a,b", "0,4", "7,400"):
        with pytest.raises(ConfigError, match="figure size"):
            parse_figsize(bad)


# --- colour scales -------------------------------------------------------------------------


def test_positive_metric_starts_at_zero_with_magma():
    s = color_scale([np.array([[0.002, 0.008]])], RenderOptions())
    assert (s.kind, s.lo, s.hi, s.cmap, s.center) == ("linear", 0.0, 0.008, "magma", None)


def test_signed_data_gets_a_symmetric_diverging_scale():
    s = color_scale([np.array([[-1.0, 3.0]])], RenderOptions())
    assert (s.lo, s.hi, s.cmap, s.center) == (-3.0, 3.0, "RdBu_r", 0.0)
    n = s.norm()
    assert [float(n(x)) for x in (-3.0, 0.0, 3.0)] == pytest.approx([0.0, 0.5, 1.0])


def test_a_few_slightly_negative_cells_do_not_make_a_positive_metric_diverging():
    v = np.array([[-0.01, 0.5, 1.0]])
    assert not is_signed([v])
    assert color_scale([v], RenderOptions()).cmap == "magma"
    assert is_signed([v], metric="mean")  # signed by definition
    assert color_scale([v], RenderOptions(), metric="mean").cmap == "RdBu_r"


def test_center_and_asymmetric_limits_use_two_slope_norm():
    from matplotlib.colors import TwoSlopeNorm

    s = color_scale([np.array([[0.5, 2.0]])], RenderOptions(center=0.0, vmin=-1.0, vmax=4.0))
    n = s.norm()
    assert isinstance(n, TwoSlopeNorm)
    assert float(n(0.0)) == pytest.approx(0.5) and float(n(4.0)) == pytest.approx(1.0)


def test_log_scale_starts_at_smallest_positive_and_rejects_non_positive_data():
    s = color_scale([np.array([[0.0, 1e-3, 10.0]])], RenderOptions(scale="log"))
    assert (s.kind, s.lo, s.hi) == ("log", 1e-3, 10.0)
    from matplotlib.colors import LogNorm

    assert isinstance(s.norm(), LogNorm)
    with pytest.raises(ConfigError, match="log scale needs positive values.*symlog"):
        color_scale([np.array([[-1.0, 0.0]])], RenderOptions(scale="log"), what="'mean'")


def test_symlog_is_symmetric_with_a_data_driven_threshold():
    v = np.array([[-100.0, -0.01, 0.0, 0.02, 50.0]])
    s = color_scale([v], RenderOptions(scale="symlog"))
    assert (s.lo, s.hi, s.center, s.cmap) == (-100.0, 100.0, 0.0, "RdBu_r")
    assert 0 < s.linthresh <= 0.02
    assert color_scale([v], RenderOptions(scale="symlog", linthresh=1.0)).linthresh == 1.0
    t = s.transform(np.array([-100.0, 0.0, 100.0, np.inf]))
    assert t[0] == -t[2] and t[1] == 0 and np.isnan(t[3])


def test_extend_says_which_ends_are_clipped():
    v = np.array([[0.0, 5.0, 10.0]])
    assert color_scale([v], RenderOptions(vmax=8.0)).extend == "max"
    assert color_scale([v], RenderOptions(vmin=1.0, vmax=8.0)).extend == "both"
    assert color_scale([v], RenderOptions()).extend == "neither"


def test_no_finite_values_still_gives_a_usable_scale():
    s = color_scale([np.full((2, 2), np.nan)], RenderOptions())
    assert s.hi > s.lo


# --- cell kinds ----------------------------------------------------------------------------


def test_cell_kinds_lists_only_kinds_present_in_legend_order():
    v = np.array([[1.0, -np.inf, np.nan], [np.inf, 0.0, 2.0]])
    k = cell_kinds(v)
    assert list(k) == ["nan", "+inf", "-inf"]
    assert k["+inf"].sum() == 1 and k["-inf"][0, 1]
    assert "nonpos" not in k
    assert cell_kinds(v, "log")["nonpos"].tolist() == [[False, False, False], [False, True, False]]
    assert cell_kinds(np.ones((2, 2))) == {}


# --- ticks and rows ------------------------------------------------------------------------


def test_nice_ticks_examples():
    assert nice_ticks(10, 120, 20) == list(range(10, 121, 10))
    t = nice_ticks(1, 96, 24)
    assert t[0] == 1 and t[-1] == 96 and t[1:-1] == list(range(5, 91, 5))
    assert nice_ticks(100, 200_000, 20) == [100, *range(20_000, 200_001, 20_000)]
    assert nice_ticks(5, 5, 10) == [5]


@settings(max_examples=200, deadline=None)
@given(lo=st.integers(-(10**6), 10**6), span=st.integers(1, 10**7), max_ticks=st.integers(2, 30))
def test_nice_ticks_properties(lo, span, max_ticks):
    hi = lo + span
    t = nice_ticks(lo, hi, max_ticks)
    assert t[0] == lo and t[-1] == hi
    assert len(t) <= max_ticks
    assert all(b > a for a, b in zip(t, t[1:]))
    if len(t) > 2:  # interior ticks are round multiples of one stride, none crowding an end
        stride = t[2] - t[1] if len(t) > 3 else None
        if stride:
            assert all(x % stride == 0 for x in t[1:-1])
            assert t[1] - t[0] >= 0.75 * stride and t[-1] - t[-2] >= 0.75 * stride


def test_step_edges_are_midpoints():
    assert step_edges([10, 20, 50]).tolist() == [5.0, 15.0, 35.0, 65.0]
    assert step_edges([7]).tolist()[0] < 7 < step_edges([7]).tolist()[1]


def test_even_steps_sit_at_true_values_with_round_labels():
    steps = [100 * (i + 1) for i in range(2000)]
    r = row_axis(steps, true_steps=False, max_labels=20)
    assert r.in_steps and r.uniform
    assert len(r.ticks) <= 20
    assert r.labels[1:4] == ["20k", "40k", "60k"] and r.labels[-1] == "200k"
    assert r.edges[0] == 50 and r.edges[-1] == 200_050


def test_few_steps_label_every_row_like_the_reference_figure():
    steps = [30_000 * k for k in range(1, 11)]
    r = row_axis(steps, False, 20)
    assert r.labels == ["30k", "60k", "90k", "120k", "150k", "180k", "210k", "240k", "270k", "300k"]


def test_uneven_steps_equal_rows_labelled_by_their_own_step():
    steps = sorted({int(x) for x in np.cumsum(np.random.default_rng(0).integers(1, 50, 400))})
    r = row_axis(steps, true_steps=False, max_labels=12)
    assert not r.in_steps and r.uniform
    assert len(r.ticks) <= 12
    assert r.labels == [step_label(steps[int(i)]) for i in r.ticks]
    assert r.ticks[0] == 0 and r.ticks[-1] == len(steps) - 1


def test_uneven_steps_with_true_steps_use_step_edges():
    steps = [1, 2, 3, 10, 100]
    r = row_axis(steps, true_steps=True, max_labels=20)
    assert r.in_steps and not r.uniform
    assert r.edges.tolist() == step_edges(steps).tolist()


def test_layer_ticks_are_round_for_a_full_stack_and_thinned_otherwise():
    pos, lab = layer_ticks(list(range(1, 97)), 24)
    assert lab[0] == "1" and lab[-1] == "96" and "50" in lab and len(lab) <= 24
    assert pos[lab.index("50")] == 50.0
    pos, lab = layer_ticks([2, 4, 6], 24)
    assert (pos, lab) == ([1.0, 2.0, 3.0], ["2", "4", "6"])


# --- small numeric helpers -----------------------------------------------------------------


def test_text_colour_contrasts_with_the_cell():
    assert text_colors(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])).tolist() == ["black", "white"]
    from matplotlib import colormaps

    magma = colormaps["magma"]
    assert text_colors(np.array([magma(0.0), magma(1.0)])).tolist() == ["white", "black"]


def test_block_mean_keeps_every_row():
    a = np.zeros((2000, 1))
    a[1234] = 1.0
    b = block_mean(a, 3, 0)
    assert b.shape == (667, 1) and b.max() == pytest.approx(1 / 3) and b.sum() == pytest.approx(1 / 3)
