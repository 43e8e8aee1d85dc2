"""Static heatmaps: formats, options, the step axis, and the anomaly cells, checked on the figure
objects and on the pixels of the written PNG."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import layerscope
from layerscope.errors import ConfigError, NotFoundError, StoreError
from layerscope.render import RenderWarning
from layerscope.render.scale import MISSING_GREY
from layerscope.render.static import heatmap_figure, plot_heatmap
from layerscope.store.heatmap import Heatmap


def hm(values, steps=None, metric="rms", run="r", names=None) -> Heatmap:
    v = np.asarray(values, dtype=np.float64)
    steps = steps if steps is not None else [10 * (i + 1) for i in range(v.shape[0])]
    layers = list(range(1, v.shape[1] + 1))
    return Heatmap(
        v,
        steps=steps,
        layers=layers,
        layer_names=names or [f"h.{j}" for j in range(v.shape[1])],
        metric=metric,
        run=run,
    )


def ramp(n_steps=12, n_layers=12) -> Heatmap:
    return hm(np.outer(np.linspace(0.1, 1, n_steps), np.linspace(0.1, 1, n_layers)) * 0.008)


def anomaly() -> Heatmap:
    v = np.outer(np.linspace(0.1, 1, 10), np.linspace(0.2, 1, 8))
    v[2, 3] = np.nan
    v[4, :] = np.nan  # an absent step
    v[6, 2:5] = np.inf
    v[8, 1] = -np.inf
    return hm(v, steps=[1000 * (i + 1) for i in range(10)])


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(str(path))  # (H, W, 4) floats in 0..1


def data_pixel(fig, path: Path, x: float, y: float) -> np.ndarray:
    """RGB of the written PNG at data coordinates (x, y) of the first axes."""
    img = read_png(path)
    ax = fig.axes[0]
    px, py = ax.transData.transform((x, y))
    h = img.shape[0]
    return img[int(round(h - py)), int(round(px)), :3]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


# --- formats and the public entry point -----------------------------------------------------


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_each_static_format_is_written(tmp_path, suffix, magic):
    out = layerscope.plot(ramp(), tmp_path / f"h{suffix}", title="RMS of the residual stream")
    assert out.read_bytes()[:5].startswith(magic)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_figsize_and_dpi_set_the_pixel_size(tmp_path):
    out = layerscope.plot(ramp(), tmp_path / "h.png", figsize=(5, 4), dpi=100)
    assert read_png(out).shape[:2] == (400, 500)


def test_bad_paths_and_options_fail_before_drawing(tmp_path):
    with pytest.raises(ConfigError, match="end the file name with one of"):
        layerscope.plot(ramp(), tmp_path / "h.jpg")
    with pytest.raises(NotFoundError, match="does not exist"):
        layerscope.plot(ramp(), tmp_path / "missing" / "h.png")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        layerscope.plot(ramp(), tmp_path / "afile" / "h.png")
    (tmp_path / "afile").unlink()
    with pytest.raises(ConfigError, match="unknown plot option"):
        layerscope.plot(ramp(), tmp_path / "h.png", colour="red")
    with pytest.raises(ConfigError, match="unknown colormap 'magmaa'.*magma"):
        layerscope.plot(ramp(), tmp_path / "h.png", cmap="magmaa")
    assert list(tmp_path.iterdir()) == []


# --- axes, colour bar, title ----------------------------------------------------------------


def test_reference_conventions():
    fig = heatmap_figure(
        hm(
            np.random.default_rng(0).random((10, 12)) * 0.008,
            steps=[30_000 * k for k in range(1, 11)],
            run="demo",
        )
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Layer" and ax.get_ylabel() == "Steps"
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{30 * k}k" for k in range(1, 11)]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(1, 13)]
    lo, hi = ax.get_ylim()
    assert lo > hi  # first step at the top
    assert ax.get_title() == "rms per layer over training \u2014 run demo"
    (cb,) = colorbars(fig)
    assert cb.get_ylabel() == "rms"
    assert legend_texts(fig) == []  # nothing missing, no legend


def test_thousands_of_steps_get_thinned_round_labels():
    fig = heatmap_figure(
        ramp(2000, 96).__class__(
            np.random.default_rng(0).random((2000, 96)),
            steps=[100 * (i + 1) for i in range(2000)],
            layers=range(1, 97),
        )
    )
    ax = fig.axes[0]
    ys = [t.get_text() for t in ax.get_yticklabels()]
    xs = [t.get_text() for t in ax.get_xticklabels()]
    assert 5 <= len(ys) <= 20 and ys[0] == "100" and ys[-1] == "200k" and "100k" in ys
    assert 5 <= len(xs) <= 24 and xs[0] == "1" and xs[-1] == "96"


def test_colorbar_bottom_and_labels():
    h = ramp()
    h.site = "mlp_act"
    fig = heatmap_figure(h, colorbar="bottom", title="")
    (cb,) = colorbars(fig)
    assert cb.get_xlabel() == "rms (mlp_act)"
    assert fig.axes[0].get_title() == ""
    bbox_cb, bbox_ax = cb.get_position(), fig.axes[0].get_position()
    assert bbox_cb.y1 <= bbox_ax.y0 + 1e-6  # below the heatmap


def _bar(fig):
    from matplotlib.colorbar import Colorbar

    (b,) = [a._colorbar for a in fig.axes if isinstance(getattr(a, "_colorbar", None), Colorbar)]
    return b


def test_vmin_vmax_and_cmap_reach_the_colour_bar():
    bar = _bar(heatmap_figure(ramp(), vmin=0.001, vmax=0.004, cmap="viridis"))
    assert (bar.norm.vmin, bar.norm.vmax) == (0.001, 0.004)
    assert bar.cmap.name.startswith("viridis")
    assert bar.extend == "both"  # the data runs past both limits


def test_log_and_symlog_norms():
    from matplotlib.colors import LogNorm, SymLogNorm

    v = np.abs(np.random.default_rng(1).lognormal(-4, 2, (20, 6)))
    assert isinstance(_bar(heatmap_figure(hm(v), scale="log")).norm, LogNorm)
    signed = np.random.default_rng(2).normal(0, 1, (20, 6)) ** 3
    n = _bar(heatmap_figure(hm(signed, metric="mean"), scale="symlog")).norm
    assert isinstance(n, SymLogNorm) and n.vmin == -n.vmax
    assert _bar(heatmap_figure(hm(signed, metric="mean"), scale="symlog")).cmap.name.startswith("RdBu_r")


# --- missing, NaN and infinite cells --------------------------------------------------------


def test_anomaly_cells_are_drawn_distinctly_and_named(tmp_path):
    h = anomaly()
    fig = heatmap_figure(h, dpi=100)
    assert legend_texts(fig) == ["missing / NaN", "+inf", "\u2212inf"]
    colls = {c.get_gid(): c for c in fig.axes[0].collections if c.get_gid()}
    assert len(colls["cells-+inf"].get_paths()) == 1  # the three adjacent +inf cells are one patch
    assert colls["cells-+inf"].get_hatch() == "////" and colls["cells--inf"].get_hatch() == "\\\\\\\\"
    out = plot_heatmap(h, tmp_path / "a.png", dpi=100)
    fig = heatmap_figure(h, dpi=100)
    from layerscope.render.mpl import _layout_once

    _layout_once(fig, 100)
    grey = np.array([int(MISSING_GREY[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    # NaN cell (layer 4, step 3000) and a cell of the absent step: neutral grey.
    assert np.allclose(data_pixel(fig, out, 4, 3000), grey, atol=0.02)
    assert np.allclose(data_pixel(fig, out, 7, 5000), grey, atol=0.02)
    # A finite cell is not grey.
    assert not np.allclose(data_pixel(fig, out, 8, 10_000), grey, atol=0.1)
    # The +inf cells are hatched: light face and dark lines inside one cell.
    img = read_png(out)
    ax = fig.axes[0]
    (x0, y0), (x1, y1) = ax.transData.transform([(3.6, 6600), (4.4, 7400)])
    h_px = img.shape[0]
    cell = img[int(h_px - y0) : int(h_px - y1), int(x0) : int(x1), :3].reshape(-1, 3).mean(axis=1)
    assert cell.max() > 0.85 and cell.min() < 0.35


def test_legend_lists_only_kinds_present():
    v = np.ones((4, 3))
    v[1, 1] = np.inf
    assert legend_texts(heatmap_figure(hm(v))) == ["+inf"]
    v = np.ones((4, 3))
    v[0, 0] = 0.0
    assert legend_texts(heatmap_figure(hm(v), scale="log")) == ["\u2264 0 (off the log scale)"]


def test_all_missing_still_renders(tmp_path):
    out = layerscope.plot(hm(np.full((3, 4), np.nan)), tmp_path / "nan.png")
    assert read_png(out).shape[0] > 100


def test_a_one_step_spike_survives_thousands_of_rows(tmp_path):
    v = np.full((2000, 8), 0.1)
    v[777, :] = 1.0  # one step out of 2000, on a ~1200-px-tall axes
    h = hm(v, steps=[10 * (i + 1) for i in range(2000)])
    out = plot_heatmap(h, tmp_path / "spike.png", figsize=(6, 5), dpi=100)
    fig = heatmap_figure(h, figsize=(6, 5), dpi=100)
    from layerscope.render.mpl import _layout_once

    _layout_once(fig, 100)
    img = read_png(out)
    ax = fig.axes[0]
    x = int(round(ax.transData.transform((4, 0))[0]))
    top, bottom = (int(img.shape[0] - ax.transData.transform((4, y))[1]) for y in (5, 20_005))
    col = img[top + 2 : bottom - 2, x, :3].mean(axis=1)  # the heatmap's pixels in one column
    assert bottom - top < 1000  # fewer pixel rows than steps: rows had to be merged
    y_spike = img.shape[0] - ax.transData.transform((4, 7780))[1] - (top + 2)
    bright = np.flatnonzero(col > np.median(col) + 0.05)
    assert bright.size and abs(bright.mean() - y_spike) < 3


# --- step axis modes, annotation -----------------------------------------------------------


def test_true_steps_place_uneven_rows_at_their_values():
    steps = [1, 2, 3, 4, 50, 100]
    fig = heatmap_figure(hm(np.random.default_rng(0).random((6, 3)), steps=steps), true_steps=True)
    from matplotlib.collections import QuadMesh

    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    ys = np.unique(mesh.get_coordinates()[..., 1])
    assert ys.tolist() == [0.5, 1.5, 2.5, 3.5, 27.0, 75.0, 125.0]
    assert mesh.get_rasterized()
    fig2 = heatmap_figure(hm(np.random.default_rng(0).random((6, 3)), steps=steps))
    assert fig2.axes[0].get_images() and not [c for c in fig2.axes[0].collections if isinstance(c, QuadMesh)]
    assert [t.get_text() for t in fig2.axes[0].get_yticklabels()] == ["1", "2", "3", "4", "50", "100"]


def test_annotate_prints_values_with_contrast():
    h = ramp(6, 5)
    h.values[0, 0] = np.nan
    fig = heatmap_figure(h, annotate=True)
    texts = [t for t in fig.axes[0].texts if t.get_gid() == "cell-value"]
    assert len(texts) == 29  # every finite cell
    by_pos = {(round(t.get_position()[0]), t.get_position()[1]): t for t in texts}
    dark = by_pos[(1, 20.0)]  # low value: dark magma cell
    light = by_pos[(5, 60.0)]  # the maximum: light yellow cell
    assert dark.get_text() == "0.000224" and dark.get_color() == "white"
    assert light.get_text() == "0.008" and light.get_color() == "black"
    assert all(4.5 <= t.get_fontsize() <= 10 for t in texts)


def test_annotate_is_skipped_with_a_warning_on_large_matrices():
    with pytest.warns(RenderWarning, match=r"--annotate skipped: 50 steps x 12 layers"):
        fig = heatmap_figure(ramp(50, 12), annotate=True)
    assert not [t for t in fig.axes[0].texts if t.get_gid() == "cell-value"]
    with pytest.warns(RenderWarning, match="too small"):
        heatmap_figure(ramp(40, 40), annotate=True, figsize=(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        heatmap_figure(ramp(40, 40), annotate=True)  # default size fits 40 x 40


def test_outputs_get_a_normal_mode_and_pipes_are_written_into(tmp_path):
    import os
    import stat
    import threading

    old = os.umask(0o022)
    try:
        out = layerscope.plot(ramp(), tmp_path / "h.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
    os.chmod(out, 0o600)
    layerscope.plot(ramp(), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # an existing file keeps its mode
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(open(fifo, "rb").read()))
    reader.start()
    layerscope.plot(ramp(), fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and bytes(got[:4]) == b"\x89PNG"
