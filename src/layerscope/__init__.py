"""layerscope: how every layer of a neural network evolves over training.

The public API is four verbs and their data type::

    import layerscope
    with layerscope.Recorder(model, "runs.db", run="baseline", every=100) as rec:
        for step in range(1, n_steps + 1):
            ...  # forward, backward, optimizer.step()
            rec.step(step)
    hm = layerscope.load("runs.db", metric="rms")      # Heatmap: steps x layers
    layerscope.plot(hm, "rms.png")                      # or "rms.html"; no path: a Figure
    print(layerscope.report(hm).to_markdown())
    layerscope.plot(layerscope.load_hist("runs.db"), "hist.png")   # if 'hist' was recorded

Heavy modules (torch, matplotlib, plotly) are imported on first use, and no integration's
framework (transformers, lightning, tensorboard) is imported by ``import layerscope``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DiscoveryError,
    DistributedError,
    LayerscopeError,
    NotFoundError,
    StoreError,
)

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import Report, report
    from .analysis.run import report_run
    from .coordcheck import coord_check
    from .recorder import Recorder
    from .render import plot
    from .store import Heatmap, load
    from .store.histogram import Histograms, load_hist

_LAZY = {
    "Recorder": "layerscope.recorder",
    "load": "layerscope.store",
    "Heatmap": "layerscope.store",
    "load_hist": "layerscope.store.histogram",
    "Histograms": "layerscope.store.histogram",
    "plot": "layerscope.render",
    "report": "layerscope.analysis",
    "Report": "layerscope.analysis",
    "report_run": "layerscope.analysis.run",
    "coord_check": "layerscope.coordcheck",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'layerscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DiscoveryError",
    "DistributedError",
    "Heatmap",
    "Histograms",
    "LayerscopeError",
    "NotFoundError",
    "Recorder",
    "Report",
    "StoreError",
    "__version__",
    "coord_check",
    "load",
    "load_hist",
    "plot",
    "report",
    "report_run",
]
