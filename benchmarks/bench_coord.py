"""How long the coord-check demo takes: the SP and muP commands of docs/coord-check.md.

    python benchmarks/bench_coord.py            # the docs' demo: widths 32..512, 3 steps, 3 seeds
    python benchmarks/bench_coord.py --quick    # widths 32..128, 1 seed: a smoke run

Prints a markdown table of wall and CPU seconds per command (CPU time is this process's, all
threads: on a shared machine it is the steadier figure) and the verdict of each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common  # puts src/ on the path
import torch

from layerscope.coordcheck import coord_check
from layerscope.testing import tiny_gpt_mup, tiny_gpt_sp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    widths = [32, 64, 128] if args.quick else [32, 64, 128, 256, 512]
    seeds = 1 if args.quick else 3
    print(f"{_common.machine()}; torch threads {args.threads}\n")
    print("| factory | widths | seeds | steps | wall s | CPU s | verdict (abs_mean at output) |")
    print("|---|---|---:|---:|---:|---:|---|")
    total_wall = total_cpu = 0.0
    with tempfile.TemporaryDirectory() as d:
        for name, f in (("tiny_gpt_sp", tiny_gpt_sp), ("tiny_gpt_mup", tiny_gpt_mup)):
            t0, c0 = time.perf_counter(), time.process_time()
            cc = coord_check(f, widths, os.path.join(d, "cc.db"), run=name, steps=3, seeds=seeds)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            total_wall, total_cpu = total_wall + wall, total_cpu + cpu
            v = cc.verdict("abs_mean", "output")
            print(
                f"| {name} | {widths[0]}-{widths[-1]} | {seeds} | 3 | {wall:.1f} | {cpu:.1f} | {v.verdict} |"
            )
    print(f"| both | | | | {total_wall:.1f} | {total_cpu:.1f} | |")


if __name__ == "__main__":
    main()
