"""Messages that used to mislead: a hint pointing at an SQLite message that is not there; click's
"Aborted." (exit 1) for Ctrl-C during a sweep; integer weights converted into a float model
without a word; a step of 2^63 - 1 in a file name called "no step in its name". And the
structured fields every error carries: the library speaks Python (``run='a'``), the CLI flags.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.reliability._helpers import assert_whole, error_line, make_store, run_cli

import layerscope
from layerscope.errors import CheckpointWarning, ConfigError, LayerscopeError, NotFoundError
from layerscope.store import Store
from layerscope.store.csvio import read_csv
from layerscope.testing import tiny_gpt

SRC = Path(layerscope.__file__).resolve().parent
INTERRUPTED = "Interrupted; everything flushed so far is kept."


# -- "see the SQLite message above" -----------------------------------------------------------------
def test_no_message_points_at_a_message_that_is_not_there() -> None:
    from layerscope.store.txn import translate as _translate

    for err in ("no such table: steps", 'near "x": syntax error', "constraint failed", "weird"):
        msg = str(_translate(sqlite3.OperationalError(err), Path("runs.db"), "reading"))
        assert err.split(":")[0] in msg and "above" not in msg and msg.endswith(".") and "\n" not in msg
    hits = [p for p in SRC.rglob("*.py") if "message above" in p.read_text(encoding="utf-8")]
    assert not hits, hits


# -- Ctrl-C ------------------------------------------------------------------------------------------
SLOW_FACTORY = """
import time
from layerscope.testing import tiny_gpt


def build():
    m = tiny_gpt()
    inner = m.forward

    def slow(*a, **k):
        time.sleep(0.4)  # a big model: time for Ctrl-C to land mid-sweep
        return inner(*a, **k)

    m.forward = slow
    return m
"""


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, as in a terminal. A test runner started in
    the background by a non-interactive shell ignores SIGINT, the child would inherit that, and
    Python then installs no KeyboardInterrupt handler (the interrupt would be lost, not tested)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(
    proc: subprocess.Popen[str], db: Path, n_steps: int, deadline: float = 180, group: bool = False
) -> None:
    """SIGINT to ``proc`` (``group``: to its process group, as a terminal's Ctrl-C) once ``db`` holds
    ``n_steps`` committed steps."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ended before it was interrupted: {proc.communicate()}")
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                if c.execute("SELECT count(*) FROM steps").fetchone()[0] >= n_steps:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_during_a_sweep_says_what_is_kept_and_exits_130(tmp_path: Path, workers: int) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    sd = tiny_gpt().state_dict()
    for s in range(1, 21):
        torch.save(sd, ck / f"step_{s}.pt")
    (tmp_path / "slow.py").write_text(SLOW_FACTORY)
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    db = tmp_path / "runs.db"
    args = ["sweep", ck, "--model", f"{tmp_path / 'slow.py'}:build", "--probe", tmp_path / "probe.pt"]
    args += ["--store", db, "--run", "s", "--workers", str(workers)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("LAYERSCOPE_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: Ctrl-C reaches it and its workers, as in a terminal
        preexec_fn=_default_sigint,
    )
    try:
        _interrupt_when(proc, db, 2, group=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("sweep ")]
    assert lines[-1] == INTERRUPTED, err[-2000:]
    assert "Aborted" not in err and "Traceback" not in err, err[-3000:]
    done = assert_whole(db)["s"]
    assert 2 <= len(done) < 20
    # Nothing lost: the next sweep skips what was kept and does the rest.
    fast = ["sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt"]
    r = run_cli(*fast, "--store", db, "--run", "s", "--resume", timeout=300)
    assert r.returncode == 0 and f"skipped {len(done)} steps" in r.stdout, r.stdout + r.stderr[-2000:]
    assert assert_whole(db)["s"] == list(range(1, 21))


def test_ctrl_c_during_the_demo_exits_130_and_keeps_what_was_flushed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerscope",
            "demo",
            "--out",
            str(tmp_path),
            "--steps",
            "100000",
            "--every",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    try:
        _interrupt_when(proc, tmp_path / "runs.db", 1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and INTERRUPTED in err and "Aborted" not in err, err[-2000:]
    assert "Traceback" not in err
    assert assert_whole(tmp_path / "runs.db")["demo"]


# -- integer weights -------------------------------------------------------------------------------
def test_integer_weights_are_used_with_a_warning(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    sd = tiny_gpt().state_dict()
    torch.save(sd, ck / "step_1.pt")
    torch.save({k: (v * 100).round().to(torch.int8) for k, v in sd.items()}, ck / "step_2.pt")  # quantized?
    torch.save({k: v.to(torch.float16) for k, v in sd.items()}, ck / "step_3.pt")  # a float cast: fine
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    args = ["sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt"]
    r = run_cli(*args, "--store", tmp_path / "runs.db", "--run", "s", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warned) == 1 and warned[0].startswith("warning: step_2.pt: ") and "integers" in warned[0]
    assert "int8" in warned[0] and "floating point" in warned[0]
    r = run_cli(*args, "--store", tmp_path / "runs2.db", "--run", "s", "--format", "json", timeout=300)
    res = json.loads(r.stdout)
    assert res["written"] == [1, 2, 3] and len(res["warnings"]) == 1 and "step_2.pt" in res["warnings"][0]


def test_integer_weights_warn_in_python_too() -> None:
    from layerscope.sweep.load import apply_state_dict

    m = tiny_gpt(n_layer=1, n_embd=16, n_head=2)
    sd = {k: v.to(torch.int64) for k, v in m.state_dict().items()}
    with pytest.warns(CheckpointWarning, match=r"ckpt: \d+ weights are integers"):
        apply_state_dict(m, sd, "ckpt")


# -- huge steps --------------------------------------------------------------------------------------
def test_the_largest_step_a_store_holds_is_a_step_and_larger_ones_are_said(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    sd = tiny_gpt().state_dict()
    top = 2**63 - 1
    names = {
        f"step_{top}.pt": top,
        f"iter_000{top}.pt": None,  # the same step, zero-padded: a duplicate of the one above
        f"step_{top + 1}.pt": "larger",
        f"step_{10**30}.pt": "larger",
        "step_5.pt": 5,
    }
    for n in names:
        torch.save(sd, ck / n)
    torch.save({"state_dict": sd, "global_step": 2**70}, ck / "last.ckpt")  # a step inside the file
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    db = tmp_path / "runs.db"
    args = ["sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt"]
    r = run_cli(*args, "--store", db, "--run", "s", timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert "no step in its name" not in r.stderr
    for n, want in names.items():
        if want == "larger":
            mine = [e for e in errors if e.startswith(f"error: {n}: ")]
            assert len(mine) == 1 and f"larger than {top}" in mine[0], (n, errors)
    assert any(e.startswith("error: last.ckpt: ") and str(2**70) in e for e in errors), errors
    dup = [e for e in errors if f"step {top} is also" in e]  # one file per step: one of the two
    assert len(dup) == 1, errors
    with Store(db, readonly=True) as st:
        assert st.steps("s") == [5, top]
    assert layerscope.load(db, metric="rms").steps == [5, top]
    r = run_cli("plot", db, "-o", tmp_path / "x.png")  # a store holding it is drawn as any other
    assert r.returncode == 0, r.stderr


# -- structured fields: Python wording in the library, flags in the CLI ------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("fields") / "runs.db", runs=("a", "b"))


@pytest.mark.parametrize(
    "kw,what,value,choices,python,cli",
    [
        ({}, "run", None, ["a", "b"], "choose one with run= (e.g. run='a')", "--run a"),
        ({"run": "zz"}, "run", "zz", ["a", "b"], "pass one of them, e.g. run='a'", "--run a"),
        ({"run": "a", "metric": "kurt"}, "metric", "kurt", ["mean", "rms"], "metric='mean'", "--metric mean"),
        ({"run": "a", "site": "mlp"}, "site", "mlp", ["output"], "pass site='output'", "--site output"),
    ],
    ids=["several-runs", "run", "metric", "site"],
)
def test_errors_carry_what_value_and_choices(
    two_runs: Path, kw: dict, what: str, value: str | None, choices: list[str], python: str, cli: str
) -> None:
    with pytest.raises(NotFoundError) as e:
        layerscope.load(two_runs, **kw)
    err = e.value
    assert (err.what, err.value, err.choices, err.param) == (what, value, choices, what)
    assert python in str(err) and "--" not in str(err)  # the Python API speaks Python
    assert cli in err.render(cli=True) and f"{what}=" not in err.render(cli=True)
    flag_args = [f"--{k}" if i % 2 == 0 else v for k, v in kw.items() for i in (0, 1)]
    line = error_line(run_cli("report", two_runs, *flag_args), 2)  # the CLI speaks flags
    assert cli in line and f"{what}=" not in line


def test_csv_selection_errors_carry_fields(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("step,layer,value,metric\n1,1,0.5,rms\n1,1,0.7,std\n")
    with pytest.raises(NotFoundError) as e:
        read_csv(p, metric="nope")
    assert e.value.choices == ["rms", "std"] and "metric='rms'" in str(e.value) and "--" not in str(e.value)
    line = error_line(run_cli("report", p, "--metric", "nope"), 2)
    assert "--metric rms" in line


def test_library_messages_do_not_tell_python_users_to_pass_flags() -> None:
    # The store, the CSV reader and the run policy word their fixes in Python; flags are the CLI's.
    flag = re.compile(r"""["'][^"'\n]*--(run|metric|site|store|resume)\b""")
    files = [
        SRC / "store" / "sqlite.py",
        SRC / "store" / "csvio.py",
        SRC / "recording.py",
        SRC / "sources.py",
    ]
    found = [(f.name, m.group(0)) for f in files for m in flag.finditer(f.read_text(encoding="utf-8"))]
    assert not found, found


def test_errors_stay_backward_compatible() -> None:
    e = ConfigError("bad value 'x'; pass 'y'.")
    assert str(e) == "bad value 'x'; pass 'y'." == e.render(cli=True) and e.exit_code == 2
    assert (e.what, e.value, e.choices, e.param) == (None, None, None, None)
    assert isinstance(e, ValueError) and isinstance(e, LayerscopeError)
