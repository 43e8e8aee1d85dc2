"""A run provoked into divergence, shared by the watch's test and the docs figures of its alerts.

The tiny GPT (4 blocks of width 64, 4 heads) trained with SGD at lr 0.3, the learning rate growing
30% a step after step 40, every step recorded at the block outputs, the attention heads and the
output logits, with the default watch; training stops at the first non-finite loss.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..recorder import Recorder
from ..watch import Alert
from .corpus import Corpus
from .model import tiny_gpt


@dataclass
class DivergingRun:
    """What :func:`diverging_run` saw: the step of the first non-finite loss (None: none within
    ``max_steps``) and the watch's alerts, in the order they fired."""

    first_nan: int | None
    alerts: list[Alert]


def diverging_run(store: str | os.PathLike[str], run: str = "diverge", max_steps: int = 200) -> DivergingRun:
    """Record the diverging run into ``store`` as ``run``.

    >>> import tempfile, os
    >>> r = diverging_run(os.path.join(tempfile.mkdtemp(), "r.db"))   # doctest: +SKIP
    >>> r.alerts[0].step < r.first_nan                                 # doctest: +SKIP
    True
    """
    torch.manual_seed(0)
    m = tiny_gpt(n_layer=4, n_embd=64, n_head=4, block_size=32)
    corpus = Corpus(n_chars=20000)
    opt = torch.optim.SGD(m.parameters(), lr=0.3)
    first_nan = None
    with Recorder(m, store, run=run, sites=("output", "attn", "logits"), every=1, watch=True) as rec:
        for step in range(1, max_steps):
            if step > 40:
                for g in opt.param_groups:
                    g["lr"] *= 1.3
            x, y = corpus.batch(8, 32, step)
            _, loss = m(x, y)
            if not math.isfinite(loss.item()):
                first_nan = step
                break
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)
    assert rec.watch is not None
    return DivergingRun(first_nan, list(rec.watch.alerts))


__all__ = ["DivergingRun", "diverging_run"]
