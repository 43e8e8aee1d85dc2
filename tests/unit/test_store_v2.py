"""Schema 2: per-head series, variants, events, the metric_values view, batched writes, and space."""

from __future__ import annotations

import csv
import math
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import layerscope
from layerscope.errors import ConfigError, NotFoundError
from layerscope.store import Event, LayerInfo, StepRecord, Store, variant_dims
from layerscope.store.sqlite import MAX_BATCH


def _layers(n: int) -> list[LayerInfo]:
    return [LayerInfo(i + 1, f"blocks.{i}", "blocks", i + 1) for i in range(n)]


# -- per-head series ---------------------------------------------------------------------------------
def _heads_store(p: Path, n_layers: int = 5, n_heads: int = 4, steps: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((steps, n_layers, n_heads)) * 10
    cube[2, 1, :] = np.nan  # a layer with no head recorded at one step
    cube[3, 0, 2] = np.nan  # one head missing
    cube[4, 4, 1] = np.inf
    with Store(p) as st:
        st.create_run("a", _layers(n_layers))
        st.write_steps(
            "a",
            [
                StepRecord(10 * (s + 1), {("max_logit", "attn"): cube[s], ("rms", "output"): cube[s, :, 0]})
                for s in range(steps)
            ],
        )
    return cube


def test_per_head_series_load_reduced_over_heads(store_path: Path) -> None:
    cube = _heads_store(store_path)
    with Store(store_path, readonly=True) as st:
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = {"max": np.nanmax(cube, 2), "mean": np.nanmean(cube, 2), "min": np.nanmin(cube, 2)}
        for how, ref in want.items():
            hm = st.load("a", "max_logit", "attn", reduce=how)
            assert hm.steps == [10, 20, 30, 40, 50, 60] and hm.layer_names[0] == "blocks.0"
            np.testing.assert_array_equal(hm.values, ref)
            assert hm.meta["reduce"] == how and hm.meta["heads"] == 4
        assert np.isnan(st.load("a", "max_logit", "attn", reduce="max").values[2, 1])  # all heads NaN
        np.testing.assert_array_equal(st.load("a", "max_logit", "attn", reduce=3).values, cube[:, :, 3])
        np.testing.assert_array_equal(
            layerscope.load(store_path, metric="max_logit", site="attn", reduce="mean").values, want["mean"]
        )
        # a plain series is unchanged by the new arguments
        np.testing.assert_array_equal(st.load("a", "rms").values, cube[:, :, 0])
        np.testing.assert_array_equal(st.load("a", "rms", reduce="max").values, cube[:, :, 0])


def test_per_head_series_need_a_reduction(store_path: Path) -> None:
    _heads_store(store_path)
    with Store(store_path, readonly=True) as st:
        with pytest.raises(
            ConfigError, match=r"max_logit/attn of run 'a' holds 4 values per layer.*reduce='max'"
        ):
            st.load("a", "max_logit", "attn")
        with pytest.raises(ConfigError, match=r"head 4 is not in .* heads 0..3"):
            st.load("a", "max_logit", "attn", reduce=4)
        with pytest.raises(ConfigError, match=r"reduce='median' is not one of"):
            st.load("a", "max_logit", "attn", reduce="median")


def test_head_by_layer_matrix_at_one_step(store_path: Path) -> None:
    cube = _heads_store(store_path)
    with Store(store_path, readonly=True) as st:
        hmap = st.load_heads("a", "max_logit", "attn", step=40)
        assert hmap.shape == (4, 5) and hmap.heads == [0, 1, 2, 3] and hmap.layers == [1, 2, 3, 4, 5]
        assert hmap.layer_names[4] == "blocks.4" and hmap.step == 40
        np.testing.assert_array_equal(hmap.values, cube[3].T)
        with pytest.raises(NotFoundError, match=r"step 45 was not recorded .* 6 steps, 10..60"):
            st.load_heads("a", "max_logit", "attn", step=45)
        hs = st.load_head_series("a", "max_logit", "attn")
        np.testing.assert_array_equal(hs.values, cube)
        assert hs.steps == [10, 20, 30, 40, 50, 60] and hs.layer_names[4] == "blocks.4" and hs.run == "a"
        with pytest.raises(NotFoundError, match="site 'mlp'"):
            st.load_head_series("a", "max_logit", "mlp")


def test_a_wide_per_head_row_round_trips_and_stays_compact(store_path: Path) -> None:
    """32 layers x 32 heads = 8 KiB per row: more than fits in one SQLite page."""
    rng = np.random.default_rng(3)
    cube = rng.standard_normal((300, 32, 32))
    with Store(store_path) as st:
        st.create_run("big", _layers(32))
        st.write_steps("big", [StepRecord(s, {("entropy", "attn"): cube[s]}) for s in range(100)])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = os.path.getsize(store_path)
        st.write_steps("big", [StepRecord(s, {("entropy", "attn"): cube[s]}) for s in range(100, 300)])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        np.testing.assert_array_equal(st.load_heads("big", "entropy", "attn", 7).values, cube[7].T)
        np.testing.assert_array_equal(st.load("big", "entropy", "attn", reduce="max").values, cube.max(2))
        hs = st.load_head_series("big", "entropy", "attn")  # every head at every step, across parts
        np.testing.assert_array_equal(hs.values, cube)
        assert hs.steps == list(range(300)) and hs.n_heads == 32 and hs.layers == list(range(1, 33))
    per_value = (os.path.getsize(store_path) - before) / cube[100:].size  # what each new step costs
    assert per_value < 11.0, per_value  # float64 is 8: rows are cut into parts that fit in a page


def test_a_series_keeps_its_shape(store_path: Path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(3))
        st.write_step("a", StepRecord(1, {("ml", "attn"): np.zeros((3, 4))}))
        good = StepRecord(2, {("ml", "attn"): np.ones((3, 4))})
        bad = StepRecord(3, {("ml", "attn"): np.ones((3, 5))})
        with pytest.raises(ConfigError, match=r"3 x 5 values, but this series was recorded with 3 x 4"):
            st.write_steps("a", [good, bad])
        assert st.steps("a") == [1]  # the call was refused whole: step 2 was not written either
        with pytest.raises(ConfigError, match=r"2 values, but run 'a' has 3 layers"):
            st.write_step("a", StepRecord(4, {("rms", "output"): [1.0, 2.0]}))
        with pytest.raises(ConfigError, match=r"values must be numbers"):
            st.write_step("a", StepRecord(5, {("rms", "output"): ["a", "b", "c"]}))
        st.write_step("a", StepRecord(6, {("loss_z", "logits"): [0.5]}))  # one value for the whole model
        assert st.load("a", "loss_z", "logits").values.tolist() == [[0.5]]
        assert st.steps("a") == [1, 6]


# -- variants ----------------------------------------------------------------------------------------
def test_variants_hold_rows_per_width_step_and_layer(store_path: Path) -> None:
    widths = (64, 128, 256)
    with Store(store_path) as st:
        st.create_run("coord", _layers(4))
        for w in widths:
            st.write_steps(
                "coord",
                [
                    StepRecord(
                        s, {("abs_mean", "output"): np.full(4, w * s, dtype=float)}, variant=f"width={w}"
                    )
                    for s in (1, 2, 3)
                ],
            )
        assert st.variants("coord") == ["width=64", "width=128", "width=256"]
        assert [variant_dims(v)["width"] for v in st.variants("coord")] == ["64", "128", "256"]
        for w in widths:
            hm = st.load("coord", "abs_mean", variant=f"width={w}")
            assert hm.steps == [1, 2, 3] and hm.values[:, 0].tolist() == [w, 2 * w, 3 * w]
            assert hm.meta["variant"] == f"width={w}"
            assert st.steps("coord", variant=f"width={w}") == [1, 2, 3]
        assert st.steps("coord") == [1, 2, 3] and st.metrics("coord") == [("abs_mean", "output")]
        assert st.run_info("coord").variants == ["width=64", "width=128", "width=256"]
        assert st.run_table()[0][5] == 3  # n_steps counts a step once, whatever its variants
        with pytest.raises(NotFoundError, match=r"variant 'width=512' was not recorded.*'width=64'"):
            st.load("coord", "abs_mean", variant="width=512")
        with pytest.raises(NotFoundError, match=r"variant '' of run 'coord'"):
            st.load("coord", "abs_mean")
        with pytest.raises(ConfigError, match=r"variant 'width 512' is not of the form name=value"):
            st.write_step("coord", StepRecord(4, {("abs_mean", "output"): np.ones(4)}, variant="width 512"))
        rows = st.conn.execute(
            "SELECT variant, step, layer, value FROM metric_values WHERE variant='width=128' AND layer=2 ORDER BY step"
        ).fetchall()
        assert rows == [("width=128", 1, 2, 128.0), ("width=128", 2, 2, 256.0), ("width=128", 3, 2, 384.0)]


# -- events ------------------------------------------------------------------------------------------
def test_events_round_trip_with_their_step_and_alone(store_path: Path) -> None:
    alert = Event(
        20, "alert", "max_abs>10x median", "layer 2 max_abs 48.1", "output", "max_abs", 2, None, 48.1
    )
    nan_alert = Event(20, "alert", "non-finite", "layer 3 rms is NaN", "output", "rms", 3, value=math.nan)
    with Store(store_path) as st:
        st.create_run("a", _layers(3))
        st.write_step("a", StepRecord(10, {("rms", "output"): [1.0, 2.0, 3.0]}))
        st.write_step(
            "a", StepRecord(20, {("rms", "output"): [1.0, 2.0, math.nan]}, events=[alert, nan_alert])
        )
        st.write_events("a", [Event(25, "note", "user", "lr dropped", time=1.5e9)])
        evs = st.events("a")
        assert [(e.step, e.rule) for e in evs] == [
            (20, "max_abs>10x median"),
            (20, "non-finite"),
            (25, "user"),
        ]
        assert evs[0].layer == 2 and evs[0].head is None and evs[0].value == 48.1 and evs[0].time > 1.6e9
        assert math.isnan(evs[1].value) and evs[2].time == 1.5e9 and evs[2].layer is None
        # Step 20 recorded again (a resume): its events are the new record's, not both.
        st.write_step("a", StepRecord(20, {("rms", "output"): [1.0, 2.0, 3.0]}, events=[]))
        assert [e.step for e in st.events("a")] == [25]
        st.write_step("a", StepRecord(20, {("rms", "output"): [1.0, 2.0, 3.0]}))  # events=None: kept
        assert [e.step for e in st.events("a")] == [25]


def test_export_writes_heads_variants_and_events(store_path: Path, tmp_path: Path, cli) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        st.write_step(
            "a",
            StepRecord(
                5,
                {("rms", "output"): [1.0, math.nan], ("ml", "attn"): np.array([[1.0, 2.0], [3.0, 4.0]])},
                events=[Event(5, "alert", "r1", "boom", "attn", "ml", 2, 1, 4.0, time=100.0)],
            ),
        )
        st.write_step("a", StepRecord(5, {("rms", "output"): [7.0, 8.0]}, variant="width=8"))
    out = tmp_path / "v.csv"
    r = cli("export", str(store_path), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["run", "step", "layer", "layer_name", "site", "metric", "value", "variant", "head"]
    assert rows[1:] == [
        ["a", "5", "1", "blocks.0", "attn", "ml", "1.0", "", "0"],
        ["a", "5", "1", "blocks.0", "attn", "ml", "2.0", "", "1"],
        ["a", "5", "2", "blocks.1", "attn", "ml", "3.0", "", "0"],
        ["a", "5", "2", "blocks.1", "attn", "ml", "4.0", "", "1"],
        ["a", "5", "1", "blocks.0", "output", "rms", "1.0", "", ""],
        ["a", "5", "2", "blocks.1", "output", "rms", "", "", ""],
        ["a", "5", "1", "blocks.0", "output", "rms", "7.0", "width=8", ""],
        ["a", "5", "2", "blocks.1", "output", "rms", "8.0", "width=8", ""],
    ]
    ev = tmp_path / "e.csv"
    r = cli("export", str(store_path), "--events", "-o", str(ev))
    assert r.returncode == 0 and "wrote 1 events" in r.stdout, r.stderr
    assert list(csv.reader(ev.open())) == [
        [
            "run",
            "variant",
            "step",
            "site",
            "metric",
            "layer",
            "head",
            "kind",
            "rule",
            "value",
            "message",
            "time",
        ],
        ["a", "", "5", "attn", "ml", "2", "1", "alert", "r1", "4.0", "boom", "100.0"],
    ]


# -- the view, batches, space ------------------------------------------------------------------------
def test_metric_values_view_is_bit_exact(store_path: Path) -> None:
    rng = np.random.default_rng(7)
    vals = rng.integers(0, 2**63, (40, 6), dtype=np.int64).view(np.float64)  # every kind of bit pattern
    vals[0] = [0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, -np.inf, np.nan]
    with Store(store_path) as st:
        st.create_run("a", _layers(6))
        st.write_steps("a", [StepRecord(s, {("m", "output"): vals[s]}) for s in range(40)])
        got = st.conn.execute("SELECT step, layer, value FROM metric_values ORDER BY step, layer").fetchall()
    back = np.array([np.nan if v is None else v for _, _, v in got]).reshape(40, 6)
    same = (back == vals) | (np.isnan(back) & np.isnan(vals))
    assert same.all(), np.argwhere(~same)[:5]


def test_the_view_works_in_a_plain_sqlite_connection(store_path: Path) -> None:
    with Store(store_path) as st:
        st.create_run("a", _layers(2))
        st.write_step("a", StepRecord(3, {("rms", "output"): [0.25, -1.5]}))
    c = sqlite3.connect(store_path)  # no layerscope, no registered function
    assert c.execute("SELECT run, step, layer, value, head, variant FROM metric_values").fetchall() == [
        ("a", 3, 1, 0.25, None, ""),
        ("a", 3, 2, -1.5, None, ""),
    ]
    c.close()


def test_a_long_write_is_batched_and_every_step_whole(store_path: Path) -> None:
    n = MAX_BATCH * 2 + 7
    with Store(store_path) as st:
        st.create_run("a", _layers(3))
        st.write_steps(
            "a", [StepRecord(s, {("m", "output"): [s, s, s], ("n", "output"): [1, 2, 3]}) for s in range(n)]
        )
        assert st.steps("a") == list(range(n))
        counts = dict(st.conn.execute("SELECT step, count(*) FROM metric_values GROUP BY step").fetchall())
        assert set(counts.values()) == {6} and len(counts) == n


def test_ten_bytes_per_value_or_less(store_path: Path) -> None:
    """The issue's target, on a store of the issue's shape (96 layers x 4 metrics, flushes of 50
    steps): what each recorded step adds to the file, once the store's fixed tables are there."""
    rng = np.random.default_rng(0)
    metrics = ("rms", "kurtosis", "max_abs", "top_ratio")

    def write(st: Store, first: int, last: int) -> int:
        for s0 in range(first, last, 50):
            st.write_steps(
                "a",
                [
                    StepRecord(s, {(m, "output"): rng.standard_normal(96) for m in metrics})
                    for s in range(s0, s0 + 50)
                ],
            )
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(store_path)

    with Store(store_path) as st:
        st.create_run("a", _layers(96))
        before = write(st, 0, 200)
        after = write(st, 200, 1200)
    per_value = (after - before) / (1000 * 96 * 4)
    assert per_value <= 10.0, per_value


def test_a_row_longer_than_a_page_is_stored_in_parts_and_read_whole(store_path: Path) -> None:
    """3 layers x 100 heads = 300 values: more than one part holds (250 in an 8 KiB page)."""
    rng = np.random.default_rng(5)
    cube = rng.standard_normal((4, 3, 100))
    with Store(store_path) as st:
        st.create_run("a", _layers(3))
        st.write_steps("a", [StepRecord(s, {("ml", "attn"): cube[s]}) for s in range(4)])
        st.write_step("a", StepRecord(2, {("ml", "attn"): cube[0]}))  # rewritten: every part replaced
        cube[2] = cube[0]
        parts = st.conn.execute(
            "SELECT step, part, length(vals) FROM series_rows WHERE step=1 ORDER BY part"
        ).fetchall()
        assert [p for _, p, _ in parts] == list(range(len(parts))) and len(parts) > 1
        assert sum(n for *_, n in parts) == 8 * 300
        np.testing.assert_array_equal(st.load("a", "ml", "attn", reduce=99).values, cube[:, :, 99])
        np.testing.assert_array_equal(st.load_heads("a", "ml", "attn", 3).values, cube[3].T)
        rows = st.conn.execute(
            "SELECT step, layer, head, value FROM metric_values ORDER BY step, layer, head"
        ).fetchall()
    assert [(s, la, h) for s, la, h, _ in rows] == [
        (s, la, h) for s in range(4) for la in (1, 2, 3) for h in range(100)
    ]
    np.testing.assert_array_equal(np.array([v for *_, v in rows]).reshape(4, 3, 100), cube)


def test_deleting_a_run_removes_everything_and_frees_its_name(store_path: Path) -> None:
    with Store(store_path) as st:
        st.create_run("demo", _layers(2))
        st.write_step(
            "demo",
            StepRecord(
                1,
                {("rms", "output"): [1.0, 2.0]},
                {"output": np.ones((2, 3))},
                events=[Event(1, "alert", "r")],
            ),
        )
        st.create_run("keep", _layers(2))
        st.write_step("keep", StepRecord(1, {("rms", "output"): [5.0, 6.0]}))
        st.delete_run("demo")
        assert st.run_names() == ["keep"]
        left = {
            t: st.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("series", "series_rows", "events", "steps", "layers")
        }
        assert left == {"series": 1, "series_rows": 1, "events": 0, "steps": 1, "layers": 2}
        st.create_run("demo", _layers(3))  # the same name, another shape: new series, no stale ids
        st.write_step("demo", StepRecord(1, {("rms", "output"): [7.0, 8.0, 9.0]}))
        assert st.load("demo", "rms").values.tolist() == [[7.0, 8.0, 9.0]]
        assert st.load("keep", "rms").values.tolist() == [[5.0, 6.0]]
