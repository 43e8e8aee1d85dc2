"""Data-parallel training (DDP) recorded by layerscope: every rank records, rank 0 writes.

    python examples/ddp_training.py                          # spawns 2 CPU processes (gloo), ~15 s
    torchrun --nproc_per_node 2 examples/ddp_training.py     # the same under torchrun (GPUs: nccl)

Each rank trains on its own batches; at each recorded step the statistics of all ranks are merged
exactly (a collective: every rank calls ``rec.step``), so the store holds the statistics of the
whole global batch. Every rank passes the same store path; only rank 0 opens it.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist

import layerscope
from layerscope.testing import Corpus, tiny_gpt

OUT = Path("layerscope-examples/ddp")


def worker(rank: int, world: int, steps: int = 60) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl", rank=rank, world_size=world)
    device = torch.device("cuda", rank % torch.cuda.device_count()) if torch.cuda.is_available() else "cpu"
    model = tiny_gpt(n_layer=4, n_embd=32, block_size=32).to(device)
    model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    corpus = Corpus(n_chars=100_000)
    with layerscope.Recorder(model, OUT / "runs.db", run="ddp", every=5, metrics=("rms", "max_abs")) as rec:
        for step in range(1, steps + 1):
            x, y = (t.to(device) for t in corpus.batch(8, 32, step=step * world + rank))  # this rank's shard
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)  # every rank, every step: the reduction is a collective
    dist.barrier()
    if rank == 0:
        hm = layerscope.load(OUT / "runs.db", run="ddp", metric="rms")
        print(
            f"rank 0 wrote steps {hm.steps[0]}..{hm.steps[-1]} for {world} ranks; "
            f"last row {hm.values[-1].round(3)}"
        )
    dist.destroy_process_group()


def _spawned(rank: int, world: int, port: int, steps: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    worker(rank, world, steps)


def steps_from_argv(default: int) -> int:
    """``--steps N`` (CI's smoke run passes a few); the default makes the example's figure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=default, help=f"optimizer steps (default {default})")
    return p.parse_args().steps


if __name__ == "__main__":
    n_steps = steps_from_argv(60)
    OUT.mkdir(parents=True, exist_ok=True)
    if "RANK" in os.environ:  # under torchrun
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), n_steps)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.multiprocessing.spawn(_spawned, args=(2, port, n_steps), nprocs=2, join=True)
