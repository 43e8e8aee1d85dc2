"""Store: rows written per second through the recorder's writer, and the time to load a matrix.

Write (96 layers x 8 metrics = 768 rows per step, batches of 50 steps = one default flush),
in interleaved rounds:

    Recorder.flush      the recorder's whole flush: one host copy, derive the metrics, StepRecords,
                        Store.write_steps (a Recorder on a 96-layer model, flushed by hand)
    Store.write_steps   the same StepRecords written directly (one transaction per step)
    bare sqlite         the floor: the same rows into the same table with executemany, one
                        transaction per step, nothing else

Load one 96 x 5000 matrix (target <= 50 ms), interleaved:

    Store.load          on an open store, as the renderers and the dashboard call it
    layerscope.load     open the file read-only, load, close (what the CLI does)
    bare sqlite         SELECT of the same rows + numpy fill: the floor

    python benchmarks/bench_store.py            # ~1 min
    python benchmarks/bench_store.py --quick    # 96 x 1000, a few seconds
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import numpy as np

N_LAYERS = 96
METRICS = ("mean", "std", "rms", "max_abs", "min", "max", "abs_mean", "kurtosis")
BATCH = 50  # steps per flush (the recorder's default flush_every)
LOAD_TARGET_MS = 50.0


def records(first: int, n: int, rng: np.random.Generator) -> list:
    from layerscope.store import StepRecord

    return [
        StepRecord(s, {(m, "output"): rng.standard_normal(N_LAYERS).tolist() for m in METRICS})
        for s in range(first, first + n)
    ]


class Bare:
    """The same table and rows in plain SQLite: what writing and reading cost at the least."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE metric_values (run_id INTEGER NOT NULL, metric TEXT NOT NULL, site TEXT NOT NULL, "
            "step INTEGER NOT NULL, layer INTEGER NOT NULL, value REAL, "
            "PRIMARY KEY (run_id, metric, site, step, layer)) WITHOUT ROWID"
        )

    def write(self, recs: list) -> None:
        for r in recs:
            rows = [
                (1, m, s, r.step, j + 1, v) for (m, s), vals in r.values.items() for j, v in enumerate(vals)
            ]
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT INTO metric_values VALUES (?,?,?,?,?,?)", rows)
            self.conn.execute("COMMIT")

    def load(self, metric: str) -> np.ndarray:
        rows = self.conn.execute(
            "SELECT step, layer, value FROM metric_values WHERE run_id=1 AND metric=? AND site='output' "
            "ORDER BY step, layer",
            (metric,),
        ).fetchall()
        a = np.array(rows, dtype=np.float64)
        steps, si = np.unique(a[:, 0], return_inverse=True)
        out = np.full((len(steps), N_LAYERS), np.nan)
        out[si, a[:, 1].astype(np.int64) - 1] = a[:, 2]
        return out


class RecorderFlush:
    """A Recorder on a 96-layer model: each round runs 50 recorded steps, then times flush()."""

    def __init__(self, path: str) -> None:
        import torch

        from layerscope import Recorder

        torch.manual_seed(0)
        self.torch = torch
        self.model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(N_LAYERS)])
        self.x = torch.randn(4, 8)
        self.rec = Recorder(
            self.model, path, run="recorder", metrics=METRICS, every=1, flush_every=10**9, flush_secs=1e12
        )
        assert len(self.rec.layers) == N_LAYERS, len(self.rec.layers)
        self.step = 0

    def prepare(self) -> None:
        with self.torch.no_grad():
            for _ in range(BATCH):
                self.step += 1
                self.model(self.x)
                self.rec.step(self.step)

    def flush(self) -> None:
        self.rec.flush()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved write rounds of 50 steps (default 15)")
    p.add_argument("--steps", type=int, default=5000, help="steps in the loaded matrix (default 5000)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved load repeats (default 15)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.repeats = 5, 1000, 7
    import torch

    torch.set_num_threads(args.threads)
    from layerscope import load
    from layerscope.store import LayerInfo, Store

    C.header(f"store: {N_LAYERS} layers x {len(METRICS)} metrics per step, flushes of {BATCH} steps")
    tmp = tempfile.mkdtemp(prefix="ls-bench-")
    path = os.path.join(tmp, "store.db")
    rng = np.random.default_rng(0)
    st = Store(path)
    st.create_run("direct", layers=[LayerInfo(i + 1, f"h.{i}") for i in range(N_LAYERS)])
    bare = Bare(os.path.join(tmp, "bare.db"))
    recf = RecorderFlush(path)
    rows_per_batch = BATCH * N_LAYERS * len(METRICS)

    # -- write ------------------------------------------------------------------------------
    names = ["Recorder.flush", "Store.write_steps", "bare sqlite"]
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    next_step = 1
    for r in range(args.rounds):
        recs = records(next_step, BATCH, rng)  # built outside the timed part
        recf.prepare()
        jobs = {
            "Recorder.flush": recf.flush,
            "Store.write_steps": lambda recs=recs: st.write_steps("direct", recs),
            "bare sqlite": lambda recs=recs: bare.write(recs),
        }
        for name in names[r % 3 :] + names[: r % 3]:
            c0, w0 = time.process_time(), time.perf_counter()
            jobs[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        next_step += BATCH
    rows = []
    for name in names:
        med, wmed = C.median(cpu[name]), C.median(wall[name])
        rows.append(
            [
                name,
                f"{rows_per_batch / med:,.0f}",
                med * 1e3,
                f"{med / C.median(cpu['bare sqlite']):.2f}",
                f"{rows_per_batch / wmed:,.0f}",
            ]
        )
    print(
        C.table(
            ["writer", "rows/s (cpu)", "cpu ms per flush of 50 steps", "vs bare sqlite", "rows/s (wall)"],
            rows,
            "lrrrr",
        )
    )
    print(
        f"{args.rounds} interleaved rounds; {rows_per_batch:,} rows per flush; cpu = this process's CPU time "
        "(blind to other work on the machine), wall = perf_counter"
    )
    print()

    # -- load -------------------------------------------------------------------------------
    have = next_step - 1
    t0 = time.perf_counter()
    while have < args.steps:
        k = min(500, args.steps - have)
        recs = records(have + 1, k, rng)
        st.write_steps("direct", recs)
        bare.write(recs)
        have += k
    build_s = time.perf_counter() - t0
    st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    hm = st.load("direct", "rms")
    assert hm.values.shape == (args.steps, N_LAYERS), hm.values.shape
    assert bare.load("rms").shape[1] == N_LAYERS
    jobs = {
        "Store.load": lambda: st.load("direct", "rms"),
        "layerscope.load (open, read, close)": lambda: load(path, run="direct", metric="rms"),
        "bare sqlite": lambda: bare.load("rms"),
    }
    lc, lw = C.interleave_cpu_wall(jobs, args.repeats)
    base = C.median(lc["bare sqlite"])
    rows = []
    for name in jobs:
        med = C.median(lc[name]) * 1e3
        rows.append(
            [
                name,
                med,
                f"{med / (base * 1e3):.2f}",
                C.median(lw[name]) * 1e3,
                f"<= {LOAD_TARGET_MS:.0f} ms {C.verdict(med, LOAD_TARGET_MS)}"
                if name != "bare sqlite"
                else "",
            ]
        )
    print(
        C.table(
            [
                f"load one {args.steps} x {N_LAYERS} matrix",
                "cpu ms",
                "vs bare sqlite",
                "wall ms",
                "target (cpu)",
            ],
            rows,
            "lrrrl",
        )
    )
    size = os.path.getsize(path) / 2**20
    print(
        f"{args.repeats} interleaved repeats; store {size:.0f} MiB "
        f"({args.steps} steps x {N_LAYERS} layers x {len(METRICS)} metrics, + the recorder run); "
        f"topping up to {args.steps} steps took {build_s:.1f} s"
    )
    recf.rec.close()
    st.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
