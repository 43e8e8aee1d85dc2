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

from .codec import WindowState, layout_of, pack, unpack
from .functional import (
    N_STATE,
    HistBinner,
    Stats,
    empty_state,
    merge_states,
    raw_to_state,
)
from .kernels import BACKENDS, N_RAW, R_C, R_NF, R_S1, R_S2, StatsPass, get_pass, rows_view
from .registry import Metric

# Raw vectors kept before they are folded into one (bounds memory for long windows).
_COMPACT_AT = 64


@dataclass
class StatSpec:
    """What every accumulator of a recorder computes (the union of the metrics' needs)."""

    metrics: list[Metric]
    eps: float = 1e-6
    hist_edges: Sequence[float] = ()
    backend: str = "auto"  # the statistics pass: see layerscope.stats.kernels
    groups: frozenset[str] = field(init=False)
    fn_metrics: list[Metric] = field(init=False)
    # The histogram binning tables, built once and shared by every slot (None without 'hist').
    binner: HistBinner | None = field(init=False, default=None, repr=False, compare=False)
    # The statistics pass (one read of each activation), shared by every slot.
    stats_pass: StatsPass = field(init=False, repr=False, compare=False)
    plain: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        g: set[str] = set()
        for m in self.metrics:
            g |= set(m.needs)
        self.groups = frozenset(g)
        self.fn_metrics = [m for m in self.metrics if m.fn is not None]
        if "hist" in self.groups:
            self.binner = HistBinner(self.hist_edges)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}; choose one of {', '.join(BACKENDS)}")
        self.stats_pass = get_pass(self.groups, self.eps, self.backend, units="units" in self.groups)
        # Only the pass's own statistics (no histogram, unit maxima or function metrics): the hook
        # can hand a plain tensor to the C pass directly.
        self.plain = not (self.binner is not None or self.fn_metrics or "units" in self.groups)


class SlotAccumulator:
    """Statistics of one (layer, site) over the forwards of a record window.

    Two ways in, one state out. Eager forwards append raw vectors (one short device tensor per
    forward; converted in batches at record time); a plain contiguous CPU tensor with no mask,
    sampling, histogram, unit or function metric has its raw vector written by the C pass
    straight into a row of a pool (the same row, bit for bit, with no tensor op in the hook). Forwards traced by ``torch.compile`` (a
    compiled model) fold into fixed device buffers with in-place ops instead, so that nothing
    the compiled graph reads changes between forwards or steps (no recompiles, whatever the
    number of micro-batches). ``sample=k`` keeps every ``rows // k``-th token row only.
    """

    def __init__(self, spec: StatSpec, sample: int | None = None) -> None:
        self.spec = spec
        self.sample = sample
        if "hist" in spec.groups and spec.binner is None:  # a spec whose edges were set after creation
            spec.binner = HistBinner(spec.hist_edges)
        self._graph: _GraphBuffers | None = None
        # Whether this slot carries a reference sum of squares (an update site): fixed, so that
        # every rank's window has the same layout even where a rank fed nothing.
        self.uses_ref = False
        self.reset()

    def prepare_graph(self, device: torch.device) -> None:
        """Allocate the buffers that compiled forwards fold into (done once, before compiling)."""
        if self._graph is None:
            self._graph = _GraphBuffers(self.spec, device)

    def reset(self) -> None:
        self._raws: list[torch.Tensor] = []
        # The C pass's fast path writes raw vectors straight into rows of this buffer (no tensor op
        # in the hook); a buffer is never written again once its rows were handed out as views.
        self._pool: torch.Tensor | None = None
        self._npool = 0
        self._state: torch.Tensor | None = None  # folded raws
        self.units: torch.Tensor | None = None  # (U,) float32 max|x| per unit
        self.hist: torch.Tensor | None = None  # (B,) float64
        self.fn_acc: torch.Tensor | None = None  # (F, 2): value accumulator, weight
        self.ref: torch.Tensor | None = None  # () float64: sum of squares of the reference tensors
        self._n_eager = 0  # host-side count of eager forwards seen (no tensor involved)
        self._graph_seen = False  # a compiled forward folded in (set, never read, by the graph)
        if self._graph is not None:
            self._graph.reset()

    @property
    def n_updates(self) -> int:
        """Forwards seen since the last reset (host-side; compiled forwards count as at least one)."""
        return self._n_eager + int(self._graph_seen)

    # -- in the hook: no host sync below this line ------------------------------------------------
    def update(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, ref: torch.Tensor | None = None
    ) -> None:
        """Fold one activation in. ``mask``: the batch's (B, T) bool token mask, or None.

        ``ref``: the reference tensor ``x`` is measured against (the weights of an update): only
        its sum of squares is kept, and adds up (so ``ratio`` = ||x|| / ||ref|| merges exactly).
        """
        spec = self.spec
        if mask is None and ref is None and self.sample is None and spec.plain and self._update_direct(x):
            return
        self._take_pool()  # raw rows stay in the order of the forwards
        x = x.detach()
        if ref is not None:
            sq = self._sum_sq(ref.detach())
            self.ref = sq if self.ref is None else self.ref + sq
        v, rows = rows_view(x, mask, self.sample)
        raw, u = spec.stats_pass(v, rows)  # one pass over the groups' needs
        h = spec.binner(v, rows) if spec.binner is not None else None
        fn = self._fn_values(x) if spec.fn_metrics else None
        if torch.compiler.is_compiling():
            if self._graph is None:  # a model compiled after the hooks were added: one recompile
                self._graph = _GraphBuffers(spec, raw.device)
            self._graph.fold(raw, u, h, fn, spec)
            self._graph_seen = True  # a store of a constant: no guard, no recompile
            return
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
        if fn is not None:
            self.fn_acc = (
                fn if self.fn_acc is None else _fold_fn(spec.fn_metrics, torch.stack([self.fn_acc, fn]))
            )
        self._n_eager += 1

    def _update_direct(self, x: torch.Tensor) -> bool:
        """The C pass on ``x`` as it is, its raw row written into the pool; False where the
        general path must run (not CPU, not contiguous, empty, float16 ...).

        Inside a training forward every Python-level tensor op is slow (its code and data went
        cold during the layer's kernels): here there is none, only shape checks and the C call,
        which reads the CPU tensor where it lies (no copy, no host sync: it is on the host).
        """
        kernel = self.spec.stats_pass.direct(x)
        if kernel is None:
            return False
        if self._pool is None:
            self._pool = torch.empty(_COMPACT_AT, N_RAW, dtype=torch.float64)
        cols = x.shape[-1] if x.dim() else 1  # rows_view's (rows, last dim), as the general path
        row = self._pool.data_ptr() + self._npool * N_RAW * self._pool.element_size()
        kernel(x.data_ptr(), x.numel() // cols, cols, cols, None, 0, self.spec.eps, row, None)
        self._npool += 1
        self._n_eager += 1
        if self._npool == _COMPACT_AT:
            self._compact()
        return True

    def _sum_sq(self, t: torch.Tensor) -> torch.Tensor:
        """``sum(t**2)`` as a float64 device scalar (finite entries). From the statistics pass's own
        sums where it takes the moments: ``S2 + c (2 S1 + n c)`` of the shifted sums, one read of
        ``t`` at the pass's precision (float32 partial sums over 512 elements, float64 beyond)
        instead of a float64 copy of it."""
        if "moments" not in self.spec.groups or t.numel() == 0 or t.is_complex():
            return t.double().square().sum()
        v = t.reshape(1, -1) if t.dim() != 2 else t
        raw, _ = get_pass(self.spec.groups, self.spec.eps, self.spec.backend)(v, None)  # no units
        c = raw[R_C]
        return raw[R_S2] + c * (2.0 * raw[R_S1] + raw[R_NF] * c)

    def _fn_values(self, x: torch.Tensor) -> torch.Tensor:
        """Function metrics of ``x``: (F, 2) = (value accumulator, weight); they see the whole tensor."""
        vals = []
        w = float(x.numel())
        for m in self.spec.fn_metrics:
            v = m.fn(x).to(torch.float64).reshape(())  # type: ignore[misc]
            vals.append(
                torch.stack([v * w, torch.full_like(v, w)])
                if m.reduce == "mean"
                else torch.stack([v, torch.ones_like(v)])
            )
        return torch.stack(vals)

    def _take_pool(self) -> None:
        """Hand the fast path's rows to ``_raws`` (views), and start a fresh buffer next time."""
        if self._npool:
            assert self._pool is not None
            self._raws.extend(self._pool[: self._npool].unbind(0))
            self._pool, self._npool = None, 0

    def _compact(self) -> None:
        self._take_pool()
        if not self._raws:
            return
        states = raw_to_state(torch.stack(self._raws))
        if self._state is not None:
            states = torch.cat([self._state[None], states])
        self._state = merge_states(states)
        self._raws = []

    # -- at record time ------------------------------------------------------------------------
    def state(self, device: torch.device | None = None) -> torch.Tensor:
        """The merged state of everything since the last reset (``empty_state`` when nothing ran)."""
        self._take_pool()
        if self._raws:
            self._compact()
        g = self._graph
        if g is not None:  # a copy: the buffers are reset in place for the next window
            return (
                g.state.clone() if self._state is None else merge_states(torch.stack([self._state, g.state]))
            )
        if self._state is None:
            return empty_state(device)
        return self._state

    def window_units(self) -> torch.Tensor | None:
        g = self._graph
        if g is None or g.units is None:
            return self.units
        if self.units is None or self.units.shape != g.units.shape:
            return (
                g.units.clone() if self.units is None or g.units.numel() >= self.units.numel() else self.units
            )
        return torch.maximum(self.units, g.units)

    def window_hist(self) -> torch.Tensor | None:
        g = self._graph
        if g is None or g.hist is None:
            return self.hist
        return g.hist.clone() if self.hist is None else self.hist + g.hist

    def window_fn(self) -> torch.Tensor | None:
        g = self._graph
        if g is None or g.fn is None:
            return self.fn_acc
        if self.fn_acc is None:
            return g.fn.clone()
        return _fold_fn(self.spec.fn_metrics, torch.stack([self.fn_acc, g.fn]))


class _GraphBuffers:
    """Fixed device buffers that compiled forwards fold into, in place (see SlotAccumulator)."""

    def __init__(self, spec: StatSpec, device: torch.device) -> None:
        self.state = empty_state(device)
        nb = len(spec.hist_edges) + 1
        self.hist = torch.zeros(nb, dtype=torch.float64, device=device) if spec.binner is not None else None
        self.fn = _fn_neutral(spec.fn_metrics, device) if spec.fn_metrics else None
        self._fn0 = None if self.fn is None else self.fn.clone()
        # Unit maxima: the width is known at the first compiled forward; zeros are neutral for a max,
        # and a slot that saw no element reports no dead units (derive checks the count).
        self.units: torch.Tensor | None = None

    def reset(self) -> None:
        self.state.copy_(empty_state(self.state.device))
        if self.hist is not None:
            self.hist.zero_()
        if self.fn is not None and self._fn0 is not None:
            self.fn.copy_(self._fn0)
        if self.units is not None:
            self.units.zero_()

    def fold(
        self,
        raw: torch.Tensor,
        u: torch.Tensor | None,
        h: torch.Tensor | None,
        fn: torch.Tensor | None,
        spec: StatSpec,
    ) -> None:
        self.state.copy_(merge_states(torch.stack([self.state, raw_to_state(raw).to(self.state.device)])))
        if u is not None:
            if self.units is None or self.units.shape != u.shape:
                self.units = u.clone()
            else:
                self.units.copy_(torch.maximum(self.units, u))
        if h is not None and self.hist is not None:
            self.hist.add_(h)
        if fn is not None and self.fn is not None:
            self.fn.copy_(_fold_fn(spec.fn_metrics, torch.stack([self.fn, fn])))


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


def _batched_states(accs: Sequence[SlotAccumulator], device: torch.device | None) -> torch.Tensor | None:
    """The states of all slots in one ``raw_to_state`` (+ one merge) when every slot saw the same
    number of forwards and nothing was folded yet (the usual record step); else None.

    Per slot, that is a stack, a ``raw_to_state`` and a clone or merge of some 25 tiny ops: at a
    dozen slots or more, most of a record step's cost. Together it is the same arithmetic, once.
    """
    for a in accs:
        a._take_pool()
    k = len(accs[0]._raws)
    if k == 0 or any(a._state is not None or a._graph is not None or len(a._raws) != k for a in accs):
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
    for a in accs:
        a._take_pool()
    raw = bool(
        defer and accs and all(a._state is None and a._graph is None and len(a._raws) == 1 for a in accs)
    )
    if raw:
        states: torch.Tensor | None = torch.stack([a._raws[0] for a in accs]).to(device)
    else:
        states = _batched_states(accs, device) if accs else torch.zeros(0, N_STATE)
    if states is None:
        states = torch.stack([a.state(device).to(device) for a in accs])
    hist = None
    if "hist" in spec.groups:
        nb = len(spec.hist_edges) + 1
        hists = [a.window_hist() for a in accs]
        hist = torch.stack(
            [
                h.to(device) if h is not None else torch.zeros(nb, dtype=torch.float64, device=device)
                for h in hists
            ]
        )
    fn = None
    if spec.fn_metrics:
        neutral = _fn_neutral(spec.fn_metrics, device)
        fns = [a.window_fn() for a in accs]
        fn = torch.stack([f.to(device) if f is not None else neutral for f in fns])
    units = [u.to(device) if u is not None else None for u in (a.window_units() for a in accs)]
    ref = None
    if any(a.uses_ref or a.ref is not None for a in accs):
        zero = torch.zeros((), dtype=torch.float64, device=device)
        ref = torch.stack([a.ref.to(device) if a.ref is not None else zero for a in accs])
    return WindowState(states, units, hist, fn, raw=raw, ref=ref)


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
    sizes = torch.tensor([0 if u is None else u.numel() for u in ws.units], dtype=torch.int64, device=dev)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes, group=group)
    usize = torch.stack(all_sizes).amax(0).tolist()  # host sync: once per record step, outside hooks
    layout = layout_of(ws, usize)  # every rank: the same widths, so the same layout
    flat = pack(ws, layout)
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat, group=group)
    p = unpack(torch.stack(gathered), layout)  # views with a leading (world,) dim
    units = [u.amax(0).to(torch.float32) if u is not None else None for u in p.units]
    hist = p.hist.sum(0) if p.hist is not None else None
    fn = None
    if p.fn is not None:
        fn = torch.stack([_fold_fn(spec.fn_metrics, p.fn[:, s]) for s in range(p.fn.shape[1])])
    ref = p.ref.sum(0) if p.ref is not None else None
    return WindowState(merge_states(p.states), units, hist, fn, ref=ref)


def derive_values(
    states: np.ndarray,
    units: Sequence[np.ndarray | None],
    fn: np.ndarray | None,
    spec: StatSpec,
    ref: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Metric name -> values (one per slot) from host copies of a window's statistics."""
    s = Stats(states, units=units, eps=spec.eps, ref_sq=ref)
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
