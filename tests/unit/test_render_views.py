"""The views added for issue 23: the spike-keeping reduction, the profile at a step, histograms over
training, notebooks, plot() returning a Figure, plotly.js shared by pages of one folder, and the
layout of per-panel colour bars."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import layerscope
from layerscope.errors import ConfigError, DataError, NotFoundError
from layerscope.render.hist import bin_window, default_layers, edge_ticks, hist_figure
from layerscope.render.html import heatmap_figure as html_heatmap
from layerscope.render.html_views import hist_figure as html_hist
from layerscope.render.html_views import profile_figure as html_profile
from layerscope.render.profile import profile_figure, profile_rows
from layerscope.render.reduce import reduce_counts, reduce_rows
from layerscope.store.heatmap import Heatmap
from layerscope.store.histogram import Histograms, load_histograms

PNG = b"\x89PNG\r\n\x1a\n"


def spiky(n_steps: int = 2000, n_layers: int = 96, at: int = 777) -> Heatmap:
    rng = np.random.default_rng(0)
    v = 0.01 * (1 + np.linspace(0, 1, n_layers))[None, :] + rng.normal(0, 2e-4, (n_steps, n_layers))
    v[at, 40:44] = 0.2  # one step out of n_steps
    return Heatmap(
        v, steps=[10 * (i + 1) for i in range(n_steps)], layers=range(1, n_layers + 1), metric="rms", run="s"
    )


# --- the reduction --------------------------------------------------------------------------


def test_a_one_step_spike_survives_the_reduction_with_its_step() -> None:
    hm = spiky()
    r = reduce_rows(hm.values, 455)
    assert r.factor == 5 and r.values.shape == (400, 96)
    b = 777 // 5
    assert r.values[b, 40:44].tolist() == [0.2] * 4 and r.src[b, 40:44].tolist() == [777] * 4
    assert (r.values[np.arange(400) != b] < 0.1).all()  # nothing else is made to look like a spike


def test_infinities_stand_out_and_missing_cells_only_when_the_whole_block_is() -> None:
    v = np.array([[1.0, np.nan], [np.inf, np.nan], [1.0, 2.0], [1.1, np.nan]])
    r = reduce_rows(v, 2)
    assert r.values[0].tolist()[0] == np.inf and np.isnan(r.values[0, 1])
    assert r.values[1, 1] == 2.0 and r.src[1, 1] == 2


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 5)), elements=st.floats(-1e6, 1e6)),
    st.integers(1, 12),
)
def test_every_shown_value_is_its_blocks_most_extreme(v: np.ndarray, max_rows: int) -> None:
    r = reduce_rows(v, max_rows)
    assert len(r.starts) <= max_rows and r.starts[0] == 0 and r.stops[-1] == v.shape[0]
    for b, (a, e) in enumerate(zip(r.starts, r.stops)):
        block = v[a:e]
        med = np.median(block, axis=0)
        for j in range(v.shape[1]):
            assert a <= r.src[b, j] < e and v[r.src[b, j], j] == r.values[b, j]
            assert abs(r.values[b, j] - med[j]) == np.abs(block[:, j] - med[j]).max()


def test_histogram_blocks_keep_a_bin_filled_at_one_step() -> None:
    c = np.zeros((100, 5))
    c[37, 4] = 3.0
    out, starts, stops = reduce_counts(c, 10)
    assert out.shape == (10, 5) and out[3, 4] == pytest.approx(0.3) and (out[:, :4] == 0).all()


# --- HTML: the spike stays in the page's data -----------------------------------------------


def test_html_map_of_96_x_2000_keeps_a_one_step_spike_in_the_page_data(tmp_path: Path) -> None:
    hm = spiky()
    fig = html_heatmap([hm])
    (t,) = [t for t in fig["data"] if t["type"] == "heatmap"]
    z = np.asarray(t["z"], dtype=float)
    assert z.shape[0] <= 455 < 2000  # no more rows than the plot has pixel rows
    rows = np.flatnonzero((z[:, 40:44] == 0.2).all(axis=1))
    assert len(rows) == 1 and set(np.asarray(t["text"])[rows[0], 40:44]) == {"7780"}  # its exact step
    assert "step %{text}" in t["hovertemplate"]
    out = layerscope.plot(hm, tmp_path / "spike.html")
    text = out.read_text(encoding="utf-8")
    (cfg,) = re.findall(r'<script type="application/json" data-layerscope-link="1">(.*?)</script>', text)
    panel = json.loads(cfg)["panels"][0]
    full = np.frombuffer(base64.b64decode(panel["values"]), "<f8").reshape(2000, 96)
    np.testing.assert_array_equal(full, hm.values)  # the whole matrix rides along for zoom and profile
    assert panel["factor"] == 5 and panel["steps"][777] == 7780


def test_page_json_cannot_close_its_script_tag() -> None:
    from layerscope.render.html_views import script_json

    assert "</script" not in script_json({"x": "</script><script>alert(1)</script>"})


# --- the profile ----------------------------------------------------------------------------


def test_profile_rows_default_to_spread_round_steps_and_name_missing_ones() -> None:
    hm = Heatmap(np.ones((10, 3)), steps=range(100, 1100, 100), layers=[1, 2, 3], run="r")
    assert [hm.steps[r] for r in profile_rows(hm, None)] == [100, 300, 500, 600, 800, 1000]
    assert profile_rows(hm, (1000, 100)) == [0, 9]
    with pytest.raises(
        ConfigError, match=r"step 150 was not recorded.*nearest recorded steps are 100 and 200"
    ):
        profile_rows(hm, (150,))


def test_profile_figure_draws_one_line_per_step_against_depth() -> None:
    v = np.outer(np.arange(1, 6), np.arange(1, 4)).astype(float)
    hm = Heatmap(v, steps=[10, 20, 30, 40, 50], layers=[1, 2, 3], metric="rms")
    fig = profile_figure(hm, at_steps=(10, 50))
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "profile-line"]
    assert [ln.get_label() for ln in lines] == ["step 10", "step 50"]
    np.testing.assert_array_equal(lines[1].get_ydata(), v[4])
    d = html_profile([hm], at="last")
    assert d["data"][-1]["y"] == v[4].tolist() and d["data"][-1]["uid"] == "current"


# --- histograms -----------------------------------------------------------------------------


def _hists() -> Histograms:
    from layerscope.stats.functional import default_hist_edges

    edges = default_hist_edges()
    c = np.zeros((4, 20, len(edges) + 1))
    c[:, :, 40:60] = 100.0
    c[2, 6, 61] = 1.0
    return Histograms(c, steps=[10, 20, 30, 40], layers=range(1, 21), edges=edges, run="r")


def test_histograms_check_their_shape() -> None:
    with pytest.raises(DataError, match="one bin more than edges"):
        Histograms(np.zeros((1, 1, 3)), steps=[1], layers=[1], edges=[0.0, 1.0, 2.0])
    with pytest.raises(NotFoundError, match="layer 99 is not in the histograms"):
        _hists().layer(99)


def test_histogram_panels_layers_bins_and_ticks() -> None:
    h = _hists()
    assert default_layers(h.layers) == [1, 3, 4, 6, 8, 10, 11, 13, 15, 17, 18, 20]
    assert bin_window(h) == (39, 63)  # the bins used, one empty bin of margin each side
    fig = hist_figure(h, layers=(7, 20))
    assert [ax.get_title() for ax in fig.axes if ax.get_label() == "panel"] == ["layer 7", "layer 20"]
    pos, labels = edge_ticks(h.edges, 39, 63, 5)
    assert "0" in labels and all(39 <= p <= 63 for p in pos)
    d = html_hist(h, layers=(7,))
    (t,) = d["data"]
    assert np.nanmax(np.asarray(t["z"], dtype=float)) == 2.0  # log10(100)
    assert "1 values" in "".join(t["hovertemplate"].split("%{customdata}")) or t["customdata"][2][22] == "1"


def test_histograms_recorded_by_a_recorder_count_every_activation(tmp_path: Path, tiny_model) -> None:
    import torch

    db = tmp_path / "runs.db"
    x = torch.randint(0, 256, (2, 16))
    with layerscope.Recorder(tiny_model, db, run="h", metrics=("rms", "hist"), sites="output,mlp_act") as rec:
        for step in (1, 2):
            _, loss = tiny_model(x, x)
            loss.backward()
            rec.step(step)
    h = layerscope.load_hist(db)
    assert isinstance(h, Histograms) and h.steps == [1, 2] and h.layers == [1, 2, 3, 4]
    assert (h.counts.sum(axis=2) == 2 * 16 * 32).all()  # B x T x C values per layer and step
    assert load_histograms(db, site="mlp_act").counts.sum(axis=2)[0, 0] == 2 * 16 * 128
    out = layerscope.plot(h, tmp_path / "h.png", layers=(1, 4))
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(NotFoundError, match="no histograms"):
        with layerscope.Recorder(tiny_model, db, run="nohist", metrics="rms") as rec:
            pass
        load_histograms(db, "nohist")


# --- the Python API: figures, notebooks, shared plotly.js -----------------------------------


def test_plot_without_a_path_returns_the_figure_and_draws_into_ax() -> None:
    from matplotlib.figure import Figure

    hm = Heatmap(np.random.default_rng(0).random((5, 4)), steps=range(1, 6), layers=range(1, 5), metric="rms")
    fig = layerscope.plot(hm)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "Layer"
    mine = Figure(figsize=(10, 4))
    a, b = mine.subplots(1, 2)
    assert layerscope.plot(hm, ax=a) is mine and layerscope.plot(hm, ax=b, kind="profile") is mine
    assert a.get_title().startswith("rms per layer") and b.get_xlabel() == "Layer"
    with pytest.raises(ConfigError, match="ax= draws one heatmap"):
        layerscope.plot([hm, hm], ax=a)


def test_notebook_reprs(tmp_path: Path) -> None:
    hm = Heatmap(np.ones((3, 2)), steps=[10, 20, 30], layers=[1, 2], metric="rms", run="demo")
    assert hm._repr_png_()[:8] == PNG
    assert (
        hm._repr_markdown_()
        == "**rms** of run `demo` (site `output`): 3 steps (10..30) x 2 layers, values 1..1"
    )
    html = hm._repr_html_()
    assert "<strong>rms</strong>" in html and 'src="data:image/png;base64,' in html
    rep = layerscope.report(hm)
    assert rep._repr_png_()[:8] == PNG and rep._repr_markdown_() == rep.to_markdown()
    assert "data:image/png;base64," in rep._repr_html_() and "<code>rms</code>" in rep._repr_html_()
    h = _hists()
    assert h._repr_png_()[:8] == PNG and "20 layers" in h._repr_markdown_()


def test_pages_of_one_folder_share_one_plotly_js(tmp_path: Path) -> None:
    hm = Heatmap(np.ones((3, 2)), steps=[10, 20, 30], layers=[1, 2])
    a = layerscope.plot(hm, tmp_path / "a.html", plotly="directory")
    b = layerscope.plot(hm, tmp_path / "b.html", plotly="directory", kind="lines")
    (js,) = tmp_path.glob("plotly-*.min.js")
    for page in (a, b):
        text = page.read_text(encoding="utf-8")
        assert f'src="{js.name}"' in text and "plotly.js v" not in text and len(text) < 200_000
    single = layerscope.plot(hm, tmp_path / "c.html")
    assert single.stat().st_size > 4_000_000  # inline stays the default for a single file
    with pytest.raises(ConfigError, match="plotly='cdn'"):
        layerscope.plot(hm, tmp_path / "d.html", plotly="cdn")


# --- layout: per-panel colour bars ----------------------------------------------------------


def test_per_panel_colour_bar_labels_do_not_sit_on_the_next_panels_y_label() -> None:
    from layerscope.render.mpl import _layout_once
    from layerscope.render.multiples import multiples_figure

    rng = np.random.default_rng(0)
    hms = [
        Heatmap(
            rng.normal(size=(20, 12)),
            steps=range(1, 21),
            layers=range(1, 13),
            metric=f"\u0394 {m} (%)",
            run="b \u2212 a",
        )
        for m in ("rms", "kurtosis", "max_abs")
    ]
    fig = multiples_figure(hms, shared_scale=False, center=0.0)
    _layout_once(fig, 100)
    r = fig._get_renderer()
    panels = [ax for ax in fig.axes if ax.get_label() == "panel"]
    bars = [ax for ax in fig.axes if ax.get_label() != "panel"]
    assert [p.get_title() for p in panels] == ["\u0394 rms (%)", "\u0394 kurtosis (%)", "\u0394 max_abs (%)"]
    # Each bar is named by its panel's title; nothing is written on the bar's outer side, where the
    # next panel's step labels are.
    assert all(not b.yaxis.label.get_text() and not b.get_title(loc="center") for b in bars)
    ticks = [t.get_window_extent(r) for p in panels[1:] for t in p.get_yticklabels() if t.get_text()]
    for b in bars:
        for t in b.get_yticklabels():
            if t.get_text():
                assert not any(t.get_window_extent(r).overlaps(o) for o in ticks)
    fig2 = multiples_figure(hms, shared_scale=False, center=0.0, label="% change")
    assert [b.get_title(loc="center") for b in fig2.axes if b.get_label() != "panel"] == ["% change"] * 3
