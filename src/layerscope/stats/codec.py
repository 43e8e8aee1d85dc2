"""One codec for a record window's statistics: pack into one flat float64 vector, unpack views.

Two places move windows as one flat vector: a flush copies every pending window to the host in
one transfer, and the reduction across ranks gathers one vector per rank. Both use this codec,
so the layout is written once::

    [ states (S x N_STATE) | units of slot 0 | ... | units of slot S-1 | hist (S x B) | fn (S x F x 2) | ref (S) ]

Per-slot unit widths are part of the :class:`Layout`; a slot without units has width 0. ``ref`` (present when some
slot has one) is the sum of squares of each slot's *reference* tensor (the weights an ``update`` is
measured against), which adds across micro-batches, steps and ranks like a count. Unit
maxima are non-negative, so padding a narrower (or missing) unit vector with zeros is neutral
under the max that merges ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .functional import N_STATE


@dataclass
class WindowState:
    """All slots' statistics of one record window, merged (and reduced across ranks)."""

    states: torch.Tensor  # (S, N_STATE) float64; (S, N_RAW) raw sums while ``raw`` is True
    units: list[torch.Tensor | None]  # per slot: max |x| per unit (float32), or None
    hist: torch.Tensor | None  # (S, B) float64
    fn: torch.Tensor | None  # (S, F, 2) float64
    raw: bool = False  # states not converted yet: see accumulator.collect(defer=True)
    ref: torch.Tensor | None = None  # (S,) float64: sum of squares of each slot's reference tensor


@dataclass(frozen=True)
class Layout:
    """Where each part of one window lies in its flat vector."""

    n_slots: int
    units: tuple[int, ...]  # width per slot; 0 = no units
    n_bins: int = 0  # histogram bins per slot; 0 = no histogram
    n_fn: int = 0  # function metrics per slot; 0 = none
    n_ref: int = 0  # 1 when the window carries reference sums of squares (update sites)

    @property
    def size(self) -> int:
        return self.n_slots * (N_STATE + self.n_bins + 2 * self.n_fn + self.n_ref) + sum(self.units)


@dataclass
class Parts:
    """A window's parts as views of a flat vector (numpy or torch, with any leading dims)."""

    states: Any  # (..., S, N_STATE)
    units: list[Any | None]  # per slot: (..., width) or None
    hist: Any | None  # (..., S, B)
    fn: Any | None  # (..., S, F, 2)
    ref: Any | None = None  # (..., S)


def layout_of(ws: WindowState, unit_sizes: Sequence[int] | None = None) -> Layout:
    """The layout of ``ws``; ``unit_sizes`` overrides the widths (ranks agree on the widest)."""
    if ws.raw:
        raise ValueError("convert raw sums to states (finish_states) before packing a window")
    sizes = (
        tuple(int(n) for n in unit_sizes)
        if unit_sizes is not None
        else tuple(0 if u is None else u.numel() for u in ws.units)
    )
    return Layout(
        ws.states.shape[0],
        sizes,
        0 if ws.hist is None else int(ws.hist.shape[1]),
        0 if ws.fn is None else int(ws.fn.shape[1]),
        0 if ws.ref is None else 1,
    )


def pack(ws: WindowState, layout: Layout) -> torch.Tensor:
    """``ws`` as one flat float64 vector on its device, in ``layout`` (units zero-padded)."""
    dev = ws.states.device
    parts = [ws.states.reshape(-1).to(torch.float64)]
    for u, n in zip(ws.units, layout.units):
        if n == 0:
            continue
        if u is not None and u.numel() == n:
            parts.append(u.reshape(-1).to(device=dev, dtype=torch.float64))
        else:
            buf = torch.zeros(n, dtype=torch.float64, device=dev)
            if u is not None and u.numel():
                buf[: u.numel()] = u.reshape(-1).to(torch.float64)
            parts.append(buf)
    if layout.n_bins:
        assert ws.hist is not None
        parts.append(ws.hist.reshape(-1).to(device=dev, dtype=torch.float64))
    if layout.n_fn:
        assert ws.fn is not None
        parts.append(ws.fn.reshape(-1).to(device=dev, dtype=torch.float64))
    if layout.n_ref:
        assert ws.ref is not None
        parts.append(ws.ref.reshape(-1).to(device=dev, dtype=torch.float64))
    return torch.cat(parts)


def unpack(flat: Any, layout: Layout) -> Parts:
    """Views of ``flat`` (..., layout.size), numpy or torch, by part."""
    lead = tuple(flat.shape[:-1])
    S = layout.n_slots
    off = S * N_STATE
    states = flat[..., :off].reshape(*lead, S, N_STATE)
    units: list[Any | None] = []
    for n in layout.units:
        units.append(flat[..., off : off + n] if n else None)
        off += n
    hist = None
    if layout.n_bins:
        hist = flat[..., off : off + S * layout.n_bins].reshape(*lead, S, layout.n_bins)
        off += S * layout.n_bins
    fn = None
    if layout.n_fn:
        fn = flat[..., off : off + S * layout.n_fn * 2].reshape(*lead, S, layout.n_fn, 2)
        off += S * layout.n_fn * 2
    ref = None
    if layout.n_ref:
        ref = flat[..., off : off + S]
        off += S
    assert off == layout.size, (off, layout.size)
    return Parts(states, units, hist, fn, ref)


def pack_many(windows: Sequence[WindowState]) -> tuple[torch.Tensor, list[Layout]]:
    """Several windows in one flat vector (for one device-to-host copy) and their layouts."""
    layouts = [layout_of(w) for w in windows]
    parts = [pack(w, lay) for w, lay in zip(windows, layouts)]
    dev = parts[0].device
    return torch.cat([p.to(dev) for p in parts]), layouts


def unpack_many(flat: np.ndarray, layouts: Sequence[Layout]) -> list[Parts]:
    """The windows of :func:`pack_many`'s vector, after it reached the host."""
    out = []
    off = 0
    for lay in layouts:
        out.append(unpack(flat[off : off + lay.size], lay))
        off += lay.size
    return out


__all__ = ["Layout", "Parts", "WindowState", "layout_of", "pack", "pack_many", "unpack", "unpack_many"]
