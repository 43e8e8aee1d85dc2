"""The Hugging Face callback on a real ``transformers.Trainer`` (tiny GPT-2 built from a config, CPU)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import accelerate  # noqa: F401 - the Trainer needs it (a failure, not a skip, when missing)
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import layerscope
from layerscope.integrations.hf import LayerscopeCallback
from layerscope.stats import register_metric, unregister_metric
from layerscope.store import Store

N_LAYER, N_EMBD, SEQ, BATCH = 2, 32, 16, 4


@pytest.fixture
def count_metric():
    """'count': elements seen per (layer, step), to tell one micro-batch from two."""
    register_metric("count", from_stats=lambda s: s.n, needs=("moments",), description="elements seen")
    yield "count"
    unregister_metric("count")


def _dataset(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (n, SEQ), generator=g)
    return [{"input_ids": x, "labels": x} for x in ids]


def _train(
    out: Path,
    callback: LayerscopeCallback,
    *,
    max_steps: int = 20,
    accum: int = 1,
    save_steps: int | None = None,
    resume: str | None = None,
) -> Trainer:
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=N_LAYER,
        n_embd=N_EMBD,
        n_head=2,
        n_positions=32,
        vocab_size=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=accum,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = Trainer(
        model=GPT2LMHeadModel(cfg),
        args=args,
        callbacks=[callback],
        train_dataset=_dataset(max_steps * accum * BATCH),
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def _rows_per_step(db: Path) -> dict[int, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT step, count(*) FROM metric_values GROUP BY step").fetchall())


def test_trainer_records_every_5th_step_of_all_layers(tmp_path, count_metric):
    db = tmp_path / "runs.db"
    cb = LayerscopeCallback(
        store=db, run="gpt2", every=5, metrics=["rms", "std", count_metric], log_to="tensorboard"
    )
    _train(tmp_path / "out", cb)

    with Store(db, readonly=True) as st:
        assert st.steps("gpt2") == [5, 10, 15, 20]
        assert [li.name for li in st.layers("gpt2")] == ["transformer.h.0", "transformer.h.1"]
        rms = st.load("gpt2", "rms")
        count = st.load("gpt2", "count")
        cfg = st.run_config("gpt2")
    assert rms.values.shape == (4, N_LAYER) and np.isfinite(rms.values).all() and (rms.values > 0).all()
    # One micro-batch per step: (batch, seq, n_embd) elements per layer, nothing from other steps.
    assert (count.values == BATCH * SEQ * N_EMBD).all()
    assert _rows_per_step(db) == {s: 3 * N_LAYER for s in (5, 10, 15, 20)}
    assert cfg["notes"]["gradient_accumulation_steps"] == 1
    assert cb.recorder is None  # closed at on_train_end

    # log_to="tensorboard": scalars and the heatmaps next to the Trainer's own logs.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(
        str(tmp_path / "out" / "runs" / "layerscope"), size_guidance={"images": 0, "scalars": 0}
    )
    ea.Reload()
    assert "layerscope/heatmap/rms/output" in ea.Tags()["images"]
    pts = ea.Scalars("layerscope/rms/output/layer_2")
    assert [p.step for p in pts] == [5, 10, 15, 20]
    np.testing.assert_allclose([p.value for p in pts], rms.column(2), rtol=1e-6)


def test_gradient_accumulation_records_optimizer_steps_with_both_micro_batches(tmp_path, count_metric):
    db = tmp_path / "runs.db"
    _train(
        tmp_path / "out",
        LayerscopeCallback(store=db, run="ga", every=5, metrics=["rms", count_metric]),
        accum=2,
    )
    with Store(db, readonly=True) as st:
        assert st.steps("ga") == [5, 10, 15, 20]  # optimizer updates, not the 40 micro-batches
        count = st.load("ga", "count")
        assert st.run_config("ga")["notes"]["gradient_accumulation_steps"] == 2
    assert (count.values == 2 * BATCH * SEQ * N_EMBD).all()  # both micro-batches folded into the step


def test_resume_from_trainer_checkpoint_continues_the_run(tmp_path):
    db, out = tmp_path / "runs.db", tmp_path / "out"
    _train(out, LayerscopeCallback(store=db, run="res", every=5), max_steps=10, save_steps=10)
    assert (out / "checkpoint-10").is_dir()
    _train(
        out, LayerscopeCallback(store=db, run="res", every=5), max_steps=20, resume=str(out / "checkpoint-10")
    )
    with Store(db, readonly=True) as st:
        assert st.run_names() == ["res"]
        assert st.steps("res") == [5, 10, 15, 20]
    assert _rows_per_step(db) == {s: 4 * N_LAYER for s in (5, 10, 15, 20)}  # 4 default metrics, no duplicates


def test_probe_measures_every_recorded_step_on_the_same_batch(tmp_path, count_metric):
    probe = {"input_ids": torch.arange(24, dtype=torch.long).reshape(3, 8) % 64}  # (3, 8), not (BATCH, SEQ)
    db = tmp_path / "runs.db"
    _train(
        tmp_path / "out",
        LayerscopeCallback(store=db, run="p", every=5, metrics=["rms", count_metric], probe=probe),
        max_steps=10,
    )
    with Store(db, readonly=True) as st:
        assert st.steps("p") == [5, 10]
        count = st.load("p", "count")
        assert st.run_config("p")["probe_hash"]
    assert (count.values == 3 * 8 * N_EMBD).all()  # the probe's elements, not a training batch's


def test_default_store_and_run_come_from_training_args(tmp_path):
    out = tmp_path / "my-run"
    _train(out, LayerscopeCallback(every=10), max_steps=10)
    hm = layerscope.load(out / "layerscope.db", run="my-run", metric="rms")
    assert hm.steps == [10] and hm.shape == (1, N_LAYER)


def test_recorder_owned_arguments_are_refused():
    with pytest.raises(layerscope.ConfigError, match="start_step= is set by the callback"):
        LayerscopeCallback(start_step=3)
    with pytest.raises(layerscope.ConfigError, match="every=0"):
        LayerscopeCallback(every=0)


def test_watch_on_alert_stop_stops_the_trainer(tmp_path: Path) -> None:
    """on_alert='stop': the first alert sets control.should_training_stop (no exception)."""
    cb = LayerscopeCallback(
        tmp_path / "runs.db",
        run="w",
        every=2,
        watch=("output", "rms", lambda v: v > 0.0),  # fires at the first recorded step
        on_alert="stop",
    )
    trainer = _train(tmp_path / "out", cb, max_steps=20)
    assert trainer.state.global_step == 2
    with Store(tmp_path / "runs.db", readonly=True) as st:
        assert st.steps("w") == [2]
