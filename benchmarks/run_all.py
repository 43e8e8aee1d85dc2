"""Run every ``benchmarks/bench_*.py``, one after the other, each in its own process.

    python benchmarks/run_all.py                   # all of them (make bench), ~15 min on 2 CPU cores
    python benchmarks/run_all.py --quick           # short runs: checks they work, rough numbers
    python benchmarks/run_all.py capture store     # only bench_capture.py and bench_store.py
    python benchmarks/run_all.py --out bench.md    # also write the collected output to a file

One process per benchmark keeps their peaks, caches and threads apart. Each prints its own
Markdown tables (ratios measured side by side in one process); this script collects them, with
the machine they came from, and exits non-zero when one of them failed.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help="benchmark names to run (capture, store, ...); default all")
    p.add_argument("--quick", action="store_true", help="pass --quick to each benchmark")
    p.add_argument("--out", help="also write the collected output (Markdown) to this file")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one benchmark may run (default 3600)")
    args = p.parse_args(argv)

    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    names = {os.path.basename(s)[len("bench_") : -len(".py")]: s for s in scripts}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; found: {', '.join(names)}", file=sys.stderr)
        return 2
    chosen = [names[n] for n in (args.only or names)]
    # The benchmarks import layerscope from the checkout when it is not installed.
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(HERE), "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    started = time.strftime("%Y-%m-%d %H:%M")
    parts = [
        f"# layerscope benchmarks ({started}{', --quick' if args.quick else ''})",
        f"machine: {C.machine()}",
        "",
    ]
    print("\n".join(parts), flush=True)
    summary = []
    failed = 0
    for script in chosen:
        name = os.path.basename(script)
        cmd = [sys.executable, script] + (["--quick"] if args.quick else [])
        t0 = time.perf_counter()
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=False
            )
            rc, text, err = out.returncode, out.stdout, out.stderr
        except subprocess.TimeoutExpired as e:
            rc, text, err = (
                -1,
                (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""),
                f"timed out after {args.timeout:.0f} s",
            )
        dt = time.perf_counter() - t0
        block = text.rstrip()
        if rc != 0:
            failed += 1
            block += f"\n\n**{name} failed (exit {rc})**:\n```\n{err.strip()[-3000:]}\n```"
        print(block + "\n", flush=True)
        parts += [block, ""]
        summary.append([name, "ok" if rc == 0 else f"FAILED ({rc})", dt])
    table = C.table(["benchmark", "result", "seconds"], summary, "llr")
    print(table)
    parts.append(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(parts) + "\n")
        print(f"\nwritten to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
