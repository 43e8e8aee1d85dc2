"""What the reliability tests share: store builders, the "is every step whole" check, the
one-line-error check, and a way to make permission bits bite when the tests run as root."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.stores import make_store

__all__ = ["make_store"]  # re-exported: the one store-making helper lives in tests/stores.py

HERE = Path(__file__).resolve().parent
HOSTILE_RUN = "<img src=x onerror=alert(1)>"
HOSTILE_LAYER = "<script>alert(1)</script>"


def sha(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_whole(
    path: str | os.PathLike[str], scalar_metrics: int | None = None, hists: bool = False
) -> dict[str, list[int]]:
    """The store passes ``PRAGMA integrity_check``; every step in ``steps`` has all its rows (every
    layer x every (metric, site), and a histogram per layer when ``hists``), and no row belongs to a
    step that is not in ``steps``. Returns run -> committed steps."""
    con = sqlite3.connect(f"file:{Path(path).resolve().as_posix()}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        out: dict[str, list[int]] = {}
        con.execute("BEGIN")  # one snapshot for all the counts below
        for run_id, name in con.execute("SELECT id, name FROM runs ORDER BY id").fetchall():
            n_layers = con.execute("SELECT count(*) FROM layers WHERE run_id=?", (run_id,)).fetchone()[0]
            steps = [
                r[0] for r in con.execute("SELECT step FROM steps WHERE run_id=? ORDER BY step", (run_id,))
            ]
            pairs = con.execute(
                "SELECT count(DISTINCT metric || '/' || site) FROM metric_values WHERE run_id=?", (run_id,)
            ).fetchone()[0]
            if scalar_metrics is not None and steps:
                assert pairs == scalar_metrics, (name, pairs)
            per_step = dict(
                con.execute(
                    "SELECT step, count(*) FROM metric_values WHERE run_id=? GROUP BY step", (run_id,)
                ).fetchall()
            )
            assert sorted(per_step) == steps, f"run {name}: rows of uncommitted steps or steps without rows"
            bad = {s: c for s, c in per_step.items() if c != n_layers * pairs}
            assert not bad, f"run {name}: steps with a part of their rows: {bad} (want {n_layers * pairs})"
            if hists:
                per_hist = dict(  # step -> layers with a histogram (one row per step: n_layers x n_bins)
                    con.execute(
                        "SELECT r.step, sum(length(r.vals)) / (8 * max(s.inner)) FROM series_rows r "
                        "JOIN series s ON s.id = r.series_id WHERE s.run_id=? AND s.kind='hist' GROUP BY r.step",
                        (run_id,),
                    ).fetchall()
                )
                assert sorted(per_hist) == steps and set(per_hist.values()) <= {n_layers}, (name, per_hist)
            out[name] = steps
        con.execute("COMMIT")
        return out
    finally:
        con.close()


def error_line(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """``r`` failed with exit ``code`` and one line on stderr, ``error: ...``, holding every needle;
    not layerscope's "unexpected" (bug) line and no traceback. Returns the line."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-2000:]
    assert len(lines) == 1, r.stderr[-2000:]
    line = lines[0]
    assert line.startswith("error: "), line
    assert "unexpected" not in line, line  # an exception layerscope did not mean to raise
    for n in needles:
        assert n in line, (n, line)
    return line


# -- permissions that bite as root ------------------------------------------------------------------
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def permission_bits_bite() -> Callable[[], None] | None:
    """A ``preexec_fn`` under which file permission bits apply to the child, or None if they already
    do (not root). As root (CI), the child drops CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from its
    capability bounding set, so that root, like any user, cannot write a 0444 file or a 0555
    folder. Skips the test where that is not allowed."""
    if os.geteuid() != 0:
        return None
    try:
        ok = subprocess.run(["true"], preexec_fn=_drop_dac, capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError, AttributeError):
        ok = False
    if not ok:
        pytest.skip("running as root without CAP_SETPCAP: cannot make permission bits apply to a child")
    return _drop_dac


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 120,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m layerscope ARGS`` as a user runs it (no LAYERSCOPE_DEBUG unless ``env`` sets it)."""
    import sys

    e = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    e.pop("LAYERSCOPE_DEBUG", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "layerscope", *map(str, args)],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
        preexec_fn=preexec_fn,
        cwd=cwd,
    )
