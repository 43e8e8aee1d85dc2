"""A training job for the kill tests: TinyGPT trained step after step while two Recorders write
into one store, run "unbuffered" (flush_every=1) and run "buffered" (flush_every=4). It runs
until it is killed, or for N steps.

    python _train_child.py STORE START_UNBUFFERED START_BUFFERED [N]
    python _train_child.py --zygote      # then one such line per job on stdin

A job prints "ready PID" once both recorders are open, then the number of each iteration when
both recorders have stepped (the test kills it a random time after a random iteration), and
"done" after a clean close. With ``--zygote`` the process imports torch once and forks one child
per job (the child is the training process that gets killed; nothing is open in the zygote when it
forks), then prints "exit PID STATUS" when that child is gone; a test runs many kill trials without
paying torch's import time for each.
"""

from __future__ import annotations

import os
import sys

import torch

from layerscope.recorder import Recorder
from layerscope.testing import tiny_gpt

# Scalar metrics plus histograms: a whole step is n_layers rows of each, and n_layers histograms.
METRICS = ("mean", "std", "rms", "max_abs", "kurtosis", "zero_frac", "hist")
RUNS = (("unbuffered", 1), ("buffered", 4))


def job(store: str, starts: list[int], n: int | None) -> None:
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))  # (B, T)
    y = torch.roll(x, -1, dims=1)
    jobs = []
    for (run, flush_every), start in zip(RUNS, starts):
        model = tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16, seed=start)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        rec = Recorder(
            model, store, run=run, metrics=METRICS, flush_every=flush_every, flush_secs=3600, start_step=start
        )
        jobs.append((model, opt, rec, start))
    print(f"ready {os.getpid()}", flush=True)
    i = 0
    while n is None or i < n:
        for model, opt, rec, start in jobs:
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(start + i)
        print(i, flush=True)  # iteration i is done: both recorders have stepped
        i += 1
    for _, _, rec, _ in jobs:
        rec.close()
    print("done", flush=True)


def parse(argv: list[str]) -> tuple[str, list[int], int | None]:
    return argv[0], [int(argv[1]), int(argv[2])], int(argv[3]) if len(argv) > 3 else None


def warm_up() -> None:
    # Pay the first-call costs (lazy imports, kernel set-up) once, before any fork. No store is open.
    model = tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # its first use imports much of torch
    with Recorder(model, None, metrics=METRICS, start_step=1) as rec:
        x = torch.zeros(1, 16, dtype=torch.long)
        model(x, x)[1].backward()
        opt.step()
        rec.step(1)


def zygote() -> None:
    warm_up()
    for line in sys.stdin:
        if not line.strip():
            continue
        store, starts, n = parse(line.split())
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the training process
            code = 0
            try:
                job(store, starts, n)
            except BaseException as e:
                print(f"failed {type(e).__name__}: {e}", flush=True)
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {pid} {code}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["--zygote"]:
        zygote()
    else:
        job(*parse(sys.argv[1:]))
