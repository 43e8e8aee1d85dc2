"""Find "layer 1..N" of a model, once, and name each layer for good.

A layer's name is its ``named_modules()`` path, normalised (wrapper prefixes stripped) so that a
live run and a checkpoint sweep of the same model share keys. Its 1-based index is assigned here
and stored; nothing downstream parses it back out of a name.

What counts as the layer stack (see ``docs/layers-and-sites.md``):

1. Candidate stacks are ``nn.ModuleList``/``nn.Sequential`` containers with at least two children,
   all of one class and all holding parameters.
2. Only the outermost candidates count: a list nested inside another candidate's element (the
   experts of an MoE layer, a per-head list inside attention, T5's sub-layer list) is part of a
   block, never a rival stack. Among the outermost candidates the longest is the stack (the
   outermost, i.e. first in module order, on ties); every other outermost candidate whose elements
   are composite blocks is a stack too (an encoder and a decoder, a text and a vision tower,
   torchvision ResNet's ``layer1..layer4``), each with its own depth 1..n, in module order.
3. Without any candidate: the ``nn.Sequential`` containers of mixed modules that are not nested in
   one another (the model itself, or ``features`` + ``classifier``), if they hold at least half of
   the model's parameters; each child with parameters is a layer.
4. Without those: a one-layer model's block (a one-element ``ModuleList``/``Sequential`` of a
   composite module).
5. Otherwise a :class:`~layerscope.errors.DiscoveryError` that says to pass ``layers=``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch.nn as nn

from ..errors import ConfigError, DiscoveryError

# One selection type accepted everywhere: a glob string, a list of names/globs, or a predicate.
Selection = str | Sequence[str] | Callable[[str, nn.Module], bool] | None

# Path components that wrappers insert anywhere in a module path: FSDP1, activation checkpointing
# (torch.distributed.algorithms._checkpoint), and torch.compile of a sub-module.
_INNER_WRAPPER_PARTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})
# Components that only wrappers of the whole model put first: DDP/DataParallel/DeepSpeed
# (``module``) and Lightning Fabric (``_forward_module``/``_original_module``). Only stripped at the
# front, so that a user's own sub-module called ``module`` keeps its name.
_OUTER_WRAPPER_PARTS = _INNER_WRAPPER_PARTS | {"module", "_forward_module", "_original_module"}

# Wrapper class name -> attribute holding the wrapped model (class names, so that nothing here
# imports torch.distributed, deepspeed or lightning).
_WRAPPER_ATTRS = {
    "OptimizedModule": "_orig_mod",  # torch.compile
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",  # FSDP1 (FSDP2 keeps the module's own tree)
    "CheckpointWrapper": "_checkpoint_wrapped_module",
    "OffloadWrapper": "_checkpoint_wrapped_module",
    "DeepSpeedEngine": "module",
    "_FabricModule": "_forward_module",
}


@functools.lru_cache(maxsize=1 << 16)  # a sweep normalises the same ~150 keys per checkpoint
def normalize_name(name: str) -> str:
    """Strip wrapper prefixes from a module or parameter path.

    ``_orig_mod`` (torch.compile), ``_fsdp_wrapped_module`` (FSDP) and
    ``_checkpoint_wrapped_module`` (activation checkpointing) go wherever they are; ``module``
    (DDP, DataParallel, DeepSpeed) and Lightning Fabric's ``_forward_module`` only at the front.

    >>> normalize_name("module._orig_mod.transformer.h.3")
    'transformer.h.3'
    >>> normalize_name("_fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.mlp")
    'layers.0.mlp'
    >>> normalize_name("encoder.module.proj")  # a user's sub-module called "module" keeps its name
    'encoder.module.proj'
    """
    parts = [p for p in name.split(".") if p]
    i = 0
    while i < len(parts) and parts[i] in _OUTER_WRAPPER_PARTS:
        i += 1
    return ".".join(p for p in parts[i:] if p not in _INNER_WRAPPER_PARTS)


def _relative_name(name: str) -> str:
    """Normalise a path *inside* a layer: only the wrapper parts that can occur anywhere go."""
    return ".".join(p for p in name.split(".") if p and p not in _INNER_WRAPPER_PARTS)


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
    """The user's model inside torch.compile, DDP/DataParallel, FSDP1, checkpoint, DeepSpeed and
    Fabric wrappers (in any nesting).

    >>> import torch, torch.nn as nn
    >>> net = nn.Linear(2, 2)
    >>> unwrap(torch.nn.DataParallel(net)) is net
    True
    """
    for _ in range(16):  # wrappers nest a few deep at most; the bound guards against cycles
        attr = _WRAPPER_ATTRS.get(type(model).__name__)
        inner = getattr(model, attr, None) if attr else None
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)  # compile wrappers of other class names
        if not isinstance(inner, nn.Module) or inner is model:
            return model
        model = inner
    return model


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules()`` with normalised names; for a name a wrapper shares with the module it
    wraps, the outermost (the wrapper) is kept: hooks on it see exactly one call per forward."""
    out: list[tuple[str, nn.Module]] = []
    seen_names: set[str] = set()
    for name, mod in model.named_modules():
        norm = normalize_name(name)
        if norm in seen_names:
            continue
        seen_names.add(norm)
        out.append((norm, mod))
    return out


def child_index(modules: Iterable[tuple[str, nn.Module]]) -> dict[str, list[tuple[str, nn.Module]]]:
    """Parent path -> its direct children ``(path, module)`` by normalised path, in module order.

    Built from :func:`named_modules`, so a wrapper's children are those of the module it wraps.
    """
    index: dict[str, list[tuple[str, nn.Module]]] = {}
    for name, mod in modules:
        if name:
            index.setdefault(name.rpartition(".")[0], []).append((name, mod))
    return index


def _depth(name: str) -> int:
    return 0 if name == "" else name.count(".") + 1


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _is_composite(m: nn.Module) -> bool:
    return any(True for _ in unwrap(m).children())


def _inside(name: str, outer: str) -> bool:
    """Whether module path ``name`` lies strictly inside module path ``outer``."""
    return name != outer and (outer == "" or name.startswith(outer + "."))


def _candidate_stacks(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """ModuleLists/Sequentials whose children (>= 2) are all of one class and hold parameters."""
    modules = named_modules(model)
    index = child_index(modules)
    found = []
    for name, mod in modules:
        if not isinstance(unwrap(mod), (nn.ModuleList, nn.Sequential)):
            continue
        children = index.get(name, [])
        if len(children) < 2:
            continue
        classes = {type(unwrap(c)) for _, c in children}
        if len(classes) == 1 and all(_has_params(c) for _, c in children):
            found.append((name, children))
    return found


def find_stacks(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """The model's repeated block stack(s), each as ``(stack name, [(layer name, module), ...])``.

    The outermost same-class ``ModuleList``/``Sequential`` containers (a list nested inside another
    one's element is part of a block); the longest of them, plus every other one of composite
    blocks (an encoder and a decoder), in module order.

    >>> import torch.nn as nn
    >>> class EncDec(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.encoder = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2))
    ...         self.decoder = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3))
    >>> [(name, len(layers)) for name, layers in find_stacks(EncDec())]
    [('encoder', 2), ('decoder', 3)]
    """
    cands = _candidate_stacks(unwrap(model))
    outer = [c for c in cands if not any(_inside(c[0], o[0]) for o in cands)]
    if not outer:
        return []
    # Longest; on ties the shallowest, then the first in module order (max keeps the first maximum).
    primary = max(outer, key=lambda c: (len(c[1]), -_depth(c[0])))
    return [c for c in outer if c is primary or all(_is_composite(m) for _, m in c[1])]


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A module-path glob: ``*`` is one path component, ``**`` any number, ``?`` one character."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^.]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(selection: Selection, name: str, module: nn.Module) -> bool:
    """Whether module ``name`` (a normalised path) is selected by ``selection``.

    A glob (``*`` matches one path component, ``**`` any number of them), a list of names or
    globs, or a predicate ``(name, module) -> bool``.

    >>> import torch.nn as nn
    >>> matches("h.*.mlp", "h.3.mlp", nn.Identity()), matches("h.*", "h.3.mlp", nn.Identity())
    (True, False)
    >>> matches("**.act", "h.3.mlp.act", nn.Identity())
    True
    """
    if selection is None:
        return False
    if callable(selection) and not isinstance(selection, str):
        return bool(selection(name, module))
    if isinstance(selection, str):
        pats: list[str] = [selection]
    elif isinstance(selection, Iterable):
        pats = list(selection)
    else:
        raise ConfigError(
            f"layers={selection!r} is a {type(selection).__name__}; pass a glob such as 'h.*', a list of "
            "module names, or a function (name, module) -> bool."
        )
    return any(_glob_regex(p).match(name) is not None for p in pats)


def _sequential_layers(model: nn.Module) -> list[Layer]:
    """Rule 3: the children with parameters of the outermost mixed ``nn.Sequential`` containers."""
    seqs = [(n, m) for n, m in named_modules(model) if isinstance(unwrap(m), nn.Sequential)]
    seqs = [s for s in seqs if not any(_inside(s[0], o[0]) for o in seqs)]
    total = _n_params(model)
    if not seqs or total == 0 or 2 * sum(_n_params(m) for _, m in seqs) < total:
        return []  # a small head or projector is not "the layers" of a model
    index = child_index(named_modules(model))
    out: list[Layer] = []
    for stack, _ in seqs:
        kids = [(n, m) for n, m in index.get(stack, []) if _has_params(m)]
        for depth, (n, m) in enumerate(kids, start=1):
            out.append(Layer(len(out) + 1, n, m, stack, depth))
    return out


def _single_blocks(model: nn.Module) -> list[Layer]:
    """Rule 4: a one-layer model (``h = nn.ModuleList([Block])``): the outermost one-element
    ``ModuleList``/``Sequential`` containers of a composite block."""
    mods = named_modules(model)
    index = child_index(mods)
    ones = [
        (n, index[n][0])
        for n, m in mods
        if isinstance(unwrap(m), (nn.ModuleList, nn.Sequential))
        and len(index.get(n, [])) == 1
        and _is_composite(index[n][0][1])
        and _has_params(index[n][0][1])
    ]
    ones = [o for o in ones if not any(_inside(o[0], p[0]) for p in ones)]
    return [Layer(i + 1, child[0], child[1], stack, 1) for i, (stack, child) in enumerate(ones)]


def discover_layers(model: nn.Module, layers: Selection = None) -> list[Layer]:
    """Layers 1..N of ``model`` (wrappers such as DDP, FSDP and ``torch.compile`` are seen through).

    With ``layers=None``: the repeated block stack(s) (see :func:`find_stacks`), numbered 1..N over
    all stacks in module order; failing that, for a plain ``nn.Sequential`` of mixed modules (an
    MLP, a simple CNN), each child that has parameters. With a selection (a glob such as
    ``"blocks.*.mlp"`` where ``*`` is one path component and ``**`` any number, a list of names or
    globs, or ``predicate(name, module)``): the matching modules, in module order.

    >>> import torch.nn as nn
    >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [(la.index, la.name) for la in discover_layers(mlp)]
    [(1, '0'), (2, '2')]
    >>> [la.name for la in discover_layers(mlp, layers="1")]
    ['1']
    """
    model = unwrap(model)
    if layers is not None:
        if isinstance(layers, str) and not layers.strip():
            raise ConfigError(
                "layers='' selects nothing; pass a glob such as 'blocks.*', or None to discover."
            )
        mods = named_modules(model)
        picked = [(n, m) for n, m in mods if n and matches(layers, n, m)]
        if not picked:
            raise DiscoveryError(
                f"layers={layers!r} matched no module of {type(model).__name__} ('*' matches one name "
                f"component, '**' any number); module names look like {_name_sample(mods)} "
                "(list them with `layerscope layers`)."
            )
        return [Layer(i + 1, n, m, "", i + 1) for i, (n, m) in enumerate(picked)]

    stacks = find_stacks(model)
    out: list[Layer] = []
    for stack_name, children in stacks:
        for depth, (n, m) in enumerate(children, start=1):
            out.append(Layer(len(out) + 1, n, m, stack_name, depth))
    if out:
        return out
    out = _sequential_layers(model) or _single_blocks(model)
    if out:
        return out
    raise DiscoveryError(
        f"no repeated layer stack found in {type(model).__name__} (no nn.ModuleList/nn.Sequential of "
        "same-class blocks, and it is not an nn.Sequential); pass layers='glob' (CLI: --layers GLOB) to "
        f"choose the modules to record, e.g. one of: {_name_sample(named_modules(model))}."
    )


def _name_sample(mods: Sequence[tuple[str, nn.Module]], k: int = 8) -> str:
    names = [n for n, _ in mods if n]
    if not names:
        return "(the model has no sub-modules)"
    shallow = sorted(names, key=lambda n: n.count("."))[:k]
    shallow.sort(key=names.index)
    return ", ".join(shallow) + (" ..." if len(names) > k else "")
