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


def encode(arr: np.ndarray, chunk: int) -> list[bytes]:
    """The parts of the row of a ``(n_layers, inner)`` float64 array: ``chunk`` values each."""
    b = np.ascontiguousarray(arr, dtype="<f8").tobytes()
    size = 8 * chunk
    return [b[k : k + size] for k in range(0, len(b), size)] or [b""]


def n_parts(n_layers: int, inner: int, chunk: int) -> int:
    """How many parts a row of ``n_layers x inner`` values has."""
    return max(1, -(-(n_layers * inner) // chunk))


def decode(
    rows: Sequence[tuple[int, int, Any]],
    n_layers: int,
    inner: int,
    chunk: int,
    path: Path,
    run: str,
    series: str,
) -> tuple[list[int], np.ndarray]:
    """Rows ``(step, part, blob)`` ordered by step and part -> the steps and one
    ``(n_steps, n_layers, inner)`` float64 array (a writable copy).

    A step whose parts are not exactly ``0..k-1``, each a BLOB of the right size (``chunk`` values,
    the rest in the last part), is damage: a ``StoreError`` that names the run, the series and the
    step.
    """
    total = n_layers * inner
    k = n_parts(n_layers, inner, chunk)
    if k == 1:  # the common case: one part per step, checked and joined in one pass
        steps = [r[0] for r in rows]
        blobs = [r[2] for r in rows]
        size = 8 * total
        for s, p, b in rows:
            if p != 0 or type(b) is not bytes or len(b) != size:
                raise damaged(path, run, _bad_row(b, s, p, series, n_layers, inner, size))
        if len(set(steps)) != len(steps):
            raise damaged(path, run, f"{series} holds parts of one row under several part numbers")
    else:
        steps, blobs = [], []
        for i in range(0, len(rows), k):
            group = rows[i : i + k]
            s = group[0][0]
            for j in range(k):
                want = 8 * (chunk if j < k - 1 else total - chunk * (k - 1))
                if j >= len(group) or group[j][0] != s or group[j][1] != j:
                    raise damaged(path, run, f"the row of {series} at step {s} lacks part {j} of {k}")
                b = group[j][2]
                if type(b) is not bytes or len(b) != want:
                    raise damaged(path, run, _bad_row(b, s, j, series, n_layers, inner, want))
            steps.append(s)
            blobs.append(b"".join(g[2] for g in group))
    if not blobs:
        return [], np.zeros((0, n_layers, inner))
    flat = np.frombuffer(b"".join(blobs), dtype="<f8")
    return steps, flat.astype(np.float64).reshape(len(blobs), n_layers, inner)  # native order, writable


def _bad_row(b: Any, step: int, part: int, series: str, n_layers: int, inner: int, size: int) -> str:
    shape = f"{n_layers} layers" + (f" x {inner}" if inner > 1 else "")
    where = f"the row of {series} at step {step}" + (f" (part {part})" if part else "")
    if isinstance(b, bytes):
        return f"{where} holds {len(b)} bytes, not {size}" + (
            f" ({shape} x 8)" if size == 8 * n_layers * inner else ""
        )
    kind = {str: "text", int: "an integer", float: "a number", type(None): "NULL"}.get(
        type(b), type(b).__name__
    )
    return f"{where} is {kind}, not the float64 values of {shape}"
