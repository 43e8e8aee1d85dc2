"""Per-layer lines (coloured by depth) and small multiples (shared or independent scales)."""

from __future__ import annotations

import numpy as np
import pytest

import layerscope
from layerscope.render.lines import lines_figure
from layerscope.render.multiples import grid_shape, multiples_figure
from layerscope.render.static import relative_luminance
from layerscope.store.heatmap import Heatmap


def hm(values, metric="rms", site="output", steps=None, run="r") -> Heatmap:
    v = np.asarray(values, dtype=np.float64)
    return Heatmap(
        v,
        steps=steps or [100 * (i + 1) for i in range(v.shape[0])],
        layers=range(1, v.shape[1] + 1),
        metric=metric,
        site=site,
        run=run,
    )


def grow(n_steps=20, n_layers=6, scale=1.0) -> np.ndarray:
    return np.outer(np.linspace(0.1, 1, n_steps), np.arange(1, n_layers + 1)) * scale


def bars(fig):
    from matplotlib.colorbar import Colorbar

    return [a._colorbar for a in fig.axes if isinstance(getattr(a, "_colorbar", None), Colorbar)]


# --- lines ---------------------------------------------------------------------------------


def test_one_line_per_layer_coloured_dark_to_light_by_depth():
    h = hm(grow())
    fig = lines_figure(h)
    ax = fig.axes[0]
    (lc,) = [c for c in ax.collections if c.get_gid() == "layer-lines"]
    segs = lc.get_segments()
    assert len(segs) == 6
    assert np.allclose(segs[2][:, 0], h.steps) and np.allclose(segs[2][:, 1], h.values[:, 2])
    lum = relative_luminance(lc.get_colors())
    assert np.all(np.diff(lum) > 0)  # layer 1 darkest, deepest layer lightest
    assert ax.get_xlabel() == "Step" and ax.get_ylabel() == "rms"
    (bar,) = bars(fig)
    assert bar.ax.get_ylabel() == "Layer (depth)"


def test_lines_show_gaps_lone_points_and_infinities():
    v = grow(60, 4)
    v[10:20, 0] = np.nan
    v[30, 1] = np.nan
    v[32, 1] = np.nan  # step 31 of layer 2 is a lone point
    v[40, 2] = np.inf
    v[41, 3] = -np.inf
    fig = lines_figure(hm(v))
    ax = fig.axes[0]
    (lc,) = [c for c in ax.collections if c.get_gid() == "layer-lines"]
    assert np.isnan(lc.get_paths()[0].vertices[10:20, 1]).all()  # a gap, not a line across it
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if c.get_gid() is None])
    assert any(np.allclose(o, (3200, v[31, 1])) for o in offsets)  # the lone value is a dot
    marks = {c.get_gid(): c for c in ax.collections if c.get_gid() and c.get_gid().startswith("marks")}
    assert marks["marks-+inf"].get_offsets()[0][0] == 4100 and marks["marks--inf"].get_offsets()[0][0] == 4200
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["missing / NaN (gap)", "+inf (top edge)", "\u2212inf (bottom edge)"]


def test_lines_log_and_symlog_axes_and_limits():
    assert lines_figure(hm(grow() + 1e-3), scale="log").axes[0].get_yscale() == "log"
    assert lines_figure(hm(grow() - 3, metric="mean"), scale="symlog").axes[0].get_yscale() == "symlog"
    assert lines_figure(hm(grow()), vmin=0.5, vmax=2.0).axes[0].get_ylim() == (0.5, 2.0)


def test_lines_through_the_public_api(tmp_path):
    out = layerscope.plot(hm(grow()), tmp_path / "lines.svg", kind="lines")
    assert b"<svg" in out.read_bytes()[:400]


# --- small multiples -----------------------------------------------------------------------


def test_grid_shape():
    m = [hm(grow(), metric=x, site=s) for x in ("rms", "kurtosis") for s in ("output", "mlp_act", "attn_out")]
    assert grid_shape(m) == (2, 3)  # rows metrics, columns sites
    assert grid_shape(m[:2]) == (1, 2)
    assert grid_shape(m[:4]) == (2, 2)
    assert grid_shape(m, ncols=1) == (6, 1)


def test_different_metrics_get_independent_scales_and_titles():
    m = [hm(grow(), "rms"), hm(grow(scale=100.0), "kurtosis")]
    fig = multiples_figure(m)
    panels = [a for a in fig.axes if a.get_label() == "panel"]
    assert [a.get_title() for a in panels] == ["rms", "kurtosis"]
    b = bars(fig)
    assert len(b) == 2
    assert b[0].norm.vmax == pytest.approx(6.0) and b[1].norm.vmax == pytest.approx(600.0)
    assert fig.get_suptitle() == "rms, kurtosis per layer over training \u2014 run r"


def test_one_metric_at_several_sites_shares_one_scale():
    m = [hm(grow(), "rms", "output"), hm(grow(scale=3.0), "rms", "mlp_act")]
    fig = multiples_figure(m)
    (b,) = bars(fig)
    assert (b.norm.vmin, b.norm.vmax) == (0.0, pytest.approx(18.0))
    assert [a.get_title() for a in fig.axes if a.get_label() == "panel"] == ["output", "mlp_act"]
    assert len(bars(multiples_figure(m, shared_scale=False))) == 2
    assert len(bars(multiples_figure([hm(grow(), "rms"), hm(grow(), "std")], shared_scale=True))) == 1


def test_multiples_legend_is_the_union_of_panel_anomalies(tmp_path):
    a, b = grow(), grow()
    a[0, 0] = np.nan
    b[1, 1] = np.inf
    fig = multiples_figure([hm(a, "rms"), hm(b, "std")])
    assert [t.get_text() for leg in fig.legends for t in leg.get_texts()] == ["missing / NaN", "+inf"]
    out = layerscope.plot([hm(a, "rms"), hm(b, "std")], tmp_path / "grid.png")
    assert out.stat().st_size > 10_000


def test_line_multiples_share_a_depth_key_and_y_range():
    m = [hm(grow(), "rms", "output"), hm(grow(scale=2.0), "rms", "mlp_act")]
    fig = multiples_figure(m, kind="lines")
    panels = [a for a in fig.axes if a.get_label() == "panel"]
    assert panels[0].get_ylim() == panels[1].get_ylim()
    assert len(bars(fig)) == 1


def test_annotate_does_not_apply_to_lines():
    from layerscope.render import RenderWarning

    with pytest.warns(RenderWarning, match="ignored for --kind lines"):
        lines_figure(hm(grow()), annotate=True)
