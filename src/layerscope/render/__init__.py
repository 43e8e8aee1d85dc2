"""Renderers: static heatmaps (matplotlib). They read Heatmap matrices, never the store's SQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..store.heatmap import Heatmap
from .static import plot_heatmap


def plot(heatmap: Heatmap, path: str | os.PathLike[str], **options: Any) -> Path:
    """Draw ``heatmap`` to ``path`` (.png, .svg or .pdf) and return the path.

    >>> import layerscope
    >>> hm = layerscope.load("layerscope-demo/runs.db", metric="rms")   # doctest: +SKIP
    >>> layerscope.plot(hm, "rms.png", title="RMS of the residual stream")   # doctest: +SKIP
    """
    return plot_heatmap(heatmap, path, **options)


__all__ = ["plot", "plot_heatmap"]
