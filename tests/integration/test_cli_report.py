"""`layerscope report` as a user runs it: a subprocess on CSV files (both shapes) and on a run store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layerscope.store import LayerInfo, StepRecord, Store

STEPS = [30_000 * (i + 1) for i in range(10)]
SECTIONS = [
    "## Overview",
    "## Components/Axes",
    "## Detailed analysis",
    "## Key observations",
    "## Interpretation",
]


def reference_matrix() -> np.ndarray:
    """12 layers x 10 steps: layers 1-4 low, 5-8 rising, 9-12 peaking at 240k then declining slightly."""
    t = np.linspace(0.0, 1.0, 10)
    v = np.empty((10, 12))
    for j in range(4):
        v[:, j] = 0.0002 + 0.0005 * t + 0.00005 * j
    for k, j in enumerate(range(4, 8)):
        v[:, j] = 0.0003 + (0.0018 + 0.0017 * k) * t
    peak = np.array([0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.0076, 0.0081, 0.0078, 0.0075])
    for k, j in enumerate(range(8, 12)):
        v[:, j] = peak + 0.00005 * k
    return v


@pytest.fixture
def wide_csv(tmp_path: Path) -> Path:
    v = reference_matrix()
    p = tmp_path / "acts.csv"
    lines = ["step," + ",".join(str(j) for j in range(1, 13))]
    lines += [f"{s}," + ",".join(repr(float(x)) for x in v[i]) for i, s in enumerate(STEPS)]
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture
def tidy_csv(tmp_path: Path) -> Path:
    v = reference_matrix()
    p = tmp_path / "tidy.csv"
    rows = ["step,layer,value,metric,site,run"]
    for i, s in enumerate(STEPS):
        for j in range(12):
            rows.append(f"{s},{j + 1},{float(v[i, j])!r},rms,output,base")
            rows.append(f"{s},{j + 1},{3.0 + j},kurtosis,output,base")
    p.write_text("\n".join(rows) + "\n")
    return p


def test_report_wide_csv_prints_markdown(cli, wide_csv: Path) -> None:
    r = cli("report", str(wide_csv))
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert [ln for ln in md.splitlines() if ln.startswith("## ")] == SECTIONS
    assert "**Layers 1–4** (flat, low)" in md and "**Layers 9–12** (rise then fall, high)" in md
    assert "level off from 210000" in md  # steps in text are exact (issue 23)
    assert r.stderr == ""


def test_report_tidy_csv_writes_markdown_and_json(cli, tidy_csv: Path, tmp_path: Path) -> None:
    md_path, json_path = tmp_path / "report.md", tmp_path / "report.json"
    r = cli("report", str(tidy_csv), "--metric", "rms", "-o", str(md_path), "--json", str(json_path))
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "report.md" in r.stdout and "report.json" in r.stdout
    d = json.loads(json_path.read_text())
    assert (d["metric"], d["site"], d["run"]) == ("rms", "output", "base")
    assert d["layers"] == list(range(1, 13)) and d["steps"] == STEPS
    assert [x["trend"] for x in d["layers_detail"]][8:] == ["rise_then_fall"] * 4
    kinds = {o["kind"] for o in d["observations"]}
    assert {"depth_gradient", "step_trend", "hotspot", "consistently_low", "saturation"} <= kinds
    md = md_path.read_text()
    assert md.startswith("# `rms`") and all(s in md for s in SECTIONS)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_report_json_to_stdout(cli, wide_csv: Path) -> None:
    r = cli("report", str(wide_csv), "--json", "-", "--metric", "rms")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # stdout is the JSON alone
    assert d["metric"] == "rms" and len(d["layers_detail"]) == 12


def test_same_report_from_both_csv_shapes(cli, wide_csv: Path, tidy_csv: Path) -> None:
    a = json.loads(cli("report", str(wide_csv), "--json", "-").stdout)
    b = json.loads(cli("report", str(tidy_csv), "--metric", "rms", "--json", "-").stdout)
    assert a["layers_detail"] == b["layers_detail"] and a["observations"] == b["observations"]


def test_tidy_with_several_metrics_needs_a_choice(cli, tidy_csv: Path) -> None:
    r = cli("report", str(tidy_csv))
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "rms, kurtosis" in r.stderr and "--metric" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_malformed_csv_is_one_line_and_exit_1(cli, tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("step,1,2\n10,0.1,0.2\nten,0.3,0.4\n")
    r = cli("report", str(p))
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "bad.csv: line 3: step 'ten' is not a whole number" in line


def test_missing_source_and_missing_output_folder_are_usage_errors(
    cli, wide_csv: Path, tmp_path: Path
) -> None:
    r = cli("report", str(tmp_path / "nope.csv"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = cli("report", str(wide_csv), "--json", str(tmp_path / "r.json"), "-o", str(tmp_path / "no" / "r.md"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "r.json").exists()  # nothing half-done: checked before anything is written


def test_report_is_listed_with_help_and_examples(cli) -> None:
    r = cli("--help")
    assert "report" in r.stdout
    r = cli("report", "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and "--json" in r.stdout


def test_report_on_a_run_store(cli, store_path: Path, tmp_path: Path) -> None:
    v = reference_matrix()
    v[4, 6] = np.nan  # one cell never recorded
    with Store(store_path) as st:
        st.create_run(
            "base", [LayerInfo(i + 1, f"transformer.h.{i}", "transformer.h", i + 1) for i in range(12)]
        )
        st.write_steps("base", [StepRecord(s, {("rms", "output"): v[i]}) for i, s in enumerate(STEPS)])
    out = tmp_path / "report.json"
    r = cli("report", str(store_path), "--metric", "rms", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "## Overview" in r.stdout and "`transformer.h.0`" in r.stdout  # Markdown on stdout, names shown
    d = json.loads(out.read_text())
    assert d["run"] == "base" and d["steps"] == STEPS and d["source"] == str(store_path)
    assert [x["name"] for x in d["layers_detail"]] == [f"transformer.h.{i}" for i in range(12)]
    (miss,) = [o for o in d["observations"] if o["kind"] == "missing_values"]
    assert miss["cells"] == [[STEPS[4], 7]]
    assert [x["peak_step"] for x in d["layers_detail"][8:]] == [240_000] * 4
    r = cli("report", str(store_path), "--metric", "kurtosis")
    assert r.returncode == 2 and "recorded metrics: rms" in r.stderr


def test_python_api_matches_the_cli(cli, wide_csv: Path) -> None:
    import layerscope
    from layerscope.store.csvio import read_csv

    rep = layerscope.report(read_csv(wide_csv))
    assert rep.to_markdown() == cli("report", str(wide_csv)).stdout
