"""kill -9 of a training job at random moments: what was flushed survives whole, and the run resumes.

A training process trains TinyGPT and records two runs into one store: "unbuffered" writes every
step as it ends (flush_every=1), "buffered" writes four at a time. Each trial starts one where the
store says the runs stopped (sometimes a few steps earlier, as a job restarted from an older
checkpoint does), lets it train for a random, seeded time and SIGKILLs it. After every kill the
store must pass ``PRAGMA integrity_check``, every step in ``steps`` must have every layer of every
metric and histogram (and no row may belong to a step that is not there), and the steps must run
1..last without a gap. A last, clean run finishes the job.

The training processes are forked from one process that has imported torch (see _train_child.py),
so ten trials cost seconds, not ten torch imports.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.reliability._helpers import HERE, assert_whole

import layerscope

CHILD = HERE / "_train_child.py"
N_TRIALS = 12
SEED = 20240611
N_LAYERS = 4
N_SCALAR = 6  # mean, std, rms, max_abs, kurtosis, zero_frac (hist is stored apart)
RUNS = ("unbuffered", "buffered")


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _line(self) -> str:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.proc.kill()
            raise AssertionError(f"the training process died: {self.proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        return line.strip()

    def start(self, store: Path, starts: dict[str, int], n: int | None = None) -> int:
        cmd = f"{store} {starts['unbuffered']} {starts['buffered']}" + (f" {n}" if n is not None else "")
        self.proc.stdin.write(cmd + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self._line()
        assert line.startswith("ready "), line
        return int(line.split()[1])

    def until(self, iteration: int) -> None:
        """Wait until the job has finished ``iteration`` (0-based)."""
        while True:
            line = self._line()
            assert not line.startswith(("exit ", "failed")), line
            if line == str(iteration):
                return

    def wait(self) -> tuple[int, list[str]]:
        said = []
        while True:
            line = self._line()
            if line.startswith("exit "):
                return int(line.split()[2]), said
            said.append(line)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


@pytest.fixture
def zygote():
    z = Zygote()
    yield z
    if z.proc.poll() is None:
        z.proc.kill()
        z.proc.wait()


def _resume_points(committed: dict[str, list[int]], rng: random.Random) -> dict[str, int]:
    # After the last committed step, or up to 3 steps before it (an older checkpoint): the
    # re-recorded steps must replace their rows, never add to them.
    return {
        run: max(1, (committed[run][-1] if committed.get(run) else 0) + 1 - rng.randint(0, 3)) for run in RUNS
    }


def test_kill9_at_random_moments_keeps_every_flushed_step_whole_and_resumes(
    tmp_path: Path, zygote: Zygote
) -> None:
    store = tmp_path / "runs.db"
    rng = random.Random(SEED)
    committed: dict[str, list[int]] = {}
    for trial in range(N_TRIALS):
        starts = _resume_points(committed, rng)
        pid = zygote.start(store, starts)
        done = rng.randint(0, 9)  # iterations the job completes; then it dies somewhere in the next ones
        zygote.until(done)
        time.sleep(rng.uniform(0.0, 0.02))  # mid-step, mid-flush or mid-commit
        os.kill(pid, signal.SIGKILL)
        code, said = zygote.wait()
        assert code == -signal.SIGKILL, f"trial {trial}: the training process ended on its own: {said}"

        before = committed
        committed = assert_whole(store, scalar_metrics=N_SCALAR, hists=True)
        for run, steps in committed.items():
            assert steps == list(range(1, len(steps) + 1)), f"trial {trial}: {run} has gaps: {steps[-10:]}"
            # Nothing committed before this trial was lost, whatever the kill interrupted.
            assert len(steps) >= len(before.get(run, [])), (trial, run)
        # Every step whose flush had returned before the kill is in the store: all of them for
        # flush_every=1, the ones in completed groups of 4 for the buffered run.
        assert committed["unbuffered"][-1] >= starts["unbuffered"] + done, trial
        flushed = (done + 1) // 4 * 4
        if flushed:
            assert committed["buffered"][-1] >= starts["buffered"] + flushed - 1, trial

    # The job restarts once more and ends cleanly: the runs continue where the store says, whole.
    starts = {run: committed[run][-1] + 1 for run in RUNS}
    zygote.start(store, starts, n=5)
    code, said = zygote.wait()
    assert code == 0 and said[-1] == "done", said
    zygote.close()
    final = assert_whole(store, scalar_metrics=N_SCALAR, hists=True)
    for run in RUNS:
        assert final[run] == list(range(1, starts[run] + 5)), run
        hm = layerscope.load(store, run=run, metric="rms")
        assert hm.values.shape == (starts[run] + 4, N_LAYERS)
        assert not (hm.values != hm.values).any(), f"{run}: a cell of a committed step is missing"
