"""A coord-check run read back as one array: (seed, width, step, layer).

A coord-check (``layerscope coord-check``) stores one run with a variant per (width, seed), e.g.
``"width=256,seed=1"``, and rows per (variant, step, layer). :func:`load_coord` gathers them
through the store's reader API; the analysis (``analysis/coord.py``) and the pictures
(``render/coord.py``) read this, never SQL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NotFoundError, quote
from .reader import StoreReader
from .records import variant_dims


def coord_variant(width: int, seed: int) -> str:
    """The variant key of one (width, seed) of a coord-check.

    >>> coord_variant(256, 1)
    'width=256,seed=1'
    """
    return f"width={int(width)},seed={int(seed)}"


@dataclass
class CoordData:
    """One statistic of a coord-check: ``values[s, w, t, j]`` is seed ``seeds[s]``, width
    ``widths[w]``, step ``steps[t]``, layer ``layers[j]``; NaN where nothing was recorded.

    >>> d = CoordData(np.ones((1, 2, 1, 3)), widths=[64, 128], seeds=[0], steps=[1], layers=[1, 2, 3])
    >>> d.mean_over_seeds().shape
    (2, 1, 3)
    """

    values: np.ndarray  # (n_seeds, n_widths, n_steps, n_layers) float64
    widths: Sequence[int]
    seeds: Sequence[int]
    steps: Sequence[int]
    layers: Sequence[int]
    layer_names: list[str] = field(default_factory=list)
    metric: str = "abs_mean"
    site: str = "output"
    run: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def mean_over_seeds(self) -> np.ndarray:
        """(n_widths, n_steps, n_layers): the mean over the seeds that recorded a cell (mup's curve)."""
        v = np.asarray(self.values, dtype=np.float64)
        with np.errstate(all="ignore"):
            n = np.sum(np.isfinite(v), axis=0)
            return np.where(
                n > 0, np.nansum(np.where(np.isfinite(v), v, 0.0), axis=0) / np.maximum(n, 1), np.nan
            )


def coord_grid(reader: StoreReader, run: str) -> dict[tuple[int, int], str]:
    """(width, seed) -> variant key, for every coord-check variant of ``run``."""
    out: dict[tuple[int, int], str] = {}
    for v in reader.variants(run):
        dims = variant_dims(v)
        if "width" in dims and dims.get("width", "").isdigit():
            seed = dims.get("seed", "0")
            out[(int(dims["width"]), int(seed) if seed.lstrip("-").isdigit() else 0)] = v
    return out


def load_coord(
    store: StoreReader | str | os.PathLike[str], run: str, metric: str = "abs_mean", site: str = "output"
) -> CoordData:
    """Read ``metric`` at ``site`` of coord-check ``run`` into a :class:`CoordData`.

    Raises:
        NotFoundError: the run has no ``width=`` variants, or none of them holds (metric, site).
    """
    reader = store if isinstance(store, StoreReader) else StoreReader(store, readonly=True)
    try:
        grid = coord_grid(reader, run)
        if not grid:
            raise NotFoundError(
                f"run {quote(run)} in {quote(reader.path)} holds no coord-check widths (variants "
                "'width=N,seed=S'); record one with `layerscope coord-check` or layerscope.coord_check()."
            )
        if (metric, site) not in {ms for v in grid.values() for ms in reader.metrics(run, v)}:
            have = sorted({f"{m}@{s}" for v in grid.values() for m, s in reader.metrics(run, v)})
            raise NotFoundError(
                f"coord-check run {quote(run)} has no {metric}@{site}; it recorded {', '.join(have)}.",
                what="metric",
                value=metric,
                choices=sorted({h.split("@")[0] for h in have}),
                param="metric",
            )
        widths = sorted({w for w, _ in grid})
        seeds = sorted({s for _, s in grid})
        maps = {k: reader.load(run, metric, site, variant=v) for k, v in grid.items()}
        steps = sorted({int(s) for hm in maps.values() for s in hm.steps})
        first = next(iter(maps.values()))
        values = np.full((len(seeds), len(widths), len(steps), len(first.layers)), np.nan)
        row = {s: i for i, s in enumerate(steps)}
        for (w, s), hm in maps.items():
            for i, st in enumerate(hm.steps):
                values[seeds.index(s), widths.index(w), row[int(st)], :] = hm.values[i]
        meta = {"store": str(reader.path), "config": reader.run_config(run)}
        return CoordData(
            values, widths, seeds, steps, list(first.layers), list(first.layer_names), metric, site, run, meta
        )
    finally:
        if reader is not store:
            reader.close()
