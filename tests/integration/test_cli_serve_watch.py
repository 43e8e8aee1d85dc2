"""``layerscope serve --watch`` as a user runs it: the server evaluates the watch's default rules
over a run that is being written and prints each alert once on its terminal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from layerscope.store import LayerInfo, StepRecord, Store


def _write(st: Store, step: int, max_abs: float) -> None:
    st.write_steps("r", [StepRecord(step, {("max_abs", "output"): [1.0 + 0.01 * step, max_abs]})])


def test_serve_watch_prints_alerts_of_a_run_being_written(tmp_path) -> None:
    import pytest

    pytest.importorskip(
        "flask"
    )  # the [serve] extra; tests/integration/test_optional_deps.py covers its absence
    path = tmp_path / "s.db"
    with Store(path) as st:
        st.create_run("r", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        for step in range(1, 11):
            _write(st, step, 2.0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerscope",
            "serve",
            str(path),
            "--port",
            "0",
            "--watch",
            "--poll-ms",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline())  # type: ignore[union-attr]
        time.sleep(1.5)  # the watch has read steps 1..10
        with Store(path) as st:
            _write(st, 11, 80.0)
        deadline, lines = time.monotonic() + 30, []
        while time.monotonic() < deadline and not lines:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if line.startswith("layerscope watch: "):
                lines.append(line)
        assert lines and "run 'r': step 11: layer 2 (h.1) output max_abs = 80" in lines[0], lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
