"""Hugging Face ``Trainer``: one callback records every layer into a layerscope run.

::

    from layerscope.integrations.hf import LayerscopeCallback
    trainer = Trainer(model, args, train_dataset=ds,
                      callbacks=[LayerscopeCallback(store="runs.db", run="gpt2-small", every=50)])
    trainer.train()                                  # or train(resume_from_checkpoint=True)

A step is the Trainer's ``state.global_step``: one optimizer update, its gradient-accumulation
micro-batches folded in (the Trainer calls ``on_step_end`` once per update, after the optimizer).
Under DDP/FSDP every rank records and the statistics are reduced across ranks; rank 0 writes.
The training sites ``param_grad``, ``update`` and ``weight`` are taken at the Trainer's
``on_pre_optimizer_step`` / ``on_optimizer_step`` events (after gradient clipping and
unscaling); with an older transformers that lacks them, at the optimizer's own step hooks.
Resuming from a checkpoint continues the same run from the checkpoint's step: steps recorded again
replace their rows. Importing this module imports transformers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as _e:  # pragma: no cover - exercised only without transformers
    raise ConfigError(
        f"layerscope.integrations.hf needs the 'transformers' package ({_e}); "
        "install it with: pip install 'layerscope[hf]'"
    ) from None

from ..capture import Selection
from ..capture.sources import MaskSpec
from ..store import Store
from ._common import DEFAULT_METRICS, STORE_NAME, RecorderSession
from .loggers import MLflowSink, Sink, TensorBoardSink, WandbSink, _need


class LayerscopeCallback(TrainerCallback):
    """Record per-layer activation statistics of the Trainer's model into a layerscope run.

    Args:
        store: the run store; default ``<output_dir>/layerscope.db``.
        run: the run's name; default ``args.run_name``, else the output folder's name. The same name
            on a resumed training continues the run.
        every: record optimizer steps with ``global_step % every == 0``; the others cost nothing.
        metrics, sites, probe, layers: as for :class:`layerscope.Recorder`.
        mask: only real tokens count: by default the batch's ``attention_mask`` when it has one
            (padded batches); ``None`` counts every position; a name or ``fn(args, kwargs)`` as
            for :class:`layerscope.Recorder`.
        log_to: also send per-layer scalars (at each store flush) and the heatmaps (at the end) to
            ``"tensorboard"`` (``<output_dir>/runs/layerscope``), ``"wandb"`` / ``"mlflow"`` (the run
            the Trainer's own integration started), ``"auto"`` (those of ``args.report_to``), or
            :mod:`~layerscope.integrations.loggers` sinks. Rank 0 only.
        **recorder_options: the Recorder's other keyword options (``window``, ``flush_every``,
            ``watch``, ``on_alert``: with ``on_alert="stop"`` a watch alert stops the trainer).

    ``callback.recorder`` is the live :class:`~layerscope.Recorder` during training.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        run: str | None = None,
        every: int = 1,
        metrics: str | Sequence[str] = DEFAULT_METRICS,
        sites: str | Sequence[str] = ("output",),
        probe: Any = None,
        *,
        layers: Selection = None,
        log_to: Any = (),
        mask: MaskSpec = "attention_mask",
        **recorder_options: Any,
    ) -> None:
        self.session = RecorderSession(
            store, run, every, metrics, sites, probe, layers, log_to, {"mask": mask, **recorder_options}
        )

    @property
    def recorder(self) -> Any:
        return self.session.recorder

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        output_dir = Path(args.output_dir or ".")
        world = int(getattr(args, "world_size", 1) or 1)
        if not _HAS_OPTIMIZER_EVENTS and kwargs.get("optimizer") is not None:
            # No optimizer-step events in this transformers: the optimizer's own step hooks.
            self.session.recorder_options.setdefault("optimizer", kwargs["optimizer"])
        self.session.start(
            model,
            start_step=int(state.global_step) + 1,  # resumed: the checkpoint's step, else 0
            is_rank0=bool(state.is_world_process_zero),
            default_store=output_dir / STORE_NAME,
            default_run=args.run_name or output_dir.resolve().name or "hf",
            resolve_sinks=lambda target: _hf_sinks(target, args),
            notes={
                "trainer": f"transformers {transformers.__version__}",
                "gradient_accumulation_steps": int(args.gradient_accumulation_steps),
                "per_device_train_batch_size": int(args.per_device_train_batch_size),
                "learning_rate": float(args.learning_rate),
                "world_size": world,
            },
        )

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Gradients accumulated over the micro-batches, clipped and unscaled: what the step uses.
        self.session.before_optimizer_step()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.after_optimizer_step()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Once per optimizer update, after optimizer.step(): the update's micro-batches have run.
        self.session.step(int(state.global_step))
        if self.session.should_stop:
            control.should_training_stop = True  # the watch fired, on_alert="stop"

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.finish()

    def __repr__(self) -> str:
        s = self.session
        return f"LayerscopeCallback(store={str(s.store)!r}, run={s.run!r}, every={s.every})"


# transformers >= 4.45 has the optimizer-step events; older ones fall back to optimizer hooks.
_HAS_OPTIMIZER_EVENTS = hasattr(TrainerCallback, "on_pre_optimizer_step") and hasattr(
    TrainerCallback, "on_optimizer_step"
)


def _hf_sinks(target: Any, args: Any) -> list[Sink] | None:
    """Names resolved against the Trainer: its log folder, the W&B/MLflow run its integration opened."""
    if not isinstance(target, str):
        return None
    name = target.strip().lower()
    if name == "auto":
        report = args.report_to or []
        report = [report] if isinstance(report, str) else list(report)
        if "all" in report:
            report = ["tensorboard", "wandb", "mlflow"]
        names = [n for n in report if n in ("tensorboard", "wandb", "mlflow")]
        return [s for n in names for s in (_hf_sinks(n, args) or [])]
    if name == "tensorboard":
        log_dir = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(
            args.output_dir or ".", "runs", "layerscope"
        )
        return [TensorBoardSink(log_dir=log_dir)]
    # HF's W&B/MLflow callbacks run before user callbacks and open their run in on_train_begin;
    # pin that run now, since HF's MLflowCallback ends it in on_train_end, before our heatmaps.
    if name == "wandb":
        return [WandbSink(_need("wandb", "wandb", "log_to='wandb'").run)]
    if name == "mlflow":
        active = _need("mlflow", "mlflow", "log_to='mlflow'").active_run()
        return [MLflowSink(active.info.run_id if active is not None else None)]
    return None


__all__ = ["LayerscopeCallback"]
