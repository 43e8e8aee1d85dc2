"""A nanoGPT-style training loop recorded by layerscope: two added lines, ``Recorder`` and ``rec.step``.

    python examples/plain_loop.py            # ~20 s on 2 CPU cores
    layerscope plot layerscope-examples/plain_loop/runs.db --metric kurtosis

Trains a 6-layer TinyGPT on the generated corpus with gradient accumulation (2 micro-batches per
optimizer step), records every 10th step, saves a checkpoint half-way and resumes from it, then
draws the RMS heatmap. The resumed half continues the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import layerscope
from layerscope.testing import Corpus, GPTConfig, TinyGPT

OUT = Path("layerscope-examples/plain_loop")
STEPS, EVERY, ACCUM, BATCH = 200, 10, 2, 8


def train(model, opt, corpus, steps: range, rec) -> None:
    for step in steps:  # step = one optimizer update
        for micro in range(ACCUM):  # its micro-batches fold into one recorded step
            x, y = corpus.batch(BATCH, model.config.block_size, step=step * ACCUM + micro)  # (B, T)
            _, loss = model(x, y)
            (loss / ACCUM).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec.step(step)  # <- layerscope: after each optimizer step
        if step % 50 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}")  # host sync: the loop's own log


def main(steps: int = STEPS) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / "runs.db"
    torch.manual_seed(0)
    corpus = Corpus(n_chars=100_000)
    model = TinyGPT(GPTConfig(n_layer=6, n_embd=48, n_head=4, block_size=32, activation="relu"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    metrics = ("rms", "kurtosis", "max_abs", "zero_frac")

    # First half, then a checkpoint that carries the recorder's state with the model's.
    with layerscope.Recorder(
        model, db, run="tiny-gpt", every=EVERY, metrics=metrics, sites=("output", "mlp_act")
    ) as rec:
        train(model, opt, corpus, range(1, steps // 2 + 1), rec)
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "layerscope": rec.state_dict()},
            OUT / "ckpt.pt",
        )

    # ... the job is restarted: load the checkpoint, continue the same run.
    ckpt = torch.load(OUT / "ckpt.pt")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    with layerscope.Recorder(
        model, db, run="tiny-gpt", every=EVERY, metrics=metrics, sites=("output", "mlp_act")
    ) as rec:
        rec.load_state_dict(ckpt["layerscope"])
        train(model, opt, corpus, range(steps // 2 + 1, steps + 1), rec)

    hm = layerscope.load(db, run="tiny-gpt", metric="rms")
    print(f"recorded steps {hm.steps[0]}..{hm.steps[-1]} ({len(hm.steps)} rows) x {len(hm.layers)} layers")
    print("heatmap:", layerscope.plot(hm, OUT / "rms.png", title="RMS of the residual stream"))


def steps_from_argv(default: int) -> int:
    """``--steps N`` (CI's smoke run passes a few); the default makes the example's figure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=default, help=f"optimizer steps (default {default})")
    return p.parse_args().steps


if __name__ == "__main__":
    main(steps_from_argv(STEPS))
