"""Heatmaps as PNG files and pixel arrays, for the loggers that take images."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..store import Heatmap

_TMP: tempfile.TemporaryDirectory[str] | None = None


def render_png(heatmap: Heatmap, *, title: str | None = None, **plot_options: Any) -> Path:
    """Render ``heatmap`` with :func:`layerscope.plot` into a PNG in a per-process temporary folder."""
    global _TMP
    from ..render import plot

    if _TMP is None:
        _TMP = tempfile.TemporaryDirectory(prefix="layerscope-img-")
    name = f"{heatmap.run}-{heatmap.metric}-{heatmap.site}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = Path(_TMP.name) / f"{safe}-{time.monotonic_ns()}.png"
    if title is None:
        title = f"{heatmap.run + ': ' if heatmap.run else ''}{heatmap.metric} ({heatmap.site})"
    return Path(plot(heatmap, path, title=title, **plot_options))


def _read_png(path: Path) -> np.ndarray:
    """A PNG as an (H, W, 3) uint8 array."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)  # float32 in [0, 1] for PNG
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])
