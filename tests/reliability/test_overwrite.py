"""An output that is an input, where the in-process matrix of test_cli_input.py cannot reach: stdout
redirected into the store (``export runs.db -o - >> runs.db``), and the Python API, whose writer
never replaces an SQLite file with a result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.reliability._helpers import make_store, sha

import layerscope
from layerscope.errors import ConfigError


@pytest.mark.parametrize(
    "args",
    [["export", "{db}", "-o", "-"], ["report", "{db}", "--run", "a", "--json", "-"]],
    ids=["export", "report-json"],
)
def test_stdout_redirected_into_the_store_is_refused(tmp_path: Path, args: list[str]) -> None:
    db = make_store(tmp_path / "runs.db")
    before = sha(db)
    with open(db, "ab") as out:  # the shell's `>> runs.db`
        r = subprocess.run(
            [sys.executable, "-m", "layerscope", *[a.format(db=db) for a in args]],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "stdout, which is redirected into" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and sha(db) == before


def test_the_python_api_never_replaces_a_store_with_a_result(tmp_path: Path) -> None:
    db = make_store(tmp_path / "runs.db")
    before = sha(db)
    hm = layerscope.load(db, run="a")
    (tmp_path / "fig.png").symlink_to(db)
    with pytest.raises(ConfigError, match="refusing to replace .* SQLite database"):
        layerscope.report(hm).save(db)
    with pytest.raises(ConfigError, match="refusing to replace .* SQLite database"):
        layerscope.plot(hm, tmp_path / "fig.png")  # through a link to the store
    assert sha(db) == before and (tmp_path / "fig.png").is_symlink()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    layerscope.plot(hm, tmp_path / "ok.png")  # a result next to it is fine
