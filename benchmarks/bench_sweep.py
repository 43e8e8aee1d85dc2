"""Sweep cost: ``layerscope sweep`` per checkpoint against a bare load + forward, and 1 -> 2 workers.

Checkpoints of the built-in GPT (``--n-layer`` blocks, default 12, of width ``--n-embd``, default
256; distinct weights each) are written once, as ``.safetensors`` and as ``.pt``. Then, in interleaved rounds:

    bare <fmt>     build the model once; per checkpoint: read the file (safetensors.load_file or
                   torch.load(weights_only=True)), model.load_state_dict, one eval-mode no-grad
                   forward on the probe. The least any sweep must do.
    sweep <fmt>    layerscope.sweep.run_sweep over the same folder into a fresh store: discovery,
                   safe loading, key normalisation and checks, the identical-weights fingerprint,
                   the probe forward with the default 4 metrics on every block, one SQLite
                   transaction per step, and the set-up (model, run) counted in.

Both are end to end, divided by the number of checkpoints (target: sweep <= 1.15x bare).

Then, over a longer folder (the same files linked under ``--workers-checkpoints`` step names),
``--workers 1`` (this process alone) against ``--workers 2`` (this process and a spawned one,
whose start-up is counted), one torch thread per process, interleaved: the end-to-end speed-up,
and the steady-state one (checkpoints per second once both processes sweep). The end-to-end figure
depends on how long the sweep is against a process's start-up (importing torch, building the
model: seconds); the steady-state figure is what a long sweep gets.

The statistics are part of the sweep's cost: hooks on every block, as in live recording. They
grow with the width and the forward with its square, so the ratio falls as the model grows; at
width 128 the statistics alone are about a fifth of a forward.

    python benchmarks/bench_sweep.py                  # ~4 min on 2 CPU cores
    python benchmarks/bench_sweep.py --quick          # ~1 min, rough
    python benchmarks/bench_sweep.py --n-embd 128     # the smaller model
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import torch

TARGET_RATIO = 1.15


def _factory(n_layer: int, n_embd: int) -> functools.partial:
    from layerscope.testing import tiny_gpt

    return functools.partial(tiny_gpt, n_layer=n_layer, n_embd=n_embd, n_head=4, block_size=64)


def write_checkpoints(root: Path, factory: functools.partial, n: int) -> dict[str, Path]:
    from safetensors.torch import save_model

    dirs = {"safetensors": root / "st", "pt": root / "pt"}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i in range(1, n + 1):
        m = factory(seed=i)
        save_model(m, str(dirs["safetensors"] / f"step_{i * 100}.safetensors"))
        torch.save(m.state_dict(), dirs["pt"] / f"step_{i * 100}.pt")
    return dirs


def bare(folder: Path, factory: functools.partial, probe: torch.Tensor) -> int:
    from safetensors.torch import load_file

    model = factory()
    model.eval()
    n = 0
    for f in sorted(folder.iterdir()):
        sd = (
            load_file(str(f))
            if f.suffix == ".safetensors"
            else torch.load(f, map_location="cpu", weights_only=True)
        )
        model.load_state_dict(sd, strict=False)  # save_model drops the tied lm_head.weight
        with torch.no_grad():
            model(probe)
        n += 1
    return n


class _Clock:
    """A SweepListener that notes when, and by which process, each checkpoint was finished."""

    def __init__(self, allow_identical: bool = False) -> None:
        self.done: list[tuple[float, int]] = []
        self.allow_identical = allow_identical

    def on_start(self, todo: int, skipped: int, processes: int) -> None:
        self.done = []

    def steady_rate(self) -> float:
        """Checkpoints per second once every process sweeps: from the first checkpoint finished by the
        last process to start, to the last checkpoint."""
        firsts: dict[int, float] = {}
        for t, pid in self.done:
            firsts.setdefault(pid, t)
        start = max(firsts.values())
        n = sum(t > start for t, _ in self.done)
        end = self.done[-1][0]
        return n / (end - start) if n and end > start else float("nan")

    def on_problem(self, problem: object) -> None:
        raise AssertionError(f"benchmark checkpoint failed: {problem}")

    def on_outcome(self, outcome: object) -> None:
        if getattr(outcome, "error", None):
            raise AssertionError(outcome.error)  # type: ignore[attr-defined]
        self.done.append((time.perf_counter(), outcome.pid))  # type: ignore[attr-defined]

    def on_identical(self, name: str, same_as: str) -> None:
        if not self.allow_identical:
            raise AssertionError(f"benchmark checkpoints {name} and {same_as} are identical")


def do_sweep(
    folder: Path,
    factory: functools.partial,
    probe: torch.Tensor,
    workers: int,
    threads: int,
    scratch: Path,
    clock: _Clock | None = None,
) -> int:
    from layerscope.sweep import SweepConfig, run_sweep

    db = Path(tempfile.mkdtemp(dir=scratch)) / "runs.db"
    res = run_sweep(
        SweepConfig(folder, db, "bench", probe, model=factory, workers=workers, threads=threads), clock
    )  # type: ignore[arg-type]
    assert res.exit_code == 0 and not res.skipped and len(res.written) == res.found, res.to_dict()
    shutil.rmtree(db.parent)
    return len(res.written)


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--checkpoints", type=int, default=None, help="default 24 (--quick: 8)")
    p.add_argument("--rounds", type=int, default=None, help="default 7 (--quick: 3)")
    p.add_argument(
        "--workers-checkpoints",
        type=int,
        default=None,
        help="checkpoints of the workers comparison (default 96, --quick: 24)",
    )
    args = p.parse_args()
    n = args.checkpoints or (8 if args.quick else 24)
    n_workers = args.workers_checkpoints or (24 if args.quick else 96)
    rounds = args.rounds or (3 if args.quick else 7)
    torch.set_num_threads(args.threads)
    from layerscope.testing import Corpus

    factory = _factory(args.n_layer, args.n_embd)
    probe = Corpus(n_chars=50_000).probe(batch_size=8, block_size=64)
    C.header("layerscope sweep: cost per checkpoint")
    n_params = sum(p.numel() for p in factory().parameters())
    print(
        f"{n} checkpoints of a {args.n_layer}-layer GPT, width {args.n_embd} ({n_params / 1e6:.1f}M parameters), "
        f"probe {tuple(probe.shape)}, {rounds} interleaved rounds, {args.threads} torch thread(s) per process"
    )
    print()

    root = Path(tempfile.mkdtemp(prefix="ls-bench-sweep-"))
    try:
        dirs = write_checkpoints(root, factory, n)
        scratch = root / "stores"
        scratch.mkdir()
        # One warm-up of each, so the page cache and imports are the same for every timed call.
        for d in dirs.values():
            bare(d, factory, probe)
            do_sweep(d, factory, probe, 1, args.threads, scratch)

        variants = {}
        for fmt, d in dirs.items():
            variants[f"bare {fmt}"] = functools.partial(bare, d, factory, probe)
            variants[f"sweep {fmt}"] = functools.partial(
                do_sweep, d, factory, probe, 1, args.threads, scratch
            )
        times = C.interleave(variants, rounds)
        rows = []
        for fmt in dirs:
            b, s = times[f"bare {fmt}"], times[f"sweep {fmt}"]
            ratio = C.median([x / y for x, y in zip(s, b)])
            lo, hi = C.bootstrap_ratio(
                [[x] for x in s], [[y] for y in b], lambda r: C.median([v[0] for v in r])
            )
            rows.append(
                [
                    fmt,
                    C.median(b) / n * 1e3,
                    C.median(s) / n * 1e3,
                    ratio,
                    f"{lo:.2f}-{hi:.2f}",
                    C.verdict(ratio, TARGET_RATIO),
                ]
            )
        print(
            C.table(
                [
                    "format",
                    "bare ms/ckpt",
                    "sweep ms/ckpt",
                    "sweep / bare",
                    "90% interval",
                    f"target <= {TARGET_RATIO}",
                ],
                rows,
            )
        )
        print()

        # A longer sweep for the workers: the same files again under more step names (links), so
        # that the comparison is not all start-up. Their repeated weights are flagged, as they should be.
        many = root / "many"
        many.mkdir()
        files = sorted(dirs["safetensors"].iterdir())
        for i in range(n_workers):
            (many / f"step_{i + 1}.safetensors").symlink_to(files[i % len(files)])
        clocks = {1: _Clock(allow_identical=True), 2: _Clock(allow_identical=True)}
        steady: dict[int, list[float]] = {1: [], 2: []}
        spawned: dict[int, list[float]] = {1: [], 2: []}  # share of checkpoints swept by spawned processes

        def workers(k: int) -> None:
            do_sweep(many, factory, probe, k, args.threads, scratch, clocks[k])
            steady[k].append(clocks[k].steady_rate())
            spawned[k].append(sum(pid != os.getpid() for _, pid in clocks[k].done) / len(clocks[k].done))

        w_rounds = max(3, rounds - 2)
        wt = C.interleave(
            {"workers=1": functools.partial(workers, 1), "workers=2": functools.partial(workers, 2)}, w_rounds
        )
        e2e = C.median([a / b for a, b in zip(wt["workers=1"], wt["workers=2"])])
        rate = C.median([b / a for a, b in zip(steady[1], steady[2])])
        print(
            f"{n_workers} checkpoints (the {n} above, linked under more names), {w_rounds} interleaved rounds"
        )
        print()
        print(
            C.table(
                ["workers", "end to end s", "ckpt/s (steady)", "swept by the spawned process"],
                [
                    [str(k), C.median(wt[f"workers={k}"]), C.median(steady[k]), f"{C.median(spawned[k]):.0%}"]
                    for k in (1, 2)
                ],
            )
        )
        print()
        print(
            f"speed-up 1 -> 2 workers: {e2e:.2f}x end to end (pool start-up included), "
            f"{rate:.2f}x steady state"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
