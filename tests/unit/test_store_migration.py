"""Schema 1 -> 2: a store written by layerscope's schema-1 code reads back every value, once upgraded.

``tests/fixtures/store_v1.db`` was written by the schema-1 code itself (``make_store_v1.py``);
``tests/fixtures/store_v1.py`` writes schema-1 stores from raw SQL for the cases the fixture does
not cover (a store from before ``matrix_rows``, damaged contents).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.fixtures.store_v1 import v1_matrices, write_v1

import layerscope
from layerscope.errors import StoreError
from layerscope.store import SCHEMA_VERSION, StepRecord, Store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1.db"


def _copy(tmp_path: Path) -> Path:
    p = tmp_path / "runs.db"
    shutil.copyfile(FIXTURE, p)
    return p


def _version(p: Path) -> int:
    con = sqlite3.connect(p)
    try:
        return int(con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        con.close()


def _v1_state(p: Path) -> dict:
    """Everything a schema-1 reader could read, by raw SQL on the schema-1 file."""
    con = sqlite3.connect(f"file:{p.resolve().as_posix()}?mode=ro", uri=True)
    try:
        names = dict(con.execute("SELECT id, name FROM runs"))
        return {
            "runs": con.execute(
                "SELECT name, created, model, config, version, source FROM runs ORDER BY id"
            ).fetchall(),
            "layers": con.execute(
                "SELECT run_id, layer, name, stack, depth FROM layers ORDER BY run_id, layer"
            ).fetchall(),
            "steps": {
                names[r]: [
                    (s, src)
                    for s, src in con.execute(
                        "SELECT step, source FROM steps WHERE run_id=? ORDER BY step", (r,)
                    )
                ]
                for r in names
            },
            "long": con.execute(
                "SELECT run_id, metric, site, step, layer, value FROM metric_values "
                "ORDER BY run_id, metric, site, step, layer"
            ).fetchall(),
            "blobs": {
                (names[r], m, s, st): np.frombuffer(b, "<f8")
                for r, m, s, st, b in con.execute("SELECT run_id, metric, site, step, vals FROM matrix_rows")
            },
            "hists": {
                (names[r], st, la): np.frombuffer(b, "<f8")
                for r, st, la, b in con.execute("SELECT run_id, step, layer, counts FROM hists")
            },
            "names": names,
        }
    finally:
        con.close()


def test_the_fixture_is_a_schema_1_store_with_what_it_claims() -> None:
    state = _v1_state(FIXTURE)
    assert _version(FIXTURE) == 1
    assert [r[0] for r in state["runs"]] == ["live", "sweep 'β'", "empty"]
    assert len(state["long"]) == 401 and len(state["blobs"]) == 71  # one record one value short
    values = [v for *_, v in state["long"]]
    assert None in values and float("inf") in values and float("-inf") in values and 1e308 in values
    assert 5e-324 in values and 2**62 in {k[3] for k in state["blobs"]}


def test_migration_reproduces_every_value_of_the_fixture(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    before = _v1_state(p)
    matrices = v1_matrices(p)
    with Store(p) as st:  # a writable open upgrades
        assert _version(p) == SCHEMA_VERSION
        assert st.run_names() == ["live", "sweep 'β'", "empty"]
        for (run, metric, site), (steps, vals) in matrices.items():
            hm = st.load(run, metric, site)
            assert hm.steps == steps, (run, metric, site)
            np.testing.assert_array_equal(hm.values, vals)  # NaN stays NaN, inf stays inf, bit-exact
            for i, s in enumerate(steps):  # and what the schema-1 reader returned: its blobs
                blob = before["blobs"][(run, metric, site, s)]
                np.testing.assert_array_equal(hm.values[i, : blob.size], blob)
                assert np.isnan(hm.values[i, blob.size :]).all()
        for run, steps in before["steps"].items():
            assert st.steps(run) == [s for s, _ in steps]
        assert (
            st.conn.execute("SELECT step, source FROM steps WHERE run_id=2 ORDER BY step").fetchall()
            == (before["steps"]["sweep 'β'"])
        )
        assert st.layers("live")[3].name == "dec.0" and st.layers("live")[3].stack == "dec"
        assert st.run_config("live") == {"every": 10, "hist_edges": [-2.0, -1.0, 0.0, 1.0, 2.0], "lr": 3e-4}
        info = st.run_info("sweep 'β'")
        assert (info.source, info.model, info.n_layers, info.metrics) == ("sweep", "GPT2", 3, ["std"])
        assert st.run_info("empty").n_steps == 0 and st.run_info("empty").n_layers == 1
        counts, hsteps, edges = st.load_hist("live")
        assert edges.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
        for i, s in enumerate(hsteps):
            for j in range(6):
                np.testing.assert_array_equal(counts[i, j], before["hists"][("live", s, j + 1)])
        assert len(hsteps) * 6 == len(before["hists"])
        # SQL users: the long rows are still there, as a view, value for value.
        rows = st.conn.execute(
            "SELECT run_id, metric, site, step, layer, value FROM metric_values ORDER BY run_id, metric, site, step, layer"
        ).fetchall()
        # Every value as SQLite gives it (None for NaN; -0.0 was 0.0 in the long rows already), and
        # the one cell the short record left out, now NaN like the schema-1 reader showed it.
        extra = [r for r in rows if r not in set(before["long"])]
        assert [r for r in rows if r not in extra] == before["long"]
        assert extra == [(1, "max_abs", "attn_out", 30, 6, None)]
    meta = dict(sqlite3.connect(p).execute("SELECT key, value FROM meta").fetchall())
    assert meta["migrated_from"] == "1" and meta["schema_version"] == str(SCHEMA_VERSION)


def test_the_upgraded_store_takes_new_steps_and_resumes(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    with Store(p) as st:
        old = st.load("live", "rms").values.copy()
        st.write_step("live", StepRecord(60, {("rms", "output"): np.arange(6.0)}))
        st.write_step("live", StepRecord(20, {("rms", "output"): np.ones(6)}))  # a step recorded again
        hm = st.load("live", "rms")
    assert hm.steps == [0, 10, 20, 30, 40, 50, 60, 2**62]
    np.testing.assert_array_equal(hm.values[6], np.arange(6.0))
    np.testing.assert_array_equal(hm.values[2], np.ones(6))
    np.testing.assert_array_equal(hm.values[[0, 1, 3, 4, 5, 7]], old[[0, 1, 3, 4, 5, 6]])


def test_a_reader_upgrades_a_writable_schema_1_store(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    hm = layerscope.load(p, run="sweep 'β'", metric="std")  # read-only open: upgrades once, then reads
    assert _version(p) == SCHEMA_VERSION and hm.steps == list(range(1, 9))


def test_a_store_from_before_matrix_rows_is_upgraded_from_its_long_rows(tmp_path: Path) -> None:
    """The test that the old fallback read path had, now through the migration."""
    vals = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.inf]])
    p = write_v1(
        tmp_path / "runs.db",
        {"a": (["h.0", "h.1", "h.2"], {1: {("m", "output"): vals[0]}, 2: {("m", "output"): vals[1]}})},
        matrix_rows=False,
    )
    np.testing.assert_array_equal(layerscope.load(p, metric="m").values, vals)
    assert _version(p) == SCHEMA_VERSION
    c = sqlite3.connect(p)
    assert c.execute("SELECT count(*) FROM series_rows").fetchone()[0] == 2
    assert not c.execute("SELECT 1 FROM sqlite_master WHERE name='matrix_rows'").fetchone()
    c.close()


def test_a_large_schema_1_store_migrates_in_chunks(tmp_path: Path) -> None:
    """More long rows than one fetch of the migration (65,536), so steps straddle its chunks."""
    rng = np.random.default_rng(1)
    steps = {
        s: {("rms", "output"): rng.standard_normal(97), ("kurt", "mlp"): rng.standard_normal(97)}
        for s in range(800)
    }
    p = write_v1(tmp_path / "runs.db", {"big": ([f"h.{i}" for i in range(97)], steps)})
    expect = v1_matrices(p)
    with Store(p) as st:
        for (run, metric, site), (st_, vals) in expect.items():
            hm = st.load(run, metric, site)
            assert hm.steps == st_
            np.testing.assert_array_equal(hm.values, vals)


def test_damaged_schema_1_contents_stop_the_migration_and_change_nothing(tmp_path: Path) -> None:
    p = write_v1(tmp_path / "runs.db", {"r": (["h.0", "h.1"], {10: {("rms", "output"): [1.0, 2.0]}})})
    c = sqlite3.connect(p)
    c.execute("UPDATE metric_values SET value='oops' WHERE layer=2")
    c.commit()
    c.close()
    before = hashlib.sha256(p.read_bytes()).hexdigest()
    for opener in (lambda: Store(p), lambda: layerscope.load(p)):
        with pytest.raises(StoreError) as e:
            opener()
        msg = str(e.value)
        assert "run 'r'" in msg and "rms/output" in msg and "step 10" in msg and "'oops'" in msg, msg
        assert f"layerscope runs {p} --check" in msg and "\n" not in msg
    assert _version(p) == 1 and hashlib.sha256(p.read_bytes()).hexdigest() == before


def test_two_processes_opening_a_schema_1_store_at_once_upgrade_it_once(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    expect = v1_matrices(p)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            with Store(p) as st:
                st.load("live", "rms")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Store(p, readonly=True) as st:
        np.testing.assert_array_equal(st.load("live", "rms").values, expect[("live", "rms", "output")][1])
        assert st.conn.execute("SELECT count(*) FROM series WHERE kind='value'").fetchone()[0] == 10
