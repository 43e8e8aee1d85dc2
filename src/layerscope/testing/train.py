"""The demo's training loop: TinyGPT on the generated corpus, recorded by a Recorder.

Read it as the plain-loop integration example: the only layerscope lines are the ``Recorder``
(given the optimizer, for the ``update`` site's step hooks) and ``rec.step(step)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..recorder import Recorder
from .corpus import Corpus
from .model import GPTConfig, TinyGPT


@dataclass
class TrainConfig:
    steps: int = 600  # optimizer updates; the demo's default trains in about a minute on 2 cores
    every: int = 20  # record every N-th step -> steps / every rows in the heatmap
    batch_size: int = 16
    lr: float = 3e-3  # high for a tiny model: activations move visibly within a few hundred steps
    warmup: int = 50  # linear warm-up steps, then cosine decay to lr/10
    weight_decay: float = 0.1
    grad_accum: int = 1  # micro-batches per optimizer step (they fold into one recorded step)
    seed: int = 0
    metrics: Sequence[str] = ("mean", "std", "rms", "max_abs", "kurtosis", "top_ratio", "zero_frac")
    sites: Sequence[str] = ("output",)
    model: GPTConfig = field(default_factory=GPTConfig)
    threads: int | None = None  # torch threads; None keeps torch's default


def _lr(step: int, cfg: TrainConfig) -> float:
    import math

    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def train(
    cfg: TrainConfig,
    store: str | os.PathLike[str] | None,
    run: str = "demo",
    on_step: Callable[[int, float], None] | None = None,
    recorder_kwargs: dict | None = None,
) -> tuple[TinyGPT, list[float]]:
    """Train TinyGPT for ``cfg.steps`` optimizer steps, recording into ``store``/``run``.

    Returns the model and the loss of every step. ``on_step(step, loss)`` is called after each step
    (the demo's progress bar).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = TinyGPT(cfg.model)
    corpus = Corpus(seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    losses: list[float] = []
    kwargs = dict(
        metrics=cfg.metrics,
        every=cfg.every,
        sites=cfg.sites,
        optimizer=opt,  # param_grad / update / weight are taken at its step hooks
        notes={
            "train": {
                "steps": cfg.steps,
                "lr": cfg.lr,
                "batch_size": cfg.batch_size,
                "grad_accum": cfg.grad_accum,
                "model": vars(cfg.model),
            }
        },
    )
    kwargs.update(recorder_kwargs or {})
    with Recorder(model, store, run=run, **kwargs) as rec:  # type: ignore[arg-type]
        for step in range(1, cfg.steps + 1):
            for g in opt.param_groups:
                g["lr"] = _lr(step - 1, cfg)
            total = 0.0
            for micro in range(cfg.grad_accum):
                x, y = corpus.batch(cfg.batch_size, cfg.model.block_size, step * cfg.grad_accum + micro)
                _, loss = model(x, y)
                (loss / cfg.grad_accum).backward()
                total += float(loss.detach()) / cfg.grad_accum  # host sync: the loop's own, for the log
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(step)
            losses.append(total)
            if on_step is not None:
                on_step(step, total)
    return model, losses
