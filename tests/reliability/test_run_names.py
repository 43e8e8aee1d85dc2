"""A new recording never mixes its steps into, or replaces the steps of, another recording's run.

Left-out ``run=``: a fresh name (``run``, ``run-2``, ...), said on the ``layerscope`` logger.
An explicit ``run=`` of an existing run: continued when it is the same recording (a restarted job:
same architecture, metrics, sites, probe), refused in one line when it is another, unless
``resume=True`` (``sweep --resume``). ``resume=False`` refuses any existing run.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.reliability._helpers import assert_whole, error_line, run_cli

import layerscope
from layerscope.errors import ConfigError, RunExistsError
from layerscope.store import Store
from layerscope.testing import tiny_gpt

X = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))  # (B, T)


def _model(width: int = 32, seed: int = 0, n_layer: int = 3) -> torch.nn.Module:
    return tiny_gpt(n_layer=n_layer, n_embd=width, n_head=2, block_size=16, seed=seed)


def _record(store: Path, model: torch.nn.Module, steps=range(1, 4), **kw) -> layerscope.Recorder:
    with layerscope.Recorder(model, store, every=1, **kw) as rec:
        for s in steps:
            model(X, X)
            rec.step(s)
    return rec


def _values(store: Path, run: str) -> np.ndarray:
    return layerscope.load(store, run=run, metric="rms").values


def test_left_out_run_names_are_fresh_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "runs.db"
    first = _record(db, _model(seed=1))
    kept = _values(db, "run").copy()
    with caplog.at_level(logging.INFO, logger="layerscope"):
        second = _record(db, _model(seed=2))
        third = _record(db, _model(width=64))  # another model entirely: a name of its own as well
    assert (first.run, second.run, third.run) == ("run", "run-2", "run-3")
    np.testing.assert_array_equal(_values(db, "run"), kept)  # the first script's steps untouched
    with Store(db, readonly=True) as st:
        assert st.run_names() == ["run", "run-2", "run-3"]
        assert all(st.steps(r) == [1, 2, 3] for r in st.run_names())
    said = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 2 and "'run-2'" in said[0].getMessage() and "pass run=" in said[0].getMessage()
    assert_whole(db, scalar_metrics=4)


def test_two_processes_without_a_name_never_share_a_run(tmp_path: Path) -> None:
    # Both see no run "run" and race to create it: the store's write lock picks one, the other
    # takes "run-2" (and a third name would be run-3): never one run for both.
    db = tmp_path / "runs.db"
    script = textwrap.dedent(f"""
        import sys, time, torch, layerscope
        from layerscope.testing import tiny_gpt
        torch.set_num_threads(1)
        m = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=16, seed=int(sys.argv[1]))
        x = torch.randint(0, 256, (2, 16))
        while time.time() < float(sys.argv[2]):
            time.sleep(0.005)  # start together
        with layerscope.Recorder(m, {str(db)!r}, every=1, flush_every=1) as rec:
            for s in range(1, 6):
                m(x, x); rec.step(s)
        print(rec.run)
    """)
    import time

    go = str(time.time() + 6)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i), go], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    names = sorted(p.communicate(timeout=180)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert names == ["run", "run-2"]
    assert assert_whole(db, scalar_metrics=4) == {"run": [1, 2, 3, 4, 5], "run-2": [1, 2, 3, 4, 5]}


@pytest.mark.parametrize(
    "change,needles",
    [
        ({"width": 64}, ["another model", "parameters"]),
        ({"n_layer": 4}, ["another model (3 layers, this one has 4)"]),
        ({"metrics": ("rms", "kurtosis")}, ["metrics"]),
        ({"sites": ("output", "mlp_act")}, ["sites"]),
        ({"window": "all"}, ["window="]),
        ({"eps": 1e-3}, ["eps="]),
        ({"train_only": False}, ["train_only="]),
    ],
    ids=["width", "depth", "metrics", "sites", "window", "eps", "train_only"],
)
def test_an_explicit_run_of_another_recording_is_refused(
    tmp_path: Path, change: dict, needles: list[str]
) -> None:
    db = tmp_path / "runs.db"
    _record(db, _model(), run="base")
    kept = _values(db, "base").copy()
    width, n_layer = change.pop("width", 32), change.pop("n_layer", 3)
    with pytest.raises(ConfigError) as e:
        _record(db, _model(width=width, n_layer=n_layer), steps=range(1, 8), run="base", **change)
    msg = str(e.value)
    assert "'base'" in msg and "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    if isinstance(e.value, RunExistsError):  # the policy's refusal names the way in
        assert "resume=True" in msg and e.value.param == "resume" and e.value.value == "base"
    np.testing.assert_array_equal(_values(db, "base"), kept)  # nothing mixed in, nothing replaced
    with Store(db, readonly=True) as st:
        assert st.run_names() == ["base"] and st.steps("base") == [1, 2, 3]


def test_another_probe_is_refused_even_with_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _record(db, _model(), run="p", probe=X)
    with pytest.raises(ConfigError, match="recorded with probe"):
        _record(db, _model(), run="p", probe=X + 1, resume=True)


def test_resume_true_records_into_another_recording_on_purpose(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _record(db, _model(), run="base")
    _record(db, _model(), steps=range(4, 6), run="base", metrics=("rms", "mean"), resume=True)
    with Store(db, readonly=True) as st:
        assert st.steps("base") == [1, 2, 3, 4, 5]


def test_resume_false_refuses_any_existing_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _record(db, _model(), run="base")
    with pytest.raises(RunExistsError, match="'base' already exists.*resume=True") as e:
        _record(db, _model(), run="base", resume=False)
    assert e.value.render(cli=True).endswith("or pass --resume to continue it.")


def test_a_restarted_job_continues_its_run(tmp_path: Path) -> None:
    # Same script after a crash: same architecture (other weights: it trained), wrapped differently
    # (DataParallel adds module.), another `every`, more steps. Continued, and a step recorded
    # again (a restart from an older checkpoint) replaces its rows.
    db = tmp_path / "runs.db"
    _record(db, _model(seed=1), steps=range(1, 6), run="job")
    restarted = torch.nn.DataParallel(_model(seed=7))
    rec = _record(db, restarted, steps=range(4, 9), run="job", flush_every=2)
    assert rec.run == "job"
    with Store(db, readonly=True) as st:
        assert st.run_names() == ["job"] and st.steps("job") == list(range(1, 9))
    assert_whole(db, scalar_metrics=4)


def test_sweep_into_another_recording_is_one_line_and_resume_opts_in(tmp_path: Path) -> None:
    ck, other = tmp_path / "ck", tmp_path / "other"
    ck.mkdir()
    other.mkdir()
    torch.save(tiny_gpt().state_dict(), ck / "step_1.pt")
    torch.save(tiny_gpt(seed=3).state_dict(), other / "step_2.pt")
    torch.save(X, tmp_path / "probe.pt")
    db = tmp_path / "runs.db"
    base = ["--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt", "--store", db]
    assert run_cli("sweep", ck, *base, "--run", "s").returncode == 0
    # Another checkpoint folder into the same run: not a continuation of this sweep.
    r = run_cli("sweep", other, *base, "--run", "s")
    line = error_line(r, 2, "'s'", "another recording", "checkpoints of", "--resume")
    assert "resume=True" not in line  # the CLI speaks flags
    with Store(db, readonly=True) as st:
        assert st.steps("s") == [1]
    # A live run recorded without a probe: a sweep's numbers are not comparable with it.
    _record(db, tiny_gpt(), run="live")
    error_line(run_cli("sweep", ck, *base, "--run", "live"), 2, "live recording", "--resume")
    # The same sweep again continues (its step is skipped); --resume opts in to the other folder.
    again = run_cli("sweep", ck, *base, "--run", "s")
    assert again.returncode == 0 and "skipped 1 step" in again.stdout, again.stderr
    assert run_cli("sweep", other, *base, "--run", "s", "--resume").returncode == 0
    with Store(db, readonly=True) as st:
        assert st.steps("s") == [1, 2]


_DDP = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist, layerscope
    from layerscope.testing import tiny_gpt
    rank = int(sys.argv[1]); store = sys.argv[2]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[3]}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    m = torch.nn.parallel.DistributedDataParallel(tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=16))
    x = torch.randint(0, 256, (2, 16))
    with layerscope.Recorder(m, store if rank == 0 else None, every=1) as rec:
        for s in (1, 2):
            m(x, x)[1].backward(); rec.step(s)
    print(rank, rec.run, flush=True)
    dist.destroy_process_group()
""")


def test_every_rank_knows_the_name_rank_0_picked(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "runs.db"
    _record(db, _model(), run="run")  # "run" is taken: rank 0 picks run-2, and says it to rank 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DDP, str(r), str(db), port], stdout=subprocess.PIPE, text=True
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=240)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outs) == [["0", "run-2"], ["1", "run-2"]]
    with Store(db, readonly=True) as st:
        assert st.steps("run-2") == [1, 2]
