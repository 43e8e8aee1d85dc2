"""The watch over a store's values (``serve --watch``, a continued ``sweep --watch``): steps read
back in order, per-head series as (layers, heads), each new step evaluated once per poll."""

from __future__ import annotations

import numpy as np

from layerscope.store import LayerInfo, StepRecord, Store
from layerscope.watch_store import StoreWatcher, run_values


def _write(st: Store, step: int, max_abs: float, logit: float) -> None:
    heads = np.full((2, 3), 6.0 + 0.01 * step)
    heads[1, 2] = logit
    st.write_steps(
        "r",
        [
            StepRecord(
                step, {("max_abs", "output"): [1.0 + 0.01 * step, max_abs], ("max_logit", "attn"): heads}
            )
        ],
    )


def test_run_values_are_in_step_order_with_heads(tmp_path) -> None:
    with Store(tmp_path / "s.db") as st:
        st.create_run("r", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        for step in (3, 1, 2):
            _write(st, step, 2.0, 6.0)
        got = run_values(st, "r")
        assert [s for s, _ in got] == [1, 2, 3]
        assert got[0][1][("max_logit", "attn")].shape == (2, 3)
        np.testing.assert_array_equal(got[0][1][("max_abs", "output")], [1.01, 2.0])
        assert [s for s, _ in run_values(st, "r", since_step=2)] == [3]


def test_store_watcher_evaluates_new_steps_once(tmp_path) -> None:
    path = tmp_path / "s.db"
    said: list[str] = []
    w = StoreWatcher(path, lambda run, a: said.append(f"{run}: {a.message}"))
    assert w.poll() == []  # no store yet: nothing, no error
    with Store(path) as st:
        st.create_run("r", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
        for step in range(1, 11):
            _write(st, step, 2.0, 6.0)
    assert w.poll() == [] and w.poll() == []
    with Store(path) as st:
        _write(st, 11, 80.0, 300.0)  # layer 2's max_abs and its head 2's max logit jump
    alerts = w.poll()
    assert sorted((a.step, a.site, a.layer, a.head) for a in alerts) == [
        (11, "attn", 2, 2),
        (11, "output", 2, None),
    ]
    assert w.poll() == [] and len(said) == 2 and all(s.startswith("r: step 11") for s in said)
    assert len(w.alerts("r")) == 2
