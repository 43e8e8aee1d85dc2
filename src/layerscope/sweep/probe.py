"""The probe batch of a sweep: read from a file, never unpickled beyond tensors.

=================  =========================================================================
``.pt`` ``.pth``   ``torch.save`` of a tensor (the model's one input), a list/tuple of tensors
                   (positional inputs) or a dict of tensors (keyword inputs); read with
                   ``weights_only=True``
``.npy``           one array (no pickled objects)
``.npz``           several arrays, passed as keyword inputs
``.safetensors``   one tensor (the input) or several (keyword inputs)
anything else      text, with ``--tokenizer bytes``: its UTF-8 bytes as token ids, one row, or
                   rows of ``--seq-len`` tokens (the tail that does not fill a row is dropped)
=================  =========================================================================

Its hash (:func:`layerscope.batch.probe_hash`) is stored with the run, so statistics of two
different probes never land in one run unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import refuse_special_file
from ..batch import check_not_empty, map_batch
from ..errors import ConfigError, DataError, NotFoundError

TENSOR_SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".safetensors")
TOKENIZERS = ("bytes",)


def _is_array(v: Any) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray))


def check_probe(obj: Any, label: str = "given") -> Any:
    """A probe batch as the model gets it: a tensor, a non-empty list/tuple of tensors, or a
    non-empty dict of str -> tensor (numpy arrays become tensors). A batch with no rows is refused.

    >>> check_probe(torch.zeros(0, 8), "probe.pt")
    Traceback (most recent call last):
    ...
    layerscope.errors.DataError: probe probe.pt: input 0 has 0 rows (shape (0, 8)), so every statistic would be NaN; pass a batch with at least one row of real inputs.
    """
    ok = (
        _is_array(obj)
        or (isinstance(obj, (list, tuple)) and obj and all(_is_array(o) for o in obj))
        or (
            isinstance(obj, Mapping)
            and obj
            and all(isinstance(k, str) for k in obj)
            and all(_is_array(v) for v in obj.values())
        )
    )
    if not ok:
        raise DataError(
            f"probe {label}: holds a {type(obj).__name__}; save a tensor, a list of tensors "
            "(positional inputs) or a dict of name -> tensor (keyword inputs)."
        )
    batch = map_batch(
        lambda v: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v, obj
    )
    check_not_empty(batch, label)
    return batch


def load_probe(path: str | os.PathLike[str], tokenizer: str | None = None, seq_len: int | None = None) -> Any:
    """Read a probe file (see the module docstring for the formats).

    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "probe.txt")
    >>> _ = open(p, "w").write("hello world")
    >>> load_probe(p, tokenizer="bytes", seq_len=4).tolist()
    [[104, 101, 108, 108], [111, 32, 119, 111]]
    """
    p = Path(path)
    label = str(path)
    refuse_special_file(p, "probe")  # a FIFO would block forever, /dev/zero never end
    if not p.is_file():
        raise NotFoundError(
            f"probe file {label!r} does not exist; pass a .pt, .npy or .safetensors file "
            "holding the input batch, or a text file with --tokenizer bytes."
        )
    suffix = p.suffix.lower()
    if suffix in TENSOR_SUFFIXES:
        if tokenizer is not None:
            raise ConfigError(
                f"--tokenizer {tokenizer} applies to text probes; {label!r} already holds tensors, "
                "so drop --tokenizer."
            )
        return check_probe(_read_tensor_file(p, label), label)
    if tokenizer is None:
        raise ConfigError(
            f"probe {label!r} is not a {'/'.join(TENSOR_SUFFIXES)} file; to use it as text, "
            "pass --tokenizer bytes."
        )
    if tokenizer not in TOKENIZERS:
        raise ConfigError(
            f"--tokenizer {tokenizer!r} is not known; the built-in one is 'bytes'. For another "
            "tokenizer, save its token ids with torch.save(ids, 'probe.pt') and pass that file."
        )
    try:
        data = p.read_bytes()
    except OSError as e:
        raise NotFoundError(
            f"probe {label!r} cannot be read ({e.strerror or e}); check its permissions."
        ) from None
    if not data:
        raise DataError(f"probe {label!r} is empty; put some text in it.")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"probe {label!r} is not UTF-8 text (byte {e.start}); pass a text file or a tensor file."
        ) from None
    ids = torch.tensor(list(data), dtype=torch.long)
    if seq_len is None:
        return ids[None, :]  # (1, T)
    if seq_len < 1:
        raise ConfigError(f"--seq-len {seq_len}; pass a whole number >= 1.")
    rows = len(ids) // seq_len
    if rows == 0:
        raise DataError(
            f"probe {label!r} has {len(ids)} bytes, fewer than --seq-len {seq_len}; "
            "lower --seq-len or add text."
        )
    return ids[: rows * seq_len].view(rows, seq_len)  # (rows, seq_len)


def _read_tensor_file(p: Path, label: str) -> Any:
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            d = load_file(str(p))
            return next(iter(d.values())) if len(d) == 1 else d
        return torch.load(p, map_location="cpu", weights_only=True)
    except (ConfigError, DataError):
        raise
    except Exception as e:  # noqa: BLE001 - numpy/torch/safetensors each raise their own types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(
            f"probe {label!r} cannot be read as {suffix} ({first}); save the input batch with "
            "torch.save(tensor, 'probe.pt') (tensors only, no other objects)."
        ) from None


def describe(probe: Any) -> str:
    """``(8, 64) int64`` / ``input_ids=(8, 64) int64, attention_mask=...`` for messages."""

    def one(t: torch.Tensor) -> str:
        return f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"

    if isinstance(probe, torch.Tensor):
        return one(probe)
    if isinstance(probe, Mapping):
        return ", ".join(f"{k}={one(v)}" for k, v in probe.items())
    if isinstance(probe, (list, tuple)):
        return ", ".join(one(t) for t in probe)
    return type(probe).__name__


__all__ = ["TENSOR_SUFFIXES", "TOKENIZERS", "check_probe", "describe", "load_probe"]
