"""Resuming a plain training loop from a checkpoint continues the same layerscope run:
no gap, no duplicate, and a step recorded again replaces its old rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import torch

import layerscope
from layerscope.store import Store
from layerscope.testing import Corpus, tiny_gpt

METRICS = ("mean", "std", "rms", "max_abs")
N_LAYER = 3


def _train(model, opt, rec, steps, corpus, data_seed=0) -> None:
    for step in steps:
        x, y = corpus.batch(4, 16, step=step + 1000 * data_seed)
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec.step(step)


def _fresh():
    model = tiny_gpt(n_layer=N_LAYER, n_embd=16, n_head=2, block_size=16)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _checkpoint(model, opt, rec) -> dict:
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "opt": opt.state_dict(),
        "layerscope": rec.state_dict(),
    }


def _restore(ckpt):
    model, opt = _fresh()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    return model, opt


def _rows_per_step(db: Path) -> dict[int, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT step, count(*) FROM metric_values GROUP BY step").fetchall())


def test_resume_continues_the_run_and_rerecorded_steps_replace_their_rows(tmp_path):
    db = tmp_path / "runs.db"
    corpus = Corpus(n_chars=20_000)
    model, opt = _fresh()
    ckpts = {}
    with layerscope.Recorder(model, db, run="r", metrics=METRICS, every=1) as rec:
        _train(model, opt, rec, range(1, 16), corpus)
        ckpts[15] = _checkpoint(model, opt, rec)
        _train(model, opt, rec, range(16, 21), corpus)
        ckpts[20] = _checkpoint(model, opt, rec)

    # 1. The job stops at 20 and restarts from its step-20 checkpoint: steps 21.. follow on.
    model, opt = _restore(ckpts[20])
    with layerscope.Recorder(model, db, run="r", metrics=METRICS, every=1) as rec:
        rec.load_state_dict(ckpts[20]["layerscope"])
        _train(model, opt, rec, range(21, 31), corpus)
    with Store(db, readonly=True) as st:
        assert st.run_names() == ["r"]
        assert st.steps("r") == list(range(1, 31))
        before = st.load("r", "rms").values.copy()
    assert _rows_per_step(db) == {s: N_LAYER * len(METRICS) for s in range(1, 31)}

    # 2. A restart from an older checkpoint (15) re-records 16..20, on other data this time.
    model, opt = _restore(ckpts[15])
    with layerscope.Recorder(model, db, run="r", metrics=METRICS, every=1) as rec:
        rec.load_state_dict(ckpts[15]["layerscope"])
        _train(model, opt, rec, range(16, 21), corpus, data_seed=1)
    # The same replay into a store of its own gives the values the replaced rows must hold.
    model, opt = _restore(ckpts[15])
    with layerscope.Recorder(model, tmp_path / "ref.db", run="r", metrics=METRICS, start_step=16) as rec:
        _train(model, opt, rec, range(16, 21), corpus, data_seed=1)

    assert _rows_per_step(db) == {s: N_LAYER * len(METRICS) for s in range(1, 31)}  # replaced, not added
    after = layerscope.load(db, "r", "rms")
    ref = layerscope.load(tmp_path / "ref.db", "r", "rms")
    assert after.steps == list(range(1, 31))
    np.testing.assert_array_equal(after.values[15:20], ref.values)  # steps 16..20: the new rows
    assert not np.allclose(before[15:20], ref.values)  # ... which differ from the old ones
    np.testing.assert_array_equal(after.values[:15], before[:15])  # the rest untouched
    np.testing.assert_array_equal(after.values[20:], before[20:])


def test_restored_recorder_listens_only_when_the_next_step_records(tiny_model):
    def restored_at(last_step: int) -> bool:
        rec = layerscope.Recorder(tiny_model, None, run="s", every=5)
        rec.step(last_step)
        state = rec.state_dict()
        rec.close()
        again = layerscope.Recorder(tiny_model, None, run="s", every=5)  # listens: first step unknown
        again.load_state_dict(state)
        attached = again.attached
        again.close()
        return attached

    assert restored_at(9)  # step 10 records: hooks on from the first forward
    assert not restored_at(7)  # step 8 does not: hooks off, the step costs nothing
