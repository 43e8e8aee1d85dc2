"""Defaults that the Recorder, the sweep, the framework callbacks and the CLI share, defined once.

Torch-free on purpose: the CLI reads them to build its options, and ``layerscope --help`` must not
import torch.
"""

from __future__ import annotations

# The metrics recorded when none are named: cheap (two moment sums and |x|) and what a first
# heatmap needs. See layerscope.stats.available_metrics() for the others.
DEFAULT_METRICS: tuple[str, ...] = ("mean", "std", "rms", "max_abs")

__all__ = ["DEFAULT_METRICS"]
