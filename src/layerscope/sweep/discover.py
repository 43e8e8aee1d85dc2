"""Find the checkpoints in a folder and the training step of each.

What is recognised (a step in the name wins; the contents are read only where the name has none)::

    step_30000.pt  step-30000.pth  step30000/  global_step30000  iter_0030000  30000.pt
    ckpt-30000.safetensors  checkpoint_30000.bin  model_30000.bin  epoch=3-step=30000.ckpt
    checkpoint-30000/          a Hugging Face folder: model.safetensors, sharded safetensors with
                               model.safetensors.index.json, pytorch_model.bin (+ its index);
                               step from the name, else trainer_state.json's global_step
    last.ckpt                  Lightning: step from the file's global_step
    out/ckpt.pt                nanoGPT: step from the file's iter_num
    step-30000/                a torch.distributed.checkpoint folder (.metadata, __R_K.distcp):
                               torchtitan, FSDP2, Lightning's FSDP epoch=E-step=N.ckpt/, or inside a
                               step folder (checkpoint-N/pytorch_model_fsdp_0/); step from the
                               name, its folders, Lightning's meta.pt or a saved step entry

Optimizer, scheduler and RNG files next to the weights are ignored. ``--step-regex`` replaces the
name rules for layouts of your own.

:func:`parse_step` is pure (it looks at the name only) and never raises anything but a
``layerscope`` error; :func:`find_checkpoints` walks the folder and returns the checkpoints, one
per step, with a one-line problem for each file it could not place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from re import Pattern

from .._io import refuse_special_file, special_kind
from ..errors import CheckpointError, ConfigError, NotFoundError, escape_controls, quote
from .dcp import dcp_metadata

# File types a checkpoint can be. ".bin" and ".ckpt" are torch pickles (Hugging Face, Lightning).
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

# The weights of a Hugging Face checkpoint folder, most preferred first (safetensors: no pickle).
HF_WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)

# Training state saved next to the weights; never a model checkpoint.
_NOT_WEIGHTS = re.compile(
    r"^(optimizer|optim|scheduler|lr_scheduler|rng_state|training_args|scaler|trainer_state|"
    r"adapter_model|ema_state|grad_scaler)([-_.].*)?$"
)
_SHARD = re.compile(r"(^|[-_.])[0-9]+-of-[0-9]+$")

# Name rules, strongest first: a "step" word, then an iteration word, then a checkpoint word.
# The number must stand alone: not glued to a letter before the word nor followed by a digit.
_RULES = (
    re.compile(r"(?<![a-z])(?:global_step|global-step|steps?)[-_=.]?([0-9]+)(?![0-9])"),
    re.compile(r"(?<![a-z])(?:iterations?|iters?|iter_num)[-_=.]?([0-9]+)(?![0-9])"),
    re.compile(
        r"(?<![a-z])(?:checkpoints?|ckpts?|models?|weights|snapshots?|saves?)[-_=.]?([0-9]+)(?![0-9])"
    ),
)
_ALL_DIGITS = re.compile(r"[0-9]+")
MAX_STEP = 2**63 - 1  # the largest SQLite INTEGER (int64): the largest step a store holds
MAX_STEP_DIGITS = 18  # every number of this many digits fits; of 19, those up to MAX_STEP do


def _stem(name: str) -> str:
    low = name.lower()
    for suf in WEIGHT_SUFFIXES:
        if low.endswith(suf) and len(low) > len(suf):
            return low[: -len(suf)]
    return low


class _TooLarge(Exception):
    """A name's step does not fit a store (more than 2^63 - 1); carries the digits for the message."""

    def __init__(self, digits: str) -> None:
        super().__init__(digits)
        self.digits = digits


def _as_step(digits: str | None) -> int | None:
    if digits is None or not digits or not _ALL_DIGITS.fullmatch(digits):
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > MAX_STEP_DIGITS + 1 or int(significant) > MAX_STEP:
        raise _TooLarge(significant)
    return int(significant)


def compile_step_regex(step_regex: str | Pattern[str] | None) -> Pattern[str] | None:
    """Check a ``--step-regex`` once: it must compile and capture the step (group 1 or ``(?P<step>...)``).

    >>> dict(compile_step_regex("epoch(?P<step>[0-9]+)").groupindex)
    {'step': 1}
    """
    if step_regex is None:
        return None
    if isinstance(step_regex, re.Pattern):
        pat = step_regex
    elif isinstance(step_regex, str):
        try:
            pat = re.compile(step_regex)
        except (re.error, RecursionError, OverflowError, ValueError) as e:
            raise ConfigError(
                f"--step-regex {step_regex!r} is not a valid regular expression ({e}); "
                r"pass one such as 'epoch(\d+)'."
            ) from None
    else:
        raise ConfigError(
            f"step_regex={step_regex!r}; pass a regular expression string such as 'epoch(\\d+)'."
        )
    if pat.groups < 1:
        raise ConfigError(
            f"--step-regex {pat.pattern!r} captures nothing; put the step number in a group, "
            r"e.g. 'epoch(\d+)' or '(?P<step>\d+)'."
        )
    return pat


def parse_step(path: str | os.PathLike[str], step_regex: str | Pattern[str] | None = None) -> int | None:
    """The training step a checkpoint's name gives, or None where it gives none.

    Without ``step_regex`` only the last path component is read (case-insensitive): a ``step``
    word wins over an ``iter`` word, which wins over ``ckpt``/``checkpoint``/``model``; a name that
    is only digits is the step itself; shard names (``-00001-of-00004``) give no step. With
    ``step_regex``, the pattern is searched in the whole path as given (``/`` separators) and its
    ``step`` group (or group 1) must be digits.

    Never raises anything but a :class:`~layerscope.errors.LayerscopeError` (a bad regex or a
    path that is not a string). A step too large for a store (over 2^63 - 1) is None here;
    :func:`find_checkpoints` says so about the file.

    >>> parse_step("runs/a/epoch=3-step=30000.ckpt")
    30000
    >>> parse_step("checkpoint-500"), parse_step("ckpt.pt"), parse_step("model-00001-of-00002.safetensors")
    (500, None, None)
    >>> parse_step("exp/run7/weights.pt", step_regex="run([0-9]+)/")
    7
    """
    try:
        return _parse_step(path, step_regex)
    except _TooLarge:
        return None


def _parse_step(path: str | os.PathLike[str], step_regex: str | Pattern[str] | None = None) -> int | None:
    """:func:`parse_step`, raising _TooLarge for a step that does not fit a store."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise ConfigError(
            f"parse_step needs a path (str or os.PathLike), got {type(path).__name__}."
        ) from None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = text.replace(os.sep, "/") if os.sep != "/" else text
    pat = compile_step_regex(step_regex)
    if pat is not None:
        m = pat.search(text)
        if m is None:
            return None
        group = "step" if "step" in pat.groupindex else 1
        return _as_step(m.group(group))
    name = text.rstrip("/").rsplit("/", 1)[-1]
    stem = _stem(name)
    if not stem or _SHARD.search(stem):
        return None
    if _ALL_DIGITS.fullmatch(stem):
        return _as_step(stem)
    for rule in _RULES:
        found = rule.findall(stem)
        if found:
            return _as_step(found[-1])
    return None


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint to sweep.

    ``path`` is what messages name (a file, or a Hugging Face checkpoint folder); ``weights`` is
    the file read for the weights (a weights file or a ``*.index.json`` listing shards).
    """

    path: Path
    weights: Path
    step: int
    step_from: str  # "name", "regex", "trainer_state" or "content"
    name: str  # path relative to the swept folder, for messages and the summary

    @property
    def config_json(self) -> Path | None:
        """The Hugging Face ``config.json`` stored with this checkpoint (for a DCP folder inside a
        checkpoint folder, the one beside it), if any."""
        here = self.path if self.path.is_dir() else self.path.parent
        for folder in (here, here.parent) if self.weights.name == ".metadata" else (here,):
            if (folder / "config.json").is_file():
                return folder / "config.json"
        return None


@dataclass(frozen=True)
class Problem:
    """A checkpoint (file or folder) that could not be used, and why, in one line."""

    path: Path
    message: str


@dataclass
class Discovery:
    """What :func:`find_checkpoints` found under ``root``: usable checkpoints, and problems."""

    checkpoints: list[Checkpoint]  # sorted by step, one per step
    problems: list[Problem]
    root: Path


def hf_weights(folder: Path) -> Path | None:
    """The weights file of a Hugging Face checkpoint folder (an index for sharded weights), or None."""
    for fname in HF_WEIGHT_FILES:
        p = folder / fname
        if p.is_file():
            return p
    return None


def folder_weights(folder: Path) -> Path | None:
    """What to read for a checkpoint folder: its Hugging Face weights, or the ``.metadata`` of a
    ``torch.distributed.checkpoint`` folder; None for a folder that is not a checkpoint."""
    return hf_weights(folder) or dcp_metadata(folder)


def _trainer_state_step(folder: Path) -> int | None:
    p = folder / "trainer_state.json"
    if not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8") as f:
            step = json.load(f).get("global_step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (``/`` separators), as messages name a checkpoint."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    return rel if rel != "." else path.name


def _is_hf_weights_file(name: str) -> bool:
    return name in HF_WEIGHT_FILES or bool(_SHARD.search(_stem(name.lower())))


def _is_candidate_file(name: str) -> bool:
    low = name.lower()
    if low.startswith(".") or not low.endswith(WEIGHT_SUFFIXES):
        return False
    return not _NOT_WEIGHTS.match(_stem(low))


def check_store_is_not_a_checkpoint(store: str | os.PathLike[str], root: str | os.PathLike[str]) -> None:
    """Refuse a sweep's ``--store`` that is, or would be taken for, one of its checkpoints: a file
    inside the swept folder with a checkpoint's name (``ckpts/step_100.pt``) is read as a
    checkpoint by the next sweep, or overwritten by this one. A store there named ``runs.db`` is
    fine. (:func:`layerscope._io.check_outputs_are_not_inputs` covers the folder itself and the
    probe.)"""
    s = Path(os.path.realpath(os.path.abspath(store)))
    r = Path(os.path.realpath(os.path.abspath(root)))
    inside = s == r or (r.is_dir() and r in s.parents)
    if inside and (s == r or _is_candidate_file(s.name)):
        raise ConfigError(
            f"--store {quote(os.fspath(store))} is inside CKPT_DIR {quote(os.fspath(root))} with a "
            "checkpoint's name, so a sweep would read it as a checkpoint (or write over one); name "
            "the store runs.db, or put it outside the checkpoint folder."
        )


def _step_from_parents(rel: str) -> int | None:
    # The folders above a file, inside the swept folder, innermost first: runs/step_300/weights.pt is 300.
    parts = rel.split("/")[:-1]
    for part in reversed(parts):
        step = _parse_step(part)
        if step is not None:
            return step
    return None


def find_checkpoints(
    root: str | os.PathLike[str],
    step_regex: str | Pattern[str] | None = None,
    content_step: Callable[[Path], int | None] | None = None,
) -> Discovery:
    """Every checkpoint under ``root`` (a folder, a Hugging Face checkpoint folder, or one file).

    ``content_step(path)`` reads the step stored inside a torch file (Lightning ``global_step``,
    nanoGPT ``iter_num``) or a DCP folder for those whose name gives none; it may raise
    ``CheckpointError``, which becomes a problem for that file. Two checkpoints of the same step keep the first in this
    order: safetensors, then other formats, then by name; the others are reported.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("step_20.pt", "step_10.safetensors", "optimizer.pt"): _ = (d / n).write_bytes(b"")
    >>> [(c.step, c.name) for c in find_checkpoints(d).checkpoints]
    [(10, 'step_10.safetensors'), (20, 'step_20.pt')]
    """
    root_p = Path(root)
    if not root_p.exists():
        raise NotFoundError(f"checkpoint folder {quote(root_p)} does not exist; check the path.")
    refuse_special_file(root_p, "checkpoint folder")  # a FIFO given as CKPT_DIR: never opened
    pat = compile_step_regex(step_regex)
    found: list[Checkpoint] = []
    problems: list[Problem] = []

    def too_large(path: Path, rel: str, e: _TooLarge) -> None:
        problems.append(
            Problem(
                path,
                f"{escape_controls(rel)}: its step, {e.digits}, is larger than {MAX_STEP} "
                "(2^63 - 1), the largest step a store holds; rename it, or pass --step-regex to read "
                "another number of its name.",
            )
        )

    def add_folder(folder: Path, weights: Path) -> None:
        rel = relative_name(folder, root_p.parent if folder == root_p else root_p)
        try:
            if pat is not None:
                step, how = _parse_step(rel, pat), "regex"
            else:
                step, how = _parse_step(folder.name), "name"
                if step is None:
                    step, how = _trainer_state_step(folder), "trainer_state"
                if step is None and weights.name == ".metadata" and content_step is not None:
                    try:
                        step, how = content_step(folder), "content"
                    except CheckpointError as e:
                        problems.append(Problem(folder, str(e)))
                        return
                if step is None:
                    step, how = _step_from_parents(rel), "name"
        except _TooLarge as e:
            return too_large(folder, rel, e)
        if step is not None and step > MAX_STEP:  # trainer_state.json's global_step, a DCP's saved step
            return too_large(folder, rel, _TooLarge(str(step)))
        if step is None:
            problems.append(
                Problem(
                    folder,
                    f"{escape_controls(rel)}: no step in the folder name or its trainer_state.json; "
                    r"name it checkpoint-STEP or pass --step-regex 'run(\d+)'.",
                )
            )
            return
        found.append(Checkpoint(folder, weights, step, how, rel))

    def add_file(path: Path, base: Path) -> None:
        rel = relative_name(path, base)
        kind = special_kind(path)
        if kind is not None:  # opening a FIFO blocks until someone writes it: never open one
            problems.append(
                Problem(
                    path,
                    f"{escape_controls(rel)}: is {kind}, not a checkpoint file; skipped (not opened). "
                    "Only regular files and folders are swept.",
                )
            )
            return
        try:
            if pat is not None:
                step, how = _parse_step(rel, pat), "regex"
            else:
                # The file's own name, then the step saved inside it (Lightning, nanoGPT), then its folders.
                step, how = _parse_step(path.name), "name"
                if step is None and path.suffix.lower() in TORCH_SUFFIXES and content_step is not None:
                    try:
                        step, how = content_step(path), "content"
                    except CheckpointError as e:
                        problems.append(Problem(path, str(e)))
                        return
                if step is None:
                    step, how = _step_from_parents(rel), "name"
        except _TooLarge as e:
            return too_large(path, rel, e)
        if step is not None and step > MAX_STEP:  # the step saved inside the file
            return too_large(path, rel, _TooLarge(str(step)))
        if step is None:
            if _SHARD.search(_stem(path.name)):
                msg = (
                    f"{escape_controls(rel)}: one shard of a sharded checkpoint, but its folder has no "
                    "*.index.json; restore the index file next to the shards."
                )
            else:
                msg = (
                    f"{escape_controls(rel)}: no step in its name or contents; rename it "
                    f"step_STEP{escape_controls(path.suffix)} or pass "
                    r"--step-regex with the step in a group, e.g. 'epoch(\d+)'."
                )
            problems.append(Problem(path, msg))
            return
        found.append(Checkpoint(path, path, step, how, rel))

    root_weights = folder_weights(root_p) if root_p.is_dir() else None
    if root_p.is_file():
        add_file(root_p, root_p.parent)
    elif root_weights is not None and root_weights.name == ".metadata":
        pass  # CKPT_DIR is one DCP checkpoint: its files (shards, Lightning's meta.pt) are not checkpoints
    else:
        for dirpath, dirnames, filenames in os.walk(root_p, onerror=None, followlinks=False):
            here = Path(dirpath)
            dirnames.sort()
            keep = []
            for d in dirnames:
                if d.startswith("."):
                    continue
                sub = here / d
                w = folder_weights(sub)
                if w is None:
                    keep.append(d)
                elif w.name == ".metadata" and _NOT_WEIGHTS.match(d.lower()):
                    continue  # a DCP folder of optimizer (or other training) state, beside the model's
                else:
                    add_folder(sub, w)  # a checkpoint folder: its files are not checkpoints of their own
            dirnames[:] = keep
            for fname in sorted(filenames):
                if here == root_p and root_weights is not None and _is_hf_weights_file(fname):
                    continue  # the root's own weights: one checkpoint, below
                if _is_candidate_file(fname):
                    add_file(here / fname, root_p)
    if root_weights is not None:
        # CKPT_DIR is itself a Hugging Face checkpoint: one on its own (checkpoint-300/), or a Trainer's
        # output folder whose final weights sit beside its checkpoint-N/ folders. Those final weights
        # count when a step can be found for them (folder name, trainer_state.json); otherwise they
        # are left out quietly when there are checkpoints besides, as they repeat the last one.
        before = len(found), len(problems)
        add_folder(root_p, root_weights)
        if len(found) == before[0] and before[0] > 0:
            del problems[before[1] :]

    def rank(c: Checkpoint) -> tuple[int, int, str]:
        safe = c.weights.name.endswith((".safetensors", ".safetensors.index.json"))
        return (c.step, 0 if safe else 1, c.name)

    found.sort(key=rank)
    out: list[Checkpoint] = []
    for c in found:
        if out and out[-1].step == c.step:
            problems.append(
                Problem(
                    c.path,
                    f"{escape_controls(c.name)}: step {c.step} is also {escape_controls(out[-1].name)}, which is swept "
                    "instead; keep one file per step or tell them apart with --step-regex.",
                )
            )
            continue
        out.append(c)
    return Discovery(out, problems, root_p)


__all__ = [
    "WEIGHT_SUFFIXES",
    "Checkpoint",
    "Discovery",
    "Problem",
    "check_store_is_not_a_checkpoint",
    "compile_step_regex",
    "find_checkpoints",
    "folder_weights",
    "hf_weights",
    "parse_step",
    "relative_name",
]
