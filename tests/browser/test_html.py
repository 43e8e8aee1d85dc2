"""The interactive HTML in real headless Chromium with networking off: the page loads without
fetching anything, the heatmap is drawn, and hovering a cell shows its exact value."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import layerscope
from layerscope.store.heatmap import Heatmap

N_STEPS, N_LAYERS = 6, 5
NAMES = ["h.0", "h.1", "<b>bold</b> %{z}", "h.3", "h.4"]


def exact(x: float) -> str:
    """The text a user should see: Python's shortest round-trip repr of the float."""
    return repr(float(x))


def values(scale: float) -> np.ndarray:
    i, j = np.mgrid[0:N_STEPS, 0:N_LAYERS]
    v = scale * (0.1234567890123 * (i + 1) + j / 7.0)
    v[1, 1] = np.nan
    v[4, 3] = np.inf
    return v


def heatmap(metric: str, scale: float) -> Heatmap:
    return Heatmap(
        values(scale),
        steps=[1000 * (i + 1) for i in range(N_STEPS)],
        layers=range(1, N_LAYERS + 1),
        layer_names=NAMES,
        metric=metric,
        run="<img src=x onerror=alert(1)>",
    )


@pytest.fixture(scope="module")
def html_file(tmp_path_factory) -> Path:
    return layerscope.plot(
        [heatmap("rms", 1.0), heatmap("kurtosis", 3.0)], tmp_path_factory.mktemp("html") / "plot.html"
    )


def open_plot(page, path: Path) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    return errors


def hover_cell(page, i: int, j: int, plot: int = 0) -> str:
    """Move the mouse to the centre of cell (step row i, layer column j) and return the hover label."""
    box = page.locator(".nsewdrag").nth(plot).bounding_box()
    x = box["x"] + (j + 0.5) / N_LAYERS * box["width"]
    y = box["y"] + (i + 0.5) / N_STEPS * box["height"]  # first step at the top
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    # Wait for the label of *this* cell (the previous cell's label may still be up for a moment).
    want = [f"layer {j + 1} ", f"step {1000 * (i + 1)}"]
    page.wait_for_function(
        """w => Array.from(document.querySelectorAll('.hoverlayer .hovertext'))
                 .some(e => w.every(s => e.textContent.includes(s)))""",
        arg=want,
        timeout=5_000,
    )
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.hoverlayer .hovertext'))"
        ".map(e => e.textContent).join('|')"
    )


def test_page_draws_offline_and_hover_shows_exact_values(page, html_file):
    errors = open_plot(page, html_file)
    assert page.blocked_requests == []  # nothing was fetched (plotly.js is inline)
    assert page.locator("g.hm image").count() >= 1  # the heatmap is drawn (plotly paints it as an image)
    png = page.screenshot()
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    assert img.std() > 0.05  # not blank
    assert len(np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 50

    v = values(1.0)
    label = hover_cell(page, 0, 0)
    assert f"rms = {exact(v[0, 0])}" in label and "layer 1 · h.0" in label and "step 1000" in label
    label = hover_cell(page, 5, 2)
    assert f"rms = {exact(v[5, 2])}" in label and "step 6000" in label
    assert "layer 3 · <b>bold</b> %{z}" in label  # a layer name is text, never markup or a template
    assert "missing / NaN" in hover_cell(page, 1, 1)
    assert "rms = +inf" in hover_cell(page, 4, 3)
    assert page.locator(".hoverlayer b").count() == 0
    assert errors == []  # no script error, no alert from the run name


def test_switcher_shows_the_other_metric(page, html_file):
    open_plot(page, html_file)
    page.locator(".updatemenu-header-group").click()
    page.locator(".updatemenu-item-text", has_text="kurtosis").click()
    page.wait_for_function(
        "() => (document.querySelector('.gtitle') || {textContent: ''}).textContent.startsWith('kurtosis')"
    )
    label = hover_cell(page, 2, 4)
    assert f"kurtosis = {exact(values(3.0)[2, 4])}" in label
    assert page.blocked_requests == []


def test_bundle_page_draws_every_figure_offline(page, tmp_path):
    hms = [heatmap("rms", 1.0), heatmap("kurtosis", 3.0)]
    from layerscope.render.bundle import write_bundle

    path = write_bundle(hms, tmp_path / "bundle")
    open_plot(page, path)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12")
    assert page.locator(".js-plotly-plot").count() == 6  # heatmap, profile, lines per metric
    assert page.blocked_requests == []
    assert page.locator("section#rms-output .report h3").first.inner_text().startswith("rms across layers")
    assert page.locator("g.hm image").count() == 2
    label = hover_cell(page, 3, 0, plot=0)
    assert f"rms = {exact(values(1.0)[3, 0])}" in label
