"""The dashboard's answers for a long run: an overview sized to the screen that keeps a one-step
spike, detail for a zoomed step range, exact single rows for the profile, and the histograms."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")

from layerscope.serve import create_app
from layerscope.stats.functional import default_hist_edges
from layerscope.store import LayerInfo, StepRecord, Store

S, L = 2000, 96


def _f64(s: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), "<f8").reshape(shape)


@pytest.fixture(scope="module")
def long_store(tmp_path_factory) -> Path:
    """2000 steps x 96 layers of rms with a one-step spike at step 7780 (row 777), and histograms."""
    db = tmp_path_factory.mktemp("long") / "runs.db"
    rng = np.random.default_rng(0)
    v = 0.01 * (1 + np.linspace(0, 1, L))[None, :] + rng.normal(0, 2e-4, (S, L))
    v[777, 40:44] = 0.2
    edges = default_hist_edges()
    with Store(db) as st:
        st.create_run(
            "long",
            [LayerInfo(i + 1, f"h.{i}", "h", i + 1) for i in range(L)],
            config={"metrics": ["rms", "hist"], "sites": ["output"], "hist_edges": edges},
        )
        recs = []
        for i in range(S):
            hist = None
            if i % 100 == 0:
                hist = {"output": np.zeros((L, len(edges) + 1))}
                hist["output"][:, 45:55] = 10.0
            recs.append(StepRecord(10 * (i + 1), {("rms", "output"): v[i].tolist()}, hist))
        st.write_steps("long", recs)
    return db


@pytest.fixture(scope="module")
def client(long_store: Path):
    return create_app(long_store).test_client()


def test_the_first_answer_is_an_overview_sized_to_the_screen_with_the_spike(client, long_store: Path) -> None:
    r = client.get("/api/heatmap?run=long&metric=rms&site=output&max_rows=400")
    assert r.status_code == 200
    d = json.loads(r.data)
    full = client.get("/api/heatmap?run=long&metric=rms&site=output")
    assert len(r.data) * 7 < len(full.data)  # a fraction of the whole matrix as JSON numbers
    assert d["factor"] == 5 and d["n_rows"] == 400 and len(d["steps"]) == S
    vals = _f64(d["values"], (400, L))
    assert d["src_dtype"] == "u1"
    src = np.frombuffer(base64.b64decode(d["src"]), "u1").reshape(400, L) + np.asarray(d["starts"])[:, None]
    (row,) = np.flatnonzero((vals[:, 40:44] == 0.2).all(axis=1))
    assert d["steps"][src[row, 40]] == 7780  # the spike, with its exact step
    with Store(long_store, readonly=True) as st:
        want = st.load("long", "rms").values
    np.testing.assert_array_equal(vals[np.arange(400)[:, None], np.arange(L)], want[src, np.arange(L)])
    ref = _f64(d["ref_values"], (len(d["ref_rows"]), L))
    assert d["ref_rows"][0] == 0 and d["ref_rows"][-1] == S - 1
    np.testing.assert_array_equal(ref, want[d["ref_rows"]])


def test_a_zoomed_step_range_comes_in_detail_and_one_step_exactly(client, long_store: Path) -> None:
    with Store(long_store, readonly=True) as st:
        want = st.load("long", "rms").values
    d = json.loads(
        client.get("/api/heatmap?run=long&metric=rms&max_rows=400&step_min=7000&step_max=8990").data
    )
    assert d["factor"] == 1 and d["row0"] == 699 and d["steps"][0] == 7000 and d["steps"][-1] == 8990
    np.testing.assert_array_equal(_f64(d["values"], (200, L)), want[699:899])
    one = json.loads(
        client.get("/api/heatmap?run=long&metric=rms&max_rows=1&step_min=7780&step_max=7780").data
    )
    np.testing.assert_array_equal(_f64(one["values"], (1, L))[0], want[777])
    since = json.loads(client.get("/api/heatmap?run=long&metric=rms&max_rows=400&since_step=19980").data)
    assert since["steps"] == [19990, 20000] and since["row0"] == 0 and since["n_steps"] == 2


def test_bad_overview_parameters_are_one_json_error(client) -> None:
    r = client.get("/api/heatmap?run=long&metric=rms&max_rows=0")
    assert r.status_code == 400 and "max_rows=0 is out of range" in json.loads(r.data)["error"]
    r = client.get("/api/hist?run=long&layers=a,b")
    assert r.status_code == 400 and "not a list of layers" in json.loads(r.data)["error"]


def test_histograms_of_a_few_layers(client) -> None:
    info = json.loads(client.get("/api/run?run=long").data)
    assert info["hist_sites"] == ["output"]
    d = json.loads(client.get("/api/hist?run=long&site=output&layers=1,50,96&max_rows=10").data)
    assert d["layers"] == [1, 50, 96] and d["shape"] == [10, 3, 12] and len(d["steps"]) == 20
    c = _f64(d["counts"], tuple(d["shape"]))
    assert (c[:, :, 1:11] == 10).all() and (c[:, :, [0, 11]] == 0).all()  # 10 bins used, 1 of margin
    assert d["ticks"]["text"] and len(d["bins"]) == 12
    auto = json.loads(client.get("/api/hist?run=long").data)
    assert len(auto["layers"]) == 12 and auto["layers"][0] == 1 and auto["layers"][-1] == 96
