"""The run store: what is written is what load returns; errors name what exists."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

import layerscope
from layerscope.errors import NotFoundError, StoreError
from layerscope.store import SCHEMA_VERSION, LayerInfo, StepRecord, Store


def _layers(n: int) -> list[LayerInfo]:
    return [LayerInfo(i + 1, f"blocks.{i}", "blocks", i + 1) for i in range(n)]


def test_round_trip_is_exact(store_path) -> None:
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(5, 7))
    vals[2, 3] = np.nan
    vals[4, 0] = np.inf
    with Store(store_path) as st:
        st.create_run("a", _layers(7), model="M", config={"lr": 1e-3})
        st.write_steps(
            "a", [StepRecord(s, {("rms", "output"): vals[i]}) for i, s in enumerate([10, 20, 30, 40, 50])]
        )
    hm = layerscope.load(store_path, metric="rms")
    assert hm.steps == [10, 20, 30, 40, 50] and hm.layers == list(range(1, 8))
    assert hm.layer_names == [f"blocks.{i}" for i in range(7)]
    assert hm.run == "a" and hm.metric == "rms" and hm.site == "output"
    np.testing.assert_array_equal(hm.values, vals)  # bit-exact; NaN stays NaN, inf stays inf


def test_absent_cells_are_nan_and_steps_sorted(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(3))
        st.write_step("a", StepRecord(20, {("m", "output"): [1.0, 2.0, 3.0]}))
        st.write_step("a", StepRecord(10, {("m", "output"): [4.0, float("nan"), 6.0]}))
        hm = st.load("a", "m")
    assert hm.steps == [10, 20]
    assert math.isnan(hm.values[0, 1]) and hm.values[1, 2] == 3.0


def test_rewriting_a_step_replaces_rows(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        st.write_step("a", StepRecord(5, {("m", "output"): [1.0, 2.0]}))
        st.write_step("a", StepRecord(5, {("m", "output"): [7.0, 8.0]}))
        assert st.conn.execute("SELECT count(*) FROM metric_values").fetchone()[0] == 2
        assert st.load("a", "m").values.tolist() == [[7.0, 8.0]]


def test_runs_and_metrics_listed(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        st.create_run("b", _layers(2), source="sweep")
        st.write_step("a", StepRecord(1, {("rms", "output"): [1, 2], ("std", "mlp_act"): [3, 4]}))
        assert st.run_names() == ["a", "b"]
        assert st.metrics("a") == [("rms", "output"), ("std", "mlp_act")]
        info = st.run_info("a")
        assert (info.n_steps, info.first_step, info.n_layers, info.metrics) == (1, 1, 2, ["rms", "std"])


def test_errors_list_what_exists(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        st.create_run("b", _layers(2))
        st.write_step("a", StepRecord(1, {("rms", "output"): [1, 2]}))
    with pytest.raises(NotFoundError, match="holds 2 runs.*'a', 'b'.*run='a'"):
        layerscope.load(store_path)
    with pytest.raises(NotFoundError, match="run 'zz' not found.*'a', 'b'"):
        layerscope.load(store_path, run="zz")
    with pytest.raises(NotFoundError, match="metric 'kurt' was not recorded.*rms"):
        layerscope.load(store_path, run="a", metric="kurt")
    with pytest.raises(NotFoundError, match="site 'mlp_act'.*output"):
        layerscope.load(store_path, run="a", metric="rms", site="mlp_act")
    with pytest.raises(NotFoundError, match="does not exist"):
        layerscope.load(store_path.parent / "nope.db")


def test_not_a_store_and_newer_schema(tmp_path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("hello, I am a CSV\n1,2,3\n")
    with pytest.raises(StoreError, match="not a layerscope store"):
        Store(bad)
    assert bad.read_text().startswith("hello")  # untouched

    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE t(x)")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="not a layerscope store"):
        Store(other)

    newer = tmp_path / "newer.db"
    Store(newer).close()
    c = sqlite3.connect(newer)
    c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="newer than this layerscope"):
        Store(newer)


def test_changed_layers_for_existing_run_is_refused(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        with pytest.raises(layerscope.ConfigError, match="recorded with 2 layers"):
            st.create_run("a", _layers(3))


def test_wal_mode_and_readonly(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(1))
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store(store_path, readonly=True) as ro, pytest.raises(StoreError, match="read-only"):
        ro.write_step("a", StepRecord(1, {("m", "output"): [1.0]}))


def test_hist_round_trip(store_path) -> None:
    counts = np.arange(12, dtype=float).reshape(2, 6)
    with Store(store_path) as st:
        st.create_run("a", _layers(2), config={"hist_edges": [-1, 0, 1, 2, 3]})
        st.write_step("a", StepRecord(3, {("rms", "output"): [1, 1]}, hists={"output": counts}))
        h, steps, edges = st.load_hist("a")
    assert steps == [3] and edges.tolist() == [-1, 0, 1, 2, 3]
    np.testing.assert_array_equal(h[0], counts)


def test_load_since_step_returns_only_new_rows(store_path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        for s in (1, 2, 3):
            st.write_step("a", StepRecord(s, {("m", "output"): [s, 10 * s]}))
        assert st.load("a", "m", since_step=1).steps == [2, 3]
        empty = st.load("a", "m", since_step=3)
        assert empty.steps == [] and empty.values.shape == (0, 2)
        with pytest.raises(NotFoundError, match="recorded metrics"):
            st.load("a", "zz", since_step=3)
