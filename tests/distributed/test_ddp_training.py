"""DDP training on 2 CPU processes (gloo): every rank records, statistics are reduced, rank 0 writes.

The reference is the same training done by one process on the concatenation of both ranks'
batches: with a mean loss over equal-size batches, DDP's averaged gradient is that process's
gradient, so the model is the same at every step, and rank 0's rows must be the statistics of the
union of both ranks' activations.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import layerscope
from layerscope.stats import available_metrics, register_metric, unregister_metric
from layerscope.testing import Corpus, tiny_gpt

WORLD, STEPS, EVERY = 2, 6, 2
B, T = 4, 16
METRICS = ("mean", "std", "rms", "max_abs", "min", "max", "kurtosis", "zero_frac", "count")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _register_count() -> None:
    if "count" not in available_metrics():
        register_metric("count", from_stats=lambda s: s.n, needs=("moments",), description="elements seen")


def _model():
    return tiny_gpt(n_layer=3, n_embd=16, n_head=2, block_size=T, activation="relu", seed=0)


def _batch(corpus: Corpus, step: int, rank: int):
    return corpus.batch(B, T, step=step * WORLD + rank)


def _values(history, metric: str) -> dict[str, list[float]]:
    return {str(r.step): list(r.values[(metric, "output")]) for r in history}


def _worker(rank: int, tmp: str, port: int) -> None:
    torch.set_num_threads(1)
    _register_count()  # a spawned process starts with the built-in metrics only
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        # What this rank alone sees: a recorder reducing over a group of one.
        solo = [dist.new_group([r]) for r in range(WORLD)][rank]
        model = torch.nn.parallel.DistributedDataParallel(_model())
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        corpus = Corpus(n_chars=20_000)
        # Each rank gets its own store path (a user passes the same one): it shows rank 1 opens none.
        rec = layerscope.Recorder(
            model, Path(tmp) / f"runs-rank{rank}.db", run="ddp", metrics=METRICS, every=EVERY, start_step=1
        )
        local = layerscope.Recorder(
            model, None, run="local", metrics=METRICS, every=EVERY, start_step=1, process_group=solo
        )
        with rec, local:
            for step in range(1, STEPS + 1):
                x, y = _batch(corpus, step, rank)
                _, loss = model(x, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                rec.step(step)
                local.step(step)
            info = {
                "store_open": rec.store is not None,
                "history": len(rec.history),
                "recorded": rec.n_recorded,
            }
        info["local"] = {m: _values(local.history, m) for m in ("count", "max_abs", "std")}
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(info))
        dist.barrier()  # nobody tears gloo down while a peer is still in a collective
    finally:
        dist.destroy_process_group()


def _reference() -> list:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(model, None, run="ref", metrics=METRICS, every=EVERY, start_step=1) as rec:
        for step in range(1, STEPS + 1):
            parts = [_batch(corpus, step, r) for r in range(WORLD)]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)
    return rec.history


@pytest.fixture
def count_metric():
    _register_count()
    yield "count"
    unregister_metric("count")


@pytest.mark.timeout(180)
def test_ddp_ranks_reduce_and_rank0_writes_the_union(tmp_path, count_metric):
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)

    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert info[0]["store_open"] and info[0]["recorded"] == STEPS // EVERY
    # Rank 1 recorded (it took part in every reduction) but opened no store and kept nothing.
    assert (info[1]["store_open"], info[1]["history"], info[1]["recorded"]) == (False, 0, STEPS // EVERY)
    assert not (tmp_path / "runs-rank1.db").exists()

    db = tmp_path / "runs-rank0.db"
    ref = {r.step: r for r in _reference()}
    assert sorted(ref) == [2, 4, 6]
    for metric in METRICS:
        hm = layerscope.load(db, run="ddp", metric=metric)
        assert hm.steps == [2, 4, 6]
        want = np.array([ref[s].values[(metric, "output")] for s in hm.steps])
        # Equal up to float32 training noise (all-reduce vs one batch); the statistics merge exactly.
        np.testing.assert_allclose(hm.values, want, rtol=2e-4, atol=1e-6, err_msg=metric)

    # The union is not what either rank saw alone: twice the elements, the larger extreme.
    count = layerscope.load(db, run="ddp", metric="count")
    max_abs = layerscope.load(db, run="ddp", metric="max_abs")
    std = layerscope.load(db, run="ddp", metric="std")
    for i, s in enumerate(count.steps):
        alone = [r["local"] for r in info]
        np.testing.assert_array_equal(count.values[i], np.sum([a["count"][str(s)] for a in alone], axis=0))
        np.testing.assert_allclose(
            max_abs.values[i], np.max([a["max_abs"][str(s)] for a in alone], axis=0), rtol=1e-6
        )
        for a in alone:
            assert not np.allclose(std.values[i], a["std"][str(s)], rtol=1e-4)
    with layerscope.store.Store(db, readonly=True) as st:
        assert st.run_config("ddp")["world_size"] == WORLD
