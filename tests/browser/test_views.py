"""The views of issue 23 in headless Chromium: a 96 x 2000 map keeps its one-step spike on the page,
the step slider and the hover move the profile, a zoom redraws the steps in detail, colour-bar
titles clear their ticks, and the dashboard does the same for a long run (overview first), draws
histograms and puts round steps on its axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import layerscope
from layerscope.store import LayerInfo, StepRecord, Store
from layerscope.store.heatmap import Heatmap

pytest.importorskip("flask")

S, L = 2000, 96


def spiky_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    v = 0.01 * (1 + np.linspace(0, 1, L))[None, :] + rng.normal(0, 2e-4, (S, L))
    v[777, 40:44] = 0.2  # step 7780
    return v


STEPS = [10 * (i + 1) for i in range(S)]


@pytest.fixture(scope="module")
def spike_html(tmp_path_factory) -> Path:
    hm = Heatmap(spiky_values(), steps=STEPS, layers=range(1, L + 1), metric="rms", run="spike")
    return layerscope.plot(hm, tmp_path_factory.mktemp("html") / "spike.html")


def _errors(page) -> list[str]:
    errs: list[str] = []
    page.on("pageerror", lambda e: errs.append(str(e)))
    page.on("console", lambda m: errs.append(m.text) if m.type == "error" else None)
    return errs


def _current(page, div: str) -> list:
    return page.evaluate(
        f"(() => {{ const d = document.getElementById('{div}'); return d.data.find(t => t.uid === 'current' || (t.name || '').startsWith('selected')); }})()"
    )


def test_html_spike_slider_hover_and_zoom(page, spike_html: Path) -> None:
    errs = _errors(page)
    page.goto(spike_html.as_uri())
    page.wait_for_selector("#layerscope-plot .hm")
    z = np.array(page.evaluate("document.getElementById('layerscope-plot').data[0].z"), dtype=float)
    assert z.shape[0] < 500 and (z[:, 40:44] == 0.2).all(axis=1).sum() == 1  # drawn, not dropped
    v = spiky_values()
    # The slider moves the profile to that step: exactly that row of the matrix.
    page.evaluate(
        "const s = document.getElementById('layerscope-profile-step'); s.value = 777; s.dispatchEvent(new Event('input'))"
    )
    cur = _current(page, "layerscope-profile")
    assert (
        cur["name"] == "selected: step 7780" and page.text_content("#layerscope-profile-step-out") == "7780"
    )
    np.testing.assert_array_equal(np.array(cur["y"], dtype=float), v[777])
    # The hover on the map shows the profile of the step the hovered value came from.
    page.evaluate("""(() => { const d = document.getElementById('layerscope-plot');
        const row = d.data[0].z.findIndex(r => r[41] === 0.2);
        Plotly.Fx.hover(d, [{curveNumber: 0, pointNumber: [row, 41]}]); })()""")
    page.wait_for_function("() => document.getElementById('layerscope-profile').dataset.step === '7780'")
    # A zoom into 100 steps redraws them one row each, from the full matrix in the page.
    page.evaluate("Plotly.relayout('layerscope-plot', {'yaxis.range[0]': 8500, 'yaxis.range[1]': 7500})")
    page.wait_for_function("() => document.getElementById('layerscope-plot').dataset.factor === '1'")
    t = page.evaluate(
        "(() => { const d = document.getElementById('layerscope-plot').data[0]; return {y: d.y, z: d.z}; })()"
    )
    ys = np.array(t["y"], dtype=float)
    rows = [STEPS.index(int(y)) for y in ys]
    np.testing.assert_array_equal(np.array(t["z"], dtype=float), v[rows])
    assert ys.min() <= 7500 and ys.max() >= 8500
    assert errs == [] and page.blocked_requests == []


def _overlaps(page, div: str) -> list:
    """Colour-bar titles whose box meets a tick label of the same bar (plotly draws both as SVG text)."""
    return page.evaluate(
        f"""(() => {{
        const out = [];
        for (const bar of document.querySelectorAll('#{div} .colorbar')) {{
          const title = bar.querySelector('.cbtitle text');
          if (!title) continue;
          const a = title.getBoundingClientRect();
          for (const t of bar.querySelectorAll('.cbaxis .tick text, .cbaxis text')) {{
            const b = t.getBoundingClientRect();
            if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) out.push([title.textContent, t.textContent]);
          }}
        }}
        return out; }})()"""
    )


def test_colour_bar_titles_clear_their_ticks(page, tmp_path: Path) -> None:
    hm = Heatmap(
        np.linspace(1e3, 2.5e5, 12).reshape(4, 3),
        steps=[1, 2, 3, 4],
        layers=[1, 2, 3],
        metric="max_abs (mlp_act)",
    )
    for scale in ("linear", "log"):
        out = layerscope.plot(hm, tmp_path / f"cb-{scale}.html", scale=scale)
        page.goto(out.as_uri())
        page.wait_for_selector("#layerscope-plot .colorbar")
        assert page.locator("#layerscope-plot .cbtitle text").count() == 1
        assert _overlaps(page, "layerscope-plot") == []


# --- the dashboard ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dash_store(tmp_path_factory) -> Path:
    from layerscope.stats.functional import default_hist_edges

    db = tmp_path_factory.mktemp("dash") / "runs.db"
    v = spiky_values()
    edges = default_hist_edges()
    with Store(db) as st:
        st.create_run(
            "long",
            [LayerInfo(i + 1, f"h.{i}", "h", i + 1) for i in range(L)],
            config={"metrics": ["rms", "hist"], "sites": ["output"], "hist_edges": edges},
        )
        recs = []
        for i, s in enumerate(STEPS):
            hist = None
            if i % 200 == 0:
                c = np.zeros((L, len(edges) + 1))
                c[:, 40 + (i // 200) : 60] = 50.0
                hist = {"output": c}
            recs.append(StepRecord(s, {("rms", "output"): v[i].tolist()}, hist))
        st.write_steps("long", recs)
        st.create_run("two", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        st.write_steps("two", [StepRecord(s, {("rms", "output"): [1.0, 2.0 * s]}) for s in (2, 3)])
        st.create_run("even", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        st.write_steps("even", [StepRecord(s, {("rms", "output"): [1.0, s / 10]}) for s in range(2, 42, 2)])
    return db


@pytest.fixture(scope="module")
def dash(dash_store: Path):
    from layerscope.serve import Dashboard

    d = Dashboard(dash_store, port=0, poll_ms=500).start()
    try:
        yield d
    finally:
        d.stop()


def test_dashboard_draws_an_overview_of_a_long_run_with_its_spike(dash, page) -> None:
    errs = _errors(page)
    sizes: list[int] = []
    page.on(
        "response",
        lambda r: sizes.append(int(r.headers.get("content-length", 0))) if "/api/heatmap" in r.url else None,
    )
    page.goto(dash.url + "#view=run&run=long&metric=rms&site=output")
    page.wait_for_function(
        "() => document.getElementById('heatmap').data && document.getElementById('heatmap').data[0].z.length > 0",
        timeout=30000,
    )
    z = np.array(page.evaluate("document.getElementById('heatmap').data[0].z"), dtype=float)
    height = page.evaluate("document.getElementById('heatmap').clientHeight")
    assert z.shape[0] <= height and (z[:, 40:44] == 0.2).all(axis=1).sum() == 1
    assert sizes and sizes[0] < 1_000_000  # not the 4 MB of the whole matrix as JSON
    assert page.get_attribute("#step-count", "data-steps") == str(S)
    # The profile follows the newest step, then the slider.
    page.wait_for_function("() => document.getElementById('profile').dataset.step === '20000'")
    page.evaluate(
        "const s = document.getElementById('step-slider'); s.value = 777; s.dispatchEvent(new Event('input'))"
    )
    page.wait_for_function("() => document.getElementById('profile').dataset.step === '7780'")
    cur = _current(page, "profile")
    np.testing.assert_array_equal(np.array(cur["y"], dtype=float), spiky_values()[777])
    # A zoom reads the step range in detail: one row per step.
    page.evaluate("Plotly.relayout('heatmap', {'yaxis.range[0]': 900, 'yaxis.range[1]': 700})")
    page.wait_for_function("() => document.getElementById('heatmap').dataset.factor === '1'", timeout=15000)
    zz = np.array(page.evaluate("document.getElementById('heatmap').data[0].z"), dtype=float)
    assert zz.shape[0] >= 200 and (zz[:, 40:44] == 0.2).all(axis=1).sum() == 1
    assert errs == [] and page.blocked_requests == []


def test_dashboard_step_ticks_are_round(dash, page) -> None:
    page.goto(dash.url + "#view=run&run=even&metric=rms&site=output")
    page.wait_for_function(
        "() => document.getElementById('heatmap').data && document.getElementById('heatmap').data[0].z.length === 20"
    )
    labels = page.evaluate("document.getElementById('heatmap').layout.yaxis.ticktext")
    assert labels[0] == "2" and labels[-1] == "40" and all(int(x) % 5 == 0 for x in labels[1:-1])
    page.goto(dash.url + "?reload=1#view=run&run=two&metric=rms&site=output")  # a new URL: a new page
    page.wait_for_function(
        "() => document.getElementById('lines').data && document.getElementById('lines').data[0].x.length === 2"
    )
    page.wait_for_timeout(300)
    ticks = page.evaluate("[...document.querySelectorAll('#lines .xtick text')].map(t => t.textContent)")
    assert ticks == ["2", "3"]  # no 2.5 between two recorded steps
    rows = page.evaluate("[...document.querySelectorAll('#heatmap .ytick text')].map(t => t.textContent)")
    assert rows == ["2", "3"]


def test_dashboard_histograms(dash, page) -> None:
    errs = _errors(page)
    page.goto(dash.url + "#view=run&run=long&metric=hist&site=output")
    page.wait_for_function(
        "() => document.getElementById('hist').data && document.getElementById('hist').data.length === 12",
        timeout=30000,
    )
    assert page.is_hidden("#charts-main") and page.is_visible("#hist-box")
    assert page.get_attribute("#hist", "data-layers") == "1,10,18,27,36,44,53,61,70,79,87,96"
    page.select_option("#hist-layers", "7")
    page.wait_for_function("() => document.getElementById('hist').dataset.layers === '7'")
    assert page.evaluate("document.getElementById('hist').data.length") == 1
    assert errs == [] and page.blocked_requests == []
