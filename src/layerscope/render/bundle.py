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
from ..errors import ConfigError, StoreError
from ..store.heatmap import Heatmap
from ..store.histogram import Histograms
from .html import heatmap_figure, lines_figure
from .html_views import hist_figure, link_data, profile_figure
from .options import RenderOptions
from .page import figure_div, page, plotly_assets

_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _inline(text: str) -> str:
    """Escape, then render `code`, **bold** and *italic* (the report's only inline Markdown).

    Code spans are set aside first (as NUL-delimited tokens), so bold may contain code and
    asterisks inside code stay literal.
    """
    codes: list[str] = []

    def keep(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    t = html.escape(_INLINE_CODE.sub(keep, text.replace("\x00", "")))
    t = _BOLD.sub(r"<strong>\1</strong>", t)
    t = _ITALIC.sub(r"<em>\1</em>", t)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], t)


def markdown_to_html(md: str, heading_offset: int = 2) -> str:
    """The Markdown subset the analysis report writes (headings, paragraphs, - and 1. lists,
    `code`, **bold**) as HTML. Everything is escaped first, so no text can inject markup.

    >>> print(markdown_to_html("# Title\\n\\nA <b> `x<y>`\\n\\n- **one**\\n- two"))
    <h3>Title</h3>
    <p>A &lt;b&gt; <code>x&lt;y&gt;</code></p>
    <ul>
    <li><strong>one</strong></li>
    <li>two</li>
    </ul>
    """
    out: list[str] = []
    para: list[str] = []
    lst: str | None = None

    def flush_para() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def close_list() -> None:
        nonlocal lst
        if lst:
            out.append(f"</{lst}>")
            lst = None

    for raw in md.splitlines():
        line = raw.rstrip()
        m_h = re.match(r"^(#{1,6})\s+(.*)$", line)
        m_ul = re.match(r"^[-*]\s+(.*)$", line)
        m_ol = re.match(r"^\d+\.\s+(.*)$", line)
        if not line.strip():
            flush_para()
            close_list()
        elif m_h:
            flush_para()
            close_list()
            level = min(6, len(m_h.group(1)) + heading_offset)
            out.append(f"<h{level}>{_inline(m_h.group(2))}</h{level}>")
        elif m_ul or m_ol:
            flush_para()
            kind = "ul" if m_ul else "ol"
            if lst != kind:
                close_list()
                out.append(f"<{kind}>")
                lst = kind
            out.append(f"<li>{_inline((m_ul or m_ol).group(1))}</li>")  # type: ignore[union-attr]
        elif lst and raw.startswith((" ", "\t")) and out:
            out[-1] = out[-1][: -len("</li>")] + " " + _inline(line.strip()) + "</li>"
        else:
            close_list()
            para.append(line.strip())
    flush_para()
    close_list()
    return "\n".join(out)


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
    :func:`layerscope.analysis.report` (computed from the numbers).
    """
    from ..analysis import report

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
        md = report(hm).to_markdown()
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
        parts.append(f'<div class="report">{markdown_to_html(md)}</div>')
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
