"""What a user without an optional package sees: one line saying what to install, a non-zero exit,
no file written, and ``import layerscope`` never importing them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layerscope.store import LayerInfo, StepRecord, Store


def _without(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``module`` impossible to import (as if it were not installed)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from layerscope.cli.main import main\n"
        f"main({list(argv)!r}, prog_name='layerscope')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "runs.db"
    with Store(db) as st:
        st.create_run("r", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        st.write_steps("r", [StepRecord(s, {("rms", "output"): [1.0, float(s)]}) for s in (1, 2, 3)])
    return db


def test_serve_without_flask_says_to_install_the_extra(store: Path, tmp_path: Path) -> None:
    r = _without("flask", "serve", str(store), "--port", "0", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and lines == [
        "error: layerscope serve needs flask, which is not installed; install it with: pip install 'layerscope[serve]'"
    ]


def test_html_without_plotly_is_one_line_and_no_file(store: Path, tmp_path: Path) -> None:
    r = _without("plotly", "plot", str(store), "-o", str(tmp_path / "x.html"), cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "interactive HTML needs the 'plotly' package" in lines[0]
    assert not (tmp_path / "x.html").exists()
    r = _without("plotly", "plot", str(store), "-o", str(tmp_path / "x.png"), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "x.png").exists()  # static figures do not need plotly


def test_export_parquet_without_pyarrow_refuses_before_reading(store: Path, tmp_path: Path) -> None:
    r = _without("pyarrow", "export", str(store), "-o", str(tmp_path / "v.parquet"), cwd=tmp_path)
    assert (
        r.returncode == 2
        and "needs pyarrow, which is not installed; pip install pyarrow, or write .csv" in r.stderr
    )
    assert not (tmp_path / "v.parquet").exists()


def test_export_parquet_and_filters(store: Path, tmp_path: Path, cli) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    with Store(store) as st:
        st.write_step("r", StepRecord(4, {("rms", "output"): [1.0, 4.0], ("std", "mlp_act"): [0.5, np.nan]}))
    out = tmp_path / "v.parquet"
    r = cli("export", str(store), "--metric", "rms", "--site", "output", "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out).to_pylist()
    assert len(t) == 8 and {row["metric"] for row in t} == {"rms"}
    assert t[-1] == {
        "run": "r",
        "step": 4,
        "layer": 2,
        "layer_name": "h.1",
        "site": "output",
        "metric": "rms",
        "value": 4.0,
    }
    r = cli("export", str(store), "--metrics", "std", "-o", str(tmp_path / "s.csv"))
    assert r.returncode == 0 and (tmp_path / "s.csv").read_text().splitlines()[1:] == [
        "r,4,1,h.0,mlp_act,std,0.5",
        "r,4,2,h.1,mlp_act,std,",
    ]
    r = cli("export", str(store), "--metric", "kurtosis", "-o", str(tmp_path / "k.csv"))
    assert r.returncode == 2 and "--metric kurtosis: not recorded in r; recorded: rms, std." in r.stderr
    r = cli("export", str(store), "-o", str(tmp_path / "v.xlsx"))
    assert r.returncode == 2 and "end the file name with .csv or .parquet" in r.stderr


def test_the_hf_example_runs_with_only_the_hf_extra(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    example = Path(__file__).resolve().parents[2] / "examples" / "hf_trainer.py"
    code = (
        "import sys, runpy; sys.modules['tensorboard'] = None\n"  # as with pip install layerscope[hf]
        f"runpy.run_path({str(example)!r}, run_name='__main__')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tensorboard is not installed: recording into the store only" in r.stdout
    assert (tmp_path / "layerscope-examples" / "hf_trainer" / "kurtosis_mlp_act.png").exists()


def test_import_layerscope_imports_no_optional_package() -> None:
    code = (
        "import sys, layerscope\n"
        "heavy = [m for m in ('flask', 'plotly', 'pyarrow', 'matplotlib', 'torch') if m in sys.modules]\n"
        "print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[]", r.stderr
