"""Per-layer scalars and the Layer x Step heatmap in TensorBoard, from a plain loop.

    python examples/tensorboard_logging.py   # ~15 s on 2 CPU cores
    tensorboard --logdir layerscope-examples/tensorboard

Live: the Recorder writes into a ``SinkStore`` that also sends every written step to TensorBoard
(``layerscope/<metric>/<site>/layer_<i>``), at the recorder's flushes, with no extra device sync.
At the end, ``log_images`` adds one heatmap image per (metric, site) (``layerscope/heatmap/...``).
A run recorded without a sink can be sent afterwards with ``log_run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

import layerscope
from layerscope.integrations import SinkStore, TensorBoardSink, log_run
from layerscope.testing import Corpus, tiny_gpt

OUT = Path("layerscope-examples/tensorboard")


def main(steps: int = 150) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = tiny_gpt(n_layer=6, n_embd=48, n_head=4, block_size=32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    corpus = Corpus(n_chars=100_000)
    writer = SummaryWriter(str(OUT / "live"))

    with SinkStore(OUT / "runs.db", [TensorBoardSink(writer)]) as store:
        with layerscope.Recorder(
            model, store, run="tb-demo", every=5, metrics=("rms", "kurtosis"), flush_every=5
        ) as rec:
            for step in range(1, steps + 1):
                _, loss = model(*corpus.batch(8, 32, step))
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                writer.add_scalar("train/loss", loss.item(), step)  # host sync: the loop's own log
                rec.step(step)
        store.log_images("tb-demo")
    writer.close()

    # The same run, sent after the fact to another log folder.
    log_run(OUT / "runs.db", "tb-demo", to=SummaryWriter(str(OUT / "after")), metrics=["rms"])
    print(f"tensorboard --logdir {OUT}")


def steps_from_argv(default: int) -> int:
    """``--steps N`` (CI's smoke run passes a few); the default makes the example's figure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=default, help=f"optimizer steps (default {default})")
    return p.parse_args().steps


if __name__ == "__main__":
    main(steps_from_argv(150))
