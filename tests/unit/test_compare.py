"""Run vs run: alignment, absolute and relative differences, and the "where they differ most" facts."""

from __future__ import annotations

import numpy as np
import pytest

import layerscope
from layerscope._format import format_value
from layerscope.analysis.compare import align, diff_values, difference, summarize
from layerscope.errors import ConfigError, NotFoundError
from layerscope.store.heatmap import Heatmap


def hm(values, steps=None, layers=None, run="a", metric="rms") -> Heatmap:
    v = np.asarray(values, dtype=np.float64)
    return Heatmap(
        v,
        steps=steps or [10 * (i + 1) for i in range(v.shape[0])],
        layers=layers or list(range(1, v.shape[1] + 1)),
        layer_names=[f"h.{(layers or list(range(1, v.shape[1] + 1)))[j] - 1}" for j in range(v.shape[1])],
        metric=metric,
        run=run,
    )


def test_align_keeps_common_steps_and_layers_and_reports_the_rest():
    a = hm(np.arange(12.0).reshape(4, 3), steps=[10, 20, 30, 40], run="a")
    b = hm(np.arange(8.0).reshape(2, 4) * 10, steps=[20, 40], run="b")
    al = align(a, b)
    assert al.steps == [20, 40] and al.layers == [1, 2, 3]
    assert al.a.tolist() == [[3, 4, 5], [9, 10, 11]]
    assert al.b.tolist() == [[0, 10, 20], [40, 50, 60]]
    assert (al.steps_only_a, al.steps_only_b, al.layers_only_a, al.layers_only_b) == ([10, 30], [], [], [4])


def test_nothing_in_common_is_a_clear_error():
    with pytest.raises(NotFoundError, match=r"share no recorded step \(A: 10\.\.20, B: 30\.\.40\)"):
        align(hm(np.ones((2, 2))), hm(np.ones((2, 2)), steps=[30, 40], run="b"))
    with pytest.raises(ConfigError, match="compare the same metric"):
        difference(hm(np.ones((2, 2))), hm(np.ones((2, 2)), metric="std", run="b"))


def test_absolute_and_relative_differences():
    a = np.array([[1.0, 0.0, 0.0, np.nan, 2.0, np.inf]])
    b = np.array([[1.5, 0.0, 3.0, 1.0, 1.0, np.inf]])
    d = diff_values(a, b)
    assert (
        d[0, :3].tolist() == [0.5, 0.0, 3.0] and np.isnan(d[0, 3]) and d[0, 4] == -1.0 and np.isnan(d[0, 5])
    )
    r = diff_values(a, b, relative=True)
    assert r[0, 0] == pytest.approx(50.0) and r[0, 1] == 0.0 and r[0, 2] == np.inf and r[0, 4] == -50.0


def test_difference_heatmap_is_b_minus_a_with_a_diverging_figure(tmp_path):
    a = hm(np.ones((3, 2)), run="base")
    b = hm(np.array([[1.0, 1.0], [1.0, 0.5], [3.0, 1.0]]), run="new")
    d = difference(a, b)
    assert d.values.tolist() == [[0, 0], [0, -0.5], [2, 0]]
    assert d.metric == "\u0394 rms" and d.run == "new \u2212 base" and d.meta["compare"]["mode"] == "absolute"
    assert difference(a, b, relative=True).metric == "\u0394 rms (%)"
    from matplotlib.colorbar import Colorbar

    from layerscope.render.static import heatmap_figure

    fig = heatmap_figure(d, center=0.0)
    (bar,) = [x._colorbar for x in fig.axes if isinstance(getattr(x, "_colorbar", None), Colorbar)]
    assert (bar.norm.vmin, bar.norm.vmax) == (-2.0, 2.0) and bar.cmap.name.startswith("RdBu_r")
    assert float(bar.norm(0.0)) == pytest.approx(0.5)
    assert layerscope.plot(d, tmp_path / "d.png", center=0.0).exists()


def test_summary_facts_and_sentences_agree():
    rng = np.random.default_rng(0)
    base = rng.random((8, 5))
    other = base.copy()
    other[5:, 3] += np.array([0.2, 0.4, 0.9])  # layer 4 drifts late in training
    other[6, 1] += 0.1
    s = summarize(hm(base, run="a"), hm(other, run="b"))
    f = s.facts
    assert f["max"]["step"] == 80 and f["max"]["layer"] == 4 and f["max"]["diff"] == pytest.approx(0.9)
    assert f["max"]["layer_name"] == "h.3"
    assert [t["layer"] for t in f["top_layers"]][:2] == [4, 2]
    assert f["top_layers"][0]["mean_abs"] == pytest.approx(1.5 / 8)
    assert [t["step"] for t in f["top_steps"]][0] == 80
    assert f["onset_step"] == 80  # 0.4 at step 70 is under half of 0.9
    assert len(f["top_layers"]) == 2  # layers that do not differ are not listed
    assert f["share_b_higher"] == pytest.approx(4 / 40) and f["share_b_lower"] == 0
    assert not f["identical"] and f["n_compared"] == 40
    text = s.text()
    assert "Largest difference: b \u2212 a is +0.9 at layer 4 (h.3), step 80" in text
    top = format_value(f["top_layers"][0]["mean_abs"], 3)  # the sentence quotes the number it holds
    assert (
        f"By layer, the mean |b \u2212 a| is largest at layer 4 (h.3) ({top}), then layer 2 (0.0125)." in text
    )
    assert "b is higher than a in 10% of the compared cells and lower in 0%" in text
    assert s.to_dict()["sentences"] == s.sentences


def test_onset_is_the_first_step_reaching_half_the_maximum():
    a = np.zeros((5, 2))
    b = a.copy()
    b[:, 0] = [0.0, 0.1, 0.5, 0.2, 1.0]
    assert summarize(hm(a), hm(b, run="b")).facts["onset_step"] == 30


def test_identical_runs_say_so():
    v = np.random.default_rng(1).random((4, 3))
    s = summarize(hm(v), hm(v.copy(), run="b"))
    assert s.facts["identical"] and s.sentences[-1] == "The runs are identical on every compared cell."


def test_relative_summary_uses_percent_and_counts_presence():
    a = np.array([[1.0, 2.0], [4.0, np.nan]])
    b = np.array([[1.1, 2.0], [2.0, 5.0]])
    s = summarize(hm(a), hm(b, run="b"), relative=True)
    assert s.facts["unit"] == "%" and s.facts["max"]["diff"] == pytest.approx(-50.0)
    assert "the relative change is -50% at layer 1 (h.0), step 20" in s.text()
    assert s.facts["n_only_b"] == 1 and "1 only in b" in s.text()


def test_left_out_steps_and_layers_are_named():
    a = hm(np.ones((3, 3)), steps=[10, 20, 30])
    b = hm(np.ones((2, 2)) * 2, steps=[20, 30], run="b")
    s = summarize(a, b)
    assert "Left out: 1 steps only in a (10); 1 layers only in a (3)." in s.text()


def test_render_diff_is_an_alias_of_the_analysis() -> None:
    import layerscope.analysis.compare as compare
    import layerscope.render.diff as diff

    assert diff.summarize is compare.summarize and diff.difference is compare.difference
