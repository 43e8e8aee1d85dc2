"""Per-head ``attn`` (and ``logits``) statistics on 2 CPU processes (gloo, DDP): rank 0's merged
values equal one process on the union of both ranks' batches.

The ranks see different sequence lengths (rank 0: 16 tokens, rank 1: 8), so they contribute
different numbers of query rows: a mean of the ranks' means would be wrong, the merge of the
sufficient statistics (max of the max logit, sums of entropy and sink with the row counts) is
right. The reference runs both batches as two micro-batches of one optimizer step. Each rank's
loss is its share of the union's mean (sum over its tokens / all tokens) and DDP sums the
gradients (a comm hook), so the model is the union process's at every step and step 2's
statistics are comparable too.
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
from layerscope.testing import Corpus, tiny_gpt

WORLD, STEPS, B = 2, 2, 3
LENGTHS = (16, 8)  # tokens per sequence on rank 0 and rank 1
SITES = ("attn", "logits")
METRICS = {"attn": ("max_logit", "entropy", "sink"), "logits": ("max_logit", "log_z", "entropy")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> torch.nn.Module:
    return tiny_gpt(n_layer=3, n_embd=16, n_head=4, block_size=16, seed=0)


def _batch(corpus: Corpus, step: int, rank: int):
    return corpus.batch(B, LENGTHS[rank], step=step * WORLD + rank)


def _loss(model, x, y) -> torch.Tensor:
    logits = model(x)
    total = B * sum(LENGTHS)  # the union's tokens: each batch's share of the union's mean
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum") / total


def _values(history) -> dict[str, dict[str, list]]:
    return {
        str(r.step): {
            f"{m}/{site}": np.asarray(r.values[(m, site)], dtype=np.float64).tolist()
            for site in SITES
            for m in METRICS[site]
        }
        for r in history
    }


def _sum_hook(state, bucket):
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def _worker(rank: int, tmp: str, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        model.register_comm_hook(None, _sum_hook)  # summed, not averaged: see the module docstring
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        corpus = Corpus(n_chars=20_000)
        with layerscope.Recorder(model, None, run="ddp", sites=SITES, every=1, start_step=1) as rec:
            for step in range(1, STEPS + 1):
                x, y = _batch(corpus, step, rank)
                _loss(model, x, y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                rec.step(step)
        if rank == 0:
            (Path(tmp) / "ddp.json").write_text(json.dumps(_values(rec.history)))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _one_process(ranks: tuple[int, ...]) -> dict[str, dict[str, list]]:
    """One process taking the batches of ``ranks`` as micro-batches of each optimizer step."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(model, None, sites=SITES, every=1, start_step=1) as rec:
        for step in range(1, STEPS + 1):
            for r in ranks:
                x, y = _batch(corpus, step, r)
                _loss(model, x, y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)
    return _values(rec.history)


@pytest.mark.timeout(240)
def test_rank0_head_statistics_equal_one_process_on_the_union(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)
    got = json.loads((tmp_path / "ddp.json").read_text())
    want = _one_process((0, 1))
    assert sorted(got) == sorted(want) == ["1", "2"]
    for step, cells in want.items():
        assert set(got[step]) == set(cells)
        for key, ref in cells.items():
            g, w = np.asarray(got[step][key]), np.asarray(ref)
            if key.endswith("/attn"):  # (layers, heads)
                assert g.shape == w.shape == (3, 4) and np.isfinite(g).all(), key
            else:  # one series, stored at the last layer (the LM head's input)
                assert g.shape == w.shape == (3,) and np.isfinite(g[-1]) and np.isnan(g[:-1]).all(), key
            # Step 1 sees the same weights (float32 sums in another order only); step 2's weights
            # carry the all-reduce's rounding.
            rtol = 1e-5 if step == "1" else 2e-4
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-7, equal_nan=True, err_msg=f"{step} {key}")
    # The test can tell: rank 0's rows alone, or the plain mean of the two ranks' means (rank 0 has
    # twice rank 1's rows), give other values than the union.
    r0, r1 = _one_process((0,))["1"], _one_process((1,))["1"]
    for key in ("entropy/attn", "sink/attn"):
        union = np.asarray(want["1"][key])
        assert not np.allclose(r0[key], union, rtol=1e-3), key
        mean_of_means = (np.asarray(r0[key]) + np.asarray(r1[key])) / 2
        assert not np.allclose(mean_of_means, union, rtol=1e-3), key
        weighted = (2 * np.asarray(r0[key]) + np.asarray(r1[key])) / 3  # rows: B * 16 and B * 8
        np.testing.assert_allclose(weighted, union, rtol=1e-5, err_msg=key)
