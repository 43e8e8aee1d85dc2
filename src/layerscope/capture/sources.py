"""Capture sources: where a kind of site gets its tensors, and the hooks that bring them.

The :class:`~layerscope.recorder.Recorder` schedules, collects and flushes; a source only knows
how to attach and detach its hooks and which slots (``(layer, site)`` streams) it feeds. A hook
reads the recorder's :class:`Gate` first (plain host bools: on a step that does not record it
returns at once), then hands its tensor to :meth:`CaptureContext.feed`, which applies the
batch's token mask and updates the slot's accumulator on the device, with no host sync.

Today's sources: :class:`ForwardSource` (forward activations: the ``output``, ``mlp_act``,
``attn_out``, ``mlp_out`` and ``mlp_down_in`` sites) and :class:`MaskTracker` (no slots: it
learns each forward's token mask from the root model's inputs). A new kind of site (gradients
by backward hooks, parameters at optimizer steps, ...) is a new subclass registered with
:func:`register_source`; see ``docs/DEVELOPING.md`` ("Adding a site").
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..stats import SlotAccumulator
from ..stats.kernels import mask_rows
from .sites import SITES, SiteHook, extract_tensor

MaskSpec = str | Callable[[tuple[Any, ...], dict[str, Any]], Any] | None


class Gate:
    """The switches every hook of one recorder reads before anything else (host bools only)."""

    __slots__ = ("in_probe", "listening", "train_only")

    def __init__(self, train_only: bool = True) -> None:
        self.listening = False  # on while a step that records runs (or always, with window="all")
        self.in_probe = False  # a probe forward: recorded although the model is in eval mode
        self.train_only = train_only

    def open_for(self, module: nn.Module) -> bool:
        """Whether a forward of ``module`` is recorded now (module.training is a Python bool)."""
        return self.listening and (module.training or self.in_probe or not self.train_only)


@dataclass(eq=False)
class Slot:
    """One stream of statistics: a (layer, site), its accumulator, and which mask applies."""

    hook: SiteHook
    acc: SlotAccumulator
    mask_key: str = ""  # "" the model's mask; "decoder" the decoder's (encoder-decoder models)


def _in_backward() -> bool:
    """True while autograd runs a backward pass: activation checkpointing re-runs forwards there,
    and their activations were already recorded. A host-side flag, no device sync."""
    return torch._C._current_graph_task_id() != -1


class CaptureSource:
    """One kind of site: the slots it feeds and the hooks that feed them.

    Subclasses implement :meth:`register` (add the hooks, return their handles). The Recorder
    calls :meth:`attach` for steps that record and :meth:`detach` otherwise (a source with
    ``always_attached`` stays attached from the start: cheap hooks that read the gate), and
    :meth:`close` at the end. Both are safe to call twice.
    """

    always_attached: ClassVar[bool] = False

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = list(slots)
        self._handles: list[Any] = []

    def register(self, ctx: CaptureContext) -> list[Any]:
        raise NotImplementedError

    def attach(self, ctx: CaptureContext) -> None:
        if not self._handles:
            self._handles = list(self.register(ctx))

    def detach(self) -> None:
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    close = detach

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def run_config(self) -> dict[str, Any]:
        """Entries for the run's stored config (which module each slot is recorded at)."""
        return {}


class CaptureContext:
    """What a source's hooks see of their recorder: the gate, and where tensors go."""

    def __init__(self, gate: Gate, masks: MaskTracker | None = None) -> None:
        self.gate = gate
        self.masks = masks

    def feed(self, slot: Slot, x: torch.Tensor) -> None:
        """Fold ``x`` into ``slot`` (masked by the current batch's token mask). No host sync."""
        m = self.masks.mask_for(slot, x) if self.masks is not None else None
        slot.acc.update(x, m)


class ForwardSource(CaptureSource):
    """Forward activations: a forward hook on the module's output, or (``kind == "input"``) a
    forward pre-hook on its first input. Attached only for steps that record."""

    def register(self, ctx: CaptureContext) -> list[Any]:
        handles = []
        for slot in self.slots:
            fn = self._hook(slot, ctx)
            mod = slot.hook.module
            if slot.hook.kind == "input":
                handles.append(mod.register_forward_pre_hook(fn))
            else:
                handles.append(mod.register_forward_hook(fn))
        return handles

    @staticmethod
    def _hook(slot: Slot, ctx: CaptureContext) -> Callable[..., None]:
        gate, feed = ctx.gate, ctx.feed

        # No host sync in here: the gate and module.training are Python bools; the rest are tensor ops.
        def take(module: nn.Module, value: Any) -> None:
            if not gate.open_for(module):
                return
            if not torch.compiler.is_compiling() and _in_backward():
                return
            t = extract_tensor(value)
            if t is not None and t.is_floating_point():
                feed(slot, t)

        if slot.hook.kind == "input":

            def pre_hook(module: nn.Module, args: Any) -> None:
                take(module, args)

            return pre_hook

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            take(module, output)

        return hook

    def run_config(self) -> dict[str, Any]:
        return {
            "site_modules": {f"{s.hook.layer.index}:{s.hook.site}": s.hook.module_name for s in self.slots}
        }


class MaskTracker(CaptureSource):
    """The current batch's token mask, learned from the root model's inputs; no slots of its own.

    ``how``: the name of the root model's forward argument that holds the mask (keyword, or
    positional by the forward's signature), or a callable ``(args, kwargs) -> mask | None``. A
    mask is (batch, tokens), non-zero for real tokens; it applies to every activation whose
    leading dimensions are (batch, tokens) (or (batch * tokens)). In an encoder-decoder model
    (stacks named ``encoder`` and ``decoder``), decoder layers use ``decoder_<name>`` instead.
    :meth:`set` overrides it (``Recorder.set_mask``) for loops that call sub-modules directly.
    """

    def __init__(self, root: nn.Module, how: MaskSpec, gate: Gate) -> None:
        super().__init__([])
        self.root = root
        self.how = how
        self.gate = gate
        self.current: dict[str, torch.Tensor | None] = {}
        self.explicit: torch.Tensor | None = None
        self._warned: set[int] = set()
        self._position: int | None = None
        if isinstance(how, str):
            try:
                names = [
                    p.name
                    for p in inspect.signature(root.forward).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
                self._position = names.index(how) if how in names else None
            except (TypeError, ValueError):
                self._position = None

    def register(self, ctx: CaptureContext) -> list[Any]:
        if self.how is None:
            return []
        return [
            self.root.register_forward_pre_hook(self._pre, with_kwargs=True),
            # The mask belongs to this forward only: a sub-module called on its own later is not masked.
            self.root.register_forward_hook(self._post, always_call=True),
        ]

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.current:
            self.current = {}

    def _pick(self, args: tuple[Any, ...], kwargs: dict[str, Any], name: str, pos: int | None) -> Any:
        m = kwargs.get(name)
        if m is None and pos is not None and len(args) > pos:
            m = args[pos]
        return m

    def _pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self.gate.open_for(module):
            return None
        if callable(self.how):
            found = {"": self.how(args, kwargs)}
        else:
            assert isinstance(self.how, str)
            found = {
                "": self._pick(args, kwargs, self.how, self._position),
                "decoder": kwargs.get("decoder_" + self.how),
            }
        self.current = {k: self._as_mask(v) for k, v in found.items()}
        return None

    def _as_mask(self, m: Any, warn: bool = True) -> torch.Tensor | None:
        if not isinstance(m, torch.Tensor) or m.dim() != 2:
            if (
                warn
                and isinstance(m, torch.Tensor)
                and not torch.compiler.is_compiling()
                and -1 not in self._warned
            ):
                self._warned.add(-1)
                warnings.warn(
                    f"layerscope: the mask has shape {tuple(m.shape)}, not (batch, tokens); recording "
                    "unmasked. Pass mask=fn(args, kwargs) returning the (batch, tokens) mask.",
                    stacklevel=3,
                )
            return None
        return m.detach() if m.dtype == torch.bool else m.detach() != 0  # one tiny op per forward

    def set(self, mask: torch.Tensor | None) -> None:
        self.explicit = None if mask is None else self._as_mask(mask, warn=False)
        if mask is not None and self.explicit is None:
            raise ValueError(f"a mask is (batch, tokens); got shape {tuple(getattr(mask, 'shape', ()))}")

    def mask_for(self, slot: Slot, x: torch.Tensor) -> torch.Tensor | None:
        m = self.explicit if self.explicit is not None else self.current.get(slot.mask_key)
        if m is None:
            return None
        if m.device != x.device:
            m = m.to(x.device, non_blocking=True)
        if mask_rows(x.shape, m) is None:
            key = id(slot)
            if key not in self._warned and not torch.compiler.is_compiling():
                self._warned.add(key)
                h = slot.hook
                warnings.warn(
                    f"layerscope: the token mask {tuple(m.shape)} does not fit the {h.site} activations "
                    f"of {h.module_name} {tuple(x.shape)} (not (batch, tokens, ...)); they are recorded "
                    "unmasked.",
                    stacklevel=2,
                )
            return None
        return m


# -- which source records which site -----------------------------------------------------------
_SOURCES: dict[str, type[CaptureSource]] = dict.fromkeys(SITES, ForwardSource)


class MaskScope:
    """What ``Recorder.set_mask`` returns: as a context manager, restores the previous mask."""

    def __init__(self, tracker: MaskTracker, prev: torch.Tensor | None) -> None:
        self._tracker, self._prev = tracker, prev

    def __enter__(self) -> MaskScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tracker.explicit = self._prev


def register_source(sites: Sequence[str], cls: type[CaptureSource]) -> None:
    """Make ``cls`` the source of ``sites`` (a new kind of site plugs in here)."""
    for s in sites:
        _SOURCES[s] = cls


def build_sources(slots: Sequence[Slot]) -> list[CaptureSource]:
    """One source per kind, each with its slots in the recorder's slot order."""
    by_kind: dict[type[CaptureSource], list[Slot]] = {}
    for slot in slots:
        by_kind.setdefault(_SOURCES.get(slot.hook.site, ForwardSource), []).append(slot)
    return [cls(sl) for cls, sl in by_kind.items()]


def mask_key(stack: str, stacks: Sequence[str]) -> str:
    """Which mask a layer of ``stack`` uses: the decoder's in an encoder-decoder model."""
    names = [s.rsplit(".", 1)[0].lower() for s in stacks]
    is_encdec = any("decoder" in n for n in names) and any("encoder" in n for n in names)
    return "decoder" if is_encdec and "decoder" in stack.lower() else ""


__all__ = [
    "CaptureContext",
    "CaptureSource",
    "ForwardSource",
    "Gate",
    "MaskScope",
    "MaskSpec",
    "MaskTracker",
    "Slot",
    "build_sources",
    "mask_key",
    "register_source",
]
