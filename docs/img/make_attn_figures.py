"""Regenerate docs/img/attn-heads-max-logit.png: the diverging tiny-GPT run of
tests/integration/test_watch_instability.py, the head x layer max-logit map at the first alert."""

import math
import tempfile
from pathlib import Path

import torch

import layerscope
from layerscope.render.heads import plot_heads
from layerscope.testing import tiny_gpt
from layerscope.testing.corpus import Corpus

torch.manual_seed(0)
m = tiny_gpt(n_layer=4, n_embd=64, n_head=4, block_size=32)
corpus, opt = Corpus(n_chars=20000), torch.optim.SGD(m.parameters(), lr=0.3)
db = Path(tempfile.mkdtemp()) / "runs.db"
with layerscope.Recorder(
    m, db, run="diverge", sites=("output", "attn", "logits"), every=1, watch=True
) as rec:
    for step in range(1, 200):
        if step > 40:
            for g in opt.param_groups:
                g["lr"] *= 1.3
        x, y = corpus.batch(8, 32, step)
        _, loss = m(x, y)
        if not math.isfinite(loss.item()):
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
        rec.step(step)
first = min(a.step for a in rec.watch.alerts)
with layerscope.store.Store(db, readonly=True) as st:
    plot_heads(
        st.load_heads("diverge", "max_logit", "attn", step=first),
        Path(__file__).parent / "attn-heads-max-logit.png",
    )
