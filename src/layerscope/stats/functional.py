"""Sufficient statistics of activations: computed on the device, merged exactly, derived late.

Three pure steps, as in torchmetrics' ``functional/``:

1. :func:`batch_raw` runs inside a forward hook. It reduces one activation tensor to a short
   vector of *raw* sums (shifted power sums, extremes, counts), on the tensor's device, with no
   host sync and no Python branching on tensor values. Low-precision inputs are upcast to float32;
   sums are taken of values shifted by the batch's own mean, so data with a large offset
   (mean 1e4, std 1e-2) keeps its precision (the shifted differences are exact in float32).
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
from typing import Sequence

import numpy as np
import torch

# -- state layout ------------------------------------------------------------------------------
S_N, S_NF, S_MEAN, S_M2, S_M3, S_M4, S_MIN, S_MAX, S_MAXABS, S_SABS, S_NZERO, S_NPOS, S_NNAN, S_NPINF = range(14)
N_STATE = 14
STATE_FIELDS = (
    "n", "n_finite", "mean", "m2", "m3", "m4", "min", "max", "max_abs", "sum_abs",
    "n_zero", "n_pos", "n_nan", "n_posinf",
)

# -- raw layout (what a hook produces): counts first, then float sums -------------------------
R_N, R_NF, R_NZERO, R_NPOS, R_NNAN, R_NPINF = range(6)  # int64 counts
R_C, R_S1, R_S2, R_S3, R_S4, R_MIN, R_MAX, R_MAXABS, R_SABS = range(6, 15)  # floats
N_RAW = 15

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
    ``groups`` are left as neutral values (zeros, +-inf for extremes). Written with float ops and
    ``count_nonzero`` rather than boolean masks, which are several times slower on CPU.
    """
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # bf16/fp16/int: accumulate in float32 or better
    flat = x.reshape(-1)
    n = flat.numel()
    dev = flat.device
    if n == 0:  # an empty activation (n is a Python int: no sync): the neutral raw vector
        raw = torch.zeros(N_RAW, dtype=torch.float64, device=dev)
        raw[R_MIN], raw[R_MAX] = math.inf, -math.inf
        return raw
    xz = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)  # non-finite -> 0
    nonfinite = torch.count_nonzero(flat - flat)  # x - x is NaN exactly where x is not finite
    nf = n - nonfinite
    zero_i = torch.zeros((), dtype=torch.int64, device=dev)
    nzero = npos = nnan = npinf = zero_i
    if "nonfinite" in groups:
        nnan = torch.count_nonzero(torch.isnan(flat))
        npinf = torch.count_nonzero(flat == math.inf)
    if "zero" in groups:
        # |x| > eps counted as non-zero of relu(|x| - eps); non-finite entries (0 in xz) taken out.
        nzero = n - torch.count_nonzero(torch.relu(xz.abs() - eps)) - nonfinite
    if "pos" in groups:
        npos = torch.count_nonzero(torch.relu(xz))
    counts = torch.stack([torch.full((), n, dtype=torch.int64, device=dev), nf, nzero, npos, nnan, npinf])

    zf = torch.zeros((), dtype=flat.dtype, device=dev)
    c = s1 = s2 = s3 = s4 = sabs = maxabs = zf
    mn = torch.full((), math.inf, dtype=flat.dtype, device=dev)
    mx = torch.full((), -math.inf, dtype=flat.dtype, device=dev)
    moments = "moments" in groups or "moments4" in groups
    if moments or "minmax" in groups:
        c = xz.sum() / nf.clamp(min=1)  # shift: the batch mean (rounded); differences are exact
    if moments:
        d = torch.nan_to_num(flat - c, nan=0.0, posinf=0.0, neginf=0.0)
        d2 = d * d
        s1 = d.sum()
        s2 = d2.sum()
        if "moments4" in groups:
            s3 = (d2 * d).sum()
            s4 = (d2 * d2).sum()
    if "minmax" in groups:
        # Non-finite entries replaced by the mean, which lies within [min, max] of the finite ones.
        mn, mx = torch.aminmax(xz + (flat - flat).nan_to_num(nan=1.0) * c)
        # No finite value: keep the neutral extremes.
        mn = torch.where(nf > 0, mn, torch.full_like(mn, math.inf))
        mx = torch.where(nf > 0, mx, torch.full_like(mx, -math.inf))
    if "abs" in groups and n:
        a = xz.abs()
        maxabs = a.amax()
        sabs = a.sum()
    floats = torch.stack([c, s1, s2, s3, s4, mn, mx, maxabs, sabs])
    return torch.cat([counts.to(torch.float64), floats.to(torch.float64)])


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
            raw[..., R_N], nf, torch.where(nf > 0, mean, torch.zeros_like(mean)), m2, m3, m4,
            raw[..., R_MIN], raw[..., R_MAX], raw[..., R_MAXABS], raw[..., R_SABS],
            raw[..., R_NZERO], raw[..., R_NPOS], raw[..., R_NNAN], raw[..., R_NPINF],
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

    def __init__(self, states: np.ndarray, units: Sequence[np.ndarray | None] | None = None,
                 eps: float = 1e-6, extra: dict[str, np.ndarray] | None = None) -> None:
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
