"""The statistics pass: one activation tensor -> the raw sums of every requested group.

One definition of the arithmetic (:func:`torch_raw`), run by one of three backends:

``native``   CPU: the same arithmetic as one C loop (:mod:`layerscope.stats.native`), one read of
             the tensor, ~5 us per call. The CPU default where a C compiler works.
``compile``  :func:`torch_raw` through ``torch.compile`` (inductor: one fused kernel per pass;
             Triton on CUDA). Compiled once per (groups, eps, units) with dynamic shapes, so new
             batch shapes do not recompile; the CUDA default.
``eager``    :func:`eager_raw`: the same arithmetic op by op (a few passes, buffers reused). The
             fallback where neither of the others can run.

Inside a model that is itself being compiled, the pass is :func:`torch_raw` traced into the
model's graph (inductor fuses it with the layer that produced the activation).

**Shift and scale.** Power sums are taken of ``d = (x - c) * 2**-k``. ``c`` is the mean of a fixed
sample of the tensor (32 rows x 32 columns spread evenly, finite entries of counted rows), rounded to
the tensor's float type: near the data, ``x - c`` is exact (Sterbenz), so data with a large offset
(mean 1e4, std 1e-2) keeps its precision, and the sample costs no extra pass. ``2**-k`` is the
power of two nearest below the sample's largest ``|x - c|``: multiplying by it is exact, and it
keeps ``d**4`` inside float32's range for activations of any magnitude (|x| ~ 1e18 and beyond);
float32 would overflow ``sum x**4`` at |x| ~ 1e8 over 8M elements. Only an element more than
~2**31 times the sample's largest deviation overflows its fourth power. The float64 raw vector
holds the unscaled sums (dividing by a power of two is exact).

No host sync anywhere here: every value stays a device tensor; Python branches only on shapes,
dtypes and the groups.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

from . import native

log = logging.getLogger("layerscope")
_warned: list[bool] = []  # the no-compiler warning, once per process

BACKENDS = ("auto", "native", "compile", "eager")
SAMPLE = 32  # the pilot sample: 32 rows x 32 columns, evenly spread (repeats when fewer)

# -- the raw layout (what a pass produces): counts first, then float sums (the C pass writes it too)
R_N, R_NF, R_NZERO, R_NPOS, R_NNAN, R_NPINF = range(6)  # counts
R_C, R_S1, R_S2, R_S3, R_S4, R_MIN, R_MAX, R_MAXABS, R_SABS = range(6, 15)  # shift, sums, extremes
N_RAW = 15

_Raw = tuple[torch.Tensor, torch.Tensor | None]


def _count(m: torch.Tensor) -> torch.Tensor:
    """Exact count of a boolean (rows, cols): int32 per row (cols < 2**31), int64 in total."""
    return m.sum(1, dtype=torch.int32).sum(dtype=torch.int64)


def torch_raw(
    v: torch.Tensor,
    mask: torch.Tensor | None,
    groups: frozenset[str],
    eps: float,
    units: bool,
) -> _Raw:
    """Raw sums of ``v`` (rows, cols) over the rows where ``mask`` (rows,) is True (all if None).

    Returns the float64 raw vector (layout ``functional.R_*``) and, with ``units``, the max |x|
    of each column over counted rows (float32). Sums are per row in the tensor's float type and
    across rows in float64. The reference arithmetic of every backend.
    """
    x = v if v.dtype in (torch.float32, torch.float64) else v.float()
    rows, cols = x.shape
    fdt = x.dtype
    inf = math.inf
    c, scale = _pilot(x, mask)  # shift and scale from a strided sample (a few thousand elements)
    # -- the pass: every reduction below reads x once (fused by inductor; the C pass is one loop)
    valid = (x - x) == 0
    if mask is not None:
        valid = valid & mask.unsqueeze(1)
    zero_i = torch.zeros((), dtype=torch.int64, device=x.device)
    zero_f = torch.zeros((), dtype=torch.float64, device=x.device)
    nf = _count(valid)
    nzero = npos = nnan = npinf = zero_i
    s1 = s2 = s3 = s4 = sabs = zero_f
    mn = torch.full((), inf, dtype=fdt, device=x.device)
    mx = torch.full((), -inf, dtype=fdt, device=x.device)
    maxabs = torch.zeros((), dtype=fdt, device=x.device)
    sc = scale.double()
    if "moments" in groups:
        d = torch.where(valid, (x - c) * scale, 0.0)
        d2 = d * d
        s1 = d.sum(1).double().sum() / sc
        s2 = d2.sum(1).double().sum() / (sc * sc)
        if "moments4" in groups:
            s3 = (d2 * d).sum(1).double().sum() / (sc * sc * sc)
            s4 = (d2 * d2).sum(1).double().sum() / (sc * sc * sc * sc)
    a = torch.where(valid, x.abs(), 0.0)
    if "abs" in groups:
        maxabs = a.amax(1).amax()
        sabs = a.sum(1).double().sum()
    if "minmax" in groups:
        mn = torch.where(valid, x, inf).amin(1).amin()
        mx = torch.where(valid, x, -inf).amax(1).amax()
    if "zero" in groups:
        nzero = _count(valid & (a <= eps))
    if "pos" in groups:
        npos = _count(valid & (x > 0))
    if "nonfinite" in groups:
        isnan, ispinf = x != x, x == inf
        if mask is not None:
            isnan, ispinf = isnan & mask.unsqueeze(1), ispinf & mask.unsqueeze(1)
        nnan, npinf = _count(isnan), _count(ispinf)
    n = (mask.sum(dtype=torch.int64) if mask is not None else zero_i + rows) * cols
    counts = torch.stack([n, nf, nzero, npos, nnan, npinf]).double()
    floats = torch.stack([c.double(), s1, s2, s3, s4, mn.double(), mx.double(), maxabs.double(), sabs])
    raw = torch.cat([counts, floats])
    u = a.amax(0).float() if units else None
    return raw, u


def eager_raw(
    v: torch.Tensor,
    mask: torch.Tensor | None,
    groups: frozenset[str],
    eps: float,
    units: bool,
) -> _Raw:
    """:func:`torch_raw`'s arithmetic, written for op-by-op execution: few full-size buffers,
    reused in place, and whole-tensor reductions (each op is a pass over memory when nothing
    fuses them). The same shift and scale, so results agree with the other backends to rounding;
    counts and extremes exactly."""
    x = v if v.dtype in (torch.float32, torch.float64) else v.float()
    rows, cols = x.shape
    dev, fdt = x.device, x.dtype
    c, scale = _pilot(x, mask)
    if mask is not None:  # rows left out become NaN: not finite, so out of every sum and extreme
        x = torch.where(mask.unsqueeze(1), x, math.nan)
    flat = x.reshape(-1)
    n_rows = mask.sum(dtype=torch.int64) if mask is not None else torch.full((), rows, device=dev)
    n = n_rows * cols
    masked_out = (rows - n_rows) * cols  # all NaN now; not counted as NaN
    # buf: 1.0 where x is not finite (x - x is NaN there), else 0.0 -- counts as float sums,
    # exact up to 2**24 elements (float32) or 2**53 (float64); int64 beyond.
    buf = (flat - flat).nan_to_num_(nan=1.0)
    big = fdt == torch.float32 and flat.numel() > (1 << 24)
    nonfinite = torch.count_nonzero(buf) if big else buf.sum(dtype=fdt)
    nf = n - (nonfinite - masked_out)
    zero_i = torch.zeros((), dtype=torch.float64, device=dev)
    nzero = npos = nnan = npinf = zero_i
    s1 = s2 = s3 = s4 = sabs = zero_i
    mn = torch.full((), math.inf, dtype=fdt, device=dev)
    mx = torch.full((), -math.inf, dtype=fdt, device=dev)
    maxabs = torch.zeros((), dtype=fdt, device=dev)
    xz = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
    if "nonfinite" in groups:
        nnan = torch.count_nonzero(torch.isnan(flat)) - masked_out
        npinf = torch.count_nonzero(flat == math.inf)
    if "minmax" in groups:
        fin = buf == 0
        mn = torch.where(fin, flat, math.inf).amin()
        mx = torch.where(fin, flat, -math.inf).amax()
    if "pos" in groups:
        npos = torch.count_nonzero(torch.relu(xz))
    u = None
    if "abs" in groups or "zero" in groups or units:
        a = xz.abs_()  # signed xz is not needed below
        if "zero" in groups:
            nzero = n - torch.count_nonzero(torch.relu(a - eps)) - (nonfinite - masked_out)
        if "abs" in groups:
            maxabs = a.amax()
            sabs = a.sum().double()
        if units:
            u = a.view(-1, cols).amax(0).float()
    if "moments" in groups:
        d = torch.sub(flat, c, out=buf).mul_(scale).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        d2 = d * d
        sc = scale.double()
        s1 = d.sum().double() / sc
        s2 = d2.sum().double() / (sc * sc)
        if "moments4" in groups:
            s3 = (d2 * d).sum().double() / (sc * sc * sc)
            s4 = d2.mul_(d2).sum().double() / (sc * sc * sc * sc)
    parts = [n, nf, nzero, npos, nnan, npinf]
    counts = torch.stack([p.to(torch.float64) for p in parts])
    floats = torch.stack([t.to(torch.float64) for t in (c, s1, s2, s3, s4, mn, mx, maxabs, sabs)])
    return torch.cat([counts, floats]), u


_sample_idx: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _sample_index(rows: Any, cols: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``k * rows // 32`` and columns ``k * cols // 32`` (k = 0..31) of the pilot sample.

    Index tensors, not a strided slice: a slice's step would make a compiled pass guard on the
    tensor's size (step 1 or not); these are the same ops for every shape. Cached when eager.
    """
    if torch.compiler.is_compiling():
        k = torch.arange(SAMPLE, device=device)
        return (k * rows) // SAMPLE, (k * cols) // SAMPLE
    key = (int(rows), int(cols), device)
    got = _sample_idx.get(key)
    if got is None:
        if len(_sample_idx) > 256:
            _sample_idx.clear()
        k = torch.arange(SAMPLE, device=device)
        got = _sample_idx[key] = ((k * rows) // SAMPLE, (k * cols) // SAMPLE)
    return got


def _pilot(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift and scale of every backend, from the same 32 x 32 sample of rows and columns."""
    rows, cols = x.shape
    ri, ci = _sample_index(rows, cols, x.device)
    s = x.index_select(0, ri).index_select(1, ci)
    fin_s = (s - s) == 0
    if mask is not None:
        fin_s = fin_s & mask.index_select(0, ri).unsqueeze(1)
    c = (torch.where(fin_s, s, 0.0).sum(dtype=torch.float64) / fin_s.sum().clamp(min=1)).to(x.dtype)
    dev = torch.where(fin_s, (s - c).abs(), 0.0).amax()
    ok = (dev > 0) & ((dev - dev) == 0)
    return c, torch.exp2(-torch.floor(torch.log2(torch.where(ok, dev, 1.0))))


def empty_raw(cols: int, device: torch.device, units: bool) -> _Raw:
    """The raw vector of no data (zero elements), without touching the device's values."""
    raw = torch.zeros(N_RAW, dtype=torch.float64, device=device)
    raw[R_MIN], raw[R_MAX] = math.inf, -math.inf  # neutral extremes (a device write, no sync)
    return raw, (torch.zeros(cols, dtype=torch.float32, device=device) if units else None)


def mask_rows(shape: tuple[int, ...] | torch.Size, mask: torch.Tensor) -> torch.Tensor | None:
    """The token mask ``(B, T)`` as a mask of the rows of ``x.reshape(-1, shape[-1])``, or None
    where ``x``'s shape does not start with the tokens.

    Activations ``(B, T, ..., C)`` (the usual layout; middle dims repeat the token's entry) and
    flattened tokens ``(B * T, C)`` (mixture-of-experts MLPs) fit. Shape logic only: no sync.
    """
    if mask.dim() != 2 or len(shape) < 2:
        return None
    B, T = mask.shape
    if len(shape) >= 3 and shape[0] == B and shape[1] == T:
        k = 1
        for d in shape[2:-1]:
            k *= d
        flat = mask.reshape(-1)
        return flat if k == 1 else flat.unsqueeze(1).expand(B * T, k).reshape(-1)
    if len(shape) == 2 and shape[0] == B * T and B * T != 0:
        return mask.reshape(-1)
    return None


def rows_view(
    x: torch.Tensor, mask: torch.Tensor | None, sample: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x`` as (rows, last dim) (a view when contiguous), the rows ``mask`` counts, and, with
    ``sample=k``, every ``rows // k``-th row only (token positions spread over the batch)."""
    v = x.reshape(1, 1) if x.dim() == 0 else x.reshape(1, -1) if x.dim() == 1 else x.reshape(-1, x.shape[-1])
    m = mask_rows(x.shape, mask) if mask is not None else None
    if sample is not None and v.shape[0] > sample:
        step = v.shape[0] // sample
        v = v[::step]
        if m is not None:
            m = m[::step]
    return v, m


class _Compiled:
    """``torch_raw`` compiled for one (groups, eps, units): its own code object, so that its
    dynamo cache (dtypes, masked or not) never shares the per-function recompile limit with
    another pass; dynamic shapes, so batch and sequence lengths do not recompile."""

    def __init__(self, groups: frozenset[str], eps: float, units: bool) -> None:
        def stats_pass(v: torch.Tensor, mask: torch.Tensor | None) -> _Raw:
            return torch_raw(v, mask, groups, eps, units)

        tag = "_".join(sorted(groups)) + ("_units" if units else "")
        stats_pass.__code__ = stats_pass.__code__.replace(co_name=f"stats_pass_{tag}")
        self.fn: Callable[..., _Raw] = torch.compile(stats_pass, dynamic=True, fullgraph=True)
        self.failed = False


class StatsPass:
    """The statistics pass of one recorder: ``pass_(x2d, mask) -> (raw, units)``.

    Picks a backend per device (``backend="auto"``: native C on CPU, ``torch.compile`` on CUDA,
    eager where those cannot run), and falls back to eager, once and with one log line, if a
    compiled or native kernel cannot be built.
    """

    _compile_lock = threading.Lock()

    def __init__(self, groups: frozenset[str], eps: float, backend: str = "auto", units: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"stats backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.groups = frozenset(g for g in groups if g not in ("hist", "units"))
        self.units = units
        self.eps = float(eps)
        self.backend = backend
        self._native: dict[torch.dtype, Callable[..., Any]] | bool | None = False  # False: not tried
        self._compiled: _Compiled | None = None
        self.used: set[str] = set()  # backends that ran, for the run config and tests

    def resolve(self, device: torch.device) -> str:
        """The backend that runs for tensors on ``device``."""
        b = self.backend
        if b == "auto":
            b = "native" if device.type == "cpu" else "compile"
        if b == "native":
            if device.type != "cpu":
                return "compile"
            if self._native is False:
                self._native = native.kernels(self.groups)
                if self._native is None and not _warned:
                    _warned.append(True)
                    warnings.warn(
                        f"layerscope: the C statistics pass could not be built ({native.build_error()}); "
                        "recording uses the slower torch path. Install gcc or clang (or set $CC), or pass "
                        "stats_backend='eager' to choose it.",
                        stacklevel=2,
                    )
            return "native" if self._native else "eager"
        if b == "compile" and self._compiled is not None and self._compiled.failed:
            return "eager"
        return b

    def __call__(self, v: torch.Tensor, mask: torch.Tensor | None) -> _Raw:
        """``v``: (rows, cols), any float dtype; ``mask``: (rows,) bool or None. No host sync."""
        rows, cols = v.shape
        if rows == 0 or cols == 0:
            return empty_raw(cols, v.device, self.units)
        if torch.compiler.is_compiling():  # inside the user's compiled model: part of its graph
            return torch_raw(v, mask, self.groups, self.eps, self.units)
        backend = self.resolve(v.device)
        if backend == "native":
            assert isinstance(self._native, dict)
            fn = self._native.get(v.dtype)
            if fn is None:  # float16 and the like: upcast once, then the same loop
                v, fn = v.float(), self._native[torch.float32]
            if v.stride(1) != 1:
                v = v.contiguous()
            if mask is not None and mask.dtype != torch.bool:
                mask = mask != 0
            self.used.add("native")
            return native.native_raw(fn, v, mask, self.eps, self.units)
        if backend == "compile":
            out = self._run_compiled(v, mask)
            if out is not None:
                self.used.add("compile")
                return out
        self.used.add("eager")
        return eager_raw(v, mask, self.groups, self.eps, self.units)

    def _run_compiled(self, v: torch.Tensor, mask: torch.Tensor | None) -> _Raw | None:
        if self._compiled is None:
            self._compiled = _Compiled(self.groups, self.eps, self.units)
        c = self._compiled
        if c.failed:
            return None
        try:
            # No duck sizing: a first tensor with rows == cols must not tie the two sizes together
            # (a recompile at the next shape). Read only while tracing; costs nothing afterwards.
            with self._compile_lock, _no_duck_shapes():  # one compilation at a time
                return c.fn(v, mask)
        except Exception as e:  # noqa: BLE001 - any compiler failure: the eager path computes the same
            c.failed = True
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            log.warning("layerscope: torch.compile of the statistics pass failed (%s); using eager", first)
            return None


def _no_duck_shapes() -> Any:
    try:
        from torch.fx.experimental import _config as fx_config

        if hasattr(fx_config, "use_duck_shape"):
            return fx_config.patch(use_duck_shape=False)  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older torch
        pass
    return contextlib.nullcontext()


_passes: dict[tuple[frozenset[str], float, str, bool], StatsPass] = {}


def get_pass(groups: frozenset[str], eps: float, backend: str = "auto", units: bool = False) -> StatsPass:
    """The shared :class:`StatsPass` of a configuration: one compiled or native kernel per process."""
    key = (frozenset(g for g in groups if g not in ("hist", "units")), float(eps), backend, units)
    p = _passes.get(key)
    if p is None:
        p = _passes[key] = StatsPass(key[0], key[1], backend, units)
    return p


__all__ = [
    "BACKENDS",
    "N_RAW",
    "StatsPass",
    "eager_raw",
    "empty_raw",
    "get_pass",
    "mask_rows",
    "rows_view",
    "torch_raw",
]
