"""Stores that cannot be used as asked: a file that is not SQLite, someone else's SQLite database,
a store of a newer schema, a damaged store, a file we may not read, a read-only file or folder, a
full disk. Each gets one clear error, and what is on disk is left exactly as it was.

Permission bits do not stop root (CI runs as root), so the tests that need them run the command in
a child that has dropped CAP_DAC_OVERRIDE (see ``_helpers.permission_bits_bite``); they are real
permission errors from the kernel, not mocks. The full disk is simulated two ways: SQLite's
``max_page_count`` (SQLite then fails exactly as on a full disk, SQLITE_FULL), and RLIMIT_FSIZE for
the files the CLI writes (the kernel refuses the write with EFBIG, as it would with ENOSPC).
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.reliability._helpers import (
    assert_whole,
    error_line,
    make_store,
    permission_bits_bite,
    run_cli,
    sha,
)

import layerscope
from layerscope.cli.main import COMMANDS
from layerscope.errors import StoreError
from layerscope.store import SCHEMA_VERSION, LayerInfo, StepRecord, Store


# -- files that are not (our) stores ---------------------------------------------------------------
def _not_sqlite(p: Path) -> None:
    p.write_text("step,1,2\n10,0.5,0.7\n")


def _foreign_sqlite(p: Path) -> None:
    con = sqlite3.connect(p)  # someone else's database, in rollback-journal mode
    con.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO patients VALUES (1, 'x')")
    con.commit()
    con.close()


def _set_version(p: Path, version: str) -> None:
    make_store(p)
    con = sqlite3.connect(p)
    con.execute("PRAGMA journal_mode=DELETE")  # as a newer layerscope might leave it
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    con.commit()
    con.close()


BAD_FILES = {
    "not-sqlite": (_not_sqlite, "not a layerscope store"),
    "foreign-sqlite": (_foreign_sqlite, "not a layerscope store"),
    "newer-schema": (lambda p: _set_version(p, str(SCHEMA_VERSION + 1)), "upgrade layerscope"),
    "garbled-schema-version": (lambda p: _set_version(p, "v2-beta"), "not written by layerscope"),
}


def _leftovers(p: Path) -> list[str]:
    return sorted(x.name for x in p.parent.iterdir() if x.name != p.name)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_is_refused_untouched_by_every_opener(tmp_path: Path, kind: str) -> None:
    make, needle = BAD_FILES[kind]
    p = tmp_path / "runs.db"
    make(p)
    before, files = sha(p), _leftovers(p)

    for opener in (lambda: Store(p), lambda: Store(p, readonly=True), lambda: layerscope.load(p)):
        with pytest.raises(StoreError, match=needle) as e:
            opener()
        assert "\n" not in str(e.value)
    from layerscope.testing import tiny_gpt

    with pytest.raises(StoreError, match=needle):
        layerscope.Recorder(tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8), p, run="r")
    error_line(run_cli("runs", p), 1, needle)
    error_line(run_cli("export", p, "-o", tmp_path / "out.csv"), 1, needle)

    assert sha(p) == before, "a refused file was changed"
    assert _leftovers(p) == files, "opening a refused file left files next to it"


def test_damaged_store_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    p = make_store(tmp_path / "runs.db", n_layers=64, steps=range(1, 101), metrics=("rms", "mean", "std"))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])  # a copy that stopped a third of the way
    for args in (["runs", p], ["plot", p, "-o", tmp_path / "x.png"], ["export", p, "-o", tmp_path / "x.csv"]):
        error_line(run_cli(*args), 1, "damaged")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()


def test_store_path_with_uri_characters_is_read(tmp_path: Path) -> None:
    # '?', '#' and '%' mean something in an SQLite URI (read-only opens use one): they must be quoted.
    folder = tmp_path / "exp #3?lr=1e-3 100%"
    folder.mkdir()
    p = make_store(folder / "runs.db")
    assert layerscope.load(p, metric="rms").shape == (3, 3)
    r = run_cli("runs", p, "--format", "json")
    assert r.returncode == 0, r.stderr


# -- permissions -----------------------------------------------------------------------------------
# What a Recorder does first (open the store, create its run), in a child whose permission bits bite.
_OPEN = """
import sys
from layerscope.cli.main import COMMANDS
from layerscope.errors import StoreError
from layerscope.store import LayerInfo, Store
try:
    if sys.argv[2] == "write":
        Store(sys.argv[1]).create_run("new", [LayerInfo(1, "h.0")])
    else:
        Store(sys.argv[1], readonly=True).run_names()
except StoreError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
"""


def _open(p: Path, how: str, pre: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _OPEN, str(p), how],
        capture_output=True,
        text=True,
        preexec_fn=pre,
        timeout=120,
    )  # type: ignore[arg-type]


def test_unreadable_store_says_so_not_that_it_is_no_store(tmp_path: Path) -> None:
    pre = permission_bits_bite()
    p = make_store(tmp_path / "runs.db")
    os.chmod(p, 0)
    try:
        r = _open(p, "read", pre)
        assert r.returncode == 3 and "cannot be read (Permission denied)" in r.stderr, r.stderr[-2000:]
        error_line(run_cli("runs", p, preexec_fn=pre), 2, "not readable")
    finally:
        os.chmod(p, 0o644)


def test_read_only_store_file_reads_and_refuses_writes_untouched(tmp_path: Path) -> None:
    pre = permission_bits_bite()
    p = make_store(tmp_path / "runs.db")
    os.chmod(p, 0o444)
    before = sha(p)
    try:
        r = run_cli("runs", p, "--format", "json", preexec_fn=pre)
        assert r.returncode == 0 and '"run": "a"' in r.stdout, r.stderr
        r = run_cli("export", p, "-o", tmp_path / "a.csv", preexec_fn=pre)
        assert r.returncode == 0, r.stderr
        r = _open(p, "write", pre)
        assert r.returncode == 3, r.stderr[-2000:]  # refused when the Recorder is made, before any training
        assert "read-only" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert sha(p) == before
    finally:
        os.chmod(p, 0o644)
    assert assert_whole(p) == {"a": [10, 20, 30]}


def test_store_in_read_only_folder_reads_and_refuses_writes(tmp_path: Path) -> None:
    pre = permission_bits_bite()
    folder = tmp_path / "shared"
    folder.mkdir()
    p = make_store(folder / "runs.db")
    assert not Path(f"{p}-wal").exists()  # closed cleanly: all in the main file
    before = sha(p)
    os.chmod(folder, 0o555)
    try:
        # SQLite cannot create the -shm file a WAL reader needs here; the store must still read.
        r = run_cli("runs", p, "--format", "json", preexec_fn=pre)
        assert r.returncode == 0 and '"steps": 3' in r.stdout, r.stderr
        r = run_cli("plot", p, "-o", tmp_path / "a.png", preexec_fn=pre)
        assert r.returncode == 0, r.stderr
        r = _open(p, "write", pre)
        assert r.returncode == 3 and "read-only" in r.stderr, r.stderr[-2000:]
        assert sorted(x.name for x in folder.iterdir()) == ["runs.db"]
    finally:
        os.chmod(folder, 0o755)
    assert sha(p) == before


# -- full disk -------------------------------------------------------------------------------------
def _step(s: int, n_layers: int = 32) -> StepRecord:
    return StepRecord(
        s,
        {
            (m, "output"): np.full(n_layers, s + k, dtype=float)
            for k, m in enumerate(("rms", "mean", "std", "max_abs"))
        },
    )


def test_full_disk_keeps_committed_steps_and_resumes_when_space_is_back(tmp_path: Path) -> None:
    p = tmp_path / "runs.db"
    st = Store(p)
    st.create_run("a", [LayerInfo(i + 1, f"h.{i}") for i in range(32)])
    st.write_steps("a", [_step(s) for s in range(1, 6)])
    (pages,) = st.conn.execute("PRAGMA page_count").fetchone()
    st.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
    with pytest.raises(StoreError) as e:
        st.write_steps("a", [_step(s) for s in range(6, 200)])
    msg = str(e.value)
    assert "\n" not in msg and "disk is full" in msg and "free space" in msg, msg
    assert "writing step" in msg and "'a'" in msg, msg
    committed = assert_whole(p, scalar_metrics=4)["a"]
    assert committed[:5] == [1, 2, 3, 4, 5] and committed == list(range(1, len(committed) + 1))

    st.conn.execute("PRAGMA max_page_count=1073741823")  # space freed
    st.write_steps("a", [_step(s) for s in range(len(committed) + 1, 200)])
    st.close()
    assert assert_whole(p, scalar_metrics=4)["a"] == list(range(1, 200))


def test_recorder_keeps_steps_a_full_disk_refused_and_writes_them_later(tmp_path: Path, tiny_model) -> None:
    import torch

    p = tmp_path / "runs.db"
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    rec = layerscope.Recorder(tiny_model, p, run="r", flush_every=4, flush_secs=3600, start_step=1)

    def train(step: int) -> None:
        tiny_model(x, x)[1].backward()
        rec.step(step)

    for s in range(1, 5):
        train(s)  # flushed at 4
    st = rec.store
    assert st is not None
    (pages,) = st.conn.execute("PRAGMA page_count").fetchone()
    st.conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StoreError, match="disk is full"):
        for s in range(5, 200):
            train(s)
    failed_at = s
    st.conn.execute("PRAGMA max_page_count=1073741823")
    rec.close()  # space is back: what the failed flush held is written now
    assert layerscope.load(p, metric="rms").steps == list(range(1, failed_at + 1))


def _fsize_limit(n: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))  # Python ignores SIGXFSZ: writes fail with EFBIG

    return pre


@pytest.mark.parametrize("command", ["export", "plot", "report", "view"])
def test_cli_output_on_a_full_disk_fails_cleanly_and_keeps_the_old_file(tmp_path: Path, command: str) -> None:
    assert command in COMMANDS, f"`layerscope {command}` is not registered"
    src = tmp_path / "wide.csv"
    rng = np.random.default_rng(0)
    with open(src, "w") as f:  # a CSV source: reading it needs no -shm file under the size limit
        f.write("step," + ",".join(str(i) for i in range(1, 101)) + "\n")
        for s in range(1, 31):
            f.write(f"{s * 100}," + ",".join(f"{v:.6f}" for v in rng.lognormal(size=100)) + "\n")
    store = make_store(tmp_path / "runs.db", n_layers=64, steps=range(1, 301), metrics=("rms", "mean"))
    out = (
        tmp_path
        / {"export": "out.csv", "plot": "out.png", "report": "out.json", "view": "view/index.html"}[command]
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text("the previous result\n")
    args = {
        "export": ["export", store, "-o", out],
        "plot": ["plot", src, "-o", out],
        "report": ["report", src, "--json", out],
        "view": ["view", src, "-o", out.parent],
    }[command]
    # Room for the store's 32 KiB -shm file (export reads a store), not for the result.
    r = run_cli(*args, preexec_fn=_fsize_limit(40_000 if command == "export" else 8_000))
    # names the file it could not write (view writes its shared plotly.js first, then index.html)
    line = error_line(r, 1, "plotly-" if command == "view" else out.name)
    assert "too large" in line.lower() or "space" in line.lower(), line
    assert out.read_text() == "the previous result\n", "a failed write replaced the old file"
    left = [
        x.name
        for x in out.parent.iterdir()
        if x.name not in ("wide.csv", out.name)
        and not x.name.startswith("runs.db")
        and x != out.parent / "view"
    ]
    assert left == [], f"a failed write left a temporary file behind: {left}"
