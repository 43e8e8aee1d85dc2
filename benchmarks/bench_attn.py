"""Cost of the ``attn`` and ``logits`` sites and of the live watch, on the 12-layer benchmark GPT.

Variants, each on its own copy of the model (same init, same batches), timed in interleaved
rounds of 10 optimizer steps (batch 16 x 64 tokens, AdamW, width 96, 4 heads):

    none                      no recording
    output, every=10          the Recorder's defaults at the block outputs, every 10th step
    output+attn+logits        plus per-head attention (64 sampled queries) and output logits
    output + watch            the default watch rules: a flush (one host copy) per recorded step
                              instead of per 50, and the rules evaluated on the host

The overhead is the ratio of the median round time to ``none``'s (and, for the watch, to
``output, every=10``'s). Ratios from a busy machine are provisional.

    python benchmarks/bench_attn.py --quick     # ~2 min on 2 CPU cores
    python benchmarks/bench_attn.py --rounds 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import layerscope
from layerscope.testing import tiny_gpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--width", type=int, default=96)
    a = ap.parse_args()
    rounds = 8 if a.quick else a.rounds
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, 256, (16, 65), generator=g) for _ in range(10)]
    tmp = Path(tempfile.mkdtemp())
    variants = {
        "none": None,
        "output, every=10": dict(sites=("output",)),
        "output+attn+logits, every=10": dict(sites=("output", "attn", "logits")),
        "output + watch, every=10": dict(sites=("output",), watch=True),
    }
    models, opts, recs, times = {}, {}, {}, {}
    for name, kw in variants.items():
        m = tiny_gpt(n_layer=12, n_embd=a.width, n_head=4, block_size=64, seed=0)
        models[name] = m
        opts[name] = torch.optim.AdamW(m.parameters(), lr=1e-4)
        recs[name] = (
            None
            if kw is None
            else layerscope.Recorder(m, tmp / "runs.db", run=name.replace(" ", "_"), every=10, **kw)
        )
        times[name] = []
    step = {n: 0 for n in variants}

    def run_round(name: str) -> float:
        m, opt, rec = models[name], opts[name], recs[name]
        t0 = time.perf_counter()
        for i in range(10):
            x = data[i]
            _, loss = m(x[:, :-1].contiguous(), x[:, 1:].contiguous())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step[name] += 1
            if rec is not None:
                rec.step(step[name])
        return time.perf_counter() - t0

    for name in variants:  # warm-up round (first record step builds the C pass)
        run_round(name)
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(run_round(name))
        print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    for rec in recs.values():
        if rec is not None:
            rec.close()
    med = {n: statistics.median(t) for n, t in times.items()}
    print(
        f"12 layers x width {a.width}, batch 16 x 64, {rounds} interleaved rounds of 10 steps (provisional)\n"
    )
    print("| variant | median round (s) | vs none | vs output |")
    print("|---|---:|---:|---:|")
    for n in variants:
        vs_out = "" if n == "none" else f"{med[n] / med['output, every=10'] - 1:+.1%}"
        print(f"| {n} | {med[n]:.3f} | {med[n] / med['none'] - 1:+.1%} | {vs_out} |")


if __name__ == "__main__":
    main()
