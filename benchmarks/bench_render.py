"""Render and report timing: PNG and HTML of a 96-layer x 2000-step heatmap, and the report of a
200-layer x 5000-step map, measured in one process in interleaved rounds.

Budget: the PNG in at most 2 s (the first, cold call included: it pays matplotlib's font and
colormap setup). Each line gives wall time and this process's CPU time; rendering is single-threaded,
so on a busy shared machine the CPU time is the figure to read (wall time then includes waiting for a
core). The budget is checked on the CPU time. Exits non-zero if the PNG is over budget.

    .venv/bin/python benchmarks/bench_render.py            # writes into a temporary folder
    .venv/bin/python benchmarks/bench_render.py --out /tmp/bench --repeat 3
    .venv/bin/python benchmarks/bench_render.py --quick      # one round: checks that it works
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PNG_BUDGET_S = 2.0


def matrix(n_steps: int = 2000, n_layers: int = 96, seed: int = 0):
    """A realistic map: grows with depth and training, noise, a NaN patch, a short +inf burst."""
    from layerscope.store.heatmap import Heatmap

    rng = np.random.default_rng(seed)
    t = np.linspace(0.05, 1.0, n_steps)[:, None]
    d = np.linspace(0.2, 1.0, n_layers)[None, :]
    v = 0.008 * t * d * (1 + 0.05 * rng.standard_normal((n_steps, n_layers)))
    v[300:340, 10:14] = np.nan
    v[1500:1504, 80] = np.inf
    return Heatmap(
        v,
        steps=[100 * (i + 1) for i in range(n_steps)],
        layers=range(1, n_layers + 1),
        layer_names=[f"model.layers.{i}" for i in range(n_layers)],
        metric="rms",
        run="bench",
    )


def report_matrix(n_steps: int = 5000, n_layers: int = 200, seed: int = 1):
    """A 200 x 5000 map with the reference figure's shape: low early layers, a rising then
    saturating late band, noise."""
    from layerscope.store.heatmap import Heatmap

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n_steps)[:, None]
    d = np.linspace(0.0, 1.0, n_layers)[None, :]
    v = (
        0.008
        * np.clip(d - 0.3, 0, None)
        * np.minimum(1.0, 1.4 * t)
        * (1 + 0.02 * rng.standard_normal((n_steps, n_layers)))
    )
    return Heatmap(
        v, steps=[60 * (i + 1) for i in range(n_steps)], layers=range(1, n_layers + 1), metric="rms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the outputs (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds (the first is cold)")
    ap.add_argument("--quick", action="store_true", help="one round: checks that it works")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (rendering does not use them)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1
    out = Path(args.out or tempfile.mkdtemp(prefix="layerscope-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    import layerscope

    hm = matrix()
    big = report_matrix()
    print(
        f"import + matrices ({hm.shape[0]} x {hm.shape[1]}, {big.shape[0]} x {big.shape[1]}): "
        f"{time.perf_counter() - t0:.2f} s"
    )

    def timed(label: str, fn) -> float:
        w, c = time.perf_counter(), time.process_time()
        what = fn()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        print(f"{label}: wall {wall:.2f} s, cpu {cpu:.2f} s  {what}")
        return cpu

    def size(p: Path) -> str:
        return f"({os.path.getsize(p) / 1e6:.1f} MB)"

    png, html, rep = [], [], []
    for k in range(args.repeat):  # interleaved: PNG, HTML, report, PNG, HTML, report, ...
        png.append(
            timed(f"png 96x2000     round {k + 1}", lambda: size(layerscope.plot(hm, out / "bench.png")))
        )
        html.append(
            timed(f"html 96x2000    round {k + 1}", lambda: size(layerscope.plot(hm, out / "bench.html")))
        )
        rep.append(
            timed(
                f"report 200x5000 round {k + 1}",
                lambda: f"({len(layerscope.report(big).to_markdown())} chars)",
            )
        )
    timed("lines png 96x2000     ", lambda: size(layerscope.plot(hm, out / "bench_lines.png", kind="lines")))
    worst = max(png)
    verdict = "ok" if worst <= PNG_BUDGET_S else "OVER BUDGET"
    print(
        f"png worst cpu {worst:.2f} s (budget {PNG_BUDGET_S:.1f} s): {verdict}; "
        f"html worst cpu {max(html):.2f} s; report 200x5000 worst cpu {max(rep):.2f} s; outputs in {out}"
    )
    return 0 if worst <= PNG_BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
