"""What a notebook shows for a Heatmap, Histograms or a Report (the ``_repr_*_`` methods call these).

Jupyter asks an object for its richest picture: ``_repr_html_`` (a one-line summary and the
static figure as an inline PNG, so the notebook stays small and renders on GitHub too),
``_repr_png_`` (the figure alone) or ``_repr_markdown_`` (the summary). For an interactive map
in a notebook, write ``.html`` with :func:`layerscope.plot` and open it, or use
``layerscope serve``.

>>> import numpy as np
>>> from layerscope.store.heatmap import Heatmap
>>> hm = Heatmap(np.ones((3, 2)), steps=[10, 20, 30], layers=[1, 2], metric="rms", run="demo")
>>> print(heatmap_markdown(hm))
**rms** of run `demo` (site `output`): 3 steps (10..30) x 2 layers, values 1..1
>>> heatmap_png(hm)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import base64
import html as _html
from typing import Any

import numpy as np

from .._format import format_step, format_value, plural
from ..store.heatmap import Heatmap
from ..store.histogram import Histograms
from .bundle import markdown_to_html
from .hist import hist_figure
from .mpl import figure_png
from .options import RenderOptions
from .static import heatmap_figure

NOTEBOOK_DPI = 100  # inline images: sharp enough on screen, a few tens of kB
NOTEBOOK_FIGSIZE = (7.5, 4.8)


def _span(steps: list[int]) -> str:
    return f"{format_step(steps[0])}..{format_step(steps[-1])}" if steps else "none"


def heatmap_markdown(hm: Heatmap) -> str:
    """One line saying what the heatmap holds."""
    f = np.asarray(hm.values)[np.isfinite(hm.values)]
    rng = (
        f"values {format_value(float(f.min()))}..{format_value(float(f.max()))}"
        if f.size
        else "no finite value"
    )
    run = f" of run `{hm.run}`" if hm.run else ""
    return (
        f"**{hm.metric}**{run} (site `{hm.site}`): {plural(len(hm.steps), 'step')} ({_span(list(hm.steps))}) x "
        f"{plural(len(hm.layers), 'layer')}, {rng}"
    )


def heatmap_png(hm: Heatmap, **options: Any) -> bytes:
    """The static heatmap as PNG bytes (``options``: :class:`RenderOptions` fields)."""
    opts = RenderOptions.from_kwargs(**{"figsize": NOTEBOOK_FIGSIZE, "dpi": NOTEBOOK_DPI, **options})
    return figure_png(heatmap_figure(hm, opts), opts.dpi)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _md_html(md: str) -> str:
    """The summary line as HTML (the markdown subset it uses: **bold** and `code`)."""
    return markdown_to_html(md, heading_offset=0)


def heatmap_html(hm: Heatmap) -> str:
    """The summary and the figure, for a notebook cell."""
    return f"<div>{_md_html(heatmap_markdown(hm))}\n{_img(heatmap_png(hm), hm.metric)}</div>"


def hist_markdown(h: Histograms) -> str:
    run = f" of run `{h.run}`" if h.run else ""
    return (
        f"**histograms**{run} (site `{h.site}`): {plural(len(h.steps), 'step')} ({_span(list(h.steps))}) x "
        f"{plural(len(h.layers), 'layer')} x {h.n_bins} bins"
    )


def hist_png(h: Histograms, **options: Any) -> bytes:
    opts = RenderOptions.from_kwargs(**{"dpi": NOTEBOOK_DPI, **options})
    return figure_png(hist_figure(h, opts), opts.dpi)


def hist_html(h: Histograms) -> str:
    return f"<div>{_md_html(hist_markdown(h))}\n{_img(hist_png(h), 'histograms')}</div>"


def report_html(markdown: str, heatmap: Heatmap | None) -> str:
    """A report in a notebook: its text as HTML, under the heatmap it analyses (when known)."""
    fig = _img(heatmap_png(heatmap), heatmap.metric) if heatmap is not None else ""
    return f'<div class="layerscope-report">{fig}\n{markdown_to_html(markdown, heading_offset=0)}</div>'


__all__ = ["heatmap_html", "heatmap_markdown", "heatmap_png", "hist_html", "hist_png", "report_html"]
