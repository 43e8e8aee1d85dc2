"""Training sites through the framework callbacks: a real HF ``Trainer`` and a Lightning ``Trainer``,
both with gradient accumulation: param_grad and update are taken at optimizer steps only."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

import layerscope
from layerscope.integrations.hf import LayerscopeCallback
from layerscope.stats import register_metric, unregister_metric
from layerscope.store import Store

N_LAYER, SEQ, BATCH, ACCUM, STEPS = 2, 16, 4, 2, 6


@pytest.fixture
def count_metric():
    register_metric("count", from_stats=lambda s: s.n, needs=("moments",), description="elements seen")
    yield "count"
    unregister_metric("count")


class _Reference(TrainerCallback):
    """Per optimizer step, in float64: each block's gradient norm and update norm (own code)."""

    def __init__(self) -> None:
        self.grad: dict[int, list[float]] = {}
        self.update: dict[int, list[float]] = {}
        self._before: list[list[torch.Tensor]] = []
        self.n_pre = 0

    @staticmethod
    def _blocks(model):
        return model.transformer.h

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        self.n_pre += 1
        step = state.global_step + 1
        self.grad[step] = [
            float(torch.cat([p.grad.double().reshape(-1) for p in b.parameters()]).norm())
            for b in self._blocks(model)
        ]
        self._before = [[p.detach().clone() for p in b.parameters()] for b in self._blocks(model)]

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        step = state.global_step + 1
        self.update[step] = [
            float(
                torch.cat(
                    [(p.detach() - q).double().reshape(-1) for p, q in zip(b.parameters(), before)]
                ).norm()
            )
            for b, before in zip(self._blocks(model), self._before)
        ]


def test_hf_trainer_with_accumulation_records_at_optimizer_steps_only(tmp_path, count_metric):
    db = tmp_path / "runs.db"
    cb = LayerscopeCallback(
        store=db, run="gpt2", every=2, metrics=["rms", count_metric], sites=("output", "param_grad", "update")
    )
    ref = _Reference()
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=N_LAYER, n_embd=32, n_head=2, n_positions=32, vocab_size=64, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (STEPS * ACCUM * BATCH, SEQ), generator=g)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUM,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    Trainer(
        model=model,
        args=args,
        callbacks=[ref, cb],
        train_dataset=[{"input_ids": x, "labels": x} for x in ids],
    ).train()
    assert ref.n_pre == STEPS  # one optimizer step per ACCUM micro-batches

    n_params = [sum(p.numel() for p in b.parameters()) for b in model.transformer.h]
    with Store(db, readonly=True) as st:
        assert st.steps("gpt2") == [2, 4, 6]
        count_grad = st.load("gpt2", "count", site="param_grad").values
        count_out = st.load("gpt2", "count", site="output").values
        norm_grad = st.load("gpt2", "norm", site="param_grad")
        norm_upd = st.load("gpt2", "norm", site="update")
        ratio = st.load("gpt2", "ratio", site="update").values
    # Each parameter once per optimizer step (not once per micro-batch); activations of both.
    assert (count_grad == np.array(n_params)).all()
    assert (count_out == ACCUM * BATCH * SEQ * 32).all()
    for i, step in enumerate(norm_grad.steps):
        np.testing.assert_allclose(norm_grad.values[i], ref.grad[step], rtol=1e-6)
        np.testing.assert_allclose(norm_upd.values[i], ref.update[step], rtol=1e-6)
    assert np.isfinite(ratio).all() and (ratio > 0).all() and (ratio < 1).all()


def test_lightning_with_accumulation_records_param_sites_once_per_step(tmp_path, count_metric):
    pl = pytest.importorskip("lightning.pytorch")
    from layerscope.integrations.lightning import LayerscopeCallback as LCallback
    from layerscope.testing import tiny_gpt

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=SEQ, seed=0)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.model(x, y)[1]

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (STEPS * ACCUM * BATCH, SEQ), generator=g)
    loader = torch.utils.data.DataLoader(list(zip(data, data)), batch_size=BATCH)
    db = tmp_path / "runs.db"
    cb = LCallback(
        store=db, run="pl", every=2, metrics=["rms", count_metric], sites=("param_grad", "update", "weight")
    )
    trainer = pl.Trainer(
        max_steps=STEPS,
        accumulate_grad_batches=ACCUM,
        callbacks=[cb],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    module = Module()
    trainer.fit(module, loader)
    n_params = [sum(p.numel() for p in b.parameters()) for b in module.model.h]
    with Store(db, readonly=True) as st:
        assert st.steps("pl") == [2, 4, 6]
        for site in ("param_grad", "update", "weight"):
            assert (st.load("pl", "count", site=site).values == np.array(n_params)).all(), site
        w = st.load("pl", "norm", site="weight").values
    # The last recorded weights are the trained model's.
    want = [
        float(torch.cat([p.detach().double().reshape(-1) for p in b.parameters()]).norm())
        for b in module.model.h
    ]
    np.testing.assert_allclose(w[-1], want, rtol=1e-6)
    assert layerscope.load(db, run="pl", metric="ratio", site="update").values.shape == (3, 2)
