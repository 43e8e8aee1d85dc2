"""The foundation's CLI, run as a user runs it: a subprocess per command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from layerscope.store import LayerInfo, StepRecord, Store


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("demo")
    r = run_cli("demo", "--out", str(out), "--steps", "40", "--every", "4", "--layers", "4")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "runs.db" in r.stdout
    return out


def test_demo_writes_store_and_heatmap(demo_dir: Path) -> None:
    import layerscope

    png = demo_dir / "heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hm = layerscope.load(demo_dir / "runs.db", metric="rms")
    assert hm.values.shape == (10, 4) and hm.steps == list(range(4, 41, 4))
    assert (hm.values > 0).all()


def test_runs_table_and_json(cli, demo_dir: Path) -> None:
    r = cli("runs", str(demo_dir / "runs.db"))
    assert r.returncode == 0 and "demo" in r.stdout and "4..40" in r.stdout
    r = cli("runs", str(demo_dir / "runs.db"), "--format", "json")
    (info,) = json.loads(r.stdout)
    assert info["run"] == "demo" and info["steps"] == 10 and info["layers"] == 4
    # The demo records block outputs and MLP activations (and histograms), so every README view runs
    # on it, and each block's update (its update-to-weight ratio map).
    assert {"rms", "mean", "std", "max_abs", "ratio"} <= set(info["metrics"]) and info["sites"] == [
        "mlp_act",
        "output",
        "update",
    ]


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_plot_formats(cli, demo_dir: Path, tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"h{suffix}"
    r = cli("plot", str(demo_dir / "runs.db"), "--metric", "std", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[: len(magic)] == magic
    if suffix == ".svg":
        text = out.read_text()
        assert "Layer" in text and "Steps" in text  # axis labels are in the figure


def test_export_tidy_rows(cli, demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "values.csv"
    r = cli("export", str(demo_dir / "runs.db"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["run", "step", "layer", "layer_name", "site", "metric", "value"]
    per_site = {
        site: len({r["metric"] for r in rows if r["site"] == site})
        for site in ("output", "mlp_act", "update")
    }
    assert (
        per_site["output"] == per_site["mlp_act"] and per_site["update"] > per_site["output"]
    )  # + norm, ratio
    assert len(rows) == 10 * 4 * sum(per_site.values())  # three sites: output, mlp_act, update
    assert {r["layer_name"] for r in rows} == {"h.0", "h.1", "h.2", "h.3"}


def _two_runs(path: Path) -> None:
    with Store(path) as st:
        for run in ("a", "b"):
            st.create_run(run, [LayerInfo(1, "x.0"), LayerInfo(2, "x.1")])
            st.write_step(run, StepRecord(1, {("rms", "output"): [1.0, 2.0]}))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["runs", "{tmp}/missing.db"], "does not exist"),
        (["plot", "{tmp}/missing.db", "-o", "{tmp}/x.png"], "does not exist"),
        (["plot", "{store}", "-o", "{tmp}/x.png"], "holds 2 runs ('a', 'b'); choose one with --run"),
        (["plot", "{store}", "--run", "c", "-o", "{tmp}/x.png"], "run 'c' not found"),
        (["plot", "{store}", "--run", "a", "--metric", "kurt", "-o", "{tmp}/x.png"], "recorded metrics: rms"),
        (["plot", "{store}", "--run", "a", "-o", "{tmp}/nodir/x.png"], "does not exist"),
        (["plot", "{store}", "--run", "a", "-o", "{tmp}/x.gif"], "end the file name with one of"),
        (["export", "{store}", "--run", "zz", "-o", "{tmp}/x.csv"], "run 'zz' not found"),
        (["plot", "{tmp}", "-o", "{tmp}/x.png"], "is a folder"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(cli, tmp_path: Path, args: list[str], needle: str) -> None:
    store = tmp_path / "two.db"
    _two_runs(store)
    argv = [a.format(tmp=tmp_path, store=store) for a in args]
    r = cli(*argv)
    assert r.returncode in (1, 2), r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr  # one line, no traceback
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_debug_env_shows_traceback(cli, tmp_path: Path) -> None:
    r = cli("runs", str(tmp_path / "missing.db"), env={"LAYERSCOPE_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("target", ["/proc/layerscope-x.png", "{tmp}/afile/x.png", "/proc/x.csv"])
def test_unwritable_output_path(cli, tmp_path: Path, target: str) -> None:
    store = tmp_path / "two.db"
    _two_runs(store)
    (tmp_path / "afile").write_text("a file, not a folder")
    out = target.format(tmp=tmp_path)
    cmd = "export" if out.endswith(".csv") else "plot"
    r = cli(cmd, str(store), "--run", "a", "-o", out)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "choose another output path" in lines[0]


def test_every_command_has_help_with_an_example(cli) -> None:
    from layerscope.cli.main import COMMANDS

    for name in COMMANDS:
        r = cli(name, "--help")
        assert r.returncode == 0, (name, r.stderr)
        assert "Example" in r.stdout, name
    r = cli("--help")
    assert r.returncode == 0 and all(name in r.stdout for name in COMMANDS)


def test_python_m_and_version(cli) -> None:
    import layerscope

    r = cli("--version")
    assert r.returncode == 0 and layerscope.__version__ in r.stdout
