"""Two gloo processes: a model wrapped in DDP, FSDP1 or FSDP2 has the same layers, indices and site
modules as the plain model, and every site records through the wrapper."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

import layerscope
from layerscope.capture import SITES, discover_layers, site_map

WRAPPERS = ("ddp", "fsdp1", "fsdp2")


def _model() -> torch.nn.Module:
    from layerscope.testing import tiny_gpt

    return tiny_gpt(n_layer=3, n_embd=16, n_head=2, block_size=8, activation="relu", seed=11)


def _describe(model: torch.nn.Module) -> list[list[Any]]:
    return [
        [
            la.index,
            la.name,
            la.stack,
            la.depth,
            {s: [h.module_name, h.kind] for s, h in site_map(la).items() if h is not None},
        ]
        for la in discover_layers(model)
    ]


def _wrap(kind: str, model: torch.nn.Module) -> torch.nn.Module:
    from layerscope.testing.model import Block

    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return FullyShardedDataParallel(
            model, auto_wrap_policy=ModuleWrapPolicy({Block}), device_id=torch.device("cpu")
        )
    from torch.distributed.fsdp import fully_shard

    for block in model.h:
        fully_shard(block)
    return fully_shard(model)


def _worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    try:
        out: dict[str, Any] = {}
        for kind in WRAPPERS:
            wrapped = _wrap(kind, _model())
            out[kind] = _describe(wrapped)
            x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(rank))
            with layerscope.Recorder(
                wrapped, os.path.join(tmp, "runs.db"), run=kind, metrics=["rms"], sites=list(SITES)
            ) as rec:
                wrapped(x).float().pow(2).mean().backward()  # a training step's forward and backward
                rec.step(1)
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_wrapped_models_share_layers_and_sites_with_the_plain_model(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    plain = json.loads(json.dumps(_describe(_model())))  # tuples -> lists, as the workers wrote
    assert [row[1] for row in plain] == ["h.0", "h.1", "h.2"]
    assert plain[0][4]["mlp_act"] == ["h.0.mlp.act", "output"]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for kind in WRAPPERS:
            assert got[kind] == plain, (rank, kind)
    for kind in WRAPPERS:  # rank 0 wrote every site of every layer, under the plain names
        for site in SITES:
            hm = layerscope.load(tmp_path / "runs.db", run=kind, metric="rms", site=site)
            assert hm.layer_names == ["h.0", "h.1", "h.2"] and hm.steps == [1]
            assert all(math.isfinite(v) and v > 0 for v in hm.values[0]), (kind, site, hm.values)
