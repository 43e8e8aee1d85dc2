"""The CPU statistics pass as one C loop: every requested group in one read of the tensor.

Why C and not ``torch.compile`` on CPU: inductor fuses the pass into one kernel too, but a call
of a compiled function costs ~100 us of Python (guards, AOT wrappers, buffer allocation) and
its float sums go through a cascade helper that keeps the accumulators in memory; a hook runs
once per layer per forward on tensors of ~0.1-10 MB, where that overhead is the whole cost.
This loop is plain C, vectorised by the compiler (``#pragma omp simd`` reductions, AVX2/NEON),
called through ``ctypes`` (~5 us), and exact where it matters: float32 partial sums over blocks
of 512 elements, combined in float64; integer counts; extremes of the data themselves.

The source is compiled once per set of statistic groups (``-DG_MOMENTS`` ...: a pass computes
only what the metrics need) with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``),
into a cache folder (``$LAYERSCOPE_CACHE``, else ``~/.cache/layerscope``), keyed by the source,
the flags and the CPU, so ``-march=native`` code never runs on another machine. Without a
compiler, :func:`available` is False and the caller uses the torch path (same arithmetic).

The shift ``c`` and the power-of-two scale come from a fixed strided sample, exactly as in
:func:`layerscope.stats.kernels.torch_raw` (see there for why).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# Statistic groups -> compile-time switches of the C source. "units" is a run-time argument.
_FLAGS = {
    "moments": "G_MOMENTS",
    "moments4": "G_M4",
    "abs": "G_ABS",
    "minmax": "G_MINMAX",
    "zero": "G_ZERO",
    "pos": "G_POS",
    "nonfinite": "G_NONFINITE",
}

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

/* Raw layout (functional.R_*): n nf nzero npos nnan npinf | c s1 s2 s3 s4 min max maxabs sabs */
#define BLK 512
#define SAMPLE 32

static inline float ld_f32(const float* p, int64_t j) { return p[j]; }
static inline double ld_f64(const double* p, int64_t j) { return p[j]; }
static inline float ld_bf16(const uint16_t* p, int64_t j) {
    uint32_t u = ((uint32_t)p[j]) << 16; float f; memcpy(&f, &u, 4); return f;
}
/* x where k is 1, +0.0 where k is 0, by a bit mask (a NaN or inf x is dropped, not multiplied). */
static inline float keep_f(float x, int k) {
    uint32_t u; memcpy(&u, &x, 4); u &= (uint32_t)(-k); memcpy(&x, &u, 4); return x;
}
static inline double keep_d(double x, int k) {
    uint64_t u; memcpy(&u, &x, 8); u &= (uint64_t)(-(int64_t)k); memcpy(&x, &u, 8); return x;
}

#define KERNEL(NAME, TIN, T, LOAD, INF, ABS, KEEP)                                                          \
static inline __attribute__((always_inline)) void NAME##_pass(                                   \
    const TIN* x, int64_t R, int64_t C, int64_t rs, const uint8_t* m, int64_t ms,              \
    T c, T scale, T eps, double* out, float* units, const int U) {                              \
    double S1 = 0, S2 = 0, S3 = 0, S4 = 0, SA = 0;                                               \
    int64_t NV = 0, NF = 0, NZ = 0, NP = 0, NN = 0, NI = 0;                                      \
    T MN = INF, MX = -INF, MA = 0;                                                               \
    (void)eps; (void)scale; (void)c;                                                             \
    for (int64_t i = 0; i < R;) {                                                                \
        if (m && !m[i * ms]) { i++; continue; }                                                  \
        /* A run of counted rows that lie back to back is one segment: blocks of BLK elements */ \
        /* across row ends (narrow rows would otherwise pay a reduction each). Not with units, */ \
        /* whose index is the column. */                                                         \
        int64_t end = i + 1;                                                                     \
        if (!U && rs == C) { while (end < R && (!m || m[end * ms])) end++; }                     \
        NV += end - i;                                                                           \
        const TIN* row = x + i * rs;                                                             \
        const int64_t len = (end - i) * C;                                                       \
        i = end;                                                                                 \
        for (int64_t b = 0; b < len; b += BLK) {                                                 \
            const int64_t e = b + BLK < len ? b + BLK : len;                                     \
            T s1 = 0, s2 = 0, s3 = 0, s4 = 0, sa = 0, mn = INF, mx = -INF, ma = 0;               \
            int32_t nf = 0, nz = 0, np = 0, nn = 0, ni = 0;                                      \
            _Pragma("omp simd reduction(+:s1,s2,s3,s4,sa,nf,nz,np,nn,ni) reduction(min:mn) reduction(max:mx,ma)") \
            for (int64_t j = b; j < e; j++) {                                                    \
                const T v = LOAD(row, j);                                                        \
                const int fin = (v - v) == 0;                                                    \
                nf += fin;                                                                       \
                if (G_MOMENTS) {                                                                 \
                    const T d = KEEP((v - c) * scale, fin);                                      \
                    const T d2 = d * d;                                                          \
                    s1 += d; s2 += d2;                                                           \
                    if (G_M4) { s3 += d2 * d; s4 += d2 * d2; }                                   \
                }                                                                                \
                const T a = KEEP(ABS(v), fin);                                                   \
                if (G_ABS) { sa += a; ma = a > ma ? a : ma; }                                    \
                if (G_MINMAX) {                                                                  \
                    const T lo = fin ? v : INF, hi = fin ? v : -INF;                             \
                    mn = lo < mn ? lo : mn; mx = hi > mx ? hi : mx;                              \
                }                                                                                \
                if (G_ZERO) nz += fin & (a <= eps);                                              \
                if (G_POS) np += fin & (v > 0);                                                  \
                if (G_NONFINITE) { nn += (v != v); ni += (v == INF); }                           \
                if (U) { const float u = units[j]; units[j] = (float)a > u ? (float)a : u; }     \
            }                                                                                    \
            S1 += s1; S2 += s2; S3 += s3; S4 += s4; SA += sa;                                    \
            NF += nf; NZ += nz; NP += np; NN += nn; NI += ni;                                    \
            MN = mn < MN ? mn : MN; MX = mx > MX ? mx : MX; MA = ma > MA ? ma : MA;              \
        }                                                                                        \
    }                                                                                            \
    const double sc = (double)scale;                                                             \
    out[0] = (double)NV * (double)C; out[1] = (double)NF; out[2] = (double)NZ;                   \
    out[3] = (double)NP; out[4] = (double)NN; out[5] = (double)NI;                               \
    out[6] = (double)c;                                                                          \
    /* Dividing by powers of two is exact in float64: the scaled sums are the true sums. */      \
    out[7] = S1 / sc; out[8] = S2 / (sc * sc); out[9] = S3 / (sc * sc * sc);                     \
    out[10] = S4 / (sc * sc * sc * sc);                                                          \
    out[11] = (double)MN; out[12] = (double)MX; out[13] = (double)MA; out[14] = SA;              \
}                                                                                                \
/* The shift c (mean of a 32 x 32 sample, rounded to T: x - c is exact near c) and a power of */ \
/* two near the sample's largest |x - c|, so that the powers stay inside T's range. */           \
static void NAME##_pilot(const TIN* x, int64_t R, int64_t C, int64_t rs, const uint8_t* m,      \
                         int64_t ms, T* c_out, T* scale_out) {                                   \
    double sum = 0; int64_t cnt = 0;                                                             \
    for (int64_t a = 0; a < SAMPLE; a++) {                                                       \
        const int64_t i = a * R / SAMPLE;                                                        \
        if (m && !m[i * ms]) continue;                                                           \
        for (int64_t b = 0; b < SAMPLE; b++) {                                                   \
            const T v = LOAD(x + i * rs, b * C / SAMPLE);                                        \
            if ((v - v) == 0) { sum += v; cnt++; }                                               \
        }                                                                                        \
    }                                                                                            \
    const T c = cnt ? (T)(sum / (double)cnt) : (T)0;                                             \
    T dev = 0;                                                                                   \
    for (int64_t a = 0; a < SAMPLE; a++) {                                                       \
        const int64_t i = a * R / SAMPLE;                                                        \
        if (m && !m[i * ms]) continue;                                                           \
        for (int64_t b = 0; b < SAMPLE; b++) {                                                   \
            const T v = LOAD(x + i * rs, b * C / SAMPLE);                                        \
            if ((v - v) == 0) { const T d = v > c ? v - c : c - v; dev = d > dev ? d : dev; }    \
        }                                                                                        \
    }                                                                                            \
    int ex = 0;                                                                                  \
    if (dev > 0 && dev - dev == 0) { frexp((double)dev, &ex); ex -= 1; }                         \
    *c_out = c; *scale_out = (T)ldexp(1.0, -ex);                                                 \
}                                                                                                \
void NAME(const TIN* x, int64_t R, int64_t C, int64_t rs, const uint8_t* m, int64_t ms,         \
          double eps, double* out, float* units) {                                               \
    T c, scale;                                                                                  \
    NAME##_pilot(x, R, C, rs, m, ms, &c, &scale);                                                \
    if (units) { for (int64_t j = 0; j < C; j++) units[j] = 0.0f;                                \
                 NAME##_pass(x, R, C, rs, m, ms, c, scale, (T)eps, out, units, 1); }             \
    else NAME##_pass(x, R, C, rs, m, ms, c, scale, (T)eps, out, 0, 0);                           \
}

KERNEL(ls_raw_f32, float, float, ld_f32, INFINITY, fabsf, keep_f)
KERNEL(ls_raw_f64, double, double, ld_f64, (double)INFINITY, fabs, keep_d)
KERNEL(ls_raw_bf16, uint16_t, float, ld_bf16, INFINITY, fabsf, keep_f)
"""

_ARGTYPES = [
    ctypes.c_void_p,  # x
    ctypes.c_int64,  # rows
    ctypes.c_int64,  # cols
    ctypes.c_int64,  # row stride (elements)
    ctypes.c_void_p,  # row mask (uint8) or NULL
    ctypes.c_int64,  # mask stride
    ctypes.c_double,  # eps
    ctypes.c_void_p,  # out (15 float64)
    ctypes.c_void_p,  # units (cols float32) or NULL
]
_SYMBOLS = {torch.float32: "ls_raw_f32", torch.float64: "ls_raw_f64", torch.bfloat16: "ls_raw_bf16"}
CFLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared")

_lock = threading.Lock()
_libs: dict[frozenset[str], dict[torch.dtype, Callable[..., Any]] | None] = {}
_compiler: list[str | None] = []  # [path] once looked up
_errors: list[str] = []  # why a build failed (first one), for diagnostics


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$LAYERSCOPE_CACHE``, else ``$XDG_CACHE_HOME/layerscope``."""
    env = os.environ.get("LAYERSCOPE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "layerscope"


def _find_compiler() -> str | None:
    if not _compiler:
        cands = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
        _compiler.append(next((p for p in (shutil.which(c) for c in cands if c) if p), None))
    return _compiler[0]


def _cpu_key() -> str:
    """The CPU's identity for ``-march=native``: model name and feature flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    text += line
                if line.strip() == "":
                    break  # the first CPU describes them all
    except OSError:
        pass
    return text


def _build(groups: frozenset[str]) -> Path:
    cc = _find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found: $CC, cc, gcc, clang")
    defines = [f"-D{flag}={int(g in groups)}" for g, flag in sorted(_FLAGS.items())]
    key = hashlib.sha256(
        "\0".join([_SOURCE, cc, *CFLAGS, *defines, _cpu_key(), sys.platform]).encode()
    ).hexdigest()[:20]
    out = cache_dir() / f"stats-{key}.so"
    if out.exists():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:  # a read-only home (some containers): this user's folder in the temp dir
        out = (
            Path(tempfile.gettempdir())
            / f"layerscope-{os.getuid() if hasattr(os, 'getuid') else 0}"
            / out.name
        )
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "stats.c"
        src.write_text(_SOURCE)
        lib = Path(tmp) / "stats.so"
        proc = subprocess.run(
            [cc, *CFLAGS, *defines, str(src), "-o", str(lib), "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {(proc.stderr or proc.stdout).strip()[:300]}")
        os.replace(lib, out)  # atomic: concurrent builders (DDP ranks) each write their own temp file
    return out


def kernels(groups: frozenset[str]) -> dict[torch.dtype, Callable[..., Any]] | None:
    """The C functions for ``groups`` by input dtype, built on first use; None if they cannot be."""
    key = frozenset(g for g in groups if g in _FLAGS)
    with _lock:
        if key in _libs:
            return _libs[key]
        fns: dict[torch.dtype, Callable[..., Any]] | None = None
        try:
            lib = ctypes.CDLL(str(_build(key)))
            fns = {}
            for dtype, sym in _SYMBOLS.items():
                fn = getattr(lib, sym)
                fn.argtypes = _ARGTYPES
                fn.restype = None
                fns[dtype] = fn
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            if not _errors:
                _errors.append(str(e))
            fns = None
        _libs[key] = fns
        return fns


def available() -> bool:
    """Whether the C pass can be built here (a C compiler works)."""
    return kernels(frozenset(_FLAGS)) is not None


def build_error() -> str | None:
    """Why the C pass could not be built, if it could not."""
    return _errors[0] if _errors else None


def native_raw(
    fn: Callable[..., Any],
    v: torch.Tensor,
    mask: torch.Tensor | None,
    eps: float,
    units: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the C pass over ``v`` (rows, cols; rows may be strided, each row contiguous).

    ``mask``: a (rows,) bool tensor (True = counted) or None. Returns the raw vector (float64,
    ``N_RAW``) and, with ``units``, the per-column max |x| over counted rows (float32).
    """
    rows, cols = v.shape
    out = torch.empty(15, dtype=torch.float64)
    u = torch.empty(cols, dtype=torch.float32) if units else None
    if mask is not None:
        m_ptr, m_stride = mask.data_ptr(), mask.stride(0)
    else:
        m_ptr, m_stride = None, 0
    fn(
        v.data_ptr(),
        rows,
        cols,
        v.stride(0),
        m_ptr,
        m_stride,
        eps,
        out.data_ptr(),
        u.data_ptr() if u is not None else None,
    )
    return out, u


__all__ = ["available", "build_error", "cache_dir", "kernels", "native_raw"]
