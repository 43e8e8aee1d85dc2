"""Where figures go: the formats a path may name, checked before any work is done."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, NotFoundError, StoreError

FORMATS = (".png", ".svg", ".pdf")  # static (matplotlib)
HTML_FORMATS = (".html", ".htm")  # interactive (plotly)
ALL_FORMATS = (*FORMATS, ".html")


def is_html(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an interactive page."""
    return Path(path).suffix.lower() in HTML_FORMATS


def check_output_path(path: str | os.PathLike[str], formats: tuple[str, ...] = FORMATS) -> Path:
    """Validate an output path before any work: known suffix, existing writable folder.

    >>> check_output_path("rms.png").name
    'rms.png'
    >>> check_output_path("rms.jpg")
    Traceback (most recent call last):
    ...
    layerscope.errors.ConfigError: cannot tell the format of 'rms.jpg'; end the file name with one of .png, .svg, .pdf.
    """
    p = Path(path)
    if p.suffix.lower() not in formats:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r}; end the file name with one of {', '.join(formats)}."
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise NotFoundError(
            f"folder {str(parent)!r} for {str(path)!r} does not exist; "
            "create it or choose another output path."
        )
    if not parent.is_dir():
        raise StoreError(f"{str(parent)!r} is a file, not a folder; choose another output path.")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"folder {str(parent)!r} is not writable; choose another output path.")
    if p.exists() and p.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give a file name such as {str(p / 'heatmap.png')!r}.")
    return p
