"""Safe checkpoint loading: a state dict with normalised keys, or one clear line saying why not.

Nothing is unpickled beyond tensors and plain containers unless the caller trusts the files:
safetensors files are read with ``safetensors``; torch pickles (``.pt``, ``.bin``, ``.ckpt``) with
``torch.load(weights_only=True)``, whose unpickler refuses every global outside a short allow-list
of tensor types, so a file built to run code when loaded is refused before anything runs.
``trust=True`` (``--trust-checkpoints``) is the explicit opt-in to plain pickle.

Every failure is a :class:`~layerscope.errors.CheckpointError` whose message starts with the
file's name and ends with what to do.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..capture import normalize_name, unwrap
from ..errors import CheckpointError, CheckpointWarning
from .compat import Tolerance, convert_with_transformers, converts_layouts, is_hf_model, legacy_renames
from .dcp import METADATA, read_dcp

# Where training frameworks keep the model's state dict inside a checkpoint dict, in lookup order:
# Lightning, nanoGPT, common scripts, DeepSpeed.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "module", "net", "weights")
# Where they keep the step: Lightning, nanoGPT, common scripts.
STEP_KEYS = ("global_step", "iter_num", "step", "iteration", "num_updates")

_ZIP_MAGIC = b"PK\x03\x04"
# How torch's weights_only unpickler names a global it refuses, across versions:
# "Unsupported global: GLOBAL builtins.exec was not an allowed global ..." and
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
_BLOCKED = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")
_WO_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+)")


@dataclass
class Loaded:
    """A checkpoint's weights (keys normalised: no ``module.``/``_orig_mod.``) and the step stored in it."""

    state_dict: dict[str, torch.Tensor]
    step: int | None


def _name(path: Path, name: str | None) -> str:
    return name if name else path.name


def _unsafe_msg(label: str, err: BaseException) -> str:
    m = _BLOCKED.search(str(err))
    what = f"the global {m.group(1).rstrip('.')}" if m else "an object that is not a tensor"
    return (
        f"{label}: refused to load: its pickle asks for {what}, which could run code when loaded; "
        "re-save it as safetensors or a plain state_dict, or pass --trust-checkpoints only if you "
        "trust where it came from."
    )


def _torch_load(path: Path, label: str, trust: bool) -> Any:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(
            f"{label}: cannot be read ({e.strerror or e}); check the file's permissions."
        ) from None
    if not head:
        raise CheckpointError(
            f"{label}: the file is empty (an interrupted save?); delete it or save it again."
        )
    mmap = head == _ZIP_MAGIC  # zip archives (torch >= 1.6) map their tensors instead of copying them
    try:
        with warnings.catch_warnings():
            # weights_only's notice about pickle protocols is noise for a user watching a progress bar.
            warnings.filterwarnings("ignore", message=r".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises many types for one cause; classify the message
        msg = str(e)
        low = msg.lower()
        if not trust and type(e).__name__ == "UnpicklingError" and "weights only load failed" in low:
            if _BLOCKED.search(msg):
                raise CheckpointError(_unsafe_msg(label, e)) from None
            m = _WO_DETAIL.search(msg)
            detail = (
                m.group(1).strip()
                if m and m.group(1).strip()
                else next((ln.strip() for ln in msg.split("\n\n")[1:] if ln.strip()), "")
            )
            detail = detail.splitlines()[0][:120] if detail else "unreadable"
            if (
                head[:1] == b"\x80" or mmap
            ):  # a pickle (raw, or inside torch's zip) the safe loader cannot read
                raise CheckpointError(
                    f"{label}: a pickle that the safe loader cannot read ({detail}); re-save it "
                    "with torch.save(model.state_dict(), ...), or pass --trust-checkpoints only "
                    "if you trust where it came from."
                ) from None
            raise CheckpointError(
                f"{label}: not a torch checkpoint (neither a zip archive nor a pickle: {detail}); "
                "it is corrupt or of another format: re-save it or remove it."
            ) from None
        if "central directory" in low or "failed reading" in low or "eof" in low or isinstance(e, EOFError):
            detail = (msg.splitlines() or [""])[0].split(". ")[0][:120] or type(e).__name__
            raise CheckpointError(
                f"{label}: truncated or corrupt (the file ends early: {detail}); copy or save it again."
            ) from None
        first = msg.splitlines()[0][:160] if msg else type(e).__name__
        raise CheckpointError(
            f"{label}: cannot be loaded ({type(e).__name__}: {first}); "
            "it is corrupt or not a torch checkpoint: re-save it or remove it."
        ) from None


def _safetensors_load(path: Path, label: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as e:
        msg = str(e)
        if "incomplete" in msg or "not fully covered" in msg or "too small" in msg:
            problem = f"truncated ({msg})"
        else:
            problem = f"not a valid safetensors file ({msg})"
        raise CheckpointError(f"{label}: {problem}; copy or save it again.") from None
    except OSError as e:
        raise CheckpointError(f"{label}: cannot be read ({e.strerror or e}); check the file.") from None
    except Exception as e:  # noqa: BLE001 - e.g. a dtype this torch lacks
        raise CheckpointError(f"{label}: cannot be loaded ({type(e).__name__}: {e}); re-save it.") from None


def read_weights_file(path: Path, label: str, trust: bool = False) -> Any:
    """The raw object of one weights file: a dict of tensors (safetensors) or whatever the torch file holds."""
    if path.name.endswith(".safetensors"):
        return _safetensors_load(path, label)
    return _torch_load(path, label, trust)


def _read_index(index: Path, label: str, trust: bool) -> dict[str, torch.Tensor]:
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise CheckpointError(
            f"{label}: cannot read {index.name} ({e.strerror or e}); check the folder."
        ) from None
    except ValueError as e:
        raise CheckpointError(
            f"{label}: {index.name} is not valid JSON ({e}); restore it from the original."
        ) from None
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap or not all(isinstance(v, str) for v in wmap.values()):
        raise CheckpointError(
            f"{label}: {index.name} has no weight_map of tensor name -> shard file; "
            "restore it from the original checkpoint."
        )
    out: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(wmap.values()):
        p = index.parent / shard
        if Path(shard).name != shard or not p.is_file():
            why = "names a file outside its folder" if Path(shard).name != shard else "is missing"
            raise CheckpointError(
                f"{label}: shard {shard!r} listed in {index.name} {why}; copy the complete checkpoint folder."
            )
        part = read_weights_file(p, f"{label}/{shard}", trust)
        sd = part if shard.endswith(".safetensors") else _find_state_dict(part, f"{label}/{shard}")[0]
        out.update(sd)
    missing = [k for k in wmap if k not in out]
    if missing:
        raise CheckpointError(
            f"{label}: {len(missing)} tensors listed in {index.name} are in none of its shards "
            f"(first: {missing[0]!r}); copy the complete checkpoint folder."
        )
    return out


def _as_int_step(v: Any) -> int | None:
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point():
        v = int(v.reshape(()).item())
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    return None


def _find_state_dict(obj: Any, label: str) -> tuple[dict[str, torch.Tensor], int | None]:
    """The model's tensors inside a loaded checkpoint object, and its step if it stores one."""
    step = None
    if isinstance(obj, Mapping):
        for k in STEP_KEYS:
            if k in obj:
                step = _as_int_step(obj[k])
                if step is not None:
                    break
    if (
        isinstance(obj, Mapping)
        and obj
        and sum(isinstance(v, torch.Tensor) for v in obj.values()) >= len(obj) / 2
    ):
        # A bare state dict (a few non-tensor entries, such as '_extra_state' objects, are dropped).
        return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}, step
    if isinstance(obj, Mapping):
        for k in STATE_DICT_KEYS:
            inner = obj.get(k)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return {str(n): v for n, v in inner.items() if isinstance(v, torch.Tensor)}, step
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise CheckpointError(
            f"{label}: holds a dict with keys {keys} but no model weights (looked for "
            f"{', '.join(STATE_DICT_KEYS)}); save model.state_dict() in it."
        )
    if isinstance(obj, nn.Module):
        return {k: v for k, v in obj.state_dict().items()}, step
    raise CheckpointError(
        f"{label}: holds a {type(obj).__name__}, not a state dict; save model.state_dict()."
    )


def normalize_keys(sd: Mapping[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``, FSDP) from every key; a collision is an error."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for k, v in sd.items():
        n = normalize_name(k)
        if n in out:
            raise CheckpointError(
                f"{label}: keys {origin[n]!r} and {k!r} are the same weight once wrapper "
                "prefixes are stripped; save the model's own state_dict (unwrapped)."
            )
        out[n] = v
        origin[n] = k
    return out


def read_checkpoint(weights: Path, label: str | None = None, trust: bool = False) -> Loaded:
    """Load one checkpoint's weights safely.

    ``weights`` is a ``.safetensors`` file, a torch file (``.pt``/``.pth``/``.bin``/``.ckpt``,
    a bare state dict or a Lightning/nanoGPT/... dict holding one), a ``*.index.json`` of a
    sharded checkpoint, or the ``.metadata`` of a ``torch.distributed.checkpoint`` folder (see
    :mod:`layerscope.sweep.dcp`). ``label`` names the checkpoint in messages.
    """
    lab = _name(weights, label)
    if weights.name == METADATA:
        return Loaded(normalize_keys(read_dcp(weights.parent, lab, trust, STATE_DICT_KEYS), lab), None)
    if weights.name.endswith(".index.json"):
        return Loaded(normalize_keys(_read_index(weights, lab, trust), lab), None)
    obj = read_weights_file(weights, lab, trust)
    if weights.name.endswith(".safetensors"):
        if not obj:
            raise CheckpointError(f"{lab}: holds no tensors; save the model's weights in it.")
        return Loaded(normalize_keys(obj, lab), None)
    sd, step = _find_state_dict(obj, lab)
    return Loaded(normalize_keys(sd, lab), step)


def peek_step(path: Path, label: str | None = None, trust: bool = False) -> int | None:
    """The step stored inside a torch checkpoint (Lightning ``global_step``, nanoGPT ``iter_num``), or None.

    Zip-format files are memory-mapped, so only the pickle is read, not the tensors.
    """
    lab = _name(path, label)
    obj = _torch_load(path, lab, trust)
    if isinstance(obj, Mapping):
        for k in STEP_KEYS:
            if k in obj:
                step = _as_int_step(obj[k])
                if step is not None:
                    return step
    return None


# -- fitting a state dict to the model -------------------------------------------------------------


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names that share one tensor (tied embeddings): loading one of them loads all."""
    by_id: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(n)
    for n, b in model.named_buffers(remove_duplicate=False):
        by_id.setdefault(id(b), []).append(n)
    return [names for names in by_id.values() if len(names) > 1]


def _best_prefix(keys: Iterable[str], expected: set[str]) -> tuple[str, str]:
    """The ("strip", p) or ("add", p) rewrite of checkpoint keys that matches the most model keys.

    A LightningModule saves ``model.h.0...`` for a net held as ``self.model``; a base model saved
    without its head (``h.0...``) fits a model that expects ``transformer.h.0...``.
    """
    keys = list(keys)
    best = ("", "")
    best_n = sum(k in expected for k in keys)
    if best_n == len(keys):
        return best  # every key is the model's already: the usual case, decided in one pass
    cands: set[tuple[str, str]] = set()
    for k in keys:
        parts = k.split(".")
        for j in (1, 2):
            if len(parts) > j:
                cands.add(("strip", ".".join(parts[:j]) + "."))
    for e in expected:
        parts = e.split(".")
        for j in (1, 2):
            if len(parts) > j:
                cands.add(("add", ".".join(parts[:j]) + "."))
    for how, p in sorted(cands):
        if how == "strip":
            n = sum(k.startswith(p) and k[len(p) :] in expected for k in keys)
        else:
            n = sum(p + k in expected for k in keys)
        if n > best_n:
            best, best_n = (how, p), n
    return best


class ModelKeys:
    """What fitting a checkpoint to a model needs to know about the model, worked out once per model.

    >>> import torch.nn as nn
    >>> keys = ModelKeys(nn.Linear(2, 3))
    >>> sorted(keys.expected), keys.shapes["weight"]
    (['bias', 'weight'], (3, 2))
    """

    def __init__(self, model: nn.Module) -> None:
        target = unwrap(model)
        own = target.state_dict()
        self.model = target
        self.model_name = type(target).__name__
        self.shapes = {k: tuple(v.shape) for k, v in own.items()}
        self.floating = {k for k, v in own.items() if v.is_floating_point()}
        self.by_norm = {normalize_name(k): k for k in own}  # normalised name -> the model's own key
        self.expected = set(self.by_norm)
        self.tolerance = Tolerance(target)
        self.tied = _merge_groups(
            [[normalize_name(n) for n in group] for group in _tied_groups(target)]
            + [list(pair) for pair in self.tolerance.declared_ties]
        )
        self.hf = is_hf_model(target)
        self.converts = self.hf and converts_layouts(target)  # transformers converts this class's layouts
        self.unconvertible: set[frozenset[str]] = set()  # key sets transformers could not convert: not again


def _merge_groups(groups: list[list[str]]) -> list[list[str]]:
    merged: list[set[str]] = []
    for g in groups:
        hits = [m for m in merged if m & set(g)]
        new = set(g).union(*hits)
        merged = [m for m in merged if not any(m is h for h in hits)] + [new]
    return [sorted(m) for m in merged if len(m) > 1]


def _mismatch(label: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{label}: does not fit the model: {what}; check that --model/--hf "
        "builds the architecture this checkpoint was saved from."
    )


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device == b.device and a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True  # one storage, as torch.save writes tied weights: no need to compare
    return bool(torch.equal(a, b.to(a.device)))


def fit_state_dict(
    model: nn.Module | ModelKeys, sd: Mapping[str, torch.Tensor], label: str
) -> dict[str, torch.Tensor]:
    """Rename ``sd``'s keys to ``model``'s and check that every weight is there, with the right shape.

    The differences transformers accepts are accepted (see :mod:`layerscope.sweep.compat`): tied
    weights saved once, the model's ignore lists, buffers older versions saved, legacy names, and
    for a Hugging Face model a layout transformers converts. Anything else missing, left over, or
    of another shape is a CheckpointError naming the first key and the count: the checkpoint is
    not of this model.
    """
    mk = model if isinstance(model, ModelKeys) else ModelKeys(model)
    expected, tol = mk.expected, mk.tolerance
    how, p = _best_prefix(sd.keys(), expected)
    renamed: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if how == "strip":
            if not k.startswith(p):
                continue  # other parts of a training wrapper (a loss module, an EMA copy) are not the model
            k = k[len(p) :]
        elif how == "add":
            k = p + k
        renamed[k] = v
    for old, new in legacy_renames(renamed, expected).items():
        renamed[new] = renamed.pop(old)
    for k in [k for k in renamed if k not in expected and tol.unexpected_ok(k, renamed[k])]:
        del renamed[k]  # a buffer an older version saved: the model recomputes it
    present = set(renamed)
    tied_ok: set[str] = set()
    for group in mk.tied:
        have = [n for n in group if n in present]
        if have:
            tied_ok.update(group)
        for other in have[1:]:
            if not _same_tensor(renamed[have[0]], renamed[other]):
                raise CheckpointError(
                    f"{label}: {have[0]!r} and {other!r} are one tensor in the model (tied) but differ in "
                    "the file; build the model untied (Hugging Face: tie_word_embeddings=false in "
                    "config.json) to load both."
                )
    missing = sorted(k for k in expected - present - tied_ok if not tol.missing_ok(k))
    unexpected = sorted(present - expected)
    keyset = frozenset(sd)
    if (missing or unexpected) and mk.converts and keyset not in mk.unconvertible:
        converted, _why = convert_with_transformers(mk.model, sd)
        if converted is not None:
            renamed = {normalize_name(k): v for k, v in converted.items()}
            missing, unexpected = [], []
        else:
            mk.unconvertible.add(keyset)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights of {mk.model_name} missing (first: {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} not in the model (first: {unexpected[0]!r})")
        raise _mismatch(label, "; ".join(parts))
    out: dict[str, torch.Tensor] = {}
    bad = []
    for k, v in renamed.items():
        if k not in expected:
            continue
        real = mk.by_norm[k]
        if mk.shapes[real] != tuple(v.shape):
            bad.append(f"{k!r} is {tuple(v.shape)} in the file, {mk.shapes[real]} in the model")
        out[real] = v
    if bad:
        raise _mismatch(label, f"{len(bad)} shape mismatches (first: {bad[0]})")
    # load_state_dict converts integer weights into float parameters without a word: a quantized
    # checkpoint, or one saved from the wrong tensors, would be measured as if it were real weights.
    ints = [k for k, v in out.items() if k in mk.floating and not (v.is_floating_point() or v.is_complex())]
    if ints:
        k = ints[0]
        warnings.warn(
            f"{label}: {len(ints)} weights are integers in the file but floating point in the model "
            f"(first: {k!r}, {str(out[k].dtype).replace('torch.', '')}); they were converted, which is "
            "rarely meant: check that the checkpoint holds the model's real (not quantized) weights.",
            CheckpointWarning,
            stacklevel=2,
        )
    return out


def apply_state_dict(
    model: nn.Module, sd: Mapping[str, torch.Tensor], label: str, keys: ModelKeys | None = None
) -> None:
    """Copy a checkpoint's weights into ``model`` (checked by :func:`fit_state_dict` first).

    Pass ``keys=ModelKeys(model)`` when loading many checkpoints into one model.
    """
    mk = keys or ModelKeys(model)
    fitted = fit_state_dict(mk, sd, label)
    target = unwrap(model)
    try:
        target.load_state_dict(fitted, strict=False)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{label}: loading into the model failed ({first[-1].strip()[:160] if first else e}); "
            "check the checkpoint's dtypes and shapes."
        ) from None
    if mk.hf and any(mk.by_norm[t] not in fitted for t, _ in mk.tolerance.declared_ties if t in mk.by_norm):
        # A tie transformers declares, saved once: tie again, as from_pretrained does (a no-op where
        # the two names already share one tensor).
        target.tie_weights()  # type: ignore[operator]


FINGERPRINT_SAMPLES = 1024  # values read per tensor: enough that any training update shows
_RUN = 64  # ... in runs of this many adjacent values (a strided read of a large tensor touches every page)
_NUMPY_DTYPES = {
    torch.float64,
    torch.float32,
    torch.float16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.complex128,
}


def fingerprint(sd: Mapping[str, torch.Tensor]) -> str:
    """A cheap content hash of a state dict, to flag checkpoints with identical weights.

    Per tensor: its name, dtype, shape and the exact bits of up to 1024 values, in 16 evenly spaced
    runs of 64 adjacent values (so a large tensor is read in 16 places, not in every page); the
    samples of one dtype are hashed as one buffer (about 1 ms for 150 tensors, whatever their
    size). An optimizer step changes essentially every weight it touches, so two checkpoints with a
    step of training between them differ; a change confined to unsampled values of every tensor
    would go unnoticed (the flag is a warning only).
    """
    h = hashlib.blake2b(digest_size=16)
    names: list[str] = []
    samples: dict[torch.dtype, list[torch.Tensor]] = {}
    for k in sorted(sd):
        t = sd[k]
        names.append(f"{k}|{t.dtype}|{tuple(t.shape)}")
        flat = t.detach().reshape(-1)
        n = flat.numel()
        if n > FINGERPRINT_SAMPLES:  # 16 evenly spaced runs of 64 values: 16 x 4 cache lines read
            gap = (n - _RUN) // (FINGERPRINT_SAMPLES // _RUN - 1)
            flat = flat.as_strided((FINGERPRINT_SAMPLES // _RUN, _RUN), (gap, 1), flat.storage_offset())
        if n:
            samples.setdefault(t.dtype, []).append(flat.reshape(-1).cpu())
    h.update("\n".join(names).encode())
    for dtype in sorted(samples, key=str):
        sample = torch.cat(samples[dtype])
        if dtype in _NUMPY_DTYPES:
            h.update(sample.numpy().tobytes())
        else:  # bfloat16, float8 ...: numpy has no such type; hash the raw bytes
            h.update(sample.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


__all__ = [
    "STATE_DICT_KEYS",
    "STEP_KEYS",
    "Loaded",
    "ModelKeys",
    "apply_state_dict",
    "fingerprint",
    "fit_state_dict",
    "normalize_keys",
    "peek_step",
    "read_checkpoint",
    "read_weights_file",
]
