"""Memory: peak RSS of a recording is flat in the number of steps (nothing grows but the store).

Each run is a fresh subprocess (so peaks are separate): a small 12-layer TinyGPT trained for N
steps with a Recorder recording every step (default metrics, default flushes) into a store on
disk, printing its resident set at checkpoints. Runs of 1k, 5k and 10k steps, and a 10k-step run
without recording for reference. Flat means: the peak of the 10k run is within a few MiB of the
1k run's (SQLite's page cache is bounded), and RSS does not climb between checkpoints.

    python benchmarks/bench_memory.py            # ~3 min on 2 CPU cores
    python benchmarks/bench_memory.py --quick    # 200 / 1000 / 2000 steps
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

FLAT_MIB = 8.0  # allowed difference of peaks (SQLite cache, allocator slack), far below any leak


def child(steps: int, record: bool, checkpoints: int, threads: int) -> None:
    import torch

    from layerscope import Recorder
    from layerscope.testing.model import GPTConfig, TinyGPT

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=12, n_head=2, n_embd=16, block_size=16))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (4, 16))
    y = torch.randint(0, 256, (4, 16))
    tmp = tempfile.mkdtemp(prefix="ls-bench-")
    path = os.path.join(tmp, "mem.db")
    rec = Recorder(model, path, run="mem", every=1) if record else None
    every = max(1, steps // checkpoints)

    def store_mib() -> float:
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20

    for step in range(1, steps + 1):
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if rec is not None:
            rec.step(step)
        if step % every == 0:
            print(
                json.dumps(
                    {"step": step, "rss": C.vm_kib("VmRSS"), "hwm": C.vm_kib("VmHWM"), "store": store_mib()}
                ),
                flush=True,
            )
    if rec is not None:
        rec.close()
        from layerscope.store import Store

        with Store(path, readonly=True) as st:
            n = len(st.steps("mem"))
        if n != steps:
            raise SystemExit(f"{n} steps in the store, expected {steps}")
    print(json.dumps({"done": steps, "hwm": C.vm_kib("VmHWM"), "store": store_mib()}), flush=True)


def run(steps: int, record: bool, checkpoints: int, threads: int) -> list[dict]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        str(steps),
        "--checkpoints",
        str(checkpoints),
        "--threads",
        str(threads),
    ] + ([] if record else ["--no-record"])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {steps} steps failed:\n{out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--child", type=int, default=0, help=argparse_hidden())
    p.add_argument("--no-record", action="store_true", help=argparse_hidden())
    p.add_argument("--checkpoints", type=int, default=10, help="RSS samples per run (default 10)")
    p.add_argument("--sizes", default="1000,5000,10000", help="steps per run (default 1000,5000,10000)")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, not args.no_record, args.checkpoints, args.threads)
        return 0
    sizes = [200, 1000, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    import torch

    torch.set_num_threads(args.threads)  # as in the children (the header reports it)
    C.header("memory: peak RSS of a recording (TinyGPT 12 layers x 16, every step, default metrics)")
    rows = []
    peaks = {}
    series = {}
    for n in sizes:
        res = run(n, True, args.checkpoints, args.threads)
        series[n] = [r for r in res if "step" in r]
        done = res[-1]
        first = series[n][0]
        peaks[n] = done["hwm"] / 1024
        rows.append(
            [
                f"recording, {n} steps",
                peaks[n],
                first["rss"] / 1024,
                series[n][-1]["rss"] / 1024,
                (series[n][-1]["rss"] - first["rss"]) / 1024,
                done["store"],
            ]
        )
    base = run(sizes[-1], False, args.checkpoints, args.threads)
    rows.append(
        [
            f"no recording, {sizes[-1]} steps",
            base[-1]["hwm"] / 1024,
            base[0]["rss"] / 1024,
            base[-2]["rss"] / 1024,
            (base[-2]["rss"] - base[0]["rss"]) / 1024,
            0.0,
        ]
    )
    print(
        C.table(
            ["run", "peak RSS MiB", "RSS at first checkpoint", "RSS at end", "growth MiB", "store MiB"],
            rows,
            "lrrrrr",
        )
    )
    big, small = sizes[-1], sizes[0]
    diff = peaks[big] - peaks[small]
    print()
    print(
        f"peak RSS, {big} vs {small} steps: {diff:+.1f} MiB -> "
        f"{'flat' if abs(diff) <= FLAT_MIB else 'GROWS'} (allowed {FLAT_MIB:.0f} MiB); "
        f"recording costs {peaks[big] - base[-1]['hwm'] / 1024:+.1f} MiB of peak over no recording"
    )
    print(
        f"RSS of the {big}-step run at each checkpoint (MiB): "
        + " ".join(f"{r['rss'] / 1024:.1f}" for r in series[big])
    )
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
