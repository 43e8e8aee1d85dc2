"""Damaged store contents and interrupted writers (issue 14, items 5 and 6).

A store can be damaged below SQLite's notice: a run config that is not JSON, a row of values that
is text or too short, a layer row missing, a step that lost some of its rows. Each read that meets
the damage raises one ``StoreError`` naming the run and what is damaged, and pointing at
``layerscope runs STORE --check`` (never layerscope's "unexpected ... bug" line); the check lists
every problem, one line each, and exits 1.

A writer killed while it held a rollback journal (a store being created, or any write in rollback
mode) leaves a "hot" journal; a reader must not call the store read-only: it rolls the journal back
when it may write the folder, and otherwise says that a previous writer was interrupted and that
the next writer repairs it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.fixtures.store_v1 import write_v1
from tests.reliability._helpers import error_line, permission_bits_bite, run_cli

import layerscope
from layerscope.errors import StoreError
from layerscope.store import LayerInfo, StepRecord, Store
from layerscope.store.check import check_store


def _good(p: Path, n_layers: int = 4, steps: int = 20) -> Path:
    with Store(p) as st:
        st.create_run(
            "r", [LayerInfo(i + 1, f"h.{i}") for i in range(n_layers)], config={"hist_edges": [0.0, 1.0]}
        )
        st.create_run("other", [LayerInfo(1, "x")])
        st.write_steps(
            "r",
            [
                StepRecord(
                    s,
                    {("rms", "output"): np.arange(n_layers) * s + 1.0, ("std", "mlp_act"): np.ones(n_layers)},
                    hists={"output": np.ones((n_layers, 3))},
                )
                for s in range(1, steps + 1)
            ],
        )
        st.write_step("other", StepRecord(1, {("rms", "output"): [1.0]}))
    return p


def _sid(p: Path, metric: str) -> int:
    with sqlite3.connect(p) as c:
        return c.execute("SELECT id FROM series WHERE metric=? AND run_id=1", (metric,)).fetchone()[0]


def _sql(p: Path, *stmts: str) -> None:
    c = sqlite3.connect(p)
    for s in stmts:
        c.execute(s)
    c.commit()
    c.close()


# name -> (damage it, what `runs --check` must say, what a read that meets it must say)
DAMAGE = {
    "config-not-json": (
        lambda p: _sql(p, "UPDATE runs SET config='{\"lr\": 0.1' WHERE name='r'"),
        "run 'r': config is not valid JSON",
        "config is not valid JSON",
    ),
    "config-not-object": (
        lambda p: _sql(p, "UPDATE runs SET config='[1, 2]' WHERE name='r'"),
        "run 'r': config is JSON list, not an object",
        "config is JSON list",
    ),
    "value-is-text": (
        lambda p: _sql(p, f"UPDATE series_rows SET vals='1.5' WHERE step=5 AND series_id={_sid(p, 'rms')}"),
        "run 'r': rms/output: the row at step 5 is not a BLOB",
        "the row of rms/output at step 5 is text",
    ),
    "value-is-a-number": (
        lambda p: _sql(p, f"UPDATE series_rows SET vals=2.5 WHERE step=6 AND series_id={_sid(p, 'rms')}"),
        "run 'r': rms/output: the row at step 6 is not a BLOB",
        "the row of rms/output at step 6 is a number",
    ),
    "short-row": (
        lambda p: _sql(
            p, f"UPDATE series_rows SET vals=substr(vals, 1, 12) WHERE step=7 AND series_id={_sid(p, 'rms')}"
        ),
        "run 'r': rms/output: the row at step 7 does not hold 32 bytes",
        "the row of rms/output at step 7 holds 12 bytes, not 32",
    ),
    "long-row": (
        lambda p: _sql(
            p,
            f"UPDATE series_rows SET vals=CAST(vals || vals AS BLOB) WHERE step=8 AND series_id={_sid(p, 'rms')}",
        ),
        "run 'r': rms/output: the row at step 8 does not hold 32 bytes",
        "holds 64 bytes, not 32",
    ),
    "layer-row-missing": (
        lambda p: _sql(p, "DELETE FROM layers WHERE run_id=1 AND layer=3"),
        "run 'r': 1 of 4 layers has no row in the layers table (first: layer 3)",
        "layer 3 of 4 has no row in the layers table",
    ),
}

# Damage that no read trips over (the rows that are there are good): only the check reports it.
QUIET_DAMAGE = {
    "step-not-whole": (
        lambda p: _sql(p, f"DELETE FROM series_rows WHERE step IN (4, 9) AND series_id={_sid(p, 'std')}"),
        "run 'r': std/mlp_act: no row at 2 of 20 recorded steps (first: step 4); the step is not whole",
    ),
    "rows-of-an-uncommitted-step": (
        lambda p: _sql(p, "DELETE FROM steps WHERE run_id=1 AND step=12"),
        "run 'r': rms/output: 1 row at steps that were never committed (first: step 12)",
    ),
    "histogram-bins": (
        lambda p: _sql(p, "UPDATE series SET inner=2, n_layers=6 WHERE kind='hist'"),
        "run 'r': histograms of site 'output': 6 values per step for a run of 4 layers",
    ),
}


def test_a_whole_store_checks_ok(tmp_path: Path) -> None:
    p = _good(tmp_path / "runs.db")
    assert check_store(p) == []
    r = run_cli("runs", p, "--check")
    assert (r.returncode, r.stdout.strip(), r.stderr.strip()) == (0, "ok", "")
    r = run_cli("runs", p, "--check", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"store": str(p), "ok": True, "problems": []}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_contents_are_one_store_error_naming_the_run(tmp_path: Path, kind: str) -> None:
    damage, check_says, read_says = DAMAGE[kind]
    p = _good(tmp_path / "runs.db")
    damage(p)
    lines = [pr.line() for pr in check_store(p)]
    assert any(ln.startswith(check_says) for ln in lines), lines
    r = run_cli("runs", p, "--check")
    assert r.returncode == 1 and any(ln.startswith(check_says) for ln in r.stdout.splitlines()), r.stdout
    assert all(ln.startswith("run 'r': ") for ln in r.stdout.splitlines()), r.stdout  # 'other' is fine
    doc = json.loads(run_cli("runs", p, "--check", "--format", "json").stdout)
    assert doc["ok"] is False and any(
        x["run"] == "r" and x["message"].startswith(check_says) for x in doc["problems"]
    )

    # Every read that meets the damage: one StoreError line naming the run, pointing at the check.
    with Store(p, readonly=True) as st:
        readers = {
            "load": lambda: st.load("r", "rms"),
            "run_info": lambda: st.run_info("r"),
            "run_config": lambda: st.run_config("r"),
            "iter_rows": lambda: list(st.iter_rows("r")),
            "load_hist": lambda: st.load_hist("r"),
        }
        tripped = []
        for name, read in readers.items():
            try:
                read()
            except StoreError as e:
                msg = str(e)
                assert msg.startswith("run 'r': ") and read_says in msg and "\n" not in msg, (name, msg)
                assert f"layerscope runs {p} --check" in msg, msg
                tripped.append(name)
        assert tripped, f"no read noticed {kind}"
        assert st.load("other", "rms").values.tolist() == [[1.0]]  # the other run reads as before
    for args in (
        ["runs", p],
        ["plot", p, "--run", "r", "-o", tmp_path / "x.png"],
        ["export", p, "-o", tmp_path / "x.csv"],
        ["report", p, "--run", "r", "--json", tmp_path / "x.json"],
        ["view", p, "--run", "r", "-o", tmp_path / "view"],
    ):
        r = run_cli(*args)
        if r.returncode:
            error_line(r, 1, "run 'r'", "the store may be damaged", "--check")


@pytest.mark.parametrize("kind", sorted(QUIET_DAMAGE))
def test_damage_no_read_trips_over_is_found_by_the_check(tmp_path: Path, kind: str) -> None:
    damage, check_says = QUIET_DAMAGE[kind]
    p = _good(tmp_path / "runs.db")
    damage(p)
    r = run_cli("runs", p, "--check")
    assert r.returncode == 1 and check_says in r.stdout.splitlines(), r.stdout


def test_several_problems_are_one_line_each(tmp_path: Path) -> None:
    p = _good(tmp_path / "runs.db")
    for kind in ("config-not-json", "short-row", "layer-row-missing"):
        DAMAGE[kind][0](p)
    QUIET_DAMAGE["step-not-whole"][0](p)
    r = run_cli("runs", p, "--check")
    lines = r.stdout.splitlines()
    assert r.returncode == 1 and len(lines) == 4, r.stdout
    assert {ln.split(":")[1].strip() for ln in lines} >= {
        "config is not valid JSON",
        "rms/output",
        "std/mlp_act",
    }


def test_a_store_sqlite_calls_malformed_fails_the_check(tmp_path: Path) -> None:
    p = _good(tmp_path / "runs.db", n_layers=64, steps=300)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    r = run_cli("runs", p, "--check")
    assert r.returncode == 1 and r.stdout.strip(), (r.stdout, r.stderr)
    assert "damaged" in r.stdout or "malformed" in r.stdout, r.stdout
    assert "unexpected" not in r.stdout + r.stderr


def test_a_hostile_run_name_stays_on_one_line(tmp_path: Path) -> None:
    p = tmp_path / "runs.db"
    with Store(p) as st:
        st.create_run("evil\nerror: forged", [LayerInfo(1, "x")])
    _sql(p, "UPDATE runs SET config='nope'")
    r = run_cli("runs", p, "--check")
    assert r.returncode == 1 and r.stdout.splitlines() == [
        "run 'evil\\nerror: forged': config is not valid JSON"
    ]


def test_a_damaged_schema_1_store_is_reported_by_the_check(tmp_path: Path) -> None:
    p = write_v1(tmp_path / "runs.db", {"r": (["h.0", "h.1"], {10: {("rms", "output"): [1.0, 2.0]}})})
    _sql(p, "UPDATE metric_values SET value='oops' WHERE layer=2")
    r = run_cli("runs", p, "--check")
    assert r.returncode == 1 and "run 'r'" in r.stdout and "'oops', not a number" in r.stdout, r.stdout


# -- interrupted writers: hot rollback journals ------------------------------------------------------
_KILLED_WRITER = r"""
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE")       # rollback mode (as on a file system without WAL)
c.execute("PRAGMA cache_size=5")              # spill early: the file is half-written when killed
c.execute("BEGIN IMMEDIATE")
sid = c.execute("SELECT id FROM series LIMIT 1").fetchone()[0]
for s in range(10_000, 14_000):
    c.execute("INSERT INTO series_rows(series_id, step, vals) VALUES (?, ?, zeroblob(800))", (sid, s))
print("ready", flush=True)
time.sleep(60)
"""


def _hot(p: Path) -> Path:
    """``p`` with a writer killed mid-transaction in rollback mode: a hot journal beside it."""
    _good(p)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()
    journal = Path(f"{p}-journal")
    assert journal.exists() and journal.stat().st_size > 0, "no hot journal was left"
    return p


def test_a_reader_rolls_back_a_hot_journal_when_it_may(tmp_path: Path) -> None:
    p = _hot(tmp_path / "runs.db")
    r = run_cli("runs", p, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert {x["run"]: x["steps"] for x in json.loads(r.stdout)} == {"r": 20, "other": 1}
    assert not Path(f"{p}-journal").exists()
    assert check_store(p) == []
    assert layerscope.load(p, run="r", metric="rms").steps == list(range(1, 21))  # nothing committed lost


def test_a_reader_that_may_not_repair_says_a_writer_was_interrupted(tmp_path: Path) -> None:
    pre = permission_bits_bite()
    folder = tmp_path / "shared"
    folder.mkdir()
    p = _hot(folder / "runs.db")
    os.chmod(folder, 0o555)
    try:
        for args in (
            ["runs", p],
            ["plot", p, "--run", "r", "-o", tmp_path / "x.png"],
            ["runs", p, "--check"],
        ):
            r = run_cli(*args, preexec_fn=pre)
            text = r.stderr if args[-1] != "--check" else r.stdout
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            line = text.strip()
            assert "\n" not in line and "previous writer was interrupted" in line, line
            assert "next process that opens it for writing" in line and "not read-only" in line, line
            assert "unexpected" not in line
        assert not (tmp_path / "x.png").exists()
    finally:
        os.chmod(folder, 0o755)
    assert Path(f"{p}-journal").exists()  # nothing was touched
    with Store(p) as st:  # the next writer repairs it
        assert st.steps("r") == list(range(1, 21))
        st.write_step(
            "r",
            StepRecord(
                21,
                {("rms", "output"): np.ones(4), ("std", "mlp_act"): np.ones(4)},
                {"output": np.ones((4, 3))},
            ),
        )
    assert not Path(f"{p}-journal").exists() and check_store(p) == []


_CREATE = r"""
import sys
from layerscope.store import LayerInfo, StepRecord, Store
print("go", flush=True)
with Store(sys.argv[1]) as st:
    st.create_run("r", [LayerInfo(i + 1, f"h.{i}") for i in range(8)])
    for s in range(1, 1000):
        st.write_step("r", StepRecord(s, {("rms", "output"): [float(s)] * 8}))
"""


def test_kill_during_creation_or_writing_never_reads_as_read_only(tmp_path: Path) -> None:
    """SIGKILL a process that creates a store and writes into it, at random moments (the first ones
    fall in the creation); a reader afterwards reads what was committed, or says the store is empty
    (or holds no run yet), and the next writer continues it, whole."""
    rng = random.Random(20240611)
    for trial in range(12):
        p = tmp_path / f"t{trial}.db"
        proc = subprocess.Popen([sys.executable, "-c", _CREATE, str(p)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0.0, 0.25) if trial % 2 else rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = run_cli("runs", p, "--format", "json")
        if r.returncode and p.exists():
            line = error_line(r, 1)
            assert "read-only" not in line or "interrupted" in line, line
            assert "is empty" in line or "interrupted" in line, line
        with Store(p) as st:  # the next writer: repairs, continues
            if "r" not in st.run_names():
                st.create_run("r", [LayerInfo(i + 1, f"h.{i}") for i in range(8)])
            done = st.steps("r")
            assert done == list(range(1, len(done) + 1)), done
            st.write_step("r", StepRecord(len(done) + 1, {("rms", "output"): [1.0] * 8}))
        assert check_store(p) == [], trial


def test_a_row_stored_in_parts_that_lost_one_is_damage(tmp_path: Path) -> None:
    p = tmp_path / "runs.db"
    with Store(p) as st:
        st.create_run("r", [LayerInfo(i + 1, f"h.{i}") for i in range(3)])
        st.write_steps("r", [StepRecord(s, {("ml", "attn"): np.ones((3, 100))}) for s in range(1, 6)])
    _sql(p, "DELETE FROM series_rows WHERE step=3 AND part=1")
    r = run_cli("runs", p, "--check")
    assert (
        r.returncode == 1
        and "run 'r': ml/attn: the row at step 3 lacks some of its 2 parts (1 such row)" in r.stdout
    )
    with pytest.raises(StoreError, match=r"run 'r': the row of ml/attn at step 3 lacks part 1 of 2"):
        layerscope.load(p, metric="ml", site="attn", reduce="max")


# -- odd CSVs: values at the ends of float64 on a log scale ------------------------------------------
@pytest.mark.parametrize(
    "cells",
    [
        ["1.0", "inf", "3", "1e308", "2", "3"],  # the case: inf and 1e308
        ["1e-300", "1e300", "3", "2", "2", "3"],  # 600 decades
        ["5e-324", "1e308", "3", "2", "-inf", "nan"],  # a subnormal, 1e308, -inf and NaN cells
    ],
)
@pytest.mark.parametrize("out", ["heat.png", "heat.svg", "heat.html", "lines.png"])
def test_plot_log_of_a_csv_at_the_ends_of_float64_draws(tmp_path: Path, cells: list[str], out: str) -> None:
    src = tmp_path / "values.csv"
    src.write_text(f"step,1,2,3\n10,{','.join(cells[:3])}\n20,{','.join(cells[3:])}\n")
    kind = ["--kind", "lines"] if out.startswith("lines") else []
    r = run_cli("plot", src, "--log", *kind, "-o", tmp_path / out)
    assert r.returncode == 0 and "unexpected" not in r.stderr, r.stderr[-2000:]
    assert (tmp_path / out).stat().st_size > 1000
