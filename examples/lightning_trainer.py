"""Lightning ``Trainer`` + one layerscope callback, with a checkpoint and a resume.

    python examples/lightning_trainer.py     # ~25 s on 2 CPU cores

Trains a 4-layer TinyGPT for 40 optimizer steps (``accumulate_grad_batches=2``), checkpointing
every 20; then a new Trainer resumes from the step-20 checkpoint to step 60. The callback's state
travels in the checkpoint, so the resumed fit continues the same layerscope run (named
automatically here) and the re-done steps 21..40 replace their rows instead of duplicating them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import layerscope
from layerscope.integrations.lightning import LayerscopeCallback
from layerscope.testing import Corpus, tiny_gpt

OUT = Path("layerscope-examples/lightning_trainer")
SEQ = 32


class TinyLM(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.gpt = tiny_gpt(n_layer=4, n_embd=48, n_head=4, block_size=SEQ)

    def training_step(self, batch, batch_idx):
        x, y = batch  # (B, T)
        _, loss = self.gpt(x, y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def loader() -> DataLoader:
    corpus = Corpus(n_chars=100_000)
    xs, ys = zip(*(corpus.batch(1, SEQ, step=i) for i in range(2000)))
    return DataLoader(TensorDataset(torch.cat(xs), torch.cat(ys)), batch_size=8)


def fit(max_steps: int, every_ckpt: int, ckpt_path: str | None = None) -> None:
    trainer = L.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=2,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(OUT),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            LayerscopeCallback(store=OUT / "runs.db", every=4, metrics=("rms", "std", "max_abs")),
            L.callbacks.ModelCheckpoint(dirpath=OUT / "ckpt", every_n_train_steps=every_ckpt, save_top_k=-1),
        ],
    )
    trainer.fit(TinyLM(), loader(), ckpt_path=ckpt_path)


def main(steps: int = 60) -> None:
    torch.manual_seed(0)
    third = max(1, steps // 3)
    fit(max_steps=2 * third, every_ckpt=third)
    ckpt = next((OUT / "ckpt").glob(f"*step={third}.ckpt"))
    fit(max_steps=3 * third, every_ckpt=third, ckpt_path=str(ckpt))  # e.g. after a crash at step 2/3

    with layerscope.store.Store(OUT / "runs.db", readonly=True) as st:
        run = st.run_names()[-1]
        print(f"run {run!r}: steps {st.steps(run)}")
    hm = layerscope.load(OUT / "runs.db", run=run, metric="rms")
    print("heatmap:", layerscope.plot(hm, OUT / "rms.png"))


def steps_from_argv(default: int) -> int:
    """``--steps N`` (CI's smoke run passes a few); the default makes the example's figure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=default, help=f"optimizer steps (default {default})")
    return p.parse_args().steps


if __name__ == "__main__":
    main(steps_from_argv(60))
