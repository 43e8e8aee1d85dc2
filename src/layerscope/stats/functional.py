"""Sufficient statistics of activations: computed on the device, merged exactly, derived late.

Three pure steps, as in torchmetrics' ``functional/``:

1. :func:`batch_raw` (the pass of :mod:`~layerscope.stats.kernels`) runs inside a forward hook.
   It reduces one activation tensor to a short vector of *raw* sums (shifted, scaled power sums,
   extremes, counts) in one read, on the tensor's device, with no host sync and no Python
   branching on tensor values. Low-precision inputs are upcast to float32; sums are taken of
   values shifted near the mean and scaled by a power of two, so data with a large offset (mean
   1e4, std 1e-2) keeps its precision and huge activations (1e18) do not overflow.
2. :func:`raw_to_state` and :func:`merge_states` turn any number of raw vectors into one
   *state* ``(n, n_finite, mean, M2, M3, M4, min, max, max|x|, sum|x|, counts...)`` with the
   parallel (Chan/Pébay) formulas, in float64. Merging micro-batches, record windows or ranks is
   exact: the state of a concatenation equals the merge of the states of its parts.
3. :func:`derive` computes the metrics (mean, std, kurtosis, ...) from states in numpy, once per
   flush.

Column layout of a state (``S_*`` indices) is fixed; the state of an empty stream is
:func:`empty_state`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .kernels import (
    R_C,
    R_MAX,
    R_MAXABS,
    R_MIN,
    R_N,
    R_NF,
    R_NNAN,
    R_NPINF,
    R_NPOS,
    R_NZERO,
    R_S1,
    R_S2,
    R_S3,
    R_S4,
    R_SABS,
    get_pass,
    rows_view,
)

# -- state layout ------------------------------------------------------------------------------
S_N, S_NF, S_MEAN, S_M2, S_M3, S_M4, S_MIN, S_MAX, S_MAXABS, S_SABS, S_NZERO, S_NPOS, S_NNAN, S_NPINF = range(
    14
)
N_STATE = 14
STATE_FIELDS = (
    "n",
    "n_finite",
    "mean",
    "m2",
    "m3",
    "m4",
    "min",
    "max",
    "max_abs",
    "sum_abs",
    "n_zero",
    "n_pos",
    "n_nan",
    "n_posinf",
)

# The raw layout (what a hook produces: counts, then float sums) is the pass's: kernels.R_*.

# Stat groups a metric can need; the hook computes only the groups some metric needs.
GROUPS = ("moments", "moments4", "abs", "minmax", "zero", "pos", "nonfinite", "units", "hist")


def default_hist_edges() -> list[float]:
    """Fixed, scale-free histogram edges: 0 and +-10^(k/4) for k = -24..24 (1e-6 .. 1e6).

    Fixed when a run starts and stored with it, so histograms of different steps, windows and
    ranks add up exactly.
    """
    pos = [10.0 ** (k / 4) for k in range(-24, 25)]
    return [-p for p in reversed(pos)] + [0.0] + pos


@torch.no_grad()
def batch_raw(
    x: torch.Tensor,
    groups: frozenset[str] | set[str],
    eps: float = 1e-6,
) -> torch.Tensor:
    """Raw sums of one activation tensor: a float64 vector of length ``N_RAW`` on ``x.device``.

    Runs inside hooks: no ``.item()``, no ``.cpu()``, no branching on values. Groups not in
    ``groups`` are left as neutral values (zeros, +-inf for extremes). The pass itself is
    :class:`layerscope.stats.kernels.StatsPass` (one read of the tensor; see there).

    With ``c`` the shift (the mean of a strided sample, see :mod:`~layerscope.stats.kernels`):
    ``s_k = sum over finite x of (x - c)**k``, ``sum_abs = sum |x|``, ``max_abs = max |x|`` and
    min/max over finite entries; NaN and +-inf are counted apart.
    """
    v, _ = rows_view(x.detach(), None, None)
    return get_pass(frozenset(groups) - {"hist", "units"}, eps)(v, None)[0]


class HistBinner:
    """Exact fixed-edge histogram (:func:`batch_hist`'s counts) by a table lookup, not a search.

    ``bucketize`` runs a binary search per element, slowly (about 1.2 ms per 65k elements on one
    CPU core). Here the bin of a float32 value comes from its bit pattern: the sign, exponent and
    top ``m`` mantissa bits select a slice of the real line that holds at most one edge, so the bin
    is ``base[key] + (x >= edge[key])``, compared against the float32 edges themselves: exactly
    what ``bucketize(x, edges, right=True)`` returns, for every float32 value (the tables are built
    from the same comparisons). ``m`` is the smallest that works (1 for the default edges); edges
    that would need ``m > 6``, repeated float32 edges, or float64 input fall back to ``bucketize``.
    """

    MAX_M = 6

    def __init__(self, edges: Sequence[float]) -> None:
        e32 = np.asarray(list(edges), dtype=np.float32)
        self.nb = len(e32) + 1  # bins (-inf, e0), [e0, e1), ..., [e_last, inf)
        self.edges = e32
        self.shift = self.mask = 0
        self._base: np.ndarray | None = None
        self._thr: np.ndarray | None = None
        if len(e32) and np.all(np.isfinite(e32)) and np.all(np.diff(e32) > 0):
            for m in range(self.MAX_M + 1):
                if self._build(m):
                    break
        self._dev: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _build(self, m: int) -> bool:
        shift = 23 - m
        keys = np.arange(1 << (9 + m), dtype=np.uint32)  # sign (1) + exponent (8) + m mantissa bits
        lo = keys << np.uint32(shift)
        hi = lo | np.uint32((1 << shift) - 1)
        special = ((keys >> np.uint32(m)) & np.uint32(0xFF)) == 0xFF  # inf and NaN
        with np.errstate(invalid="ignore"):
            vlo, vhi = lo.view(np.float32), hi.view(np.float32)
            vmin, vmax = np.minimum(vlo, vhi), np.maximum(vlo, vhi)  # negative keys run backwards
        vmin[special] = vmax[special] = 0.0
        base = np.searchsorted(self.edges, vmin, side="right").astype(np.int64)  # edges <= slice start
        inside = np.searchsorted(self.edges, vmax, side="right") - base  # edges within the slice
        inside[special] = 0
        if inside.max() > 1:
            return False
        thr = np.where(inside == 1, self.edges[np.minimum(base, len(self.edges) - 1)], np.nan).astype(
            np.float32
        )
        base[special] = self.nb  # non-finite -> a dropped extra bin
        self.shift, self.mask, self._base, self._thr = shift, (1 << (9 + m)) - 1, base, thr
        return True

    @property
    def fast(self) -> bool:
        return self._base is not None

    def prepare(self, device: torch.device | str) -> None:
        """Copy the lookup tables to ``device`` now (a host-to-device copy), not in the first hook."""
        self._tables(torch.device(device))

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        t = self._dev.get(device)
        if t is None:
            edges = torch.tensor(self.edges, dtype=torch.float32, device=device)
            one = torch.ones(1, dtype=torch.float64, device=device)
            if self.fast:
                t = (
                    edges,
                    one,
                    torch.from_numpy(self._base).to(device),
                    torch.from_numpy(self._thr).to(device),
                )
            else:
                t = (edges, one)
            self._dev[device] = t
        return t

    def __call__(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Counts (float64, ``nb``) of the finite values of ``x``; no host sync.

        ``rows``: a (x.shape[0],) bool mask of the rows of a 2-D ``x`` to count (padding left out).
        """
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        tables = self._tables(x.device)
        if rows is not None:  # counted rows keep their values; the others become NaN (not counted)
            x = torch.where(rows.unsqueeze(1), x, math.nan)
        x = x.reshape(-1)
        if not self.fast or x.dtype != torch.float32:
            return batch_hist(x, tables[0])
        _, one, base, thr = tables
        key = x.view(torch.int32).bitwise_right_shift(self.shift).bitwise_and_(self.mask)
        idx = base.index_select(0, key)
        idx += x >= thr.index_select(0, key)
        out = torch.zeros(self.nb + 1, dtype=torch.float64, device=x.device)
        out.scatter_add_(0, idx, one.expand(idx.shape[0]))
        return out[: self.nb]


@torch.no_grad()
def batch_units_max(x: torch.Tensor) -> torch.Tensor:
    """Per-unit (last dimension) max |x| over all other dims; non-finite values count as 0."""
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if x.dim() == 0:
        x = x.reshape(1)
    if x.numel() == 0:  # no data: every unit's maximum so far is 0 (shape only, no sync)
        return torch.zeros(x.shape[-1], dtype=torch.float32, device=x.device)
    a = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).abs()
    return a.reshape(-1, a.shape[-1]).amax(dim=0).to(torch.float32)


@torch.no_grad()
def batch_hist(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Counts of finite values in the ``len(edges) + 1`` bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``.

    Fixed output size, built with ``scatter_add_`` (``bincount`` would sync to size its output).
    The reference implementation; the recorder uses :class:`HistBinner`, which gives the same counts.
    """
    x = x.detach().reshape(-1)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    nb = edges.numel() + 1
    idx = torch.bucketize(x, edges.to(x.dtype), right=True)  # 0..len(edges)
    fin = torch.isfinite(x)
    idx = torch.where(fin, idx, torch.full_like(idx, nb))  # non-finite -> a dropped extra bin
    out = torch.zeros(nb + 1, dtype=torch.float64, device=x.device)
    out.scatter_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))
    return out[:nb]


def empty_state(device: torch.device | str | None = None) -> torch.Tensor:
    """The state of no data: the neutral element of :func:`merge_states`."""
    s = torch.zeros(N_STATE, dtype=torch.float64, device=device)
    s[S_MIN] = math.inf
    s[S_MAX] = -math.inf
    return s


def raw_to_state(raw: torch.Tensor) -> torch.Tensor:
    """Convert raw vectors ``(..., N_RAW)`` to states ``(..., N_STATE)`` (shifted sums -> central moments)."""
    raw = raw.to(torch.float64)
    nf = raw[..., R_NF]
    nfs = nf.clamp(min=1.0)
    s1, s2, s3, s4 = raw[..., R_S1], raw[..., R_S2], raw[..., R_S3], raw[..., R_S4]
    delta = s1 / nfs  # mean of the shifted values
    mean = raw[..., R_C] + delta
    m2 = s2 - nf * delta**2
    m3 = s3 - 3 * delta * s2 + 2 * nf * delta**3
    m4 = s4 - 4 * delta * s3 + 6 * delta**2 * s2 - 3 * nf * delta**4
    m2 = m2.clamp(min=0.0)
    m4 = m4.clamp(min=0.0)
    return torch.stack(
        [
            raw[..., R_N],
            nf,
            torch.where(nf > 0, mean, torch.zeros_like(mean)),
            m2,
            m3,
            m4,
            raw[..., R_MIN],
            raw[..., R_MAX],
            raw[..., R_MAXABS],
            raw[..., R_SABS],
            raw[..., R_NZERO],
            raw[..., R_NPOS],
            raw[..., R_NNAN],
            raw[..., R_NPINF],
        ],
        dim=-1,
    )


def merge_states(states: torch.Tensor) -> torch.Tensor:
    """Merge states ``(k, ..., N_STATE)`` along dim 0 into ``(..., N_STATE)``, exactly.

    Uses the k-way form of the Chan/Pébay update: each part's central moments are moved to the
    pooled mean and added, so the result is the state of the concatenated data.
    """
    if states.shape[0] == 1:
        return states[0].clone()
    nf = states[..., S_NF]
    n_tot = nf.sum(0)
    w = nf / n_tot.clamp(min=1.0)
    mean = (w * states[..., S_MEAN]).sum(0)
    d = states[..., S_MEAN] - mean  # (k, ...)
    d = torch.where(nf > 0, d, torch.zeros_like(d))
    m2p, m3p = states[..., S_M2], states[..., S_M3]
    m2 = (m2p + nf * d**2).sum(0)
    m3 = (m3p + 3 * d * m2p + nf * d**3).sum(0)
    m4 = (states[..., S_M4] + 4 * d * m3p + 6 * d**2 * m2p + nf * d**4).sum(0)
    out = states.sum(0)  # counts and sum|x| add
    out[..., S_MEAN] = mean
    out[..., S_M2] = m2
    out[..., S_M3] = m3
    out[..., S_M4] = m4
    out[..., S_MIN] = states[..., S_MIN].amin(0)
    out[..., S_MAX] = states[..., S_MAX].amax(0)
    out[..., S_MAXABS] = states[..., S_MAXABS].amax(0)
    return out


def state_of(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Convenience: the full state of one tensor (all groups)."""
    return raw_to_state(batch_raw(x, frozenset(GROUPS), eps))


class Stats:
    """Read-only numpy view of states ``(..., N_STATE)``, with the standard derived quantities.

    This is what a metric defined "from the same statistics" receives (see
    :func:`layerscope.stats.register_metric`). All derived values are NaN where undefined
    (no finite value, zero variance).
    """

    def __init__(
        self,
        states: np.ndarray,
        units: Sequence[np.ndarray | None] | None = None,
        eps: float = 1e-6,
        extra: dict[str, np.ndarray] | None = None,
        ref_sq: np.ndarray | None = None,
    ) -> None:
        s = np.asarray(states, dtype=np.float64)
        self.raw = s
        self.eps = eps
        self.units = units  # per slot: per-unit max |x| over the window, or None
        self.extra = extra or {}  # function-metric accumulators, by metric name
        self.n = s[..., S_N]
        self.n_finite = s[..., S_NF]
        self.m2 = s[..., S_M2]
        self.m3 = s[..., S_M3]
        self.m4 = s[..., S_M4]
        self.sum_abs = s[..., S_SABS]
        self.n_zero = s[..., S_NZERO]
        self.n_pos = s[..., S_NPOS]
        self.n_nan = s[..., S_NNAN]
        self.n_posinf = s[..., S_NPINF]
        self.n_neginf = self.n - self.n_finite - self.n_nan - self.n_posinf
        # Sum of squares of the finite values (M2 + n * mean^2): what an L2 norm is, merged exactly.
        self.sum_sq = np.where(self.n_finite > 0, self.m2 + self.n_finite * s[..., S_MEAN] ** 2, 0.0)
        # Sum of squares of each slot's reference tensor (the weights an update is measured
        # against); NaN where the slot has none.
        self.ref_sq = (
            np.full(np.shape(self.n), np.nan)
            if ref_sq is None
            else np.asarray(ref_sq, dtype=np.float64).reshape(np.shape(self.n))
        )
        has = self.n_finite > 0
        with np.errstate(all="ignore"):
            self.mean = np.where(has, s[..., S_MEAN], np.nan)
            self.var = np.where(has, self.m2 / self.n_finite, np.nan)
            self.min = np.where(has, s[..., S_MIN], np.nan)
            self.max = np.where(has, s[..., S_MAX], np.nan)
            self.max_abs = np.where(has, s[..., S_MAXABS], np.nan)

    def frac(self, count: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.where(self.n > 0, count / self.n, np.nan)
