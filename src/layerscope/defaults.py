"""Defaults that the Recorder, the sweep, the framework callbacks and the CLI share, defined once.

Torch-free on purpose: the CLI reads them to build its options, and ``layerscope --help`` must not
import torch.
"""

from __future__ import annotations

# The metrics recorded when none are named: cheap (two moment sums and |x|) and what a first
# heatmap needs. See layerscope.stats.available_metrics() for the others.
DEFAULT_METRICS: tuple[str, ...] = ("mean", "std", "rms", "max_abs")

# Metrics a training site always records, beyond the Recorder's metrics: a gradient's and a
# weight's L2 norm, an update's norm and its ratio to the weights' norm (and that ratio's log10).
SITE_METRICS: dict[str, tuple[str, ...]] = {
    "param_grad": ("norm",),
    "update": ("norm", "ratio", "log_ratio"),
    "weight": ("rms", "max_abs", "norm"),
}
# Metrics defined only where a slot has a reference tensor (an update and its weights).
REF_METRICS: tuple[str, ...] = ("ratio", "log_ratio")
REF_SITES: tuple[str, ...] = ("update",)
# Sites taken at the optimizer step: a step without one (a GradScaler skipped it) writes no rows
# for them, rather than empty (NaN) ones.
STEP_SITES: tuple[str, ...] = ("param_grad", "update", "weight")

__all__ = ["DEFAULT_METRICS", "REF_METRICS", "REF_SITES", "SITE_METRICS", "STEP_SITES"]
