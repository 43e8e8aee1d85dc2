"""Nested inputs (a batch): one walker over tensors inside dicts, lists and tuples, and what is built on it.

A batch is what a model is called with: a tensor, positional inputs (a tuple or list), keyword
inputs (a dict, or any mapping such as Hugging Face's ``BatchEncoding``), nested to any depth.
:func:`map_batch` is the only function here that recurses; moving a batch to a device, taking its
first rows, hashing it and checking it is not empty are each one call of it.

>>> import torch
>>> b = {"input_ids": torch.zeros(4, 8, dtype=torch.long), "extra": [torch.ones(4, 2)]}
>>> first_rows(b, 1)["extra"][0].shape
torch.Size([1, 2])
>>> probe_hash(b) == probe_hash({"extra": [torch.ones(4, 2)], "input_ids": torch.zeros(4, 8, dtype=torch.long)})
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .errors import ConfigError, DataError

Batch = Any  # a Tensor, a tuple/list of positional inputs, a dict/mapping of keyword inputs, nested
ProbeFn = Callable[[nn.Module, Any], Any]  # probe_fn(model, batch): runs the layers to record


def map_batch(
    fn: Callable[[Any], Any],
    obj: Batch,
    *,
    on_key: Callable[[str], None] | None = None,
    sort_keys: bool = False,
) -> Batch:
    """``obj`` with every leaf (anything that is not a mapping, list or tuple) replaced by ``fn(leaf)``.

    Containers are rebuilt as their own type where that is possible (dicts stay dicts, a
    ``BatchEncoding`` becomes a dict, named tuples stay named tuples). ``on_key`` sees each mapping
    key before its value; ``sort_keys`` visits a mapping's keys in sorted order (for hashing).
    """
    if isinstance(obj, Mapping):
        keys = sorted(obj, key=str) if sort_keys else list(obj)
        out = {}
        for k in keys:
            if on_key is not None:
                on_key(str(k))
            out[k] = map_batch(fn, obj[k], on_key=on_key, sort_keys=sort_keys)
        return out
    if isinstance(obj, (list, tuple)):
        items = [map_batch(fn, v, on_key=on_key, sort_keys=sort_keys) for v in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple takes its fields as arguments
            return type(obj)(*items)
        return type(obj)(items)
    return fn(obj)


def to_device(obj: Batch, device: torch.device) -> Batch:
    """Every tensor of ``obj`` on ``device`` (other leaves unchanged)."""
    return map_batch(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, obj)


def first_rows(obj: Batch, n: int = 1) -> Batch:
    """The first ``n`` rows of every tensor with a batch dimension (0-d tensors and other leaves unchanged)."""
    return map_batch(lambda t: t[:n] if isinstance(t, torch.Tensor) and t.dim() > 0 else t, obj)


def tensors(obj: Batch) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every tensor leaf: the dict key where there is one, else its position."""
    found: list[tuple[str, torch.Tensor]] = []
    key: list[str] = []

    def leaf(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            found.append((key[-1] if key else f"input {len(found)}", t))
        return t

    map_batch(leaf, obj, on_key=key.append)
    return found


def probe_hash(probe: Batch) -> str:
    """A short content hash of a probe batch, stored with the run so probes are never mixed.

    Dtype, shape and the exact bytes of every tensor (numpy arrays as tensors), the keys of every
    mapping in sorted order, and the ``repr`` of any other leaf.
    """
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, np.ndarray):
            obj = torch.from_numpy(np.ascontiguousarray(obj))
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(obj).encode())

    map_batch(feed, probe, on_key=lambda k: h.update(k.encode()), sort_keys=True)
    return h.hexdigest()[:16]


def check_not_empty(obj: Batch, label: str) -> None:
    """Raise a one-line :class:`~layerscope.errors.DataError` if a tensor of the batch has no rows or
    no values: every statistic of such a probe would be NaN."""
    for name, t in tensors(obj):
        if t.dim() > 0 and t.numel() == 0:
            what = "0 rows" if t.shape[0] == 0 else "no values"
            raise DataError(
                f"probe {label}: {name} has {what} (shape {tuple(t.shape)}), so every statistic "
                "would be NaN; pass a batch with at least one row of real inputs."
            )


def run_forward(model: nn.Module, inputs: Batch, probe_fn: ProbeFn | None = None) -> Any:
    """Run ``model`` on a batch: ``probe_fn(model, inputs)`` when given, else ``model(x)`` for a
    tensor, ``model(*xs)`` for a tuple/list, ``model(**kw)`` for a mapping; a callable ``inputs``
    is called as ``inputs(model)``."""
    if probe_fn is not None:
        return probe_fn(model, inputs)
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        return inputs(model)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


__all__ = [
    "Batch",
    "ProbeFn",
    "check_not_empty",
    "first_rows",
    "map_batch",
    "probe_hash",
    "run_forward",
    "tensors",
    "to_device",
]


def check_probe(probe: Any, probe_fn: ProbeFn | None) -> ProbeFn | None:
    """``probe_fn`` after checking it goes with ``probe`` (a callable, given a batch), and the batch
    is not empty."""
    if probe_fn is not None and (probe is None or not callable(probe_fn)):
        what = "needs probe= (the batch it is called with)" if probe is None else "is not callable"
        raise ConfigError(f"probe_fn={probe_fn!r} {what}; pass probe_fn=fn(model, batch) with probe=batch.")
    if probe is not None and not callable(probe):
        check_not_empty(probe, "probe=")
    return probe_fn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
