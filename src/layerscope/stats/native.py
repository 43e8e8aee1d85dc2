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
into a cache folder (``$LAYERSCOPE_CACHE``, else ``~/.cache/layerscope``; this user's private
folder in the temp dir when that cannot be written), named by a hash of the source, the compiler,
the flags and the CPU, so ``-march=native`` code never runs on another machine and a library of
another version is never loaded. A compiler that rejects the tuned flags gets portable ones; a
damaged cached file is built again; processes that start together (torchrun ranks) build once,
under a lock. Without a working compiler, or with ``$LAYERSCOPE_NATIVE=0``, :func:`kernels`
returns None and the caller uses the torch path (same arithmetic).

The shift ``c`` and the power-of-two scale come from a fixed strided sample, exactly as in
:func:`layerscope.stats.kernels.torch_raw` (see there for why).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
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
# Tried in order: tuned for this CPU, then plain flags any C compiler takes (an old gcc, a clang
# without -march=native or -fopenmp-simd, an unusual platform): slower loops, the same numbers.
CFLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared")
PORTABLE_CFLAGS = ("-O2", "-fPIC", "-shared")
DISABLE_ENV = "LAYERSCOPE_NATIVE"  # "0": never build or load the C pass (the torch path runs)

_lock = threading.Lock()
_libs: dict[frozenset[str], dict[torch.dtype, Callable[..., Any]] | None] = {}
_compiler: list[list[str] | None] = []  # [argv] once looked up
_errors: list[str] = []  # why a build failed (first one), for diagnostics


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$LAYERSCOPE_CACHE``, else ``$XDG_CACHE_HOME/layerscope``."""
    env = os.environ.get("LAYERSCOPE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "layerscope"


def disabled() -> bool:
    """Whether ``$LAYERSCOPE_NATIVE`` turns the C pass off (``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no", "off")


def _find_compiler() -> list[str] | None:
    """The compiler's argv: ``$CC`` (which may hold arguments, ``"ccache gcc"``), else the first of
    ``cc``, ``gcc``, ``clang`` on ``PATH``."""
    if not _compiler:
        found: list[str] | None = None
        try:
            cc_env = shlex.split(os.environ.get("CC", ""))
        except ValueError:
            cc_env = []
        if cc_env and shutil.which(cc_env[0]):
            found = [str(shutil.which(cc_env[0])), *cc_env[1:]]
        else:
            path = next((p for p in (shutil.which(c) for c in ("cc", "gcc", "clang")) if p), None)
            found = [path] if path else None
        _compiler.append(found)
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


def _one_line(text: str) -> str:
    """A compiler's output as one line: its first line that says error, else its first line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    hit = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "no output")
    return hit[:200]


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".write-test-{os.getpid()}-{threading.get_ident()}"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def _private_temp_dir() -> Path:
    """This user's folder in the temp dir, for a read-only cache folder (some containers).

    The temp dir is shared: a folder that another user made or may write could hold a planted
    library, so it is used only if this user owns it and nobody else may write it; else a fresh
    private folder (built again in each process, which is slower but safe).
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    d = Path(tempfile.gettempdir()) / f"layerscope-{uid if uid is not None else 0}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.lstat()
        safe = not d.is_symlink() and (uid is None or st.st_uid == uid) and not st.st_mode & 0o022
    except OSError:
        safe = False
    return d if safe and _writable_dir(d) else Path(tempfile.mkdtemp(prefix="layerscope-"))


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One build per folder at a time across processes (the ranks of a torchrun job start together:
    one compiles, the others wait and load its library). A no-op where ``fcntl`` is missing; the
    atomic rename below keeps concurrent builds safe anyway."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        f = open(folder / ".build.lock", "a")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lib_name(cc: list[str], flags: tuple[str, ...], defines: list[str]) -> str:
    """The library's file name: a hash of everything that makes its code (source, compiler, flags,
    CPU, platform), so a library built from another version of the source is never loaded."""
    key = hashlib.sha256(
        "\0".join([_SOURCE, *cc, *flags, *defines, _cpu_key(), sys.platform]).encode()
    ).hexdigest()[:20]
    return f"stats-{key}.so"


def _compile(
    cc: list[str], flags: tuple[str, ...], defines: list[str], out: Path
) -> dict[torch.dtype, Callable[..., Any]]:
    """Compile into a temporary file, load it from there, then move it to ``out``.

    Loaded before the move: a process that already tried ``out`` (a damaged or foreign file) gets
    that same handle again from ``dlopen`` for the same path; the temporary path is new.
    """
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "stats.c"
        src.write_text(_SOURCE)
        lib = Path(tmp) / "stats.so"
        proc = subprocess.run(
            [*cc, *flags, *defines, str(src), "-o", str(lib), "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0 or not lib.is_file():
            raise RuntimeError(f"{Path(cc[0]).name} failed: {_one_line(proc.stderr or proc.stdout)}")
        fns = _load(lib)
        os.replace(lib, out)  # atomic: a reader sees the old file or the whole new one
    return fns


def _load(path: Path) -> dict[torch.dtype, Callable[..., Any]]:
    lib = ctypes.CDLL(str(path))
    fns = {}
    for dtype, sym in _SYMBOLS.items():
        fn = getattr(lib, sym)  # AttributeError: not a library of this source
        fn.argtypes = _ARGTYPES
        fn.restype = None
        fns[dtype] = fn
    return fns


_LOAD_ERRORS = (OSError, AttributeError)


def _build(groups: frozenset[str]) -> dict[torch.dtype, Callable[..., Any]]:
    """Load the cached library for ``groups``, else compile it (tuned flags, then portable ones)."""
    cc = _find_compiler()
    defines = [f"-D{flag}={int(g in groups)}" for g, flag in sorted(_FLAGS.items())]
    folder = cache_dir()
    if not _writable_dir(folder):
        folder = _private_temp_dir()
    names = [_lib_name(cc or ["cc"], flags, defines) for flags in (CFLAGS, PORTABLE_CFLAGS)]
    for name in names:  # a library built before, by this or an earlier process
        if (folder / name).is_file():
            try:
                return _load(folder / name)
            except _LOAD_ERRORS:
                pass  # damaged or foreign: built again below
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
    failures = []
    with _build_lock(folder):
        for flags, name in zip((CFLAGS, PORTABLE_CFLAGS), names):
            out = folder / name
            try:
                if out.is_file():  # another process built it while this one waited
                    try:
                        return _load(out)
                    except _LOAD_ERRORS:
                        pass
                return _compile(cc, flags, defines, out)
            except (*_LOAD_ERRORS, RuntimeError, subprocess.SubprocessError) as e:
                failures.append(str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
    raise RuntimeError(failures[0] if failures else "no build was tried")


def kernels(groups: frozenset[str]) -> dict[torch.dtype, Callable[..., Any]] | None:
    """The C functions for ``groups`` by input dtype, built on first use; None if they cannot be
    (no compiler, a compiler that fails, ``$LAYERSCOPE_NATIVE=0``): the caller runs the torch path."""
    key = frozenset(g for g in groups if g in _FLAGS)
    with _lock:
        if key in _libs:
            return _libs[key]
        fns: dict[torch.dtype, Callable[..., Any]] | None = None
        if disabled():
            if not _errors:
                _errors.append(f"turned off by ${DISABLE_ENV}={os.environ.get(DISABLE_ENV)}")
        else:
            try:
                fns = _build(key)
            except (*_LOAD_ERRORS, RuntimeError, subprocess.SubprocessError) as e:
                if not _errors:
                    _errors.append(
                        str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                    )
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


__all__ = ["available", "build_error", "cache_dir", "disabled", "kernels", "native_raw"]
