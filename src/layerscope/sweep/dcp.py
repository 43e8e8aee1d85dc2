"""``torch.distributed.checkpoint`` (DCP) folders, read on one process without running code from them.

A DCP checkpoint is a folder: ``.metadata`` (a pickle of DCP's own metadata classes: which tensor
lives where) and ``__R_K.distcp`` shards written by the ranks (torchtitan ``step-N/``, Lightning's
FSDP strategy ``epoch=E-step=N.ckpt/``, FSDP2 / ``dcp.save`` of ``{"model": ..., "optim": ...}``,
Accelerate's ``checkpoint-N/pytorch_model_fsdp_0/``).

What is trusted, and how:

- ``.metadata`` is unpickled by a restricted unpickler that builds only DCP's metadata dataclasses,
  ``torch.Size``, dtypes, layouts and paths; a pickle that asks for anything else is refused before
  anything in it runs (``--trust-checkpoints`` reads it with torch's own reader: plain pickle);
- tensors are read by torch's own ``FileSystemReader`` (``torch.load(weights_only=True)`` per chunk)
  into full tensors allocated here: sharded tensors are reassembled, no process group is needed;
- only the model's tensors are read; non-tensor entries (optimizer ``param_groups``, dataloader
  state: pickled objects) are never read, nor are the optimizer's tensors.

Which entries are the model: a checkpoint saved as a dict (``{"model": ..., "optim": ...}``,
Lightning's ``{"model": ..., "optimizer_0": ...}``) has its model under the first of
``STATE_DICT_KEYS`` it holds; a flat one (torchtitan puts the model's keys at the top) is every
tensor outside the training state (``optimizer``, ``lr_scheduler``, ``dataloader``, ``train_state`` ...).
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

METADATA = ".metadata"
SHARD_SUFFIX = ".distcp"
LIGHTNING_META = "meta.pt"  # Lightning writes the rest of its checkpoint dict (global_step ...) here

# Top-level entries that are training state, not the model (torchtitan, Lightning, common scripts).
_TRAINING_STATE = (
    "optim",
    "optimizer",
    "optimizers",
    "optimizer_states",
    "lr_scheduler",
    "lr_schedulers",
    "scheduler",
    "dataloader",
    "train_state",
    "rng_state",
    "scaler",
    "grad_scaler",
    "loops",
    "callbacks",
)
# Entries that may hold the step: torchtitan's train_state.step (a tensor), a saved int.
_STEP_KEYS = ("train_state.step", "step", "global_step", "iter_num", "train_state.global_step")

# What a DCP .metadata pickle may build. Everything here is a plain data holder.
_DCP_META = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    (_DCP_META, n)
    for n in (
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    )
} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
}


def dcp_metadata(folder: Path) -> Path | None:
    """``folder/.metadata`` if ``folder`` is a DCP checkpoint (``.metadata`` and ``*.distcp`` shards)."""
    meta = folder / METADATA
    try:
        if meta.is_file() and any(p.name.endswith(SHARD_SUFFIX) for p in folder.iterdir()):
            return meta
    except OSError:
        return None
    return None


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")


def _refused(label: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{label}: refused to load: its {METADATA} pickle asks for {what}, which could run code when "
        "loaded; convert it with torch.distributed.checkpoint.format_utils.dcp_to_torch_save where you "
        "trust it, or pass --trust-checkpoints only if you trust where it came from."
    )


def read_metadata(folder: Path, label: str, trust: bool = False) -> Any:
    """The DCP ``Metadata`` of ``folder``, unpickled with the restricted unpickler (plain pickle with ``trust``)."""
    path = folder / METADATA
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(
            f"{label}: cannot read {METADATA} ({e.strerror or e}); check the folder."
        ) from None
    try:
        md = pickle.loads(data) if trust else _MetadataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        if msg.startswith("GLOBAL "):
            raise _refused(label, f"the global {msg[7:]}") from None
        raise CheckpointError(
            f"{label}: {METADATA} is truncated or corrupt ({msg[:120]}); copy the checkpoint folder again."
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(
            f"{label}: {METADATA} is truncated or corrupt ({type(e).__name__}: {str(e)[:120]}); "
            "copy the checkpoint folder again."
        ) from None
    if type(md).__name__ != "Metadata" or not isinstance(getattr(md, "state_dict_metadata", None), Mapping):
        raise CheckpointError(
            f"{label}: {METADATA} holds a {type(md).__name__}, not DCP metadata; this is not a "
            "torch.distributed.checkpoint folder."
        )
    return md


def _model_entries(md: Any, label: str, containers: tuple[str, ...]) -> dict[str, str]:
    """``{name in the checkpoint: name of the model's weight}`` for the model's tensors."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    tensors = [k for k, v in md.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)]
    # planner_data: each flattened name's path in the dict that was saved, e.g. ("model", "h.0.w"),
    # or ("h.0.w",) for a flat dict; without it, the first dotted component is taken as the container.
    paths: Mapping[str, Any] = getattr(md, "planner_data", None) or {}

    def container_of(k: str) -> str | None:
        p = paths.get(k)
        if isinstance(p, tuple) and p:
            return str(p[0]) if len(p) > 1 else None
        return k.split(".", 1)[0] if "." in k else None

    by_top: dict[str | None, list[str]] = {}
    for k in tensors:
        by_top.setdefault(container_of(k), []).append(k)
    for c in containers:
        if by_top.get(c):
            return {k: k[len(c) + 1 :] for k in by_top[c]}
    out = {
        k: k
        for k in tensors
        if container_of(k) not in _TRAINING_STATE and k.split(".", 1)[0] not in _TRAINING_STATE
    }
    if not out:
        have = sorted({str(c) for c in by_top if c is not None})[:6]
        raise CheckpointError(
            f"{label}: a DCP checkpoint with no model tensors (only {', '.join(have) or 'none'}); "
            "save the model's state_dict in it."
        )
    return out


def _reader(folder: Path, md: Any, trust: bool) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    class _Reader(FileSystemReader):
        """torch's reader, with the metadata already read (safely) here."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            return md

    return FileSystemReader(str(folder)) if trust else _Reader(str(folder))


def read_dcp(
    folder: Path, label: str, trust: bool = False, containers: tuple[str, ...] = ("state_dict", "model")
) -> dict[str, torch.Tensor]:
    """The model's tensors of a DCP checkpoint folder, whole, on the CPU, without a process group.

    ``containers``: the top-level entries that may hold the model, in lookup order.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    md = read_metadata(folder, label, trust)
    entries = _model_entries(md, label, containers)
    needed = {
        str(info.relative_path) for i, info in md.storage_data.items() if getattr(i, "fqn", None) in entries
    }
    for rel in sorted(needed):
        if Path(rel).name != rel or not (folder / rel).is_file():
            why = "names a file outside its folder" if Path(rel).name != rel else "is missing"
            raise CheckpointError(
                f"{label}: shard {rel!r} listed in {METADATA} {why}; copy the complete checkpoint folder."
            )
    sd: dict[str, torch.Tensor] = {}
    for k in entries:
        meta = md.state_dict_metadata[k]
        sd[k] = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
    try:
        with warnings.catch_warnings():
            # "torch.distributed is ... uninitialized, assuming ... a single process": just so.
            warnings.filterwarnings("ignore", message=r".*single process.*")
            dcp.load(
                sd, storage_reader=_reader(folder, md, trust), planner=DefaultLoadPlanner(), no_dist=True
            )
    except (Exception, CheckpointException) as e:  # noqa: BLE001 - CheckpointException is a BaseException
        inner: BaseException = e
        if isinstance(e, CheckpointException) and e.failures:
            inner = next(iter(e.failures.values()))[0]  # (exception, traceback) of the failing rank
        msg = " ".join(str(inner).split())
        if "weights only load failed" in msg.lower() or "unsupported global" in msg.lower():
            raise CheckpointError(
                f"{label}: refused to load: a shard holds an object that is not a tensor; re-save it, or "
                "pass --trust-checkpoints only if you trust where it came from."
            ) from None
        raise CheckpointError(
            f"{label}: its shards cannot be read ({type(inner).__name__}: {msg[:160]}); they are truncated "
            "or corrupt: copy the checkpoint folder again."
        ) from None
    return {entries[k]: v for k, v in sd.items()}


def stored_step(folder: Path, label: str, trust: bool = False) -> int | None:
    """The step saved inside a DCP checkpoint (torchtitan's ``train_state.step`` tensor, a saved
    ``step``/``global_step`` int), or None. Lightning keeps its ``global_step`` in ``meta.pt`` beside it."""
    md = read_metadata(folder, label, trust)
    for key in _STEP_KEYS:
        if key not in md.state_dict_metadata:
            continue
        info = next((v for i, v in md.storage_data.items() if getattr(i, "fqn", None) == key), None)
        if info is None or getattr(info, "transform_descriptors", None):
            continue  # compressed or otherwise transformed: not worth decoding for a step
        try:
            with open(folder / info.relative_path, "rb") as f:
                f.seek(info.offset)
                blob = f.read(info.length)
            value = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - not a plain int or tensor: no step from here
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.reshape(()).item())
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


__all__ = ["LIGHTNING_META", "METADATA", "dcp_metadata", "read_dcp", "read_metadata", "stored_step"]
