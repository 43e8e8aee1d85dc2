"""Training sites on 2 CPU processes (gloo): DDP and FSDP2 give rank 0 the values of one process.

The reference is one process training on the union of both ranks' batches. Each rank's loss is
its share of the union's mean (sum over its tokens / all tokens), and the ranks' gradients are
summed (a DDP comm hook; FSDP2's divide factor 1), so every rank's block-output gradients are the
union process's, and the parameters' gradients and the model are the same at every step.

What is checked: ``grad_output`` merges the ranks' different gradients (like activations);
``param_grad``, ``update`` and ``weight`` are counted once under DDP (identical on every rank) and
merged exactly from the shards under FSDP2 (a norm of the full tensor, not of a shard).
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
import torch.nn.functional as F

import layerscope
from layerscope.stats import available_metrics, register_metric, unregister_metric
from layerscope.testing import Corpus, tiny_gpt

WORLD, STEPS = 2, 3
B, T = 2, 16
SITES = ("grad_output", "param_grad", "update", "weight")
METRICS = ("mean", "std", "rms", "max_abs", "norm", "count")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _register_count() -> None:
    if "count" not in available_metrics():
        register_metric("count", from_stats=lambda s: s.n, needs=("moments",), description="elements seen")


def _model() -> torch.nn.Module:
    return tiny_gpt(n_layer=3, n_embd=16, n_head=2, block_size=T, seed=0)


def _batch(corpus: Corpus, step: int, rank: int):
    return corpus.batch(B, T, step=step * WORLD + rank)


def _loss(model, x, y) -> torch.Tensor:
    logits = model(x)
    total = WORLD * B * T  # the union's tokens: each rank's share of the union's mean
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum") / total


def _values(history) -> dict[str, dict[str, list[float]]]:
    return {
        str(r.step): {f"{m}/{s}": list(v) for (m, s), v in r.values.items() if m in (*METRICS, "ratio")}
        for r in history
    }


def _sum_hook(state, bucket):
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def _worker(rank: int, tmp: str, port: int, mode: str) -> None:
    torch.set_num_threads(1)
    _register_count()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = _model()
        if mode == "ddp":
            model = torch.nn.parallel.DistributedDataParallel(model)
            model.register_comm_hook(None, _sum_hook)  # summed, not averaged: see the module docstring
        else:
            from torch.distributed.fsdp import FSDPModule, fully_shard

            for block in model.h:
                fully_shard(block)
            fully_shard(model)
            for m in model.modules():
                if isinstance(m, FSDPModule):
                    m.set_gradient_divide_factor(1.0)
                    m.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        corpus = Corpus(n_chars=20_000)
        with layerscope.Recorder(
            model, None, run=mode, metrics=METRICS, sites=SITES, optimizer=opt, start_step=1
        ) as rec:
            for step in range(1, STEPS + 1):
                x, y = _batch(corpus, step, rank)
                _loss(model, x, y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                rec.step(step)
        if rank == 0:
            (Path(tmp) / f"{mode}.json").write_text(json.dumps(_values(rec.history)))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _reference() -> dict[str, dict[str, list[float]]]:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(model, None, metrics=METRICS, sites=SITES, optimizer=opt, start_step=1) as rec:
        for step in range(1, STEPS + 1):
            parts = [_batch(corpus, step, r) for r in range(WORLD)]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            _loss(model, x, y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)
    return _values(rec.history)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_rank0_values_equal_one_process_on_the_union(tmp_path, mode):
    mp.spawn(_worker, args=(str(tmp_path), _free_port(), mode), nprocs=WORLD, join=True)
    got = json.loads((tmp_path / f"{mode}.json").read_text())
    _register_count()
    try:
        want = _reference()
    finally:
        unregister_metric("count")  # leave the registry as other tests expect it
    assert sorted(got) == sorted(want) == ["1", "2", "3"]
    for step, cells in want.items():
        assert set(got[step]) == set(cells)
        for key, ref in cells.items():
            if key.startswith("count/"):
                # Elements counted once: the union's gradients, each parameter once (not N times).
                np.testing.assert_array_equal(got[step][key], ref, err_msg=f"{mode} {step} {key}")
            else:
                # float32 training noise (all-reduce / reduce-scatter order vs one batch); the
                # statistics themselves merge exactly.
                np.testing.assert_allclose(
                    got[step][key], ref, rtol=2e-4, atol=1e-9, err_msg=f"{mode} {step} {key}"
                )
    # The parameter counts are the blocks' full sizes: a shard's would be about half.
    n_block = sum(p.numel() for p in _model().h[0].parameters())
    assert got["1"]["count/weight"][0] == n_block
