"""`layerscope coord-check` as a user runs it: a subprocess, files on disk, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path


def test_coord_check_cli_writes_store_pictures_and_verdict(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = [
        "coord-check",
        "--model",
        "layerscope.testing:tiny_gpt_sp",
        "--widths",
        "16,32",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--store",
        str(tmp_path / "cc.db"),
        "--run",
        "sp",
        "-o",
        str(tmp_path / "out"),
        "--metrics",
        "abs_mean",
    ]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "abs_mean at output:" in r.stdout
    out = tmp_path / "out"
    for name in (
        "coord-check.md",
        "coord-check.json",
        "coord-abs_mean-output-heatmap.png",
        "coord-abs_mean-output-lines.png",
    ):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "coord-check.json").read_text())
    assert doc["checks"][0]["widths"] == [16, 32] and len(doc["checks"][0]["fits"]) == 2 * 4
    again = cli(*args)  # resumes: nothing left to train
    assert again.returncode == 0 and again.stderr.count("skipped") == 2
    reread = cli(
        "coord-check",
        "--store",
        str(tmp_path / "cc.db"),
        "--run",
        "sp",
        "-o",
        str(tmp_path / "o2"),
        "--format",
        "json",
    )
    assert reread.returncode == 0 and json.loads(reread.stdout)["checks"][0]["run"] == "sp"


def test_coord_check_cli_bad_input_is_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli(
        "coord-check",
        "--model",
        "layerscope.testing:tiny_gpt_sp",
        "--widths",
        "64,abc",
        "--store",
        str(tmp_path / "x.db"),
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "widths" in r.stderr
    r = cli(
        "coord-check",
        "--model",
        "layerscope.testing:nope",
        "--widths",
        "16,32",
        "--store",
        str(tmp_path / "x.db"),
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr
    r = cli("coord-check", "--store", str(tmp_path / "missing.db"))
    assert r.returncode == 2 and "does not exist" in r.stderr
