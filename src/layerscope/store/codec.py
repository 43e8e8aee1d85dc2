"""The one value codec: a series row is ``n_layers x inner`` float64, little-endian, layer-major.

Encoding never rounds (float64 in, the same bits out); absent values are NaN. Decoding checks
every row it is given (a BLOB of exactly the right size) and says which one is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .txn import damaged


def as_matrix(vals: Any, what: str) -> np.ndarray:
    """``vals`` as a float64 ``(n_layers, inner)`` array: a sequence or 1-D array is one value per
    layer (inner 1), a 2-D array is ``inner`` values per layer (e.g. one per head)."""
    try:
        arr = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        try:
            arr = np.asarray([float(v) for v in vals], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{what}: values must be numbers (one per layer, or an (n_layers, n_heads) array); {e}."
            ) from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConfigError(
            f"{what}: values have shape {tuple(np.shape(vals))}; give one value per layer, or an "
            "(n_layers, n_heads) array."
        )
    return arr


def encode(arr: np.ndarray) -> bytes:
    """The blob of a ``(n_layers, inner)`` float64 array."""
    return np.ascontiguousarray(arr, dtype="<f8").tobytes()


def decode(
    blobs: Sequence[Any],
    steps: Sequence[int],
    n_layers: int,
    inner: int,
    path: Path,
    run: str,
    series: str,
) -> np.ndarray:
    """The rows as one ``(len(blobs), n_layers, inner)`` float64 array (a writable copy).

    A row that is not a BLOB of ``8 * n_layers * inner`` bytes is damage: a ``StoreError`` that
    names the run, the series and the step.
    """
    size = 8 * n_layers * inner
    for b, s in zip(blobs, steps):
        if type(b) is not bytes or len(b) != size:
            raise damaged(path, run, _bad_row(b, s, series, n_layers, inner))
    if not blobs:
        return np.zeros((0, n_layers, inner))
    flat = np.frombuffer(b"".join(blobs), dtype="<f8")
    return flat.astype(np.float64).reshape(len(blobs), n_layers, inner)  # native order, writable


def _bad_row(b: Any, step: int, series: str, n_layers: int, inner: int) -> str:
    shape = f"{n_layers} layers" + (f" x {inner}" if inner > 1 else "")
    if isinstance(b, bytes):
        return f"the row of {series} at step {step} holds {len(b)} bytes, not {8 * n_layers * inner} ({shape} x 8)"
    kind = {str: "text", int: "an integer", float: "a number", type(None): "NULL"}.get(
        type(b), type(b).__name__
    )
    return f"the row of {series} at step {step} is {kind}, not the float64 values of {shape}"
