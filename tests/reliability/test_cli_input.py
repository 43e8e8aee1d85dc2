"""Bad input on the command line, for every command: one line on stderr naming the problem and
what to do, exit 2 for a usage error (a path, run, metric or site that is not there; a folder where
a file belongs) and 1 for a failure (a file whose contents are wrong), never a traceback unless
LAYERSCOPE_DEBUG=1. And the edge cases that are not errors (one layer, one step, 10,000 layers) work.

Most cases call the CLI's entry point in this process (the same ``main`` and error handler a user
runs, without paying an interpreter start per case); the "missing path" cases and the debug switch
run ``python -m layerscope`` as a subprocess, as a user does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tests.reliability._helpers import error_line, make_store, run_cli

from layerscope.cli.main import COMMANDS

# Every command layerscope has or is getting, and how each takes its paths. A command registered in
# COMMANDS but missing here fails test_every_command_is_in_the_matrix: add it when it lands.
SOURCE_CMDS = ("plot", "report", "view", "compare")  # a run store or a CSV
ALL_CMDS = (
    "demo",
    "runs",
    "plot",
    "export",
    "report",
    "layers",
    "compare",
    "view",
    "sweep",
    "serve",
    "coord-check",
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a one-run store, a two-run store, a probe and a folder holding one checkpoint."""
    import torch

    from layerscope.testing import tiny_gpt

    d = tmp_path_factory.mktemp("inputs")
    make_store(d / "one.db", runs=("a",))
    make_store(d / "two.db", runs=("a", "b"))
    torch.save(torch.randint(0, 256, (2, 16)), d / "probe.pt")
    (d / "ckpts").mkdir()
    torch.save(tiny_gpt().state_dict(), d / "ckpts" / "step_100.pt")
    return d


def argv(
    cmd: str, d: Path, out: Path, path: Path | None = None, role: str = "source", extra: tuple[str, ...] = ()
) -> list[str]:
    """The command line of ``cmd`` with ``path`` in the argument ``role``; the rest valid."""
    store = d / ("two.db" if cmd == "compare" else "one.db")
    src = path if role == "source" and path is not None else store
    if cmd == "runs":
        return ["runs", str(src), *extra]
    if cmd == "export":
        o = path if role == "output" else out / "out.csv"
        return ["export", str(src), "-o", str(o), *extra]
    if cmd == "plot":
        o = path if role == "output" else out / "out.png"
        return ["plot", str(src), "-o", str(o), *extra]
    if cmd == "report":
        if role == "output":
            return ["report", str(src), "-o", str(path), *extra]
        if role == "json":
            return ["report", str(src), "--json", str(path), *extra]
        return ["report", str(src), *extra]
    if cmd == "view":  # -o is a folder: index.html goes inside
        o = path if role == "output" else out / "bundle"
        return ["view", str(src), "-o", str(o), *extra]
    if cmd == "layers":  # a model, not data: the path is a Hugging Face config
        return ["layers", "--hf-config", str(path), *extra]
    if cmd == "compare":
        runs = ("--run", "a", "--run", "b") if "--run" not in extra else ()
        o = ("-o", str(path)) if role == "output" else ()
        return ["compare", str(src), *runs, *o, *extra]
    if cmd == "serve":
        return ["serve", str(src), "--port", "0", *extra]
    if cmd == "sweep":
        ck = path if role == "source" and path is not None else d / "ckpts"
        probe = path if role == "probe" else d / "probe.pt"
        st = path if role == "store" else out / "sweep.db"
        return [
            "sweep",
            str(ck),
            "--model",
            "layerscope.testing.model:tiny_gpt",
            "--probe",
            str(probe),
            "--store",
            str(st),
            "--run",
            "r",
            *extra,
        ]
    if cmd == "demo":
        return ["demo", "--out", str(path), *extra]
    if cmd == "coord-check":  # the path is the batch file; the widths tiny, so a valid line is quick
        batch = ("--batch", str(path)) if role == "batch" else ()
        st = path if role == "store" else out / "coord.db"
        return ["coord-check", "--model", "layerscope.testing:tiny_gpt_sp", "--widths", "16,32", "--steps", "1",
                "--seeds", "1", *batch, "--store", str(st), "-o", str(out / "coord"), *extra]  # fmt: skip
    raise AssertionError(f"no command line for {cmd!r}; add it to argv()")


def need(cmd: str) -> None:
    # A command that disappeared is a failure, not a skip (a regression must not pass as "skipped").
    assert cmd in COMMANDS, f"`layerscope {cmd}` is not registered in cli/main.py COMMANDS"


@pytest.mark.parametrize(
    "case",
    ["missing-batch", "folder-batch", "text-batch", "bad-widths", "one-width", "bad-optimizer", "bad-model",
     "folder-store", "not-a-store", "reread-missing"],
)  # fmt: skip
def test_coord_check_bad_input_is_one_line(case: str, inputs: Path, tmp_path: Path) -> None:
    need("coord-check")
    bad = tmp_path / "bad.pt"
    if case == "missing-batch":
        args = argv("coord-check", inputs, tmp_path, tmp_path / "nope.pt", role="batch")
    elif case == "folder-batch":
        args = argv("coord-check", inputs, tmp_path, inputs / "ckpts", role="batch")
    elif case == "text-batch":
        bad.write_text("not a tensor")
        args = argv("coord-check", inputs, tmp_path, bad, role="batch")
    elif case == "bad-widths":
        args = argv("coord-check", inputs, tmp_path, extra=("--widths", "64,x"))
    elif case == "one-width":
        args = argv("coord-check", inputs, tmp_path, extra=("--widths", "64"))
    elif case == "bad-optimizer":
        args = argv("coord-check", inputs, tmp_path, extra=("--optimizer", "lamb"))
    elif case == "bad-model":
        args = argv("coord-check", inputs, tmp_path, extra=("--model", "no_such_pkg.mod:f"))
    elif case == "folder-store":
        args = argv("coord-check", inputs, tmp_path, inputs / "ckpts", role="store")
    elif case == "not-a-store":
        bad.write_text("hello")
        args = argv("coord-check", inputs, tmp_path, bad, role="store")
    else:  # re-reading a store that holds no coord-check
        args = ["coord-check", "--store", str(inputs / "one.db"), "--run", "a", "-o", str(tmp_path / "o")]
    r = run_cli(*args, timeout=300)  # a repeated option: the last one counts (click)
    assert r.returncode in (1, 2), (r.returncode, r.stderr[-2000:])
    error_line(r, r.returncode)


def test_every_command_is_in_the_matrix() -> None:
    unknown = sorted(set(COMMANDS) - set(ALL_CMDS))
    assert not unknown, f"commands without bad-input cases: {unknown}; add them to ALL_CMDS and argv()"


# -- paths -----------------------------------------------------------------------------------------
PATH_CASES = [
    (c, "source") for c in ("runs", "export", "plot", "report", "view", "layers", "compare", "sweep")
] + [
    ("sweep", "probe"),
    ("serve", "source"),
    ("sweep", "store"),
]  # serve, sweep --store: the folder is missing


@pytest.mark.parametrize("cmd,role", PATH_CASES, ids=[f"{c}-{r}" for c, r in PATH_CASES])
def test_missing_path(inputs: Path, tmp_path: Path, cmd: str, role: str) -> None:
    need(cmd)
    # serve and sweep --store accept a store that does not exist yet, but not a folder that does not.
    missing = tmp_path / "no-such-folder" / ("runs.db" if role != "probe" else "probe.pt")
    r = run_cli(*argv(cmd, inputs, tmp_path, missing, role), timeout=60)
    error_line(r, 2, "does not exist")


FOLDER_CASES = [(c, "source") for c in ("runs", "export", "plot", "report", "view", "compare", "serve")] + [
    ("sweep", "probe"),
    ("sweep", "store"),
    ("plot", "output"),
    ("export", "output"),
    ("report", "output"),
    ("report", "json"),
    ("compare", "output"),
]


@pytest.mark.parametrize("cmd,role", FOLDER_CASES, ids=[f"{c}-{r}" for c, r in FOLDER_CASES])
def test_folder_where_a_file_is_expected(cli_main, inputs: Path, tmp_path: Path, cmd: str, role: str) -> None:
    need(cmd)
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    r = cli_main(*argv(cmd, inputs, tmp_path, folder, role))
    error_line(r, 2, "folder")  # type: ignore[arg-type]
    assert folder.is_dir() and not any(folder.iterdir()), "the folder was written into"


@pytest.mark.parametrize("cmd", ["plot", "export", "report", "compare"])
def test_output_in_a_missing_folder(cli_main, inputs: Path, tmp_path: Path, cmd: str) -> None:
    need(cmd)
    suffix = {"plot": "png", "export": "csv", "report": "md", "compare": "png"}[cmd]
    r = cli_main(*argv(cmd, inputs, tmp_path, tmp_path / "no-such-folder" / f"out.{suffix}", "output"))
    error_line(r, 2, "does not exist")  # type: ignore[arg-type]


def test_view_into_a_file(cli_main, inputs: Path, tmp_path: Path) -> None:
    need("view")
    f = tmp_path / "bundle"
    f.write_text("keep me")
    error_line(cli_main(*argv("view", inputs, tmp_path, f, "output")), 2, "is a file", "folder")  # type: ignore[arg-type]
    assert f.read_text() == "keep me"


def test_demo_out_is_a_file(cli_main, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    error_line(cli_main(*argv("demo", tmp_path, tmp_path, f)), 2, "is a file", "folder")  # type: ignore[arg-type]
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("cmd", ["runs", "plot", "report", "sweep", "serve"])
def test_debug_switch_shows_the_traceback(inputs: Path, tmp_path: Path, cmd: str) -> None:
    need(cmd)
    r = run_cli(
        *argv(cmd, inputs, tmp_path, tmp_path / "nope" / "x.db"), env={"LAYERSCOPE_DEBUG": "1"}, timeout=60
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "does not exist" in r.stderr


# -- CSV contents ----------------------------------------------------------------------------------
WIDE = "step,1,2,3\n"
TIDY = "step,layer,value\n"
BAD_CSVS = {
    # name: (text, exit code, words the line must hold)
    "empty": ("", 1, ["is empty"]),
    "blank-lines-only": ("\n\n  \n", 1, ["is empty"]),
    "header-only-wide": (WIDE, 1, ["no data rows"]),
    "header-only-tidy": (TIDY, 1, ["no data rows"]),
    "non-numeric-step-wide": (WIDE + "100,1,2,3\nten,1,2,3\n", 1, ["line 3", "'ten'", "not a whole number"]),
    "non-numeric-step-tidy": (TIDY + "1e400,1,0.5\n", 1, ["line 2", "'1e400'", "not a whole number"]),
    "negative-step-wide": (WIDE + "-5,1,2,3\n", 1, ["line 2", "'-5'", "negative"]),
    "negative-step-tidy": (TIDY + "10,1,0.5\n-10,1,0.5\n", 1, ["line 3", "'-10'", "negative"]),
    "duplicate-step-wide": (
        WIDE + "10,1,2,3\n20,1,2,3\n10,4,5,6\n",
        1,
        ["step 10", "twice", "lines 2 and 4"],
    ),
    "duplicate-cell-tidy": (TIDY + "10,1,0.5\n10,2,0.5\n10,1,0.7\n", 1, ["step 10, layer 1", "twice"]),
    "duplicate-layer-column": ("step,1,2,layer_1\n10,1,2,3\n", 1, ["layer 1", "two columns"]),
    "non-numeric-value": (WIDE + "10,1,abc,3\n", 1, ["'abc'", "not a number"]),
    "ragged-row": (WIDE + "10,1,2\n", 1, ["line 2", "cells"]),
    "unknown-shape": ("when,where,what\n1,2,3\n", 1, ["cannot tell the shape"]),
    "binary": ("\x00\x01PNG\x00", 1, ["NUL"]),
}


@pytest.mark.parametrize("cmd", SOURCE_CMDS)
@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv(cli_main, tmp_path: Path, cmd: str, case: str) -> None:
    need(cmd)
    text, code, needles = BAD_CSVS[case]
    src = tmp_path / "values.csv"
    src.write_text(text, encoding="utf-8")
    line = error_line(cli_main(*argv(cmd, tmp_path, tmp_path, src)), code, *needles)  # type: ignore[arg-type]
    assert "values.csv" in line  # the message names the file
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.html").exists()


def _write_wide(path: Path, n_steps: int, n_layers: int) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("step," + ",".join(str(i) for i in range(1, n_layers + 1)) + "\n")
        for s in range(n_steps):
            f.write(f"{(s + 1) * 1000}," + ",".join(f"{v:.5g}" for v in rng.lognormal(size=n_layers)) + "\n")
    return path


EDGE_SHAPES = {"one-layer": (5, 1), "one-step": (1, 5), "one-cell": (1, 1), "10000-layers": (4, 10_000)}


@pytest.mark.parametrize("cmd", SOURCE_CMDS)
@pytest.mark.parametrize("shape", list(EDGE_SHAPES))
def test_edge_shapes_from_csv_work(cli_main, tmp_path: Path, cmd: str, shape: str) -> None:
    need(cmd)
    n_steps, n_layers = EDGE_SHAPES[shape]
    src = _write_wide(tmp_path / "values.csv", n_steps, n_layers)
    r = cli_main(*argv(cmd, tmp_path, tmp_path, src))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    if cmd == "plot":
        assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
        assert f"{n_steps} steps x {n_layers} layers" in r.stdout


@pytest.mark.parametrize("shape", list(EDGE_SHAPES))
def test_edge_shapes_from_a_store_work(cli_main, tmp_path: Path, shape: str) -> None:
    n_steps, n_layers = EDGE_SHAPES[shape]
    store = make_store(
        tmp_path / "runs.db", runs=("a", "b"), n_layers=n_layers, steps=range(10, 10 * n_steps + 1, 10)
    )
    for cmd in ("runs", "plot", "report", "export", "view", "compare"):
        need(cmd)
        extra = ("--run", "a") if cmd in ("plot", "report", "view") else ()
        r = cli_main(*argv(cmd, tmp_path, tmp_path, store, extra=extra))
        assert r.returncode == 0, (cmd, r.stderr)
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * n_steps * n_layers * 2  # header + every cell of both runs and metrics


# -- runs, metrics and sites that are not there ----------------------------------------------------
TIDY_SELECT = (
    TIDY.strip()
    + ",metric,site,run\n"
    + "".join(
        f"{s},{layer},0.5,{m},output,{run}\n"
        for s in (10, 20)
        for layer in (1, 2)
        for m in ("rms", "std")
        for run in ("a", "b")
    )
)
UNKNOWN = {
    # name: (options, words the line must hold)
    "run": (["--run", "nope", "--metric", "rms"], ["run", "nope", "--run"]),
    "metric": (["--run", "a", "--metric", "nope"], ["metric", "nope", "rms"]),
    "site": (["--run", "a", "--metric", "rms", "--site", "nope"], ["site", "nope", "output"]),
}


@pytest.mark.parametrize("cmd", SOURCE_CMDS)
@pytest.mark.parametrize("what", list(UNKNOWN))
@pytest.mark.parametrize("kind", ["store", "csv"])
def test_unknown_run_metric_site(
    cli_main, inputs: Path, tmp_path: Path, cmd: str, what: str, kind: str
) -> None:
    need(cmd)
    opts, needles = UNKNOWN[what]
    if cmd == "compare":  # run B is the unknown one, or the metric/site of the pair
        opts = (
            ["--run", "a", "--run", "nope", *opts[2:]]
            if what == "run"
            else ["--run", "a", "--run", "b", *opts[2:]]
        )
    if kind == "store":
        src = inputs / "two.db"
    else:
        src = tmp_path / "values.csv"
        src.write_text(TIDY_SELECT)
    error_line(cli_main(*argv(cmd, inputs, tmp_path, src, extra=tuple(opts))), 2, *needles)  # type: ignore[arg-type]


def test_export_unknown_run(cli_main, inputs: Path, tmp_path: Path) -> None:
    error_line(cli_main(*argv("export", inputs, tmp_path, extra=("--run", "nope"))), 2, "run 'nope'")  # type: ignore[arg-type]
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "opt,needles", [(("--metrics", "rms,nope"), ["unknown metric 'nope'"]), (("--sites", "nope"), ["'nope'"])]
)
def test_sweep_unknown_metric_or_site(
    cli_main, inputs: Path, tmp_path: Path, opt: tuple[str, str], needles: list[str]
) -> None:
    need("sweep")
    r = cli_main(*argv("sweep", inputs, tmp_path, extra=opt))
    error_line(r, 2, *needles)  # type: ignore[arg-type]
    assert not (tmp_path / "sweep.db").exists() or "r" not in _runs(tmp_path / "sweep.db")


def _runs(p: Path) -> list[str]:
    from layerscope.store import Store

    with Store(p, readonly=True) as st:
        return st.run_names()


# -- option values ---------------------------------------------------------------------------------
OPTION_CASES = [
    ("demo", ["demo", "--steps", "-5"], ["--steps", "-5"]),
    ("demo", ["demo", "--every", "ten"], ["--every", "'ten'"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.png", "--dpi", "lots"], ["--dpi", "'lots'"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.png", "--heads", "top"], ["--heads", "'top'"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.png", "--heads", "1.5"], ["--heads", "'1.5'"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.png", "--heads"], ["--heads", "--step N"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.png", "--heads", "--step", "1,2"], ["one step"]),
    ("plot", ["plot", "{store}", "-o", "{tmp}/x.html", "--heads", "--step", "10"], ["static figure"]),
    (
        "sweep",
        [
            "sweep",
            "{tmp}",
            "--probe",
            "p.pt",
            "--store",
            "s.db",
            "--run",
            "r",
            "--watch",
            "--on-alert",
            "halt",
        ],
        ["--on-alert", "'halt'"],
    ),
    (
        "sweep",
        ["sweep", "{tmp}", "--probe", "p.pt", "--store", "s.db", "--run", "r", "--seq-len", "0"],
        ["--seq-len"],
    ),
    ("serve", ["serve", "{store}", "--port", "-1"], ["--port"]),
    ("runs", ["runs", "{store}", "--format", "yaml"], ["--format", "'yaml'"]),
    ("runs", ["runs", "{store}", "--no-such-option"], ["--no-such-option"]),
    ("report", ["report"], ["Missing argument"]),
]


@pytest.mark.parametrize(
    "cmd,args,needles", OPTION_CASES, ids=[" ".join(c[1][:1] + c[1][-2:]) for c in OPTION_CASES]
)
def test_bad_option_value_is_one_line(
    cli_main, inputs: Path, tmp_path: Path, cmd: str, args: list[str], needles: list[str]
) -> None:
    need(cmd)
    r = cli_main(*[a.format(store=inputs / "one.db", tmp=tmp_path) for a in args])
    line = error_line(r, 2, *needles)  # type: ignore[arg-type]
    assert f"layerscope {cmd} --help" in line  # where the usage is explained


def test_unknown_command_is_one_line(cli_main) -> None:
    error_line(cli_main("plott"), 2, "'plott'", "layerscope --help")  # type: ignore[arg-type]


# -- pipes, sockets and devices given as an input: refused in one line, never opened -----------------
def _special(path: Path, kind: str) -> Path:
    """A named pipe nobody writes (opening it blocks forever), a socket, or a link to /dev/zero (a
    character device whose reading never ends), at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        import socket

        cwd = os.getcwd()
        os.chdir(path.parent)  # AF_UNIX paths are limited to ~108 bytes: bind the short name
        try:
            s = socket.socket(socket.AF_UNIX)
            s.bind(path.name)
            s.close()
        finally:
            os.chdir(cwd)
    else:
        path.symlink_to("/dev/zero")
    return path


SPECIAL_CASES = [
    (c, "source") for c in ("runs", "export", "plot", "report", "view", "compare", "layers", "serve", "sweep")
] + [("sweep", "probe"), ("sweep", "store")]


@pytest.mark.timeout(120)  # a regression blocks on the pipe: fail, do not hang the suite
@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
@pytest.mark.parametrize("cmd,role", SPECIAL_CASES, ids=[f"{c}-{r}" for c, r in SPECIAL_CASES])
def test_pipe_socket_or_device_as_an_input(
    cli_main, inputs: Path, tmp_path: Path, cmd: str, role: str, kind: str
) -> None:
    need(cmd)
    name = {"probe": "probe.pt", "store": "sweep.db"}.get(
        role, "config.json" if cmd == "layers" else "in.csv"
    )
    if cmd in ("runs", "export", "compare", "serve"):
        name = "runs.db"
    path = _special(tmp_path / name, kind)
    r = cli_main(*argv(cmd, inputs, tmp_path, path, role))
    line = error_line(r, 2, "not a regular file")  # type: ignore[arg-type]
    assert {"fifo": "named pipe", "socket": "socket", "device": "character device"}[kind] in line


# -- an output that is an input: refused in one line, before anything is written -------------------
def _link(kind: str, target: Path, at: Path) -> Path:
    if kind == "symlink":
        at.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, at)
    return at


# (command, how the output relates to the input) -> the output path; every writing command.
_NOT_MADE = {  # combinations that cannot be written: -o of plot/compare/demo must be a figure name
    **{(c, k): "" for c in ("plot", "compare", "demo") for k in ("same", "wal", "shm")},
    ("view", "same"): "view -o is a folder",
    ("sweep", "wal"): "",
    ("sweep", "shm"): "",
}
OUT_IS_IN = [
    (c, k)
    for c in ("export", "report-o", "report-json", "plot", "compare", "view", "sweep", "demo")
    for k in ("same", "symlink", "hardlink", "wal", "shm")
    if (c, k) not in _NOT_MADE
] + [("sweep", "checkpoint"), ("sweep", "new-checkpoint")]


@pytest.mark.parametrize("cmd,kind", OUT_IS_IN, ids=[f"{c}-{k}" for c, k in OUT_IS_IN])
def test_output_that_is_an_input(cli_main, inputs: Path, tmp_path: Path, cmd: str, kind: str) -> None:
    import shutil

    from tests.reliability._helpers import sha

    need(cmd.split("-")[0])
    store = Path(shutil.copy(inputs / ("two.db" if cmd == "compare" else "one.db"), tmp_path / "in.db"))
    src = store
    suffix = {"export": ".csv", "report-o": ".md", "report-json": ".json", "plot": ".png", "compare": ".png"}
    if kind in ("same", "wal", "shm"):
        out = Path(f"{store}{'' if kind == 'same' else '-' + kind}")
    else:
        out = tmp_path / f"out{suffix.get(cmd, '.db')}"
    if cmd == "view":
        (tmp_path / "bundle").mkdir()
        out = tmp_path / "bundle" / "index.html"
        if kind in ("wal", "shm"):
            out.symlink_to(f"{store}-{kind}")
    if kind in ("symlink", "hardlink"):
        _link(kind, store, out)
    before = {p.name: sha(p) for p in tmp_path.iterdir() if p.is_file()}
    if cmd == "export":
        args = ["export", src, "-o", out]
    elif cmd == "report-o":
        args = ["report", src, "-o", out]
    elif cmd == "report-json":
        args = ["report", src, "--json", out]
    elif cmd == "plot":
        args = ["plot", src, "-o", out]
    elif cmd == "compare":
        args = ["compare", src, "--run", "a", "--run", "b", "-o", out]
    elif cmd == "view":
        args = ["view", src, "-o", out.parent]
    elif cmd == "demo":  # the figure or the report would land on the demo's own store
        d = tmp_path / "demo"
        d.mkdir()
        shutil.copy(store, d / "runs.db")
        _link("symlink" if kind == "symlink" else "hardlink", d / "runs.db", d / "heatmap.png")
        before = {"runs.db": sha(d / "runs.db")}
        args = ["demo", "--out", d, "--steps", "2", "--every", "1", "--layers", "1"]
    else:  # sweep: --store is its probe, or a checkpoint (there, or to be) of CKPT_DIR
        ck = Path(shutil.copytree(inputs / "ckpts", tmp_path / "ckpts"))
        probe = Path(shutil.copy(inputs / "probe.pt", tmp_path / "probe.pt"))
        make = {
            "same": lambda: probe,
            "symlink": lambda: _link("symlink", ck / "step_100.pt", tmp_path / "runs2.db"),  # a checkpoint
            "hardlink": lambda: _link("hardlink", probe, tmp_path / "runs2.db"),  # the probe
            "checkpoint": lambda: ck / "step_100.pt",
            "new-checkpoint": lambda: ck / "step_200.safetensors",  # the next sweep would read it
        }
        out = make[kind]()
        before = {p.name: sha(p) for p in (probe, *ck.iterdir())}
        args = ["sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", probe]
        args += ["--store", out, "--run", "r"]
    r = cli_main(*args)
    error_line(r, 2)  # type: ignore[arg-type]
    assert any(w in r.stderr for w in ("would destroy an input", "would read it as a checkpoint")), r.stderr
    if cmd == "demo":
        assert sha(tmp_path / "demo" / "runs.db") == before["runs.db"]
    elif cmd == "sweep":
        assert {p.name: sha(p) for p in (probe, *ck.iterdir())} == before
        assert not (tmp_path / "ckpts" / "step_200.safetensors").exists()
    else:
        after = {p.name: sha(p) for p in tmp_path.iterdir() if p.is_file()}
        assert after == before, "an input (or a file beside it) changed, or a file was left behind"


def test_the_same_file_given_as_two_outputs(cli_main, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    error_line(cli_main("report", inputs / "one.db", "-o", out, "--json", out), 2, "its own file")  # type: ignore[arg-type]
    assert not out.exists()


# -- names holding control characters: every message stays one physical line ------------------------
HOSTILE_NAMES = {
    "newline": "x\nerror: forged",
    "cr": "x\rerror: forged",
    "esc": "x\x1b[31mred",
    "tab": "x\ty",
    "bidi": "x\u202egpj.db",
    "line-separator": "x\u2028y",
}


@pytest.mark.parametrize("hostile", list(HOSTILE_NAMES))
@pytest.mark.parametrize("cmd,role", PATH_CASES, ids=[f"{c}-{r}" for c, r in PATH_CASES])
def test_control_characters_in_a_path_stay_escaped(
    cli_main, inputs: Path, tmp_path: Path, cmd: str, role: str, hostile: str
) -> None:
    need(cmd)
    missing = tmp_path / f"no {HOSTILE_NAMES[hostile]} here" / ("probe.pt" if role == "probe" else "runs.db")
    r = cli_main(*argv(cmd, inputs, tmp_path, missing, role))
    line = error_line(r, 2, "does not exist")  # type: ignore[arg-type]
    assert line.isprintable(), repr(line)  # no raw newline, CR, ESC, tab or bidi control: one line


HOSTILE_OPTIONS = [
    ("plot", ["--run", HOSTILE_NAMES["newline"]], "run"),
    ("report", ["--run", "a", "--metric", HOSTILE_NAMES["esc"]], "metric"),
    ("view", ["--run", "a", "--metric", "rms", "--site", HOSTILE_NAMES["bidi"]], "site"),
    ("export", ["--run", HOSTILE_NAMES["cr"]], "run"),
    ("compare", ["--run", "a", "--run", HOSTILE_NAMES["line-separator"]], "run"),
    ("sweep", ["--metrics", "rms," + HOSTILE_NAMES["esc"]], "metric"),
    ("sweep", ["--sites", HOSTILE_NAMES["newline"]], "site"),
]


@pytest.mark.parametrize(
    "cmd,opts,what", HOSTILE_OPTIONS, ids=[f"{c}-{w}-{i}" for i, (c, _, w) in enumerate(HOSTILE_OPTIONS)]
)
def test_control_characters_in_run_metric_site_names_stay_escaped(
    cli_main, inputs: Path, tmp_path: Path, cmd: str, opts: list[str], what: str
) -> None:
    need(cmd)
    extra = tuple(opts)
    src = None if cmd == "sweep" else inputs / "two.db"
    r = cli_main(*argv(cmd, inputs, tmp_path, src, "source", extra=extra))
    line = error_line(r, 2, what)  # type: ignore[arg-type]
    assert line.isprintable(), repr(line)


CSV_OUT_IS_IN = [
    ("report", "-o", "same"),
    ("report", "--json", "same"),
    ("report", "--json", "hardlink"),
    ("plot", "-o", "hardlink"),
    ("view", "-o", "symlink"),
]


@pytest.mark.parametrize("cmd,opt,kind", CSV_OUT_IS_IN, ids=["-".join(c) for c in CSV_OUT_IS_IN])
def test_an_output_that_is_its_csv_input(cli_main, tmp_path: Path, cmd: str, opt: str, kind: str) -> None:
    from tests.reliability._helpers import sha

    src = _write_wide(tmp_path / "values.csv", 3, 4)
    out = src if kind == "same" else tmp_path / ("fig.png" if cmd == "plot" else "out.json")
    if cmd == "view":
        (tmp_path / "b").mkdir()
        out = _link(kind, src, tmp_path / "b" / "index.html").parent
    elif kind != "same":
        _link(kind, src, out)
    before = sha(src)
    error_line(cli_main(cmd, src, opt, out), 2, "would destroy an input")  # type: ignore[arg-type]
    assert sha(src) == before


# -- per-head and watch flags on data that cannot take them: one line, no --help needed ---------------
@pytest.mark.parametrize(
    "args, needles",
    [
        (["--heads", "max"], ["--heads reads a per-head series", "no per-head site", "sites=('attn',)"]),
        (["--heads", "--step", "10", "--metric", "rms", "--site", "output"], ["holds one value per layer"]),
        (["--site", "attn"], ["'attn'", "recorded sites: output"]),
    ],
)
def test_plot_heads_on_a_store_without_heads(cli_main, inputs: Path, tmp_path: Path, args, needles) -> None:
    r = cli_main(*argv("plot", inputs, tmp_path, extra=tuple(args)))
    error_line(r, 2, *needles)  # type: ignore[arg-type]
    assert not (tmp_path / "out.png").exists()


def test_sweep_on_alert_stop_needs_watch(cli_main, inputs: Path, tmp_path: Path) -> None:
    need("sweep")
    r = cli_main(*argv("sweep", inputs, tmp_path, extra=("--on-alert", "stop")))
    error_line(r, 2, "--on-alert stop", "add --watch")  # type: ignore[arg-type]
    assert not (tmp_path / "sweep.db").exists()
