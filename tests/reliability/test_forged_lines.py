"""Names come from users and from files: a checkpoint named ``step_1.pt\\nerror: all good`` must
not forge a line of its own, and a run named with an ESC sequence must not recolour the terminal.
Every message escapes control characters (as ``repr`` does), so each message is one physical line
with nothing raw in it: newline, CR, tab, NUL, ESC, Unicode line separators, bidi controls.
(Paths and option values of every command are in test_cli_input.py's matrix.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.reliability._helpers import error_line, make_store, run_cli

import layerscope
from layerscope.errors import LayerscopeError, NotFoundError, escape_controls, quote
from layerscope.store import Store
from layerscope.testing import tiny_gpt

HOSTILE = {
    "newline": "a\nerror: forged",
    "cr": "a\rerror: forged",
    "tab": "a\tb",
    "nul": "a\x00b",
    "esc": "a\x1b[2J\x1b[31mred",
    "bidi": "a\u202etxt.exe",
    "line-separator": "a\u2028b",
    "surrogate": "a\udcffb",  # an undecodable byte in a file name, as os.fsdecode gives it
}
FILE_SAFE = {k: v for k, v in HOSTILE.items() if k != "nul"}  # a file name cannot hold NUL
STORABLE = {k: v for k, v in HOSTILE.items() if k != "surrogate"}  # SQLite text is UTF-8


def _clean(text: str) -> None:
    """Every line of ``text`` is printable: nothing raw that a terminal would act on."""
    for ln in text.splitlines():
        assert ln.isprintable(), repr(ln)
    assert "\r" not in text and "\x1b" not in text and "\x00" not in text


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_escape_controls_leaves_one_printable_line(kind: str) -> None:
    s = HOSTILE[kind]
    out = escape_controls(f"error: {s}")
    assert out.isprintable() and "\n" not in out
    assert quote(s) == repr(s)  # names are shown as repr shows them


def test_checkpoint_names_in_a_sweep(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    good = tiny_gpt().state_dict()
    torch.save(good, ck / "step_100.pt")
    for i, name in enumerate(FILE_SAFE.values()):
        try:
            (ck / f"step_{200 + i}_{name}.pt").write_bytes(b"not a checkpoint")  # each one a problem line
        except (OSError, UnicodeEncodeError):
            pass  # a file system that refuses the name
    torch.save(good, ck / f"step_900_{HOSTILE['esc']}.pt")  # a good one: named in the summary
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    r = run_cli(
        "sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt",
        "--store", tmp_path / "runs.db", "--run", "s", timeout=300,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    _clean(r.stdout)
    _clean(r.stderr)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == len(list(ck.glob("step_2*"))), r.stderr
    assert not any(ln.startswith("error: forged") for ln in (r.stdout + r.stderr).splitlines())
    assert "\\n" in r.stderr and "\\x1b" in r.stderr  # escaped, so still readable
    with Store(tmp_path / "runs.db", readonly=True) as st:
        assert st.steps("s") == [100, 900]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(
        tmp_path_factory.mktemp("names") / "runs.db",
        runs=tuple(STORABLE.values()),
        metrics=("rms", HOSTILE["esc"]),
        layer_names=[HOSTILE["newline"], HOSTILE["bidi"], HOSTILE["nul"]],
    )


@pytest.mark.parametrize(
    "args",
    [
        ["plot", "{db}", "-o", "{tmp}/x.png"],  # several runs: the message lists them all
        ["plot", "{db}", "--run", "nope", "-o", "{tmp}/x.png"],
        ["report", "{db}", "--run", HOSTILE["newline"], "--metric", "nope"],  # lists the metrics
        ["report", "{db}", "--run", HOSTILE["cr"], "--site", HOSTILE["esc"]],
        ["export", "{db}", "--run", HOSTILE["bidi"] + "x", "-o", "{tmp}/x.csv"],
        ["compare", "{db}", "--run", HOSTILE["tab"], "--run", HOSTILE["tab"]],  # given twice
        ["view", "{db}", "-o", "{tmp}/v"],  # several runs
    ],
    ids=["plot-runs", "plot-unknown", "report-metric", "report-site", "export", "compare", "view"],
)
def test_run_metric_site_names_from_a_store(hostile_store: Path, tmp_path: Path, args: list[str]) -> None:
    r = run_cli(*[a.format(db=hostile_store, tmp=tmp_path) for a in args])
    line = error_line(r, 2)
    assert line.isprintable(), repr(line)


def test_runs_table_and_report_of_hostile_names(hostile_store: Path, tmp_path: Path) -> None:
    r = run_cli("runs", hostile_store)
    assert r.returncode == 0, r.stderr
    _clean(r.stdout)
    for name in STORABLE.values():  # one row each, the name escaped
        assert escape_controls(name)[:6] in r.stdout
    for run in (HOSTILE["newline"], HOSTILE["esc"]):
        r = run_cli("report", hostile_store, "--run", run, "-o", tmp_path / "r.md")
        assert r.returncode == 0, r.stderr
        _clean(r.stdout + r.stderr)


@pytest.mark.parametrize("kind", list(FILE_SAFE))
def test_file_names_of_inputs(tmp_path: Path, kind: str) -> None:
    name = f"values {FILE_SAFE[kind]}.csv"
    try:
        (tmp_path / name).write_text("")  # empty: "is empty", naming the file
    except (OSError, UnicodeEncodeError):
        pytest.fail(f"the file system refused {name!r}")
    for cmd in (["report", tmp_path / name], ["plot", tmp_path / name, "-o", tmp_path / "x.png"]):
        line = error_line(run_cli(*cmd), 1, "is empty")
        assert line.isprintable(), repr(line)


def test_python_errors_are_one_line_too(hostile_store: Path) -> None:
    for run in STORABLE.values():
        with pytest.raises(LayerscopeError) as e:
            layerscope.load(hostile_store, run=run, metric="nope")
        assert str(e.value).isprintable(), repr(str(e.value))
    with pytest.raises(NotFoundError) as e:
        layerscope.load(hostile_store)  # lists every hostile run name
    assert str(e.value).isprintable() and e.value.choices == list(STORABLE.values())


def test_a_name_that_is_not_utf8_is_one_line(hostile_store: Path, tmp_path: Path) -> None:
    # The shell passes bytes; Python shows \xff as a lone surrogate, which SQLite cannot look up.
    for cmd in (
        ["plot", hostile_store, "--run", HOSTILE["surrogate"], "-o", tmp_path / "x.png"],
        ["export", hostile_store, "--run", HOSTILE["surrogate"], "-o", tmp_path / "x.csv"],
    ):
        line = error_line(run_cli(*cmd), 2, "not UTF-8")
        assert line.isprintable(), repr(line)
