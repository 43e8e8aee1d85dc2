"""Renderers: static heatmaps and per-layer lines (matplotlib), small multiples, run-vs-run
differences, interactive HTML (plotly, embedded) and the offline report bundle.

They read :class:`~layerscope.store.heatmap.Heatmap` matrices, never the store's SQL. Modules:
``options`` (the one options dataclass), ``scale`` (pure colour/tick/row helpers), ``static``,
``lines``, ``multiples``, ``diff``, ``html``, ``bundle``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.heatmap import Heatmap
from .options import RenderOptions, RenderWarning
from .static import ALL_FORMATS, check_output_path, heatmap_figure, plot_heatmap


def plot(heatmap: Heatmap | Sequence[Heatmap], path: str | os.PathLike[str], **options: Any) -> Path:
    """Draw ``heatmap`` to ``path`` and return the path; the format comes from the suffix.

    ``.png``/``.svg``/``.pdf`` give a static figure, ``.html`` one self-contained interactive page
    (plotly embedded; hover shows layer, layer name, step and the exact value). A list of heatmaps
    gives small multiples (static) or a switcher (HTML). Options are the fields of
    :class:`RenderOptions`: ``kind`` ("heatmap" or "lines"), ``cmap``, ``vmin``, ``vmax``,
    ``scale`` ("linear", "log", "symlog"), ``linthresh``, ``center``, ``annotate``, ``colorbar``
    ("right", "bottom"), ``title``, ``label``, ``figsize``, ``dpi``, ``true_steps``,
    ``shared_scale``, ``ncols``.

    >>> import layerscope
    >>> hm = layerscope.load("layerscope-demo/runs.db", metric="rms")   # doctest: +SKIP
    >>> layerscope.plot(hm, "rms.png", title="RMS of the residual stream")   # doctest: +SKIP
    >>> layerscope.plot(hm, "rms.html")                                      # doctest: +SKIP
    """
    out = check_output_path(path, ALL_FORMATS)
    hms = [heatmap] if isinstance(heatmap, Heatmap) else list(heatmap)
    if not hms or not all(isinstance(h, Heatmap) for h in hms):
        raise ConfigError("plot needs a Heatmap or a non-empty list of Heatmaps (from layerscope.load).")
    opts = RenderOptions.from_kwargs(**options)
    if out.suffix.lower() == ".html":
        from .html import write_html

        return write_html(hms, out, opts)
    if len(hms) > 1:
        from .multiples import plot_multiples

        return plot_multiples(hms, out, opts)
    if opts.kind == "lines":
        from .lines import plot_lines

        return plot_lines(hms[0], out, opts)
    return plot_heatmap(hms[0], out, opts)


__all__ = ["RenderOptions", "RenderWarning", "heatmap_figure", "plot", "plot_heatmap"]
