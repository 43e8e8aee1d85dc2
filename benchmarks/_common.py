"""Shared helpers of the benchmarks: interleaved timing, robust summaries, the machine, tables.

Every benchmark here compares variants measured side by side in one process, in interleaved
rounds (A B C, B C A, C A B, ...), because the machines it runs on are shared and noisy: a burst
of someone else's work then lands on every variant alike, and the ratios stay honest while the
absolute times drift. Absolute times are printed only as context.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

# Run from a checkout without installing: `python benchmarks/bench_x.py` finds src/layerscope.
_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, accelerator, Python and torch."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    parts = [f"{cpu}, {cores} cores{mem}"]
    try:
        import torch

        threads = torch.get_num_threads()
        parts.append(f"torch {torch.__version__} ({threads} threads)")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    return "; ".join(parts)


def interleave(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Call every variant once per round, in a new order each round; return seconds per call.

    The order is rotated and shuffled so that no variant always runs right after a heavy one
    (allocator and cache state carry over between calls). ``clock=time.process_time`` measures
    this process's CPU time: blind to other work on a shared machine (and to I/O waits).
    """
    names = list(variants)
    rng = random.Random(seed)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r >= len(names):
            rng.shuffle(order)
        for n in order:
            t0 = clock()
            variants[n]()
            out[n].append(clock() - t0)
    return out


def interleave_cpu_wall(
    variants: dict[str, Callable[[], object]],
    rounds: int,
    seed: int = 0,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """:func:`interleave` timing each call on both clocks: (process CPU seconds, wall seconds)."""
    cpu: dict[str, list[float]] = {n: [] for n in variants}
    wall: dict[str, list[float]] = {n: [] for n in variants}

    def timed(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)

        return run

    interleave({n: timed(n, f) for n, f in variants.items()}, rounds, seed)
    return cpu, wall


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def bootstrap_ratio(
    num: Sequence[Sequence[float]],
    den: Sequence[Sequence[float]],
    estimator: Callable[[Sequence[Sequence[float]]], float],
    n: int = 400,
    seed: int = 0,
    den_estimator: Callable[[Sequence[Sequence[float]]], float] | None = None,
) -> tuple[float, float]:
    """5th and 95th percentiles of ``estimator(num) / estimator(den)`` over resampled rounds.

    ``num`` and ``den`` hold one list of samples per round, measured in the same rounds; rounds are
    resampled together, so the interval reflects how much the ratio moves with the machine's noise.
    """
    rng = np.random.default_rng(seed)
    k = len(num)
    if k < 3:
        return float("nan"), float("nan")
    ratios = []
    for _ in range(n):
        idx = rng.integers(0, k, k)
        ratios.append(estimator([num[i] for i in idx]) / (den_estimator or estimator)([den[i] for i in idx]))
    lo, hi = np.percentile(ratios, [5, 95])
    return float(lo), float(hi)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table (pastes into benchmarks/README.md as is). ``align``: 'l'/'r' per column."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))
            + " |"
        )

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(c: object) -> str:
    if isinstance(c, float):
        if math.isnan(c):
            return "-"
        a = abs(c)
        return f"{c:.3g}" if a < 10 else f"{c:,.0f}" if a >= 1000 else f"{c:.1f}"
    return str(c)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    """'ok' / 'MISSED' against a target (printed next to the figure, never asserted)."""
    if math.isnan(value):
        return "-"
    ok = value <= target if lower_is_better else value >= target
    return "ok" if ok else "MISSED"


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick", action="store_true", help="a short run: checks that it works, numbers are rough"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads, fixed for every variant (default 1: least disturbed by other work)",
    )
    return p


def header(title: str) -> None:
    print(f"## {title}")
    print(f"machine: {machine()}")
    print()


def vm_kib(field: str = "VmHWM") -> int:
    """A /proc/self/status field in KiB (VmHWM: peak RSS, VmRSS: current RSS); -1 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    if field == "VmHWM":
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    return -1
