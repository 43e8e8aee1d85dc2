"""Per-(layer, site) accumulators: ``update`` in the hook (device only), ``state`` at record time.

Like a torchmetrics ``Metric``: the state is declared once with how it merges (moments by the
Chan/Pébay merge, unit maxima by max, histogram counts by sum, function metrics by their
``reduce``), ``update`` only accumulates on the device, and :func:`reduce_across_ranks` is a
collective that every rank calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .functional import (
    N_RAW,
    N_STATE,
    HistBinner,
    _batch,
    empty_state,
    merge_states,
    raw_to_state,
)
from .registry import Metric

# Raw vectors kept before they are folded into one (bounds memory for long windows).
_COMPACT_AT = 64


@dataclass
class StatSpec:
    """What every accumulator of a recorder computes (the union of the metrics' needs)."""

    metrics: list[Metric]
    eps: float = 1e-6
    hist_edges: Sequence[float] = ()
    groups: frozenset[str] = field(init=False)
    fn_metrics: list[Metric] = field(init=False)
    # The histogram binning tables, built once and shared by every slot (None without 'hist').
    binner: HistBinner | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        g: set[str] = set()
        for m in self.metrics:
            g |= set(m.needs)
        self.groups = frozenset(g)
        self.fn_metrics = [m for m in self.metrics if m.fn is not None]
        if "hist" in self.groups:
            self.binner = HistBinner(self.hist_edges)


class SlotAccumulator:
    """Statistics of one (layer, site) over the forwards of a record window."""

    def __init__(self, spec: StatSpec) -> None:
        self.spec = spec
        if "hist" in spec.groups and spec.binner is None:  # a spec whose edges were set after creation
            spec.binner = HistBinner(spec.hist_edges)
        self.reset()

    def reset(self) -> None:
        self._raws: list[torch.Tensor] = []
        self._state: torch.Tensor | None = None  # folded raws
        self.units: torch.Tensor | None = None  # (U,) float32 max|x| per unit
        self.hist: torch.Tensor | None = None  # (B,) float64
        self.fn_acc: torch.Tensor | None = None  # (F, 2): value accumulator, weight
        self.n_updates = 0  # host-side count of forwards seen (no tensor involved)

    # -- in the hook: no host sync below this line ------------------------------------------------
    def update(self, x: torch.Tensor) -> None:
        spec = self.spec
        raw, u, h = _batch(x, spec.groups, spec.eps, spec.binner)  # one pass over the groups' needs
        self._raws.append(raw)
        if len(self._raws) >= _COMPACT_AT:
            self._compact()
        if u is not None:
            if self.units is None or self.units.shape != u.shape:
                # A module whose width changes between calls: keep the widest (documented).
                self.units = u if self.units is None or u.numel() >= self.units.numel() else self.units
            else:
                self.units = torch.maximum(self.units, u)
        if h is not None:
            self.hist = h if self.hist is None else self.hist + h
        if spec.fn_metrics:
            vals = []
            w = float(x.numel())
            for m in spec.fn_metrics:
                v = m.fn(x.detach()).to(torch.float64).reshape(())  # type: ignore[misc]
                vals.append(
                    torch.stack([v * w, torch.full_like(v, w)])
                    if m.reduce == "mean"
                    else torch.stack([v, torch.ones_like(v)])
                )
            cur = torch.stack(vals)
            if self.fn_acc is None:
                self.fn_acc = cur
            else:
                self.fn_acc = _fold_fn(self.spec.fn_metrics, torch.stack([self.fn_acc, cur]))
        self.n_updates += 1

    def _compact(self) -> None:
        states = raw_to_state(torch.stack(self._raws))
        if self._state is not None:
            states = torch.cat([self._state[None], states])
        self._state = merge_states(states)
        self._raws = []

    # -- at record time ------------------------------------------------------------------------
    def state(self, device: torch.device | None = None) -> torch.Tensor:
        """The merged state of everything since the last reset (``empty_state`` when nothing ran)."""
        if self._raws:
            self._compact()
        if self._state is None:
            return empty_state(device)
        return self._state


def _fold_fn(fn_metrics: Sequence[Metric], stacked: torch.Tensor) -> torch.Tensor:
    """Fold function-metric accumulators ``(k, F, 2)`` along dim 0 by each metric's reduce."""
    out = []
    for i, m in enumerate(fn_metrics):
        col = stacked[:, i]  # (k, 2)
        if m.reduce in ("mean", "sum"):
            out.append(col.sum(0))
        elif m.reduce == "max":
            out.append(torch.stack([col[:, 0].amax(), col[:, 1].sum()]))
        else:
            out.append(torch.stack([col[:, 0].amin(), col[:, 1].sum()]))
    return torch.stack(out)


@dataclass
class WindowState:
    """All slots' statistics of one record window, merged (and reduced across ranks)."""

    states: torch.Tensor  # (S, N_STATE) float64; (S, N_RAW) raw sums while ``raw`` is True
    units: list[torch.Tensor | None]  # per slot
    hist: torch.Tensor | None  # (S, B) float64
    fn: torch.Tensor | None  # (S, F, 2) float64
    raw: bool = False  # states not converted yet: see collect(defer=True) and finish_states()


def _batched_states(accs: Sequence[SlotAccumulator], device: torch.device | None) -> torch.Tensor | None:
    """The states of all slots in one ``raw_to_state`` (+ one merge) when every slot saw the same
    number of forwards and nothing was folded yet (the usual record step); else None.

    Per slot, that is a stack, a ``raw_to_state`` and a clone or merge of some 25 tiny ops: at a
    dozen slots or more, most of a record step's cost. Together it is the same arithmetic, once.
    """
    k = len(accs[0]._raws)
    if k == 0 or any(a._state is not None or len(a._raws) != k for a in accs):
        return None
    dev = accs[0]._raws[0].device
    if any(r.device != dev for a in accs for r in a._raws):
        return None
    raws = torch.stack([r for a in accs for r in a._raws])  # (S * k, N_RAW), slot-major
    states = raw_to_state(raws)
    if k > 1:
        states = merge_states(states.view(len(accs), k, N_STATE).transpose(0, 1))  # (k, S, N) -> (S, N)
    return states.to(device)


def collect(
    accs: Sequence[SlotAccumulator], spec: StatSpec, device: torch.device | None, defer: bool = False
) -> WindowState:
    """The window's statistics of every slot. With ``defer``, a window in which every slot saw exactly
    one forward keeps its raw sums (one ``stack``), and :func:`finish_states` converts many windows
    at once later (at flush): the conversion is some 25 tiny ops, cheaper done once for 50 steps."""
    raw = bool(defer and accs and all(a._state is None and len(a._raws) == 1 for a in accs))
    if raw:
        states: torch.Tensor | None = torch.stack([a._raws[0] for a in accs]).to(device)
    else:
        states = _batched_states(accs, device) if accs else torch.zeros(0, N_STATE)
    if states is None:
        states = torch.stack([a.state(device).to(device) for a in accs])
    hist = None
    if "hist" in spec.groups:
        nb = len(spec.hist_edges) + 1
        hist = torch.stack(
            [
                a.hist.to(device)
                if a.hist is not None
                else torch.zeros(nb, dtype=torch.float64, device=device)
                for a in accs
            ]
        )
    fn = None
    if spec.fn_metrics:
        neutral = _fn_neutral(spec.fn_metrics, device)
        fn = torch.stack([a.fn_acc.to(device) if a.fn_acc is not None else neutral for a in accs])
    units = [a.units.to(device) if a.units is not None else None for a in accs]
    return WindowState(states, units, hist, fn, raw=raw)


def finish_states(windows: Sequence[WindowState]) -> None:
    """Convert the raw sums of deferred windows to states, all in one ``raw_to_state``, in place."""
    todo = [w for w in windows if w.raw]
    if not todo:
        return
    states = raw_to_state(torch.stack([w.states for w in todo]))  # (P, S, N_STATE)
    for w, st in zip(todo, states):
        w.states, w.raw = st, False


def _fn_neutral(fn_metrics: Sequence[Metric], device: torch.device | None) -> torch.Tensor:
    rows = []
    for m in fn_metrics:
        v = 0.0 if m.reduce in ("mean", "sum") else (-math.inf if m.reduce == "max" else math.inf)
        rows.append([v, 0.0])
    return torch.tensor(rows, dtype=torch.float64, device=device)


def reduce_across_ranks(ws: WindowState, spec: StatSpec, group: Any = None) -> WindowState:
    """Merge the window states of all ranks. A collective: every rank must call it, in step.

    Two ``all_gather`` calls: the per-slot unit counts (so that ranks agree on the layout), then
    one flat float64 vector per rank holding every slot's state, unit maxima, histogram and
    function-metric accumulators. Every rank ends with the same merged result.
    """
    import torch.distributed as dist

    world = dist.get_world_size(group)
    if world == 1:
        return ws
    dev = ws.states.device
    S = ws.states.shape[0]
    sizes = torch.tensor([0 if u is None else u.numel() for u in ws.units], dtype=torch.int64, device=dev)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes, group=group)
    usize = torch.stack(all_sizes).amax(0).tolist()  # host sync: once per record step, outside hooks
    parts = [ws.states.reshape(-1)]
    for u, n in zip(ws.units, usize):
        buf = torch.zeros(n, dtype=torch.float64, device=dev)
        if u is not None and u.numel():
            buf[: u.numel()] = u.to(torch.float64)
        parts.append(buf)
    if ws.hist is not None:
        parts.append(ws.hist.reshape(-1))
    if ws.fn is not None:
        parts.append(ws.fn.reshape(-1))
    flat = torch.cat(parts)
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat, group=group)
    g = torch.stack(gathered)  # (world, total)
    off = S * N_STATE
    states = merge_states(g[:, :off].reshape(world, S, N_STATE))
    units: list[torch.Tensor | None] = []
    for n in usize:
        units.append(g[:, off : off + n].amax(0).to(torch.float32) if n else None)
        off += n
    hist = None
    if ws.hist is not None:
        nb = ws.hist.shape[1]
        hist = g[:, off : off + S * nb].reshape(world, S, nb).sum(0)
        off += S * nb
    fn = None
    if ws.fn is not None:
        F = ws.fn.shape[1]
        chunk = g[:, off : off + S * F * 2].reshape(world, S, F, 2)
        fn = torch.stack([_fold_fn(spec.fn_metrics, chunk[:, s]) for s in range(S)])
    return WindowState(states, units, hist, fn)


def derive_values(
    states: np.ndarray,
    units: Sequence[np.ndarray | None],
    fn: np.ndarray | None,
    spec: StatSpec,
) -> dict[str, np.ndarray]:
    """Metric name -> values (one per slot) from host copies of a window's statistics."""
    from .functional import Stats

    s = Stats(states, units=units, eps=spec.eps)
    out: dict[str, np.ndarray] = {}
    fi = 0
    for m in spec.metrics:
        if not m.scalar:
            continue
        if m.from_stats is not None:
            out[m.name] = np.asarray(m.from_stats(s), dtype=np.float64).reshape(-1)
        else:
            assert fn is not None
            val, w = fn[:, fi, 0], fn[:, fi, 1]
            with np.errstate(all="ignore"):
                if m.reduce == "mean":
                    out[m.name] = np.where(w > 0, val / w, np.nan)
                else:
                    out[m.name] = np.where(w > 0, val, np.nan)
            fi += 1
    return out


__all__ = [
    "N_RAW",
    "SlotAccumulator",
    "StatSpec",
    "WindowState",
    "collect",
    "derive_values",
    "finish_states",
    "reduce_across_ranks",
]
