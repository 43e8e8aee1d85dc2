"""Fewer rows than steps, without losing a spike: the reduction every view of a long run uses.

A 20,000-step map has far more rows than a screen or a figure has pixels; drawing it whole makes
the browser (or matplotlib) drop rows, and a one-step spike can fall between them. Instead,
consecutive rows are grouped into blocks of ``k`` and each cell of a block shows the **most
extreme** of its ``k`` values: the one farthest from the block's median in that column. A smooth
trend looks the same, and a value that stands out from its neighbours is the one drawn. An
infinite value always stands out; a cell is missing only when its whole block is. Each shown
value keeps the row it came from, so a hover can name its exact step.

The static PNG, the interactive HTML and the dashboard's ``/api/heatmap`` all reduce with
:func:`reduce_rows`.

>>> import numpy as np
>>> v = np.full((2000, 3), 0.1); v[777, 1] = 5.0
>>> r = reduce_rows(v, 500)
>>> r.values.shape, float(r.values.max()), int(r.src[r.values.argmax() // 3, 1])
((500, 3), 5.0, 777)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reduced:
    """A matrix cut to at most ``max_rows`` rows; ``factor`` rows per block (1: not reduced).

    ``values[b, j]`` is the value shown for block ``b``, layer ``j``; ``src[b, j]`` the row of the
    full matrix it came from; block ``b`` covers rows ``starts[b]`` up to (not including) ``stops[b]``.
    """

    values: np.ndarray  # (R, L) float64
    src: np.ndarray  # (R, L) int64
    starts: np.ndarray  # (R,) int64
    stops: np.ndarray  # (R,) int64
    factor: int

    @property
    def reduced(self) -> bool:
        return self.factor > 1


def block_factor(n_rows: int, max_rows: int) -> int:
    """Rows per block so that ``n_rows`` fit in ``max_rows`` (1 when they already do).

    >>> block_factor(2000, 700), block_factor(20000, 1000), block_factor(50, 700)
    (3, 20, 1)
    """
    if max_rows <= 0 or n_rows <= max_rows:
        return 1
    return -(-int(n_rows) // int(max_rows))


def reduce_rows(values: np.ndarray, max_rows: int, factor: int | None = None) -> Reduced:
    """Blocks of consecutive rows, each cell the block's most extreme value (see the module).

    ``factor`` forces the rows per block (else :func:`block_factor` of ``max_rows``).

    >>> r = reduce_rows(np.array([[1.0], [np.nan], [np.nan], [np.nan]]), 2)
    >>> r.values.ravel().tolist(), r.starts.tolist(), r.stops.tolist()
    ([1.0, nan], [0, 2], [2, 4])
    """
    v = np.asarray(values, dtype=np.float64)
    n, n_cols = v.shape
    k = int(factor) if factor is not None else block_factor(n, max_rows)
    if k <= 1 or n == 0:
        rows = np.arange(n, dtype=np.int64)
        return Reduced(v, np.repeat(rows[:, None], n_cols, axis=1), rows, rows + 1, 1)
    n_blocks = -(-n // k)
    padded = np.full((n_blocks * k, n_cols), np.nan)
    padded[:n] = v
    blocks = padded.reshape(n_blocks, k, n_cols)  # (R, k, L)
    finite = np.isfinite(blocks)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: handled below
        # The median of each block's finite values (NaN when none; then any value is as good).
        med = np.nanmedian(np.where(finite, blocks, np.nan), axis=1, keepdims=True)
        dev = np.abs(blocks - np.nan_to_num(med, nan=0.0))
    dev = np.where(np.isinf(blocks), np.inf, dev)  # an infinite value always stands out
    dev = np.where(np.isnan(blocks), -1.0, dev)  # a missing value never does
    pick = dev.argmax(axis=1)  # (R, L): offset of the chosen row inside its block
    out = np.take_along_axis(blocks, pick[:, None, :], axis=1)[:, 0, :]
    starts = np.arange(n_blocks, dtype=np.int64) * k
    stops = np.minimum(starts + k, n)
    return Reduced(out, starts[:, None] + pick.astype(np.int64), starts, stops, k)


def reduce_counts(counts: np.ndarray, max_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram rows ``(S, B)`` in blocks: the mean count of each bin over the block's steps, so a
    bin filled at one step of the block stays non-zero (and visible on a log colour scale).

    Returns ``(counts, starts, stops)``.

    >>> c, a, b = reduce_counts(np.array([[0, 4.0], [0, 0], [2, 0]]), 2)
    >>> c.tolist(), a.tolist(), b.tolist()
    ([[0.0, 2.0], [2.0, 0.0]], [0, 2], [2, 3])
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.shape[0]
    k = block_factor(n, max_rows)
    starts = np.arange(0, n, max(1, k), dtype=np.int64)
    stops = np.minimum(starts + max(1, k), n)
    if k <= 1:
        return c, starts, stops
    sums = np.add.reduceat(c, starts, axis=0)
    return sums / (stops - starts)[:, None], starts, stops
