"""Two training processes record different runs into one store at once, while plot, report,
export, runs and the dashboard's JSON API read it: both writers finish with every step they
recorded, no reader ever sees part of a step, and no reader holds a writer up.

The writers start together on a store that does not exist yet, so they also race to create it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from tests.reliability._helpers import HERE, assert_whole

import layerscope

WRITER = HERE / "_writer_child.py"
RUNS = ("alpha", "beta")
N_LAYERS = 4
N_METRICS = 4


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("LAYERSCOPE_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "layerscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _committed(store: Path) -> dict[str, int]:
    return {run: len(steps) for run, steps in assert_whole(store, scalar_metrics=N_METRICS).items()}


def _check_read(hm: layerscope.Heatmap) -> None:
    # Every step a reader gets has every layer: half a step would show as NaN cells.
    assert hm.values.shape[1] == N_LAYERS
    assert not np.isnan(hm.values).any(), f"{hm.run}: a reader saw part of a step"
    assert list(hm.steps) == list(range(1, len(hm.steps) + 1)), f"{hm.run}: a reader saw a gap"


def test_two_writers_and_readers_share_one_store(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    writers = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(store), run, str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for run in RUNS
    ]
    try:
        for w in writers:
            line = w.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", (line, w.stderr.read()[-3000:] if w.poll() is not None else "")  # type: ignore[union-attr]

        at_start = _committed(store)
        readers = [
            _cli("plot", str(store), "--run", "alpha", "-o", str(tmp_path / "alpha.png")),
            _cli("report", str(store), "--run", "beta", "-o", str(tmp_path / "beta.md")),
            _cli("export", str(store), "-o", str(tmp_path / "all.csv")),
            _cli("runs", str(store), "--format", "json"),
        ]
        try:
            from layerscope.serve import create_app
        except ImportError:  # the dashboard is optional (flask)
            client = None
        else:
            client = create_app(store).test_client()

        reads = 0
        while any(r.poll() is None for r in readers) or reads < 20:
            for run in RUNS:
                _check_read(layerscope.load(store, run=run, metric="rms"))
                if client is not None:
                    data = client.get(f"/api/heatmap?run={run}&metric=std").get_json()
                    assert data["steps"] == list(range(1, len(data["steps"]) + 1)), data.get("error")
                    assert all(v is not None for row in data["values"] for v in row), (
                        "the API served part of a step"
                    )
            _committed(store)  # one snapshot: every committed step of both runs has all its rows
            reads += 1
        for r in readers:
            out, err = r.communicate()
            assert r.returncode == 0, (r.args, err[-2000:])
        after = _committed(store)
        # The writers went on while the readers read: nobody waited for a reader's lock.
        assert all(after[run] > at_start[run] for run in RUNS), (at_start, after)
    finally:
        stop.write_text("")
        results = [w.communicate(timeout=120) for w in writers]

    for run, w, (out, err) in zip(RUNS, writers, results):
        assert w.returncode == 0, (run, err[-3000:])
        n = int(out.split("done ")[1])
        hm = layerscope.load(store, run=run, metric="max_abs")
        assert hm.steps == list(range(1, n + 1)), f"{run}: recorded {n} steps, the store has {len(hm.steps)}"
        _check_read(hm)
    assert_whole(store, scalar_metrics=N_METRICS)
