"""Per-head series: several values per layer (one per attention head), read as one layer x step
matrix by reducing over the heads, or as a head x layer matrix at one step (``Store.load_heads``)."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError

REDUCTIONS = ("max", "mean", "min")


def default_reduce(metric: str) -> str:
    """How a layer x step map aggregates a per-head ``metric`` when nobody says: ``max`` for a
    maximum (``max_logit``: the worst head is what a soft-cap or QK-clip acts on), ``mean`` for
    a per-row mean (``entropy``, ``sink``).

    >>> default_reduce("max_logit"), default_reduce("entropy")
    ('max', 'mean')
    """
    return "max" if metric.startswith("max") else "mean"


def describe(how: str | int | None, inner: int) -> str:
    """How a label names a reduction: ``max over 12 heads``, ``head 3``; ``""`` for none.

    >>> describe("mean", 12), describe(3, 12), describe(None, 1)
    ('mean over 12 heads', 'head 3', '')
    """
    if how is None:
        return ""
    if isinstance(how, int):
        return f"head {how}"
    return f"{how} over {inner} heads"


def check(reduce: str | int | None, inner: int, what: str) -> str | int | None:
    """The reduction to apply to a series with ``inner`` values per layer, or a ConfigError.

    >>> check("max", 12, "max_logit/attn")
    'max'
    """
    if isinstance(reduce, bool):
        reduce = None if reduce is False else "bad"  # True means nothing; refuse it below
    if reduce is None:
        if inner > 1:
            raise ConfigError(
                f"{what} holds {inner} values per layer (one per head); pass reduce='max', 'mean' or "
                "'min' (over the heads) or a head index, or read one step with load_heads()."
            )
        return None
    if isinstance(reduce, (int, np.integer)):
        if not 0 <= int(reduce) < inner:
            raise ConfigError(
                f"head {int(reduce)} is not in {what}, which has heads 0..{inner - 1}; pass one of them."
            )
        return int(reduce)
    if reduce not in REDUCTIONS:
        raise ConfigError(
            f"reduce={reduce!r} is not one of {', '.join(repr(r) for r in REDUCTIONS)} or a head index; pass one of them."
        )
    return reduce


def apply(cube: np.ndarray, how: str | int | None) -> np.ndarray:
    """``(steps, layers, inner)`` -> ``(steps, layers)``: NaN heads ignored, NaN where all are."""
    if how is None:
        return cube[:, :, 0]
    if isinstance(how, int):
        return cube[:, :, how].copy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN layers: NaN, which is the answer
        if not cube.size:
            return np.zeros(cube.shape[:2])
        if how == "max":
            return np.nanmax(cube, axis=2)
        if how == "min":
            return np.nanmin(cube, axis=2)
        return np.nanmean(cube, axis=2)
