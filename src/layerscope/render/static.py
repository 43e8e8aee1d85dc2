"""Static heatmaps (PNG/SVG/PDF) with matplotlib, in the reference figure's conventions:
x = Layer 1..N, y = Steps (first step at the top, labels like 30k / 1.2M), a perceptually uniform
colormap from dark purple (low) to light yellow (high), and a labelled colour bar.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_step
from ..errors import ConfigError, StoreError
from ..store.heatmap import Heatmap

FORMATS = (".png", ".svg", ".pdf")


def _mpl() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        matplotlib.use("Agg", force=True)  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def tick_positions(n: int, max_ticks: int) -> list[int]:
    """Indices of at most ``max_ticks`` evenly spread ticks over ``n`` items, first and last included."""
    if n <= max_ticks:
        return list(range(n))
    stride = int(np.ceil((n - 1) / (max_ticks - 1)))
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        if n - 1 - idx[-1] < stride / 2:
            idx[-1] = n - 1
        else:
            idx.append(n - 1)
    return idx


def check_output_path(path: str | os.PathLike[str], formats: tuple[str, ...] = FORMATS) -> Path:
    """Validate an output path before any work: known suffix, existing writable folder."""
    p = Path(path)
    if p.suffix.lower() not in formats:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r}; end the file name with one of {', '.join(formats)}."
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise StoreError(f"folder {str(parent)!r} for {str(path)!r} does not exist; create it or choose another path.")
    if not parent.is_dir():
        raise StoreError(f"{str(parent)!r} is a file, not a folder; choose another output path for {str(path)!r}.")
    if not os.access(parent, os.W_OK):
        raise StoreError(f"folder {str(parent)!r} is not writable; choose another output path.")
    if p.exists() and p.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder; give a file name such as {str(p / 'heatmap.png')!r}.")
    return p


def plot_heatmap(
    hm: Heatmap,
    path: str | os.PathLike[str],
    *,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 150,
    colorbar: str = "right",
) -> Path:
    """Write ``hm`` as a heatmap image; the format comes from the file suffix."""
    out = check_output_path(path)
    plt = _mpl()
    from matplotlib.colors import Normalize

    vals = np.asarray(hm.values, dtype=np.float64)
    n_steps, n_layers = vals.shape
    finite = vals[np.isfinite(vals)]
    lo = float(vmin) if vmin is not None else (min(0.0, float(finite.min())) if finite.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    if figsize is None:
        w = min(16.0, max(6.0, 3.0 + 0.28 * n_layers))
        h = min(12.0, max(4.5, 2.0 + 0.3 * min(n_steps, 30)))
        figsize = (w, h)
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("#bdbdbd")  # missing / non-finite cells: neutral grey
    masked = np.ma.masked_invalid(vals)
    im = ax.imshow(masked, aspect="auto", cmap=cm, norm=Normalize(lo, hi), interpolation="nearest",
                   extent=(0.5, n_layers + 0.5, n_steps - 0.5, -0.5))
    ax.set_xlabel("Layer")
    ax.set_ylabel("Steps")
    xt = tick_positions(n_layers, 24)
    ax.set_xticks([i + 1 for i in xt])
    ax.set_xticklabels([str(hm.layers[i]) for i in xt])
    yt = tick_positions(n_steps, 20)
    ax.set_yticks(yt)
    ax.set_yticklabels([format_step(hm.steps[i]) for i in yt])
    ttl = title if title is not None else _default_title(hm)
    if ttl:
        ax.set_title(ttl)
    label = hm.metric if not hm.site or hm.site == "output" else f"{hm.metric} ({hm.site})"
    cb = fig.colorbar(im, ax=ax, orientation="horizontal" if colorbar == "bottom" else "vertical",
                      fraction=0.05, pad=0.02)
    cb.set_label(label)
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as e:
        raise StoreError(f"cannot write {str(out)!r}: {e.strerror or e}; choose another output path.") from e
    finally:
        plt.close(fig)
    return out


def _default_title(hm: Heatmap) -> str:
    parts = [f"{hm.metric} per layer over training"]
    if hm.run:
        parts.append(f"run {hm.run}")
    return " — ".join(parts)
