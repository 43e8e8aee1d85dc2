"""The live watch: rules on flushed host values, once per (rule, layer), stop after a final flush."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

import layerscope
from layerscope.errors import ConfigError, WatchAlert
from layerscope.watch import Rule, Watch, as_rules, default_rules


def _feed(w: Watch, series: dict[tuple[str, str], list], steps: range) -> list:
    out = []
    for i, step in enumerate(steps):
        out += w.check(step, {k: v[i] for k, v in series.items()})
    return out


def test_jump_fires_once_per_rule_and_layer_with_step_and_value() -> None:
    buf = io.StringIO()
    w = Watch(default_rules(), {1: "h.0", 2: "h.1"}, print_to=buf)
    vals = [[1.0 + 0.01 * i, 2.0] for i in range(20)] + [[50.0, 2.0], [60.0, 2.1]]
    alerts = _feed(w, {("max_abs", "output"): vals}, range(10, 230, 10))
    assert [(a.step, a.layer, a.metric) for a in alerts] == [(210, 1, "max_abs")]
    assert alerts[0].value == 50.0
    assert buf.getvalue().count("\n") == 1 and "step 210" in buf.getvalue() and "h.0" in buf.getvalue()


def test_per_head_max_logit_names_the_head() -> None:
    w = Watch(default_rules(), print_to=None)
    base = np.full((2, 4), 6.0)
    series = [base + 0.01 * i for i in range(10)]
    spike = base.copy()
    spike[1, 3] = 200.0
    alerts = _feed(w, {("max_logit", "attn"): [*series, spike]}, range(1, 12))
    assert [(a.layer, a.head) for a in alerts] == [(2, 3)]


def test_nonfinite_appearing_but_not_a_layer_without_values() -> None:
    w = Watch(default_rules(), print_to=None)
    vals = [[1.0, math.nan], [1.0, math.nan], [math.inf, math.nan]]
    alerts = _feed(w, {("rms", "output"): vals}, range(1, 4))
    assert [(a.step, a.layer, a.rule) for a in alerts] == [(3, 1, "nonfinite *@*")]


def test_update_ratio_bound_and_user_rule() -> None:
    rules = as_rules(["default", ("output", "rms", lambda v: v > 3.0)])
    w = Watch(rules, print_to=None)
    alerts = _feed(w, {("ratio", "update"): [[1e-3, 0.2]], ("rms", "output"): [[1.0, 4.0]]}, range(5, 6))
    assert sorted((a.metric, a.layer) for a in alerts) == [("ratio", 2), ("rms", 2)]
    with pytest.raises(ConfigError):
        as_rules(3)
    with pytest.raises(ConfigError):
        Rule("predicate", "rms", "output")


def test_recorder_stops_a_plain_loop_after_a_final_flush(store_path) -> None:
    from layerscope.testing import tiny_gpt

    m = tiny_gpt(n_layer=2, n_embd=32, n_head=4, block_size=16)
    rule = ("output", "rms", lambda v: v > 0.0)  # fires at the first recorded step
    x = torch.randint(0, 60, (2, 16))
    rec = layerscope.Recorder(m, None, every=2, watch=rule, on_alert="stop")
    rec.step(1)
    _, loss = m(x, x)
    with pytest.raises(WatchAlert) as e:
        rec.step(2)
    assert e.value.alerts and e.value.alerts[0].step == 2 and "\n" not in str(e.value)
    assert [r.step for r in rec.history] == [2]  # flushed before raising
    rec.close()
    with pytest.raises(ConfigError):
        layerscope.Recorder(m, None, on_alert="explode")


def test_watch_flushes_every_record_step_by_default() -> None:
    from layerscope.testing import tiny_gpt

    m = tiny_gpt(n_layer=2, n_embd=32, n_head=4, block_size=16)
    assert layerscope.Recorder(m, None, watch=True).config.flush_every == 1
    assert layerscope.Recorder(m, None).config.flush_every == 50
    assert layerscope.Recorder(m, None, watch=True, flush_every=5).config.flush_every == 5


def test_a_retried_flush_feeds_each_step_into_the_history_once() -> None:
    """A flush whose write failed presents its steps again: the rule's warmup and band must count
    each step once, and the alert fired by the failed flush must come back to be stored."""
    from layerscope.flushing import watch_records
    from layerscope.store import StepRecord

    def rec(step: int, v: float) -> StepRecord:
        return StepRecord(step, {("max_abs", "output"): [v]})

    buf = io.StringIO()
    rule = Rule("jump", "max_abs", "output", warmup=4, factor=10.0)
    w = Watch([rule], print_to=buf)
    # Steps 1..3 (three values), each flush failing twice before it is written.
    pending: list = []
    for step in (1, 2, 3):
        pending.append(rec(step, 1.0))
        for _ in range(3):
            assert watch_records(w, pending) == []
        pending = []
    # Step 4 jumps: the history holds 3 values, under the warmup of 4, so it must not fire.
    assert watch_records(w, [rec(4, 100.0)]) == []
    # Step 5 jumps again (history: 1, 1, 1, 100; median 1): fires; its flush fails and is retried.
    first = watch_records(w, [rec(5, 50.0)])
    assert [a.step for a in first] == [5]
    retried = [rec(5, 50.0), rec(6, 1.0)]
    again = watch_records(w, retried)
    assert [a.step for a in again] == [5]  # returned again, to be written with step 5 this time
    assert [e.step for e in retried[0].events or []] == [5] and retried[1].events is None
    assert buf.getvalue().count("\n") == 1  # printed once
    assert [a.step for a in w.alerts] == [5]


def test_a_step_recorded_again_with_other_values_is_evaluated() -> None:
    w = Watch([Rule("predicate", "rms", "output", predicate=lambda v: v > 5)], print_to=None)
    assert w.check_flush([(10, {("rms", "output"): [1.0]})]) == [[]]
    (fired,) = w.check_flush([(10, {("rms", "output"): [9.0]})])  # not a retry: new values
    assert [a.value for a in fired] == [9.0]


def test_recorder_stores_the_alert_of_a_flush_that_failed_on_a_locked_store(tmp_path, monkeypatch) -> None:
    import sqlite3

    import layerscope.store.connection as connection
    from layerscope.errors import StoreError
    from layerscope.store import Store
    from layerscope.testing import tiny_gpt

    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.05)  # a locked store fails fast
    path = tmp_path / "runs.db"
    torch.manual_seed(0)
    m = tiny_gpt(n_layer=2, n_embd=32, n_head=4, block_size=16)
    rule = ("output", "rms", lambda v: v > 0.0)  # fires at the first recorded step, once per layer
    buf = io.StringIO()
    x = torch.randint(0, 60, (2, 16))
    with layerscope.Recorder(m, path, run="r", every=2, watch=rule) as rec:
        assert rec.watch is not None
        rec.watch.print_to = buf
        rec.step(1)
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        m(x, x)
        with pytest.raises(StoreError):
            rec.step(2)  # the flush fails: the store is locked
        lock.execute("ROLLBACK")
        lock.close()
        rec.step(3)
        m(x, x)
        rec.step(4)  # this flush writes steps 2 and 4
    with Store(path, readonly=True) as st:
        assert st.steps("r") == [2, 4]
        events = st.events("r")
    assert [(e.step, e.layer) for e in events] == [(2, 1), (2, 2)]  # the failed flush's alerts, once
    assert buf.getvalue().count("\n") == 2
