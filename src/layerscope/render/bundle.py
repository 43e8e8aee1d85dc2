"""The report bundle: ``DIR/index.html`` with, for each metric and site, the interactive heatmap,
the profile at a step (with its slider), the per-layer lines and the analysis report, then the
recorded histograms; offline. plotly.js is written once beside it (``DIR/plotly-VERSION.min.js``,
shared by every page in the folder) or, with ``plotly="inline"``, embedded in the one file.

>>> import layerscope                                                    # doctest: +SKIP
>>> from layerscope.render.bundle import write_bundle                    # doctest: +SKIP
>>> hms = [layerscope.load("runs.db", metric=m) for m in ("rms", "kurtosis")]   # doctest: +SKIP
>>> write_bundle(hms, "report-dir")                                      # doctest: +SKIP
PosixPath('report-dir/index.html')
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_step
from .._io import write_text_atomic
from .._version import __version__
from ..analysis import report
from ..analysis.markdown import markdown_to_html
from ..errors import ConfigError, StoreError
from ..store.heatmap import Heatmap
from ..store.histogram import Histograms
from .html import heatmap_figure, lines_figure
from .html_views import hist_figure, link_data, profile_figure
from .options import RenderOptions
from .page import figure_div, page, plotly_assets

# markdown_to_html is the analysis's converter, re-exported here where it used to live
__all__ = ["check_bundle_dir", "markdown_to_html", "write_bundle"]


def _anchor(hm: Heatmap, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", f"{hm.metric}-{hm.site}".lower()).strip("-") or "metric"
    a, k = base, 2
    while a in used:
        a, k = f"{base}-{k}", k + 1
    used.add(a)
    return a


def _section_title(hm: Heatmap) -> str:
    return hm.metric if not hm.site or hm.site == "output" else f"{hm.metric} ({hm.site})"


def check_bundle_dir(out_dir: str | os.PathLike[str], create: bool = True) -> Path:
    """The output folder: created if missing (with ``create``); an existing file there is an error."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"-o {str(out_dir)!r} is a file; give a folder (index.html is written inside it).")
    if d.suffix.lower() in (".html", ".htm") and not d.exists():
        raise ConfigError(
            f"-o {str(out_dir)!r} looks like a file name; give a folder, e.g. {str(d.with_suffix(''))!r}."
        )
    if not create:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"cannot create folder {str(out_dir)!r}: {e.strerror or e}; choose another -o."
        ) from e
    if not os.access(d, os.W_OK):
        raise StoreError(f"folder {str(out_dir)!r} is not writable; choose another -o.")
    return d


def write_bundle(
    hms: Sequence[Heatmap],
    out_dir: str | os.PathLike[str],
    options: RenderOptions | None = None,
    *,
    title: str | None = None,
    source: str | None = None,
    hists: Sequence[Histograms] = (),
    plotly: str = "directory",
    **kw: Any,
) -> Path:
    """Write ``out_dir/index.html``: per heatmap, its interactive heatmap, its profile at a step,
    its lines and its report; then the histograms of ``hists``; offline.

    ``plotly``: ``"directory"`` writes plotly.js once beside the page (shared by every page in
    ``out_dir``), ``"inline"`` embeds it. The report text comes from
    :func:`layerscope.analysis.report` (computed from the numbers), shown through the same
    Markdown -> HTML converter as the dashboard's.
    """
    hms = list(hms)
    if not hms:
        raise ConfigError("nothing to put in the bundle; pass at least one heatmap.")
    d = check_bundle_dir(out_dir)
    opts = (
        options.replace(**kw) if options is not None and kw else (options or RenderOptions.from_kwargs(**kw))
    )
    hm_opts = opts.replace(kind="heatmap", title="")
    ln_opts = opts.replace(
        kind="lines", title="", figsize=None, scale=opts.scale, vmin=None, vmax=None, cmap=None
    )
    runs = sorted({h.run for h in hms if h.run})
    head = title or ("layerscope \u2014 run " + ", ".join(runs) if runs else "layerscope report")
    first = hms[0]
    steps = first.steps
    meta = [
        f"{len(steps)} recorded steps ({format_step(steps[0])}\u2013{format_step(steps[-1])})"
        if steps
        else "no steps",
        f"{len(first.layers)} layers",
    ]
    if source:
        meta.insert(0, f"store <code>{html.escape(str(source))}</code>")
    meta.append(f"layerscope {html.escape(__version__)}")
    used: set[str] = set()
    anchors = [_anchor(hm, used) for hm in hms]
    hist_anchors = [
        _anchor(Heatmap(np.zeros((0, 0)), [], [], metric="hist", site=h.site), used) for h in hists
    ]
    nav = " ".join(f'<a href="#{a}">{html.escape(_section_title(hm))}</a>' for a, hm in zip(anchors, hms))
    nav += "".join(
        f' <a href="#{a}">hist{html.escape(_site(h.site))}</a>' for a, h in zip(hist_anchors, hists)
    )
    sep = " \u00b7 "
    parts = [f"<h1>{html.escape(head)}</h1>", f'<p class="meta">{sep.join(meta)}</p>']
    if len(hms) + len(hists) > 1:
        parts.append(f"<nav>{nav}</nav>")
    for k, (hm, anchor) in enumerate(zip(hms, anchors)):
        rep = report(hm)
        parts.append(f'<section id="{anchor}">')
        parts.append(f"<h2>{html.escape(_section_title(hm))}</h2>")
        h_opts, l_opts = hm_opts, ln_opts
        if opts.scale == "log" and not (np.asarray(hm.values)[np.isfinite(hm.values)] > 0).any():
            # A log scale cannot show a metric with no positive value; this one stays linear.
            h_opts, l_opts = hm_opts.replace(scale="linear"), ln_opts.replace(scale="linear")
            parts.append('<p class="meta">No positive values: drawn on a linear scale.</p>')
        heat = heatmap_figure([hm], h_opts)
        prof = profile_figure([hm], h_opts.replace(title=""), at="last")
        parts.append(f'<div class="figure">{figure_div(heat, f"heatmap-{k}")}</div>')
        parts.append(f'<div class="figure">{figure_div(prof, f"profile-{k}")}</div>')
        parts.append(link_data([hm], heat, f"heatmap-{k}", f"profile-{k}", h_opts))
        parts.append(f'<div class="figure">{figure_div(lines_figure([hm], l_opts), f"lines-{k}")}</div>')
        parts.append(f'<div class="report">{rep.to_html()}</div>')
        parts.append("</section>")
    for k, (h, anchor) in enumerate(zip(hists, hist_anchors)):
        parts.append(f'<section id="{anchor}">')
        parts.append(f"<h2>Histograms{html.escape(_site(h.site))}</h2>")
        parts.append(
            '<p class="meta">Value bins across, steps down, colour = how many values fell in the bin '
            "(log scale); one panel per layer.</p>"
        )
        fig = hist_figure(h, opts.replace(title="", cmap=None))
        parts.append(f'<div class="figure">{figure_div(fig, f"hist-{k}")}</div>')
        parts.append("</section>")
    head_html = plotly_assets(d, plotly)
    return write_text_atomic(d / "index.html", page(head, "\n".join(parts), head=head_html))


def _site(site: str) -> str:
    return "" if not site or site == "output" else f" ({site})"
