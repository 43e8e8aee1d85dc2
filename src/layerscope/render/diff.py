"""Run-vs-run differences: an alias of :mod:`layerscope.analysis.compare`, where the comparison
maths and its summary sentences live. Draw :func:`difference` with ``layerscope.plot(...,
center=0)``, as ``layerscope compare`` does."""

from __future__ import annotations

from ..analysis.compare import Aligned, DiffSummary, align, diff_values, difference, summarize

__all__ = ["Aligned", "DiffSummary", "align", "diff_values", "difference", "summarize"]
