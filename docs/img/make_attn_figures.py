"""Regenerate docs/img/attn-heads-max-logit.png: the diverging tiny-GPT run of
tests/integration/test_watch_instability.py, the head x layer max-logit map at the first alert."""

import tempfile
from pathlib import Path

import layerscope
from layerscope.render.heads import plot_heads
from layerscope.testing.diverge import diverging_run

db = Path(tempfile.mkdtemp()) / "runs.db"
first = min(a.step for a in diverging_run(db, "diverge").alerts)
with layerscope.store.Store(db, readonly=True) as st:
    plot_heads(
        st.load_heads("diverge", "max_logit", "attn", step=first),
        Path(__file__).parent / "attn-heads-max-logit.png",
    )
