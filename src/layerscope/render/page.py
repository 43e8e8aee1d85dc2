"""HTML pages that draw offline: the page frame, plotly.js (inline, or one shared file beside the
pages) and the small script that links the map, the step slider and the profile.

Nothing is ever fetched from the network: ``plotly="inline"`` embeds plotly.js (about 4.8 MB) in
the page; ``plotly="directory"`` writes ``plotly-<version>.min.js`` once into the page's folder
and every page written there loads that one copy.
"""

from __future__ import annotations

import html as _html
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..errors import ConfigError
from ._plotly import CONFIG, PLOT_HEIGHT

ASSETS = Path(__file__).parent / "assets"
VIEWS_JS = ASSETS / "views.js"  # also served by the dashboard as /static/views.js


def _plotly() -> Any:
    """plotly's offline module, or one line saying how to get it."""
    try:
        import plotly.io
        import plotly.offline

        return plotly
    except ImportError as e:
        raise ConfigError(
            f"interactive HTML needs the 'plotly' package, which is not importable ({e}); "
            "install it with: pip install plotly (it comes with pip install layerscope), "
            "or write a .png/.svg/.pdf instead."
        ) from None


def plotly_js_version() -> str:
    """The version of the plotly.js bundled with the installed plotly package."""
    return str(_plotly().offline.get_plotlyjs_version())


def figure_div(fig: dict[str, Any], div_id: str) -> str:
    """A ``<div>`` plus the script that draws ``fig`` into it (plotly.js must be on the page)."""
    fig = {k: v for k, v in fig.items() if k != "meta"}  # layerscope's own notes, not plotly's
    return _plotly().io.to_html(
        fig,
        config=CONFIG,
        include_plotlyjs=False,
        full_html=False,
        validate=False,
        div_id=div_id,
        default_height=f"{fig['layout'].get('height', PLOT_HEIGHT)}px",
    )


def plotly_assets(folder: str | Path, mode: str = "inline") -> str:
    """The ``<script>`` that brings plotly.js to a page in ``folder``.

    ``"inline"``: plotly.js itself, inside the tag. ``"directory"``: a tag loading
    ``plotly-<version>.min.js``, written into ``folder`` unless an identical copy is there.
    """
    if mode == "inline":
        return f'<script type="text/javascript">{_plotly().offline.get_plotlyjs()}</script>'
    if mode != "directory":
        raise ConfigError(f"plotly={mode!r}; pass 'inline' or 'directory'.")
    name = f"plotly-{plotly_js_version()}.min.js"
    target = Path(folder) / name
    js = _plotly().offline.get_plotlyjs()
    if not (target.is_file() and target.stat().st_size == len(js.encode("utf-8"))):
        write_text_atomic(target, js)
    return f'<script type="text/javascript" src="{_html.escape(name)}"></script>'


@lru_cache(maxsize=1)
def views_js() -> str:
    """The linking script (assets/views.js) as text."""
    return VIEWS_JS.read_text(encoding="utf-8")


PAGE_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.5em; margin: 0.6em 0 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; }
.figure { background: white; border: 1px solid #e3e3e3; border-radius: 6px; margin: 12px 0; padding: 4px; }
.meta { color: #666; font-size: 0.9em; } code { background: #f0f0f0; padding: 0 3px; border-radius: 3px; }
nav a { margin-right: 1em; } .report { background: white; border: 1px solid #e3e3e3; border-radius: 6px;
       padding: 4px 20px; line-height: 1.45; }
.slider { display: flex; align-items: center; gap: 12px; margin: 4px 8px 12px; font-size: 0.95em; }
.slider input { flex: 1; } .slider output { font-variant-numeric: tabular-nums; font-weight: 600; }
"""


def page(title: str, body: str, head: str | None = None) -> str:
    """A complete page: ``title`` is escaped here, ``body`` must be HTML already; ``head`` brings
    plotly.js (default: inline). The linking script runs after the figures are drawn."""
    head = head if head is not None else plotly_assets(".", "inline")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_html.escape(title)}</title>\n<style>{PAGE_CSS}</style>\n{head}\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n<script>{views_js()}\nLayerscopeViews.wirePage();</script>\n"
        "</body>\n</html>\n"
    )
