"""A run provoked into divergence (the learning rate grows 30% a step after step 40): the watch's
first alert comes before the first NaN loss."""

from __future__ import annotations

import numpy as np

import layerscope
from layerscope.testing.diverge import diverging_run


def test_watch_fires_before_the_loss_is_nan(store_path) -> None:
    run = diverging_run(store_path, "diverge")
    first_nan, alerts = run.first_nan, run.alerts
    assert alerts and first_nan is not None
    first_alert = min(a.step for a in alerts)
    assert 40 < first_alert < first_nan
    assert all(a.step > 40 for a in alerts)  # nothing while training was healthy
    # Stored with the run: the events table, and the per-head max logit series.
    with layerscope.store.Store(store_path, readonly=True) as st:
        events = st.events("diverge")
        assert [(e.step, e.layer, e.rule) for e in events] == [(a.step, a.layer, a.rule) for a in alerts]
        hm = st.load_heads("diverge", "max_logit", "attn", step=first_alert)
        assert hm.values.shape == (4, 4) and np.isfinite(hm.values).all()
