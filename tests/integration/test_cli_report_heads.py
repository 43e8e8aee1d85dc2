"""`layerscope report` on per-head and logits maps (it used to refuse a per-head series) and `--heads`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.stores import attn_store, make_store


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return attn_store(tmp_path / "runs.db")


def test_cli_reports_attn_and_logits(planted: Path, cli, check_report) -> None:
    r = cli("report", str(planted), "--site", "attn", "--metric", "max_logit")
    assert r.returncode == 0, r.stderr
    assert "## Attention heads" in r.stdout and "## Watch alerts" in r.stdout
    r = cli("report", str(planted), "--site", "logits", "--metric", "max_logit", "--json", "-")
    assert r.returncode == 0, r.stderr
    check_report(json.loads(r.stdout))
    r = cli("report", str(planted), "--site", "attn", "--metric", "sink", "--heads", "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--heads 'x'" in r.stderr


def test_cli_heads_needs_a_store(tmp_path: Path, cli) -> None:
    csv = tmp_path / "v.csv"
    csv.write_text("step,1,2\n1,0.1,0.2\n2,0.3,0.4\n", encoding="utf-8")
    r = cli("report", str(csv), "--heads", "max")
    assert r.returncode == 2 and "needs a run store" in r.stderr
    store = make_store(tmp_path / "plain.db")
    r = cli("report", str(store), "--metric", "rms")
    assert r.returncode == 0 and "## Watch alerts" not in r.stdout  # a run without alerts: no section
