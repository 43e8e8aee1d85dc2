"""A sweep sharded over 2 torchrun ranks (gloo, CPU), or over 2 worker processes, gives the rows of one process."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from layerscope.store import Store
from layerscope.sweep import Outcome, SweepListener, sweep
from layerscope.testing import Corpus, tiny_gpt

KW = dict(n_layer=4, n_embd=32, n_head=2, block_size=16)
FACTORY = functools.partial(tiny_gpt, **KW)
GATE = "LS_SWEEP_TEST_GATE"  # a folder: children announce themselves there


def _gated(die_in_child: bool) -> torch.nn.Module:
    """The test model, made to give the --workers children work: a child marks the gate folder when
    built (and, with ``die_in_child``, exits on its first forward, as if killed for memory); the
    parent's first forward waits for that mark, so checkpoints are left for the child."""
    import multiprocessing as mp

    m = tiny_gpt(**KW)
    gate = Path(os.environ[GATE])
    if mp.parent_process() is not None:
        (gate / f"child-{os.getpid()}").touch()
        if die_in_child:
            m.register_forward_pre_hook(lambda *a: os._exit(3))
        return m

    def wait_for_a_child(*args: object) -> None:
        deadline = time.monotonic() + 120
        while not any(gate.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not getattr(wait_for_a_child, "done", False):
            time.sleep(0.5)  # its 'ready' message follows the mark
            wait_for_a_child.done = True  # type: ignore[attr-defined]

    m.register_forward_pre_hook(wait_for_a_child)
    return m


def gated_model() -> torch.nn.Module:
    return _gated(die_in_child=False)


def dying_model() -> torch.nn.Module:
    return _gated(die_in_child=True)


METRICS = "mean,std,rms,max_abs,kurtosis,zero_frac,hist"
STEPS = (10, 20, 30, 40, 50)  # odd count: the ranks get 3 and 2


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    ck = tmp_path / "ck"
    ck.mkdir()
    for s in STEPS:
        torch.save(tiny_gpt(seed=s, **KW).state_dict(), ck / f"step_{s}.pt")
    whole = (ck / "step_10.pt").read_bytes()
    (ck / "step_60.pt").write_bytes(whole[: len(whole) // 3])  # truncated: reported once, by rank 0
    probe = tmp_path / "probe.pt"
    torch.save(Corpus(n_chars=20_000).probe(batch_size=4, block_size=16), probe)
    (tmp_path / "factory.py").write_text(
        "from layerscope.testing import tiny_gpt\n\n"
        "def model():\n    return tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16)\n"
    )
    return ck, probe, tmp_path / "runs.db"


def assert_same_rows(db: Path, a: str, b: str) -> None:
    with Store(db, readonly=True) as st:
        pairs = st.metrics(a)
        assert pairs and set(pairs) == set(st.metrics(b))
        for metric, site in pairs:
            ha, hb = st.load(a, metric, site), st.load(b, metric, site)
            assert ha.steps == hb.steps == list(STEPS)
            np.testing.assert_allclose(
                hb.values, ha.values, rtol=1e-6, atol=1e-12, err_msg=f"{metric}/{site}"
            )
        np.testing.assert_array_equal(st.load_hist(a)[0], st.load_hist(b)[0])
        assert {r[0] for r in st.conn.execute("SELECT source FROM steps")} == {"sweep"}


def test_torchrun_two_ranks_equal_one_process(setup: tuple[Path, Path, Path]) -> None:
    ck, probe, db = setup
    one = sweep(ck, store=db, run="one", probe=probe, model=FACTORY, metrics=METRICS)
    assert sorted(one.written) == list(STEPS) and len(one.failed) == 1

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("LAYERSCOPE_DEBUG", None)
    # `-m --`: without the `--`, torchrun would read our --run as its own --run-path.
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "--",
            "layerscope",
            "sweep",
            str(ck),
            "--model",
            f"{ck.parent / 'factory.py'}:model",
            "--probe",
            str(probe),
            "--store",
            str(db),
            "--run",
            "two",
            "--metrics",
            METRICS,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ck.parent,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # the truncated checkpoint
    assert out.count("error: step_60.pt: truncated") == 1, out  # said once, by rank 0
    assert r.stdout.count("swept 5 checkpoints") == 1 and "on 2 processes" in r.stdout, out
    assert_same_rows(db, "one", "two")


class _Pids(SweepListener):
    def __init__(self) -> None:
        self.by_step: dict[int, int] = {}

    def on_outcome(self, outcome: Outcome) -> None:
        self.by_step[outcome.step] = outcome.pid


def test_two_workers_equal_one_process(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ck, probe, db = setup
    monkeypatch.setenv(GATE, str(ck.parent / "gate"))
    (ck.parent / "gate").mkdir()
    sweep(ck, store=db, run="one", probe=probe, model=FACTORY, metrics=METRICS)
    pids = _Pids()
    two = sweep(
        ck, store=db, run="two", probe=probe, model=gated_model, metrics=METRICS, workers=2, listener=pids
    )
    assert sorted(two.written) == list(STEPS) and two.processes == 2
    assert [Path(p.path).name for p in two.failed] == ["step_60.pt"]
    assert len(set(pids.by_step.values())) == 2, pids.by_step  # both processes swept some
    assert_same_rows(db, "one", "two")


def test_a_worker_that_dies_costs_only_its_checkpoint(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ck, probe, db = setup
    (ck / "step_60.pt").unlink()
    monkeypatch.setenv(GATE, str(ck.parent / "gate"))
    (ck.parent / "gate").mkdir()
    res = sweep(ck, store=db, run="s", probe=probe, model=dying_model, workers=2)
    assert len(res.failed) == 1 and "worker process sweeping it died (exit code 3" in res.failed[0].message
    lost = int(Path(res.failed[0].path).stem.split("_")[1])
    assert sorted(res.written) == sorted(set(STEPS) - {lost})
    again = sweep(ck, store=db, run="s", probe=probe, model=FACTORY)  # the rerun fills the gap
    assert again.written == [lost]
