"""Training sites: gradients in the backward pass, parameters at the optimizer step.

``grad_output`` (:class:`GradOutputSource`): d loss / d (each layer's output). A forward hook on the
layer (attached only for steps that record) puts a tensor hook on its output; autograd calls it
with the gradient during ``backward``. Each micro-batch's backward folds into the step, the token
mask of its forward applies, and a ``GradScaler``'s scale is divided out (a device op).

``param_grad``, ``update``, ``weight`` (:class:`ParamSource`): each layer's own parameters, taken
together as one stream, around the optimizer step. Before the step (:meth:`ParamSource.begin`):
the gradients, as the optimizer is about to use them (accumulated, unscaled by ``GradScaler``), and
a snapshot of the weights for ``update``. After it (:meth:`ParamSource.end`): the change
``W_after - W_before`` (with ``||W_before||^2`` kept beside it, so ``ratio`` merges exactly) and the
weights. ``Recorder(optimizer=opt)`` registers the optimizer's step pre- and post-hooks, which call
them; the framework callbacks call them from their own optimizer-step events.

Parallelism. Under FSDP2 (``fully_shard``) parameters and gradients are ``DTensor`` shards: each
rank feeds its local shard and the reduction across ranks merges the shards' sufficient
statistics, which is the statistics of the full tensor (an exact norm, not a mean of per-shard
norms). Plain parameters under data parallel (DDP) are identical on every rank after the
gradient all-reduce: only rank 0 feeds them, so the merge counts them once. Replicated dimensions
of a ``DTensor`` (HSDP) likewise count at coordinate 0 only.

Nothing here syncs with the host: the gate and placements are Python values, the rest are
tensor ops.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .sites import GRAD_SITES, PARAM_SITES, extract_tensor
from .sources import CaptureContext, CaptureSource, Slot, _in_backward, register_source

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor, Replicate
except ImportError:  # pragma: no cover - older torch
    DTensor = None  # type: ignore[assignment,misc]
    Replicate = None  # type: ignore[assignment,misc]


def _local(t: torch.Tensor) -> torch.Tensor:
    """The rank's own part of ``t``: a DTensor's local shard, or ``t`` itself."""
    if DTensor is not None and isinstance(t, DTensor):
        return t.to_local()
    return t


def _counts_here(p: torch.Tensor, rank: int, world: int) -> bool:
    """Whether this rank's copy of ``p`` is counted (host-side logic only, no sync).

    A DTensor counts where every replicated mesh dimension is at coordinate 0 (its shards are
    distinct); a plain tensor under data parallel is a replica: rank 0's copy counts.
    """
    if DTensor is not None and isinstance(p, DTensor):
        coord = p.device_mesh.get_coordinate()
        if coord is None:  # this rank is not in the mesh
            return False
        return all(c == 0 for c, pl in zip(coord, p.placements) if isinstance(pl, Replicate))
    return world <= 1 or rank == 0


class GradOutputSource(CaptureSource):
    """``grad_output``: a forward hook on each layer that hooks the gradient of its output."""

    def register(self, ctx: CaptureContext) -> list[Any]:
        return [slot.hook.module.register_forward_hook(self._hook(slot, ctx)) for slot in self.slots]

    @staticmethod
    def _hook(slot: Slot, ctx: CaptureContext) -> Callable[..., None]:
        gate = ctx.gate

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not gate.open_for(module) or gate.in_probe or not torch.is_grad_enabled():
                return
            if _in_backward():  # activation checkpointing re-running the forward
                return
            t = extract_tensor(output)
            if t is None or not t.is_floating_point() or not t.requires_grad:
                return
            mask = ctx.mask_for(slot, t)  # this forward's mask: gone by the time backward runs
            scaler = ctx.scaler

            def on_grad(g: torch.Tensor) -> None:
                scale = getattr(scaler, "_scale", None) if scaler is not None else None
                if isinstance(scale, torch.Tensor):
                    g = g.float() / scale.to(g.device)  # GradScaler: unscaled values, a device op
                slot.acc.update(g, mask)

            t.register_hook(on_grad)

        return hook

    def run_config(self) -> dict[str, Any]:
        return {
            "grad_modules": {f"{s.hook.layer.index}:{s.hook.site}": s.hook.module_name for s in self.slots}
        }


class ParamSource(CaptureSource):
    """``param_grad``, ``update`` and ``weight``: each layer's parameters around the optimizer step.

    Its hooks are the optimizer's (always attached; they read the gate): give the Recorder the
    optimizer, or call :meth:`begin` / :meth:`end` yourself (``Recorder.before_optimizer_step`` /
    ``after_optimizer_step``). A step skipped by a ``GradScaler`` (inf found) never calls the
    optimizer's step, so its hooks do not fire and the step records none of these sites.
    """

    always_attached = True

    def __init__(self, slots: list[Slot]) -> None:
        super().__init__(slots)
        self._ctx: CaptureContext | None = None
        self._snap: dict[int, list[torch.Tensor]] | None = None  # slot index -> W_before (see _group)
        self._began = False  # begin() ran for the current optimizer step
        self._prev: dict[int, list[torch.Tensor]] | None = None  # sweeps: the previous checkpoint's weights
        self.n_steps = 0  # optimizer steps seen so far (host count)
        self._modules: dict[int, list[nn.Module]] = {}  # id(slot) -> its layer's modules, listed once
        self._warned = False
        for s in self.slots:
            if s.hook.site == "update":
                s.acc.uses_ref = True

    def register(self, ctx: CaptureContext) -> list[Any]:
        self._ctx = ctx
        opt = ctx.optimizer
        if opt is None:
            return [_NoHandle()]  # explicit begin()/end() calls (framework callbacks)
        return [
            opt.register_step_pre_hook(lambda *a, **k: self.begin()),
            opt.register_step_post_hook(lambda *a, **k: self.end()),
        ]

    def _params(self, slot: Slot) -> list[torch.Tensor]:
        """The parameters of ``slot``'s layer that this rank counts, as ``module.parameters()``
        lists them. The layer's sub-modules are listed once (``parameters()`` walks the module
        tree on every call: a third of a recorded step's parameter-site cost on a 12-block GPT);
        their parameters are read afresh each time (FSDP and ``load_state_dict(assign=True)``
        put new tensors there)."""
        ctx = self._ctx
        rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
        mods = self._modules.get(id(slot))
        if mods is None:
            mods = self._modules[id(slot)] = list(slot.hook.module.modules())
        seen: set[int] = set()
        out: list[torch.Tensor] = []
        for m in mods:
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    if _counts_here(p, rank, world):
                        out.append(p)
        return out

    def _listening(self) -> bool:
        ctx = self._ctx
        return ctx is not None and ctx.gate.recording

    @torch.no_grad()
    def begin(self) -> None:
        """Before the optimizer step: the gradients it is about to use, a snapshot for ``update``."""
        if not self._listening() or self._began:
            return
        self._began = True
        snap: dict[int, list[torch.Tensor]] = {}
        sample = self._ctx.update_sample if self._ctx is not None else None
        for i, slot in enumerate(self.slots):
            site = slot.hook.site
            if site == "param_grad":
                for g in _group(slot, [_local(p.grad) for p in self._params(slot) if p.grad is not None]):
                    slot.acc.update(g)
            elif site == "update":
                snap[i] = _group(
                    slot, [_sample_rows(_local(p), sample) for p in self._params(slot)], copy=True
                )
        self._snap = snap

    @torch.no_grad()
    def end(self) -> None:
        """After the optimizer step: the change it made (``update``) and the weights (``weight``)."""
        if not self._began:
            return
        self._began = False
        snap, self._snap = self._snap or {}, None
        sample = self._ctx.update_sample if self._ctx is not None else None
        for i, slot in enumerate(self.slots):
            site = slot.hook.site
            if site == "update":
                before = snap.get(i, [])
                if before:
                    after = _group(
                        slot, [_sample_rows(_local(p), sample) for p in self._params(slot)], copy=True
                    )
                    for a, b in zip(after, before):
                        slot.acc.update(_delta(a, b), ref=b)
            elif site == "weight":
                for w in _group(slot, [_local(p) for p in self._params(slot)]):
                    slot.acc.update(w)
        self.n_steps += 1

    @torch.no_grad()
    def take_checkpoint(self) -> None:
        """A checkpoint sweep's step (``Recorder.record_probe``): ``weight`` as loaded, and
        ``update`` as the change since the previous call (none at the first): the sum of every
        optimizer step between the two checkpoints, not one step's update."""
        if self._ctx is None:
            return
        prev = self._prev
        keep: dict[int, list[torch.Tensor]] = {}
        for i, slot in enumerate(self.slots):
            if slot.hook.site == "weight":
                for w in _group(slot, [_local(p) for p in self._params(slot)]):
                    slot.acc.update(w)
            elif slot.hook.site == "update":
                now = _group(slot, [_local(p) for p in self._params(slot)], copy=True)
                if not now:
                    continue
                before = prev.get(i, []) if prev is not None else []
                for a, b in zip(now, before):
                    if a.shape == b.shape:
                        slot.acc.update(_delta(a.clone(), b), ref=b)
                keep[i] = now
        self._prev = keep if keep else None
        self.n_steps += 1

    def forget_checkpoint(self) -> None:
        """The next :meth:`take_checkpoint` has no predecessor (no ``update``)."""
        self._prev = None

    def before_collect(self, step: int) -> None:
        """At a record step: warn once when no optimizer step was ever seen (no optimizer given)."""
        if self._began:  # begin() without end(): the step never finished; drop its snapshot
            self._began, self._snap = False, None
        if self.n_steps == 0 and self.slots and not self._warned:
            self._warned = True
            sites = sorted({s.hook.site for s in self.slots})
            warnings.warn(
                f"layerscope: step {step} recorded no {'/'.join(sites)} values: no optimizer step was "
                "seen. Pass Recorder(..., optimizer=opt), or call rec.before_optimizer_step() and "
                "rec.after_optimizer_step() around opt.step().",
                stacklevel=3,
            )

    def run_config(self) -> dict[str, Any]:
        ctx = self._ctx
        return {"update_sample": ctx.update_sample if ctx is not None else None}


def _group(slot: Slot, ts: list[torch.Tensor], copy: bool = False) -> list[torch.Tensor]:
    """What a layer's tensors are fed as: one flat vector (one statistics call per layer, not
    one per parameter: a dozen tiny Python-level calls per block were most of a recorded step's
    cost), or, where the metrics keep per-unit maxima (``dead_units``: per column of the last
    dimension, which a concatenation has not), each tensor on its own. Power sums, extremes and
    counts are the same either way. ``copy``: tensors the caller may keep and overwrite."""
    if not ts:
        return []
    if "units" in slot.acc.spec.groups:
        return [t.detach().clone() if copy else t.detach() for t in ts]
    return [_flat(ts, copy)]


def _flat(ts: list[torch.Tensor], copy: bool = False) -> torch.Tensor:
    """Tensors as one flat vector: a view of a lone tensor where it can be (``copy=False``), else
    their concatenation, a copy (type promotion: a bfloat16 weight beside a float32 norm scale
    becomes float32)."""
    if len(ts) == 1:
        t = ts[0].detach().reshape(-1)
        return t.clone() if copy else t
    return torch.cat([t.detach().reshape(-1) for t in ts])


def _delta(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """``after - before`` in float32 at least, written into ``after`` (a copy owned by the caller)."""
    if after.dtype in (torch.float32, torch.float64) and after.dtype == before.dtype:
        return after.sub_(before)
    return after.float() - before.float()


def _sample_rows(t: torch.Tensor, sample: int | None) -> torch.Tensor:
    """``t``, or with ``sample=k`` every k-th row of a matrix (a strided view: its snapshot takes
    1/k of the memory). Vectors (biases, norms' scales) are small and kept whole."""
    if sample is None or sample <= 1 or t.dim() < 2:
        return t
    return t.reshape(-1, t.shape[-1])[::sample]


class _NoHandle:
    def remove(self) -> None:
        pass


register_source(GRAD_SITES, GradOutputSource)
register_source(PARAM_SITES, ParamSource)

__all__ = ["GradOutputSource", "ParamSource"]
