"""Lightning ``Trainer``: one callback records every layer of the LightningModule into a layerscope run.

::

    from layerscope.integrations.lightning import LayerscopeCallback
    trainer = L.Trainer(max_steps=5000, callbacks=[LayerscopeCallback(store="runs.db", every=50)])
    trainer.fit(model)                        # later: trainer.fit(model, ckpt_path="last.ckpt")

A step is ``trainer.global_step``, which counts optimizer updates: with ``accumulate_grad_batches``
the micro-batches of an update fold into one step. The callback's state (the run's name and last
step) is saved in Lightning checkpoints, so ``fit(ckpt_path=...)`` continues the same layerscope run,
even when it was named automatically. Under DDP/FSDP every rank records, the statistics are reduced
across ranks, and rank 0 writes. Importing this module imports lightning (or pytorch_lightning).
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

try:
    import lightning.pytorch as _pl
except ImportError:  # pragma: no cover - the older package name
    try:
        import pytorch_lightning as _pl  # type: ignore[no-redef]
    except ImportError as _e:
        raise ConfigError(
            f"layerscope.integrations.lightning needs the 'lightning' package ({_e}); "
            "install it with: pip install 'layerscope[lightning]'"
        ) from None

from ..capture import Selection
from ..store import Store
from ._common import DEFAULT_METRICS, STORE_NAME, RecorderSession
from .loggers import MLflowSink, Sink, TensorBoardSink, WandbSink


class LayerscopeCallback(_pl.Callback):
    """Record per-layer activation statistics of the LightningModule into a layerscope run.

    Args:
        store: the run store; default ``<trainer.default_root_dir>/layerscope.db``.
        run: the run's name; default: the one in the checkpoint being resumed, else
            ``<ModuleClass>-<start time>-<4 hex digits>``.
        every: record optimizer steps with ``global_step % every == 0``; the others cost nothing.
        metrics, sites, probe, layers: as for :class:`layerscope.Recorder`; the model is the
            LightningModule, so a ``probe`` batch is passed to its ``forward`` (or give a function
            ``probe=lambda module: module.net(x)``).
        log_to: also send per-layer scalars (at each store flush) and the heatmaps (at the end) to
            ``"tensorboard"`` / ``"wandb"`` / ``"mlflow"`` (the trainer's logger of that kind when it has
            one), ``"auto"`` (every such logger the trainer has), or
            :mod:`~layerscope.integrations.loggers` sinks. Rank 0 only.
        **recorder_options: the Recorder's other keyword options (``window``, ``flush_every``,
            ``watch``, ``on_alert``: with ``on_alert="stop"`` a watch alert stops the trainer).

    ``callback.recorder`` is the live :class:`~layerscope.Recorder` during ``fit``.
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
        **recorder_options: Any,
    ) -> None:
        super().__init__()
        self._run_arg = run
        self.session = RecorderSession(
            store, run, every, metrics, sites, probe, layers, log_to, recorder_options
        )
        self._restored: dict[str, Any] | None = None
        self._seen_step: int | None = None

    @property
    def recorder(self) -> Any:
        return self.session.recorder

    @property
    def state_key(self) -> str:
        # Two callbacks recording two runs keep apart in a checkpoint; run=None keys the same on resume.
        return self._generate_state_key(run=self._run_arg)

    # -- fit ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # After checkpoint restore: trainer.global_step is the checkpoint's, our state is loaded.
        restored = self._restored or {}
        run = self._run_arg or restored.get("run")
        if self._run_arg and restored.get("run") not in (None, self._run_arg) and trainer.is_global_zero:
            warnings.warn(
                f"layerscope: the checkpoint recorded run {restored['run']!r}; continuing into run "
                f"{self._run_arg!r} as the callback's run= says.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.session.run = run
        gs = int(trainer.global_step)
        rec = self.session.start(
            pl_module,
            start_step=gs + 1,
            is_rank0=bool(trainer.is_global_zero),
            default_store=Path(trainer.default_root_dir) / STORE_NAME,
            # Unique even for two fits started in the same second; a checkpoint carries it on.
            default_run=f"{type(pl_module).__name__}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
            resolve_sinks=lambda target: _lightning_sinks(target, trainer),
            notes={
                "trainer": f"lightning {_pl.__version__}",
                "accumulate_grad_batches": int(trainer.accumulate_grad_batches),
                "world_size": int(trainer.world_size),
            },
        )
        if restored.get("last_step") is not None and restored.get("run") in (None, rec.run):
            rec.load_state_dict(restored)
        self._seen_step = gs

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        # Gradients accumulated and unscaled (AMP): param_grad, and the update's snapshot.
        self.session.before_optimizer_step()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.session.after_optimizer_step()  # update, weight: a no-op on micro-batches without a step
        # global_step counts optimizer updates: it moves on the last micro-batch of an accumulation.
        gs = int(trainer.global_step)
        if gs != self._seen_step:
            self._seen_step = gs
            self.session.step(gs)
            if self.session.should_stop:
                trainer.should_stop = True  # the watch fired, on_alert="stop"

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.finish()  # keep what was recorded up to the failure

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = self.session.state_dict()
        return {"run": state.get("run"), "last_step": state.get("last_step")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Called before on_train_start when fit(ckpt_path=...) restores; applied to the new Recorder there.
        self._restored = dict(state_dict)
        if self._run_arg is None and state_dict.get("run"):
            self.session.run = state_dict["run"]

    def __repr__(self) -> str:
        s = self.session
        return f"LayerscopeCallback(store={str(s.store)!r}, run={s.run!r}, every={s.every})"


def _lightning_sinks(target: Any, trainer: Any) -> list[Sink] | None:
    """Names resolved against the trainer's loggers: their SummaryWriter, W&B run, MLflow run."""
    if not isinstance(target, str):
        return None
    name = target.strip().lower()
    if name not in ("auto", "tensorboard", "wandb", "mlflow"):
        return None
    found: list[Sink] = []
    for lg in getattr(trainer, "loggers", None) or []:
        kind = type(lg).__name__
        if kind == "TensorBoardLogger" and name in ("auto", "tensorboard"):
            found.append(TensorBoardSink(lg.experiment))
        elif kind == "WandbLogger" and name in ("auto", "wandb"):
            found.append(WandbSink(lg.experiment))
        elif kind == "MLFlowLogger" and name in ("auto", "mlflow"):
            found.append(MLflowSink(lg.run_id, client=lg.experiment))
    if found or name == "auto":
        return found
    if name == "tensorboard":  # no TensorBoardLogger: a folder of our own next to the checkpoints
        return [TensorBoardSink(log_dir=os.path.join(trainer.default_root_dir, "layerscope_tb"))]
    return None  # "wandb"/"mlflow" without a logger: the active run (wandb.run, mlflow.active_run())


__all__ = ["LayerscopeCallback"]
