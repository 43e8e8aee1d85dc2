"""Renderers: static heatmaps, per-layer lines, profiles and histograms (matplotlib), small
multiples, interactive HTML (plotly, offline) and the report bundle.

They read :class:`~layerscope.store.heatmap.Heatmap` matrices (and
:class:`~layerscope.store.histogram.Histograms`), never the store's SQL. Modules: ``options``
(the one options dataclass), ``labels`` (titles, labels, ticks: shared by both backends),
``scale`` (colour), ``reduce`` (fewer rows, spikes kept), ``mpl`` / ``output`` (figures and
paths), ``static``, ``lines``, ``profile``, ``hist``, ``multiples``, ``html`` / ``html_views`` /
``page`` (interactive), ``bundle`` (``layerscope view``), ``notebook`` (Jupyter reprs), ``diff``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..errors import ConfigError
from ..store.heatmap import Heatmap
from ..store.histogram import Histograms
from .hist import hist_figure, plot_hist
from .html import write_html
from .html_views import hist_figure as hist_figure_html
from .lines import lines_figure, plot_lines
from .multiples import multiples_figure, plot_multiples
from .options import RenderOptions, RenderWarning
from .output import ALL_FORMATS, check_output_path, is_html
from .page import figure_div, page, plotly_assets
from .profile import plot_profile, profile_figure
from .static import heatmap_figure, plot_heatmap


def plot(
    data: Heatmap | Sequence[Heatmap] | Histograms,
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
    **options: Any,
) -> Any:
    """Draw ``data`` to ``path`` and return the path; without ``path``, return the matplotlib
    ``Figure`` (to restyle, or to show in a notebook); with ``ax``, draw into that Axes.

    The format comes from the suffix: ``.png``/``.svg``/``.pdf`` give a static figure, ``.html``
    one interactive page that works offline (hover shows layer, layer name, step and the exact
    value; below a heatmap, the profile at a step follows a slider and the hover). A list of
    heatmaps gives small multiples (static) or a switcher (HTML); :class:`Histograms` (from
    ``layerscope.load_hist``) give bins x steps per layer. Options are the fields of
    :class:`RenderOptions`: ``kind`` ("heatmap", "lines", "profile"), ``cmap``, ``vmin``, ``vmax``,
    ``scale`` ("linear", "log", "symlog"), ``linthresh``, ``center``, ``annotate``, ``colorbar``
    ("right", "bottom"), ``title``, ``label``, ``figsize``, ``dpi``, ``true_steps``,
    ``shared_scale``, ``ncols``, ``at_steps`` (profile), ``layers`` (histograms), ``plotly``
    ("inline", "directory"), ``alerts`` (mark the run's watch alerts, ``hm.events``, on a
    heatmap's cells; default True).

    >>> import layerscope
    >>> hm = layerscope.load("layerscope-demo/runs.db", metric="rms")   # doctest: +SKIP
    >>> layerscope.plot(hm, "rms.png", title="RMS of the residual stream")   # doctest: +SKIP
    >>> layerscope.plot(hm, "rms.html")                                      # doctest: +SKIP
    >>> fig = layerscope.plot(hm)              # a matplotlib Figure          # doctest: +SKIP
    >>> layerscope.plot(hm, kind="profile", at_steps=[20, 600], ax=my_ax)   # doctest: +SKIP
    """
    out = check_output_path(path, ALL_FORMATS) if path is not None else None
    opts = RenderOptions.from_kwargs(**options)
    if isinstance(data, Histograms):
        return _plot_hist(data, out, opts, ax)
    hms = [data] if isinstance(data, Heatmap) else list(data) if isinstance(data, (list, tuple)) else []
    if not hms or not all(isinstance(h, Heatmap) for h in hms):
        raise ConfigError(
            f"plot needs a Heatmap, a non-empty list of Heatmaps (layerscope.load) or Histograms "
            f"(layerscope.load_hist), got {type(data).__name__}."
        )
    if ax is not None and (out is not None or len(hms) > 1):
        raise ConfigError(
            "ax= draws one heatmap into your axes and returns its figure; pass one Heatmap and no "
            "path (save the figure yourself with fig.savefig)."
        )
    if out is not None and is_html(out):
        return write_html(hms, out, opts)
    if len(hms) > 1:
        return plot_multiples(hms, out, opts) if out is not None else multiples_figure(hms, opts)
    figure, save = {
        "lines": (lines_figure, plot_lines),
        "profile": (profile_figure, plot_profile),
    }.get(opts.kind, (heatmap_figure, plot_heatmap))
    if out is None:
        return figure(hms[0], opts, ax=ax)
    return save(hms[0], out, opts)


def _plot_hist(h: Histograms, out: Path | None, opts: RenderOptions, ax: Any) -> Any:
    if ax is not None:
        raise ConfigError(
            "histograms are drawn as one panel per layer; pass no ax= (use the returned figure)."
        )
    if out is None:
        return hist_figure(h, opts)
    if is_html(out):
        return write_hist_html(h, out, opts)
    return plot_hist(h, out, opts)


def write_hist_html(h: Histograms, path: str | os.PathLike[str], opts: RenderOptions) -> Path:
    """One interactive page of the histograms of ``h`` (a panel per layer), offline."""
    out = check_output_path(path, (".html", ".htm"))
    fig = hist_figure_html(h, opts)
    body = f'<div class="figure">{figure_div(fig, "layerscope-hist")}</div>'
    title = opts.title or f"histograms of run {h.run}"
    return write_text_atomic(out, page(title, body, head=plotly_assets(out.parent, opts.plotly)))


__all__ = [
    "RenderOptions",
    "RenderWarning",
    "heatmap_figure",
    "hist_figure",
    "lines_figure",
    "plot",
    "plot_heatmap",
    "profile_figure",
]
