"""A training job for the concurrency test: records run RUN into STORE (flush_every=1) until the
file STOP exists, then closes and prints "done N" (N = steps recorded).

    python _writer_child.py STORE RUN STOP

Prints "ready" after its first step is committed.
"""

from __future__ import annotations

import os
import sys

import torch

from layerscope.recorder import Recorder
from layerscope.testing import tiny_gpt

METRICS = ("mean", "std", "rms", "max_abs")


def main() -> None:
    store, run, stop = sys.argv[1:4]
    torch.set_num_threads(1)
    model = tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16, seed=len(run))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))  # (B, T)
    y = torch.roll(x, -1, dims=1)
    step = 0
    with Recorder(model, store, run=run, metrics=METRICS, flush_every=1, start_step=1) as rec:
        while True:
            step += 1
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)
            if step == 1:
                print("ready", flush=True)
            if os.path.exists(stop) and step >= 20:
                break
    print(f"done {step}", flush=True)


if __name__ == "__main__":
    main()
