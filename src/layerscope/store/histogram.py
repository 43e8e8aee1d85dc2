"""The recorded histograms of one run and site: counts per (step, layer, bin), with fixed bin edges.

``hist`` is recorded as counts in fixed bins (``len(edges) + 1`` of them: values below the first
edge, one bin per pair of edges, values from the last edge up), the same bins for every step and
layer, so counts add up exactly across micro-batches, steps and ranks. Read through the store's
reader (:meth:`Store.load_hist`), never its SQL.

>>> import numpy as np
>>> h = Histograms(np.ones((2, 3, 4)), steps=[10, 20], layers=[1, 2, 3], edges=[-1.0, 0.0, 1.0])
>>> h.layer(2).shape, h.bin_range(0), h.bin_range(3)
((2, 4), (-inf, -1.0), (1.0, inf))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, NotFoundError
from .sqlite import Store


@dataclass
class Histograms:
    """``counts[i, j, b]``: how many values of layer ``layers[j]`` at ``steps[i]`` fell in bin ``b``.

    Bin 0 is ``(-inf, edges[0])``, bin ``b`` is ``[edges[b-1], edges[b])``, the last bin
    ``[edges[-1], inf)``. Non-finite values are not counted (the ``nonfinite`` metrics count them).
    """

    counts: np.ndarray  # (S, L, B) float64, B = len(edges) + 1
    steps: Sequence[int]
    layers: Sequence[int]
    edges: Sequence[float] | np.ndarray  # (B - 1,) ascending, finite
    layer_names: list[str] = field(default_factory=list)
    site: str = "output"
    run: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.float64)
        self.edges = np.asarray(self.edges, dtype=np.float64)
        self.steps = [int(s) for s in self.steps]
        self.layers = [int(x) for x in self.layers]
        if self.counts.ndim != 3 or self.counts.shape[:2] != (len(self.steps), len(self.layers)):
            raise DataError(
                f"histogram counts have shape {self.counts.shape}; expected ({len(self.steps)} steps, "
                f"{len(self.layers)} layers, bins)."
            )
        if self.counts.shape[2] != len(self.edges) + 1:
            raise DataError(
                f"{self.counts.shape[2]} bins but {len(self.edges)} edges; there must be one bin more "
                "than edges (values below the first edge and from the last edge up)."
            )
        if not self.layer_names:
            self.layer_names = [str(x) for x in self.layers]

    @property
    def metric(self) -> str:
        return "hist"

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[2])

    def bin_range(self, b: int) -> tuple[float, float]:
        """``(low, high)`` of bin ``b``: ``[low, high)``, with -inf/inf for the two open bins."""
        e = np.asarray(self.edges)
        lo = float(e[b - 1]) if b > 0 else float("-inf")
        hi = float(e[b]) if b < len(e) else float("inf")
        return lo, hi

    def layer(self, layer: int) -> np.ndarray:
        """The ``(steps, bins)`` counts of ``layer`` (1-based, as stored)."""
        return self.counts[:, self._col(layer)]

    def _col(self, layer: int) -> int:
        try:
            return list(self.layers).index(int(layer))
        except ValueError:
            raise NotFoundError(
                f"layer {layer} is not in the histograms of run {self.run!r} (layers "
                f"{self.layers[0]}..{self.layers[-1]}); pass one of those."
            ) from None

    def select(self, layers: Sequence[int]) -> Histograms:
        """The same histograms for ``layers`` only (in that order)."""
        cols = [self._col(x) for x in layers]
        return Histograms(
            self.counts[:, cols],
            self.steps,
            [self.layers[c] for c in cols],
            self.edges,
            [self.layer_names[c] for c in cols],
            self.site,
            self.run,
            dict(self.meta),
        )

    # -- notebooks ------------------------------------------------------------------------------
    def _repr_markdown_(self) -> str:
        from ..render.notebook import hist_markdown

        return hist_markdown(self)

    def _repr_png_(self) -> bytes:
        from ..render.notebook import hist_png

        return hist_png(self)

    def _repr_html_(self) -> str:
        from ..render.notebook import hist_html

        return hist_html(self)

    def occupied(self) -> tuple[int, int]:
        """``(first, last + 1)``: the bins that hold any count at any step and layer ((0, 0) if none)."""
        used = np.flatnonzero(self.counts.sum(axis=(0, 1)) > 0)
        return (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)


def load_histograms(
    store: str | os.PathLike[str] | Store, run: str | None = None, site: str = "output"
) -> Histograms:
    """The recorded histograms of one run and site (``run`` may be omitted for a one-run store).

    >>> h = load_histograms("layerscope-demo/runs.db")        # doctest: +SKIP
    >>> h.layer(7).shape                                       # doctest: +SKIP
    (30, 100)
    """
    if isinstance(store, Store):
        return _load(store, run, site)
    with Store(store, readonly=True) as st:
        return _load(st, run, site)


def _load(st: Store, run: str | None, site: str) -> Histograms:
    run = st.resolve_run(run)
    cfg = st.run_config(run)
    if not cfg.get("hist_edges"):
        metrics = ", ".join(cfg.get("metrics") or []) or "none"
        raise NotFoundError(
            f"run {run!r} has no histograms (recorded metrics: {metrics}); record with 'hist' among the "
            "metrics (Recorder(metrics=[..., 'hist']) or sweep --metrics ...,hist)."
        )
    counts, steps, edges = st.load_hist(run, site)
    infos = st.layers(run)
    names = {li.layer: li.name for li in infos}
    n_layers = max(counts.shape[1], len(infos))
    if counts.shape[1] < n_layers:  # layers after the last one with a histogram: none recorded
        counts = np.concatenate(
            [counts, np.zeros((counts.shape[0], n_layers - counts.shape[1], counts.shape[2]))], 1
        )
    if counts.shape[2] != len(edges) + 1:
        raise ConfigError(
            f"run {run!r} stores {counts.shape[2]} histogram bins but {len(edges)} edges; the store is "
            "inconsistent: re-record the run."
        )
    layers = list(range(1, n_layers + 1))
    return Histograms(
        counts,
        steps,
        layers,
        edges,
        [names.get(i, str(i)) for i in layers],
        site,
        run,
        {"store": str(st.path)},
    )


load_hist = load_histograms  # the name ``layerscope.load_hist`` exports
