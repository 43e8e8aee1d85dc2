"""Record from the training loops people already use, and log where they already look.

- ``layerscope.integrations.hf.LayerscopeCallback``: a ``transformers.TrainerCallback``.
- ``layerscope.integrations.lightning.LayerscopeCallback``: a ``lightning.pytorch.Callback``.
- :mod:`layerscope.integrations.loggers`: TensorBoard / W&B / MLflow sinks (``TensorBoardSink``,
  ``WandbSink``, ``MLflowSink``), a ``SinkStore`` that feeds them from a live ``Recorder``, and
  ``log_run`` / ``log_heatmap`` for runs already recorded.

All are thin adapters over one :class:`~layerscope.Recorder`. Importing this package imports none
of transformers, lightning, tensorboard, wandb or mlflow: each is imported by the module or sink
that needs it (``import layerscope.integrations.hf`` imports transformers).
"""

from __future__ import annotations

from .loggers import (
    MLflowSink,
    Sink,
    SinkStore,
    TensorBoardSink,
    WandbSink,
    as_sink,
    log_heatmap,
    log_run,
)

__all__ = [
    "MLflowSink",
    "Sink",
    "SinkStore",
    "TensorBoardSink",
    "WandbSink",
    "as_sink",
    "log_heatmap",
    "log_run",
]
