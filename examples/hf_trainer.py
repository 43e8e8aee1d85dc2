"""Hugging Face ``Trainer`` + one layerscope callback.

    python examples/hf_trainer.py            # ~20 s on 2 CPU cores, no download
    tensorboard --logdir layerscope-examples/hf_trainer/runs

A 4-layer GPT-2 built from a config trains 60 optimizer steps with 2 gradient-accumulation
micro-batches each; every 5th step is recorded (one row per optimizer step, both micro-batches
folded in), and the per-layer scalars and heatmaps also go to TensorBoard when it is installed
(pip install 'layerscope[tensorboard]'); with only layerscope[hf] the run store is all there is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import layerscope
from layerscope.integrations.hf import LayerscopeCallback
from layerscope.testing import Corpus

OUT = Path("layerscope-examples/hf_trainer")
SEQ = 32


def dataset(n: int) -> list[dict[str, torch.Tensor]]:
    corpus = Corpus(n_chars=100_000)  # bytes as tokens: vocab 256
    return [{"input_ids": x, "labels": x} for x in (corpus.batch(1, SEQ, step=i)[0][0] for i in range(n))]


def main(steps: int = 60) -> None:
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=4, n_embd=64, n_head=4, n_positions=SEQ, vocab_size=256, bos_token_id=0, eos_token_id=0
    )
    args = TrainingArguments(
        output_dir=str(OUT),
        max_steps=steps,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=3e-3,
        warmup_steps=10,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=20,
        disable_tqdm=True,
    )
    # TensorBoard is optional: without it the run is recorded into the store all the same.
    try:
        import tensorboard  # noqa: F401 - only whether it is there

        has_tensorboard = True
    except ImportError:
        has_tensorboard = False
    if not has_tensorboard:
        print(
            "tensorboard is not installed: recording into the store only (pip install 'layerscope[tensorboard]')"
        )
    callback = LayerscopeCallback(
        store=OUT / "runs.db",
        run="gpt2-tiny",
        every=5,
        metrics=("rms", "kurtosis", "max_abs"),
        sites=("output", "mlp_act"),
        log_to="tensorboard" if has_tensorboard else None,  # -> OUT/runs/layerscope; "wandb"/"mlflow" too
    )
    Trainer(
        model=GPT2LMHeadModel(cfg), args=args, train_dataset=dataset(steps * 2 * 8), callbacks=[callback]
    ).train()

    hm = layerscope.load(OUT / "runs.db", run="gpt2-tiny", metric="kurtosis", site="mlp_act")
    print(f"recorded optimizer steps {hm.steps} x layers {hm.layer_names}")
    print("heatmap:", layerscope.plot(hm, OUT / "kurtosis_mlp_act.png"))


def steps_from_argv(default: int) -> int:
    """``--steps N`` (CI's smoke run passes a few); the default makes the example's figure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=int, default=default, help=f"optimizer steps (default {default})")
    return p.parse_args().steps


if __name__ == "__main__":
    main(steps_from_argv(60))
