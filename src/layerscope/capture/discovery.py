"""Find "layer 1..N" of a model, once, and name each layer for good.

A layer's name is its ``named_modules()`` path, normalised (wrapper prefixes stripped) so that a
live run and a checkpoint sweep of the same model share keys. Its 1-based index is assigned here
and stored; nothing downstream parses it back out of a name.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, Union

import torch.nn as nn

from ..errors import DiscoveryError

# One selection type accepted everywhere: a glob string, a list of names/globs, or a predicate.
Selection = Union[str, Sequence[str], Callable[[str, nn.Module], bool], None]

# Prefixes added by wrappers: torch.compile, DDP/DataParallel, FSDP (1 and 2), checkpoint wrappers.
_WRAPPER_PARTS = re.compile(
    r"(^|\.)(_orig_mod|module|_fsdp_wrapped_module|_checkpoint_wrapped_module|_forward_module)(?=\.|$)"
)


def normalize_name(name: str) -> str:
    """Strip wrapper prefixes from a module or parameter path.

    >>> normalize_name("module._orig_mod.transformer.h.3")
    'transformer.h.3'
    >>> normalize_name("_fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.mlp")
    'layers.0.mlp'
    """
    out = _WRAPPER_PARTS.sub(lambda m: m.group(1) if m.start() == 0 else "", name)
    out = re.sub(r"\.{2,}", ".", out).strip(".")
    return out


@dataclass(frozen=True)
class Layer:
    """One discovered layer. ``index`` is the heatmap column (1..N over all stacks)."""

    index: int
    name: str  # normalised module path
    module: nn.Module
    stack: str = ""  # normalised path of the ModuleList/Sequential it belongs to ("" for a selection)
    depth: int = 0  # 1-based position within its stack

    def __hash__(self) -> int:  # modules are not hashable by value; identity is enough here
        return hash((self.index, self.name))


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP/DataParallel/compile wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and isinstance(
            getattr(model, "module", None), nn.Module
        ):
            model = model.module
        else:
            break
    return model


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules()`` with normalised names, first occurrence of each module only."""
    out: list[tuple[str, nn.Module]] = []
    seen_names: set[str] = set()
    for name, mod in model.named_modules():
        nn_ = normalize_name(name)
        if nn_ in seen_names:
            continue
        seen_names.add(nn_)
        out.append((nn_, mod))
    return out


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _candidate_stacks(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """ModuleLists/Sequentials whose children (>= 2) are all of one class and hold parameters."""
    found = []
    for name, mod in named_modules(model):
        if not isinstance(mod, (nn.ModuleList, nn.Sequential)):
            continue
        children = list(mod.named_children())
        if len(children) < 2:
            continue
        classes = {type(c) for _, c in children}
        if len(classes) == 1 and all(_has_params(c) for _, c in children):
            prefix = f"{name}." if name else ""
            found.append((name, [(prefix + cn, c) for cn, c in children]))
    return found


def find_stacks(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """The model's repeated block stack(s): the longest same-class ModuleList/Sequential, outermost
    on ties; other stacks of that same length that are not nested inside it (an encoder and a
    decoder) are kept too, in module order."""
    cands = _candidate_stacks(model)
    if not cands:
        return []
    best = max(len(ch) for _, ch in cands)
    top = [c for c in cands if len(c[1]) == best]
    kept: list[tuple[str, list[tuple[str, nn.Module]]]] = []
    for name, ch in top:  # named_modules order is outermost first
        if any(name == k or name.startswith(k + ".") or k == "" for k, _ in kept):
            continue
        kept.append((name, ch))
    return kept


def _match(selection: Selection, name: str, module: nn.Module) -> bool:
    if selection is None:
        return False
    if callable(selection) and not isinstance(selection, str):
        return bool(selection(name, module))
    pats = [selection] if isinstance(selection, str) else list(selection)
    return any(fnmatch.fnmatchcase(name, p) for p in pats)


def discover_layers(model: nn.Module, layers: Selection = None) -> list[Layer]:
    """Layers 1..N of ``model``.

    With ``layers=None``: the repeated block stack(s) (see :func:`find_stacks`); failing that, for a
    plain ``nn.Sequential`` of mixed modules, each child that has parameters. With a selection (a
    glob such as ``"blocks.*.mlp"``, a list of names/globs, or ``predicate(name, module)``): the
    matching modules, in module order.

    >>> import torch.nn as nn
    >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [l.name for l in discover_layers(mlp)]
    ['0', '2']
    """
    model = unwrap(model)
    if layers is not None:
        if isinstance(layers, str) and not layers.strip():
            raise DiscoveryError("layers='' selects nothing; pass a glob such as 'blocks.*' or None.")
        picked = [(n, m) for n, m in named_modules(model) if n and _match(layers, n, m)]
        if not picked:
            names = [n for n, _ in named_modules(model) if n][:12]
            raise DiscoveryError(
                f"layers={layers!r} matched no module of {type(model).__name__}; module names look like "
                f"{', '.join(names)} ... (see `layerscope layers`)."
            )
        return [Layer(i + 1, n, m, "", i + 1) for i, (n, m) in enumerate(picked)]

    stacks = find_stacks(model)
    out: list[Layer] = []
    if stacks:
        for stack_name, children in stacks:
            for depth, (n, m) in enumerate(children, start=1):
                out.append(Layer(len(out) + 1, n, m, stack_name, depth))
        return out
    if isinstance(model, nn.Sequential):
        kids = [(n, m) for n, m in model.named_children() if _has_params(m)]
        if kids:
            return [Layer(i + 1, n, m, "", i + 1) for i, (n, m) in enumerate(kids)]
    raise DiscoveryError(
        f"no repeated layer stack found in {type(model).__name__} (no nn.ModuleList/nn.Sequential of "
        "same-class blocks); pass layers='glob.*' (CLI: --layers GLOB) to choose the modules to record."
    )


def iter_layer_names(layers: Iterable[Layer]) -> list[str]:
    return [la.name for la in layers]
