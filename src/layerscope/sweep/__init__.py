"""Checkpoint sweeps: statistics for every saved checkpoint, in the same store as live recording.

::

    import layerscope.sweep as ls
    res = ls.sweep("ckpts/", store="runs.db", run="sweep", probe="probe.pt",
                   model="layerscope.testing.model:tiny_gpt")
    res.written, res.failed

- :mod:`~layerscope.sweep.discover`: find checkpoints and their steps (``parse_step``);
- :mod:`~layerscope.sweep.load`: safe loading (safetensors, ``torch.load(weights_only=True)``);
- :mod:`~layerscope.sweep.compat`: the differences transformers accepts (other versions' checkpoints);
- :mod:`~layerscope.sweep.probe`: the probe batch from a file;
- :mod:`~layerscope.sweep.worker`: one model and one store-less Recorder, checkpoint after checkpoint;
- :mod:`~layerscope.sweep.pool`: the ``--workers`` processes;
- :mod:`~layerscope.sweep.runner`: the sweep, in one process, a pool, or under ``torchrun``.
"""

from .discover import Checkpoint, Discovery, Problem, find_checkpoints, parse_step
from .load import Loaded, fingerprint, read_checkpoint
from .probe import load_probe
from .runner import SweepConfig, SweepListener, SweepResult, run_sweep, sweep
from .worker import CheckpointWorker, Outcome

__all__ = [
    "Checkpoint",
    "CheckpointWorker",
    "Discovery",
    "Loaded",
    "Outcome",
    "Problem",
    "SweepConfig",
    "SweepListener",
    "SweepResult",
    "find_checkpoints",
    "fingerprint",
    "load_probe",
    "parse_step",
    "read_checkpoint",
    "run_sweep",
    "sweep",
]
