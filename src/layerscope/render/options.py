"""The one set of drawing options every renderer takes (static, small multiples, lines, HTML).

``layerscope.plot(hm, path, **options)`` and the CLI flags map onto :class:`RenderOptions`; an
unknown option or a value that cannot be drawn is a :class:`~layerscope.errors.ConfigError` that
names it and says what to pass instead.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

KINDS = ("heatmap", "lines", "profile")
PLOTLY_MODES = ("inline", "directory")
SCALES = ("linear", "log", "symlog")
COLORBARS = ("right", "bottom")
MAX_ANNOTATE = 40  # cells per side above which --annotate is skipped (the numbers would be unreadable)


class RenderWarning(UserWarning):
    """Something asked for was not drawn (e.g. --annotate on a matrix too large to read)."""


@dataclass
class RenderOptions:
    """How to draw a heatmap (or its per-layer lines). Every field has a working default.

    >>> RenderOptions(scale="log", colorbar="bottom").scale
    'log'
    """

    kind: str = "heatmap"  # "heatmap": layer x step cells; "lines": value vs step, one line per layer;
    #                        "profile": value vs depth at a few steps, one line per step
    cmap: str | None = None  # matplotlib name; None: magma, or RdBu_r centred at 0 for signed data/symlog,
    #                          viridis (by depth) for lines
    vmin: float | None = None  # colour-scale (lines: y-axis) limits; None: from the data
    vmax: float | None = None
    scale: str = "linear"  # "linear", "log" (positive values only) or "symlog" (signed, log beyond linthresh)
    linthresh: float | None = None  # symlog: |v| below this is linear; None: 5th percentile of |v| > 0
    center: float | None = (
        None  # diverging colour map centred here (compare uses 0); None: 0 if data is signed
    )
    annotate: bool = False  # print each cell's value in it; skipped with a warning above 40 x 40 cells
    colorbar: str = "right"  # "right" or "bottom"
    title: str | None = None  # None: a default title naming metric and run; "": no title
    label: str | None = None  # colour-bar (lines: y-axis) label; None: the metric (and site)
    figsize: tuple[float, float] | None = None  # inches (HTML: x 100 px); None: sized from the matrix
    dpi: int = 150  # raster resolution of PNG output (and of images embedded in PDF/SVG)
    true_steps: bool = False  # rows at their true step values (uneven spacing shows); default: equal rows
    shared_scale: bool | None = None  # small multiples: one colour scale; None: shared iff one metric
    ncols: int | None = None  # small multiples: panels per row; None: one per site, or up to 3
    at_steps: tuple[int, ...] | None = None  # profile: the steps drawn; None: 6 spread over the run
    layers: tuple[int, ...] | None = None  # histograms: the layers drawn; None: all, or 12 spread
    plotly: str = "inline"  # HTML: plotly.js "inline" (one file) or "directory" (plotly-*.min.js beside it)
    alerts: bool = True  # heatmaps: mark the cells of the run's watch alerts (Heatmap.events), if any

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}; pass one of those.")
        if self.scale not in SCALES:
            raise ConfigError(f"scale {self.scale!r} is not one of {', '.join(SCALES)}; pass one of those.")
        if self.colorbar not in COLORBARS:
            raise ConfigError(
                f"colorbar {self.colorbar!r} is not one of {', '.join(COLORBARS)}; pass 'right' or 'bottom'."
            )
        for name in ("vmin", "vmax", "linthresh", "center"):
            v = getattr(self, name)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"{name}={v!r} is not a number; pass a number.") from None
                if v != v or v in (float("inf"), float("-inf")):
                    raise ConfigError(f"{name}={v!r} is not finite; pass a finite number.")
                setattr(self, name, v)
        if self.vmin is not None and self.vmax is not None and not self.vmax > self.vmin:
            raise ConfigError(
                f"vmax ({self.vmax:g}) must be greater than vmin ({self.vmin:g}); swap or change them."
            )
        if self.scale == "log":
            for name in ("vmin", "vmax"):
                v = getattr(self, name)
                if v is not None and v <= 0:
                    raise ConfigError(
                        f"a log scale needs {name} > 0, got {v:g}; pass a positive {name} or use symlog."
                    )
        if self.linthresh is not None and self.linthresh <= 0:
            raise ConfigError(f"linthresh must be positive, got {self.linthresh:g}; pass e.g. 1e-3.")
        if self.figsize is not None:
            self.figsize = parse_figsize(self.figsize)
        try:
            self.dpi = int(self.dpi)
        except (TypeError, ValueError):
            raise ConfigError(f"dpi={self.dpi!r} is not a whole number; pass e.g. 300.") from None
        if not 20 <= self.dpi <= 1200:
            raise ConfigError(f"dpi {self.dpi} is out of range; pass 20..1200 (300 suits print).")
        if self.ncols is not None and (int(self.ncols) != self.ncols or self.ncols < 1):
            raise ConfigError(f"ncols must be a positive whole number, got {self.ncols!r}.")
        if self.plotly not in PLOTLY_MODES:
            raise ConfigError(
                f"plotly={self.plotly!r} is not one of {', '.join(PLOTLY_MODES)}; pass 'inline' (one "
                "self-contained file) or 'directory' (plotly.js written once beside the page)."
            )
        for name in ("at_steps", "layers"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _whole_numbers(name, v))

    @classmethod
    def from_kwargs(cls, **options: Any) -> RenderOptions:
        """Build from keyword options, rejecting unknown names with the nearest valid one."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"unknown plot option {key!r}; {hint}options are: {', '.join(names)}.")
        return cls(**options)

    def replace(self, **changes: Any) -> RenderOptions:
        return dataclasses.replace(self, **changes)


def _whole_numbers(name: str, value: Any) -> tuple[int, ...]:
    """``7``, ``"1,4,7"`` or ``[1, 4]`` -> a non-empty tuple of whole numbers."""
    items = (
        value.split(",")
        if isinstance(value, str)
        else (value if isinstance(value, (list, tuple)) else [value])
    )
    out = []
    for x in items:
        try:
            f = float(str(x).strip())
        except ValueError:
            raise ConfigError(
                f"{name}={value!r}: {str(x).strip()!r} is not a whole number; pass e.g. 1,4,7."
            ) from None
        if f != int(f):
            raise ConfigError(f"{name}={value!r}: {x} is not a whole number; pass e.g. 1,4,7.")
        out.append(int(f))
    if not out:
        raise ConfigError(f"{name}={value!r} names nothing; pass e.g. 1,4,7.")
    return tuple(dict.fromkeys(out))


def parse_figsize(value: Any) -> tuple[float, float]:
    """``"7,4"``, ``"7x4"`` or ``(7, 4)`` -> ``(7.0, 4.0)`` inches, each between 1 and 100.

    >>> parse_figsize("7,4.5")
    (7.0, 4.5)
    """
    parts: Any = value
    if isinstance(value, str):
        parts = value.lower().replace("x", ",").split(",")
    try:
        w, h = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(
            f"figure size {value!r} is not two numbers; pass width,height in inches, e.g. 7,4."
        ) from None
    if not (1 <= w <= 100 and 1 <= h <= 100):
        raise ConfigError(f"figure size {value!r} is outside 1..100 inches per side; pass e.g. 7,4.")
    return (w, h)


def check_cmap(name: str) -> str:
    """``name`` if matplotlib knows that colormap, else a ConfigError with the nearest names."""
    from matplotlib import colormaps

    if name in colormaps:
        return name
    close = difflib.get_close_matches(name, list(colormaps), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"unknown colormap {name!r}; {hint}see matplotlib's colormap list (e.g. magma, viridis, RdBu_r)."
    )
