"""Two gloo processes: rank 0's record equals one process recording the union; rank 1 writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import layerscope
from layerscope.stats import register_metric, unregister_metric

METRICS = [
    "mean",
    "std",
    "rms",
    "abs_mean",
    "min",
    "max",
    "max_abs",
    "kurtosis",
    "top_ratio",
    "zero_frac",
    "pos_frac",
    "dead_frac",
    "nan_frac",
    "inf_frac",
    "hist",
    "batch_max",
]


def _model():
    from layerscope.testing import tiny_gpt

    return tiny_gpt(n_layer=3, n_embd=16, n_head=2, block_size=8, activation="relu", seed=7)


def _batch(rank: int) -> torch.Tensor:
    # Different data and a different batch size per rank: the merge must weight by counts.
    return torch.randint(0, 256, (2 + 3 * rank, 8), generator=torch.Generator().manual_seed(100 + rank))


def _register() -> None:
    register_metric("batch_max", fn=lambda x: x.amax(), reduce="max", overwrite=True)


def _worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    try:
        _register()
        model = _model()
        store = os.path.join(tmp, f"rank{rank}.db")
        with layerscope.Recorder(
            model, store, run="ddp", metrics=METRICS, sites=["output", "mlp_act"]
        ) as rec:
            for step in (1, 2):
                model(_batch(rank))
                if step == 2:
                    model(_batch(rank) + 1)  # a second micro-batch on step 2
                rec.step(step)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_rank0_equals_single_process_on_union(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    assert not (tmp_path / "rank1.db").exists()  # rank 1 never opens the store

    _register()
    try:
        model = _model()
        single = tmp_path / "single.db"
        with layerscope.Recorder(
            model, single, run="ddp", metrics=METRICS, sites=["output", "mlp_act"]
        ) as rec:
            model(torch.cat([_batch(0), _batch(1)]))  # TinyGPT is per-sample: outputs concatenate
            rec.step(1)
            model(torch.cat([_batch(0), _batch(1)]))
            model(torch.cat([_batch(0) + 1, _batch(1) + 1]))
            rec.step(2)
        for metric in [m for m in METRICS if m != "hist"]:
            for site in ("output", "mlp_act"):
                a = layerscope.load(tmp_path / "rank0.db", metric=metric, site=site)
                b = layerscope.load(single, metric=metric, site=site)
                assert a.steps == b.steps == [1, 2]
                np.testing.assert_allclose(
                    a.values, b.values, rtol=1e-6, atol=1e-7, err_msg=f"{metric}/{site}"
                )
        with (
            layerscope.store.Store(tmp_path / "rank0.db", readonly=True) as s0,
            layerscope.store.Store(single, readonly=True) as s1,
        ):
            h0, _, _ = s0.load_hist("ddp")
            h1, _, _ = s1.load_hist("ddp")
            np.testing.assert_array_equal(h0, h1)  # counts add exactly
            assert s0.run_config("ddp")["world_size"] == 2
    finally:
        unregister_metric("batch_max")


def _failing_worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg2", rank=rank, world_size=world)
    try:
        try:
            # Rank 0 cannot create the store (its folder is missing); rank 1 never opens it.
            layerscope.Recorder(_model(), os.path.join(tmp, "no-such-folder", "r.db"), run="x")
        except layerscope.LayerscopeError as e:
            Path(tmp, f"raised{rank}").write_text(type(e).__name__)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_rank0_failing_to_open_the_store_stops_every_rank(tmp_path: Path) -> None:
    mp.spawn(_failing_worker, args=(2, str(tmp_path)), nprocs=2, join=True)  # no hang
    assert (tmp_path / "raised0").read_text() == "NotFoundError"
    assert (tmp_path / "raised1").read_text() == "DistributedError"
