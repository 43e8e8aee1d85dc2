"""The Lightning callback on a real ``lightning.pytorch.Trainer`` (CPU): accumulation, checkpoints, resume."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tests._require import require

L = require("lightning.pytorch")

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # lightning vs torch 2.13, not ours
    pytest.mark.filterwarnings("ignore:.*dataloader is not resumable.*"),  # the mid-epoch resume we test
]

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from layerscope.integrations.lightning import LayerscopeCallback  # noqa: E402
from layerscope.stats import register_metric, unregister_metric  # noqa: E402
from layerscope.store import Store  # noqa: E402
from layerscope.testing import tiny_gpt  # noqa: E402

N_LAYER, N_EMBD, SEQ, BATCH = 3, 16, 8, 4


class TinyLM(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.gpt = tiny_gpt(n_layer=N_LAYER, n_embd=N_EMBD, n_head=2, block_size=SEQ)

    def training_step(self, batch, batch_idx):
        x, y = batch
        _, loss = self.gpt(x, y)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (400, SEQ), generator=g)
    return DataLoader(TensorDataset(x, x.roll(-1, dims=1)), batch_size=BATCH)


def _fit(
    root: Path,
    callback: LayerscopeCallback,
    max_steps: int,
    ckpt_path: str | None = None,
    accumulate: int = 2,
) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        num_sanity_val_steps=0,
    )
    trainer.fit(TinyLM(), _loader(), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def count_metric():
    register_metric("count", from_stats=lambda s: s.n, needs=("moments",), description="elements seen")
    yield "count"
    unregister_metric("count")


def _rows_per_step(db: Path) -> dict[int, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT step, count(*) FROM metric_values GROUP BY step").fetchall())


def test_accumulation_records_optimizer_steps_and_checkpoints_the_run(tmp_path, count_metric):
    db = tmp_path / "runs.db"
    cb = LayerscopeCallback(store=db, every=2, metrics=["rms", count_metric])
    trainer = _fit(tmp_path, cb, max_steps=10)  # 20 micro-batches, 10 optimizer steps
    trainer.save_checkpoint(tmp_path / "last.ckpt")

    with Store(db, readonly=True) as st:
        (run,) = st.run_names()
        assert run.startswith("TinyLM-")  # named automatically
        assert st.steps(run) == [2, 4, 6, 8, 10]
        assert [li.name for li in st.layers(run)] == [f"gpt.h.{i}" for i in range(N_LAYER)]
        count = st.load(run, "count")
        assert np.isfinite(st.load(run, "rms").values).all()
    assert (count.values == 2 * BATCH * SEQ * N_EMBD).all()  # both micro-batches of each update

    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["callbacks"][cb.state_key] == {"run": run, "last_step": 10}


def test_resume_from_checkpoint_continues_the_same_run_without_gap_or_duplicate(tmp_path):
    db = tmp_path / "runs.db"
    _fit(tmp_path, LayerscopeCallback(store=db, every=2), max_steps=10).save_checkpoint(tmp_path / "s10.ckpt")

    # A new callback knows no run name: the checkpoint's state restores it.
    cb = LayerscopeCallback(store=db, every=2)
    _fit(tmp_path, cb, max_steps=20, ckpt_path=str(tmp_path / "s10.ckpt"))

    with Store(db, readonly=True) as st:
        (run,) = st.run_names()
        assert st.steps(run) == list(range(2, 21, 2))
    assert cb.session.run == run
    assert _rows_per_step(db) == {s: 4 * N_LAYER for s in range(2, 21, 2)}


def test_no_accumulation_records_every_step(tmp_path):
    db = tmp_path / "runs.db"
    cb = LayerscopeCallback(store=db, run="plain", every=1, metrics="rms")
    _fit(tmp_path, cb, max_steps=4, accumulate=1)
    with Store(db, readonly=True) as st:
        assert st.steps("plain") == [1, 2, 3, 4]


def test_watch_on_alert_stop_sets_trainer_should_stop(tmp_path):
    cb = LayerscopeCallback(
        tmp_path / "runs.db", run="w", every=2, watch=("output", "rms", lambda v: v > 0.0), on_alert="stop"
    )
    trainer = _fit(tmp_path, cb, max_steps=20, accumulate=1)
    assert trainer.global_step == 2
