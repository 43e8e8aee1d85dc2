"""A run provoked into divergence (the learning rate grows 30% a step after step 40): the watch's
first alert comes before the first NaN loss."""

from __future__ import annotations

import math

import numpy as np
import torch

import layerscope
from layerscope.testing import tiny_gpt
from layerscope.testing.corpus import Corpus


def test_watch_fires_before_the_loss_is_nan(store_path) -> None:
    torch.manual_seed(0)
    m = tiny_gpt(n_layer=4, n_embd=64, n_head=4, block_size=32)
    corpus = Corpus(n_chars=20000)
    opt = torch.optim.SGD(m.parameters(), lr=0.3)
    first_nan = None
    with layerscope.Recorder(
        m, store_path, run="diverge", sites=("output", "attn", "logits"), every=1, watch=True
    ) as rec:
        for step in range(1, 200):
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
    assert rec.watch is not None and first_nan is not None
    first_alert = min(a.step for a in rec.watch.alerts)
    assert 40 < first_alert < first_nan
    assert all(a.step > 40 for a in rec.watch.alerts)  # nothing while training was healthy
    # Stored with the run: the events table, and the per-head max logit series.
    with layerscope.store.Store(store_path, readonly=True) as st:
        events = st.events("diverge")
        assert [(e.step, e.layer, e.rule) for e in events] == [
            (a.step, a.layer, a.rule) for a in rec.watch.alerts
        ]
        hm = st.load_heads("diverge", "max_logit", "attn", step=first_alert)
        assert hm.values.shape == (4, 4) and np.isfinite(hm.values).all()
