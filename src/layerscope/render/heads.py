"""The head x layer map of a per-head statistic at one step (``Store.load_heads``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..store import HeadMap


def plot_heads(
    hm: HeadMap,
    out: str | os.PathLike[str],
    *,
    cmap: str = "magma",
    dpi: int = 120,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    colorbar: str = "right",
) -> Path:
    """Draw ``hm`` (heads x layers) to ``out`` (PNG/SVG/PDF by suffix); NaN cells (a layer with fewer
    heads) stay blank. ``title=None`` names the run, metric, site and step (``""``: no title);
    ``colorbar`` is ``"right"`` or ``"bottom"``.

    >>> import numpy as np, tempfile, os
    >>> hm = HeadMap(np.arange(6.0).reshape(2, 3), [0, 1], [1, 2, 3], ["a", "b", "c"], 10, "max_logit", "attn", "r")
    >>> plot_heads(hm, os.path.join(tempfile.mkdtemp(), "h.png")).suffix
    '.png'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    v = np.asarray(hm.values, dtype=np.float64)
    size = figsize or (max(5.5, 0.35 * v.shape[1] + 2), max(2.5, 0.3 * v.shape[0] + 1.5))
    fig, ax = plt.subplots(figsize=size)
    im = ax.imshow(
        np.ma.masked_invalid(v),
        aspect="auto",
        cmap=cmap,
        origin="lower",
        interpolation="nearest",
        vmin=vmin,
        vmax=vmax,
    )
    ax.set_xticks(range(len(hm.layers)), [str(la) for la in hm.layers])
    ax.set_yticks(range(len(hm.heads)), [str(h) for h in hm.heads])
    ax.set_xlabel("layer")
    ax.set_ylabel("head")
    if title is None:
        title = f"{hm.run}: {hm.metric} at {hm.site}, per head, step {hm.step}"
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=hm.metric, location="bottom" if colorbar == "bottom" else "right")
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = ["plot_heads"]
