"""``--alerts/--no-alerts``: whether ``plot`` marks the run's watch alerts on a heatmap.

A decorator of its own (not one of the style flags in ``plot.py``) so that the commands that draw a
run's heatmaps can take it without touching the flags they share with ``compare``, whose
difference maps carry no alerts. The value reaches :class:`~layerscope.render.options.RenderOptions`
as ``alerts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def alerts_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--alerts/--no-alerts`` (default: on) to a command whose style keywords end in RenderOptions."""
    return click.option(
        "--alerts/--no-alerts",
        "alerts",
        default=True,
        show_default=True,
        help="Heatmaps: mark the cells where the run's live watch fired (an open circle, named in "
        "the legend; other metrics' alerts at the site as small triangles). --no-alerts leaves them off.",
    )(f)
