"""Store: write throughput, load time, and bytes per value on disk (schema 2), beside schema 1.

Write (96 layers x 8 metrics = 768 values per step, flushes of 50 steps = one default flush),
in interleaved rounds:

    Recorder.flush          the recorder's whole flush: one host copy, derive the metrics,
                            StepRecords, Store.write_steps (a Recorder on a 96-layer model)
    Store.write_steps       the same StepRecords written directly (one transaction per flush)
    bare sqlite, blobs      the floor for schema 2: the same float64 blobs into the same table with
                            executemany, one transaction per flush, nothing else
    bare sqlite, schema 1   what schema 1 wrote: one row per value and a blob per (metric, site, step)

Load one 96 x 5000 matrix (target <= 50 ms), interleaved:

    Store.load              on an open store, as the renderers and the dashboard call it
    layerscope.load         open the file read-only, load, close (what the CLI does)
    bare sqlite             SELECT of the same blobs + np.frombuffer: the floor
    schema 1's matrix_rows  the same read of schema 1's blob copy (what its reader read)

Space (the issue's store: 20,000 steps x 96 layers x 4 metrics): the file size after a checkpoint
in bytes per value (target <= 10), the time to write it through Store.write_steps (flushes of 50
steps) and to load one 20,000 x 96 matrix; the same store in schema 1 (written with raw SQL as the
schema-1 code wrote it: long rows + blobs), and the time to upgrade that to schema 2.

    python benchmarks/bench_store.py            # ~3 min (the schema-1 reference is most of it)
    python benchmarks/bench_store.py --quick    # 96 x 1000 and 2,000 x 96 x 4: a few seconds
"""

from __future__ import annotations

import argparse
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
SPACE_METRICS = ("rms", "kurtosis", "max_abs", "top_ratio")
BATCH = 50  # steps per flush (the recorder's default flush_every)
LOAD_TARGET_MS = 50.0
SPACE_TARGET = 10.0  # bytes per value


def records(first: int, n: int, rng: np.random.Generator, metrics: tuple[str, ...] = METRICS) -> list:
    from layerscope.store import StepRecord

    return [
        StepRecord(s, {(m, "output"): rng.standard_normal(N_LAYERS) for m in metrics})
        for s in range(first, first + n)
    ]


class Bare:
    """Plain SQLite, nothing else: schema 2's table of blobs, or what schema 1 wrote: its long rows
    and, in the same transaction, one blob per (metric, site, step) in ``matrix_rows``."""

    def __init__(self, path: str, schema1: bool) -> None:
        self.schema1 = schema1
        self.conn = sqlite3.connect(path, isolation_level=None)
        if not schema1:
            self.conn.execute("PRAGMA page_size=8192")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        if schema1:
            self.conn.execute(
                "CREATE TABLE metric_values (run_id INTEGER NOT NULL, metric TEXT NOT NULL, site TEXT NOT NULL, "
                "step INTEGER NOT NULL, layer INTEGER NOT NULL, value REAL, "
                "PRIMARY KEY (run_id, metric, site, step, layer)) WITHOUT ROWID"
            )
            self.conn.execute(
                "CREATE TABLE matrix_rows (run_id INTEGER NOT NULL, metric TEXT NOT NULL, site TEXT NOT NULL, "
                "step INTEGER NOT NULL, vals BLOB NOT NULL, PRIMARY KEY (run_id, metric, site, step)) WITHOUT ROWID"
            )
        else:
            self.conn.execute(
                "CREATE TABLE series_rows (series_id INTEGER NOT NULL, step INTEGER NOT NULL, "
                "part INTEGER NOT NULL, vals BLOB NOT NULL, PRIMARY KEY (series_id, step, part)) WITHOUT ROWID"
            )
        self.sid = {m: i + 1 for i, m in enumerate(METRICS)}

    def write(self, recs: list) -> None:
        self.conn.execute("BEGIN")
        if self.schema1:
            self.conn.executemany(
                "INSERT INTO metric_values VALUES (?,?,?,?,?,?)",
                [
                    (1, m, s, r.step, j + 1, v)
                    for r in recs
                    for (m, s), vals in r.values.items()
                    for j, v in enumerate(vals.tolist())
                ],
            )
            self.conn.executemany(
                "INSERT INTO matrix_rows VALUES (?,?,?,?,?)",
                [
                    (1, m, s, r.step, vals.astype("<f8").tobytes())
                    for r in recs
                    for (m, s), vals in r.values.items()
                ],
            )
        else:
            rows = sorted(
                (self.sid[m], r.step, 0, vals.astype("<f8").tobytes())
                for r in recs
                for (m, _), vals in r.values.items()
            )
            self.conn.executemany("INSERT INTO series_rows VALUES (?,?,?,?)", rows)
        self.conn.execute("COMMIT")

    def load(self, metric: str) -> np.ndarray:
        if self.schema1:  # what schema 1's reader read: the matrix_rows blobs
            sql, args = (
                "SELECT step, vals FROM matrix_rows WHERE run_id=1 AND metric=? AND site='output' ORDER BY step",
                (metric,),
            )
        else:
            sql, args = (
                "SELECT step, vals FROM series_rows WHERE series_id=? ORDER BY step, part",
                (self.sid[metric],),
            )
        rows = self.conn.execute(sql, args).fetchall()
        return np.frombuffer(b"".join(r[1] for r in rows), "<f8").reshape(len(rows), N_LAYERS).copy()


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


def bench_write_and_load(args: argparse.Namespace, tmp: str) -> None:
    from layerscope import load
    from layerscope.store import LayerInfo, Store

    path = os.path.join(tmp, "store.db")
    rng = np.random.default_rng(0)
    st = Store(path)
    st.create_run("direct", layers=[LayerInfo(i + 1, f"h.{i}") for i in range(N_LAYERS)])
    bare = Bare(os.path.join(tmp, "bare.db"), schema1=False)
    bare_v1 = Bare(os.path.join(tmp, "bare-v1.db"), schema1=True)
    recf = RecorderFlush(path)
    per_batch = BATCH * N_LAYERS * len(METRICS)

    names = [
        "Recorder.flush",
        "Store.write_steps",
        "bare sqlite, blobs",
        "bare sqlite, schema 1 (long rows + blobs)",
    ]
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    next_step = 1
    for r in range(args.rounds):
        recs = records(next_step, BATCH, rng)  # built outside the timed part
        recf.prepare()
        jobs = {
            names[0]: recf.flush,
            names[1]: lambda recs=recs: st.write_steps("direct", recs),
            names[2]: lambda recs=recs: bare.write(recs),
            names[3]: lambda recs=recs: bare_v1.write(recs),
        }
        for name in names[r % 4 :] + names[: r % 4]:
            c0, w0 = time.process_time(), time.perf_counter()
            jobs[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        next_step += BATCH
    floor = C.median(cpu[names[2]])
    rows = []
    for name in names:
        med, wmed = C.median(cpu[name]), C.median(wall[name])
        rows.append(
            [name, f"{per_batch / med:,.0f}", med * 1e3, f"{med / floor:.2f}", f"{per_batch / wmed:,.0f}"]
        )
    print(
        C.table(
            ["writer", "values/s (cpu)", "cpu ms per flush of 50 steps", "vs bare blobs", "values/s (wall)"],
            rows,
            "lrrrr",
        )
    )
    print(
        f"{args.rounds} interleaved rounds; {per_batch:,} values per flush; cpu = this process's CPU time "
        "(blind to other work on the machine), wall = perf_counter"
    )
    print()

    have = next_step - 1
    steps = args.steps
    t0 = time.perf_counter()
    while have < steps:
        k = min(500, steps - have)
        recs = records(have + 1, k, rng)
        st.write_steps("direct", recs)
        bare.write(recs)
        bare_v1.write(recs)
        have += k
    build_s = time.perf_counter() - t0
    st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    hm = st.load("direct", "rms")
    assert hm.values.shape == (steps, N_LAYERS), hm.values.shape
    assert np.array_equal(bare.load("rms"), hm.values)
    assert bare_v1.load("rms").shape == hm.values.shape
    jobs = {
        "Store.load": lambda: st.load("direct", "rms"),
        "layerscope.load (open, read, close)": lambda: load(path, run="direct", metric="rms"),
        "bare sqlite": lambda: bare.load("rms"),
        "bare sqlite, schema 1's matrix_rows": lambda: bare_v1.load("rms"),
    }
    lc, lw = C.interleave_cpu_wall(jobs, args.repeats)
    base = C.median(lc["bare sqlite"])
    rows = []
    for name in jobs:
        med = C.median(lc[name]) * 1e3
        target = (
            f"<= {LOAD_TARGET_MS:.0f} ms {C.verdict(med, LOAD_TARGET_MS)}"
            if name.startswith(("St", "la"))
            else ""
        )
        rows.append([name, med, f"{med / (base * 1e3):.2f}", C.median(lw[name]) * 1e3, target])
    print(
        C.table(
            [f"load one {steps} x {N_LAYERS} matrix", "cpu ms", "vs bare sqlite", "wall ms", "target (cpu)"],
            rows,
            "lrrrl",
        )
    )
    # SQL users' long rows: the metric_values view decodes each value in SQL.
    n_view = 50
    t0 = time.perf_counter()
    got = st.conn.execute(
        "SELECT step, layer, value FROM metric_values WHERE run_id=? AND metric='rms' AND site='output' "
        "AND step<=? ORDER BY step, layer",
        (st.run_id("direct"), n_view),
    ).fetchall()
    view_us = (time.perf_counter() - t0) / len(got) * 1e6
    assert len(got) == n_view * N_LAYERS
    print(
        f"{args.repeats} interleaved repeats; store {os.path.getsize(path) / 2**20:.0f} MiB "
        f"({steps} steps x {N_LAYERS} layers x {len(METRICS)} metrics, + the recorder run); topping up to "
        f"{steps} steps took {build_s:.1f} s. The metric_values view (SQL) reads {view_us:.0f} us per value "
        f"({len(got):,} rows of one metric, wall)."
    )
    print()
    recf.rec.close()
    st.close()


def write_v1(path: str, n_steps: int) -> None:
    """The space benchmark's store as schema 1 wrote it: every value as a long row and, in the same
    transaction, one blob per (metric, site, step) in matrix_rows (the DDL of schema 1)."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    for ddl in (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL, "
        "model TEXT NOT NULL DEFAULT '', config TEXT NOT NULL DEFAULT '{}', version TEXT NOT NULL DEFAULT '', "
        "source TEXT NOT NULL DEFAULT 'live')",
        "CREATE TABLE layers (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, layer INTEGER NOT NULL, "
        "name TEXT NOT NULL, stack TEXT NOT NULL DEFAULT '', depth INTEGER NOT NULL, PRIMARY KEY (run_id, layer)) "
        "WITHOUT ROWID",
        "CREATE TABLE steps (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step INTEGER NOT NULL, "
        "source TEXT NOT NULL DEFAULT 'live', time REAL NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID",
        "CREATE TABLE metric_values (run_id INTEGER NOT NULL, metric TEXT NOT NULL, site TEXT NOT NULL, "
        "step INTEGER NOT NULL, layer INTEGER NOT NULL, value REAL, PRIMARY KEY (run_id, metric, site, step, layer)) "
        "WITHOUT ROWID",
        "CREATE TABLE matrix_rows (run_id INTEGER NOT NULL, metric TEXT NOT NULL, site TEXT NOT NULL, "
        "step INTEGER NOT NULL, vals BLOB NOT NULL, PRIMARY KEY (run_id, metric, site, step)) WITHOUT ROWID",
        "CREATE TABLE hists (run_id INTEGER NOT NULL, site TEXT NOT NULL, step INTEGER NOT NULL, "
        "layer INTEGER NOT NULL, counts BLOB NOT NULL, PRIMARY KEY (run_id, site, step, layer)) WITHOUT ROWID",
    ):
        c.execute(ddl)
    c.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    c.execute("INSERT INTO runs(id, name, created) VALUES (1, 'a', '2024-06-11T00:00:00')")
    c.executemany(
        "INSERT INTO layers VALUES (1, ?, ?, '', ?)", [(j + 1, f"h.{j}", j + 1) for j in range(N_LAYERS)]
    )
    rng = np.random.default_rng(0)
    for s0 in range(1, n_steps + 1, BATCH):
        recs = records(s0, min(BATCH, n_steps + 1 - s0), rng, SPACE_METRICS)
        for r in recs:  # one transaction per step, as schema 1 did
            c.execute("BEGIN IMMEDIATE")
            for (m, site), vals in r.values.items():
                c.executemany(
                    "INSERT INTO metric_values VALUES (1,?,?,?,?,?)",
                    [(m, site, r.step, j + 1, v) for j, v in enumerate(vals.tolist())],
                )
                c.execute(
                    "INSERT INTO matrix_rows VALUES (1,?,?,?,?)",
                    (m, site, r.step, vals.astype("<f8").tobytes()),
                )
            c.execute("INSERT INTO steps VALUES (1, ?, 'live', 0)", (r.step,))
            c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def bench_space(args: argparse.Namespace, tmp: str) -> None:
    from layerscope import load
    from layerscope.store import LayerInfo, Store

    n = args.space_steps
    n_values = n * N_LAYERS * len(SPACE_METRICS)
    path = os.path.join(tmp, "space.db")
    rng = np.random.default_rng(0)
    write_s = write_wall = 0.0
    with Store(path) as st:
        st.create_run("a", [LayerInfo(j + 1, f"h.{j}") for j in range(N_LAYERS)])
        for s0 in range(1, n + 1, BATCH):
            recs = records(s0, min(BATCH, n + 1 - s0), rng, SPACE_METRICS)
            c0, t0 = time.process_time(), time.perf_counter()
            st.write_steps("a", recs)
            write_s += time.process_time() - c0
            write_wall += time.perf_counter() - t0
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    loads, load_walls = [], []
    for _ in range(5):
        c0, t0 = time.process_time(), time.perf_counter()
        hm = load(path, run="a", metric="rms")
        loads.append(time.process_time() - c0)
        load_walls.append(time.perf_counter() - t0)
    assert hm.values.shape == (n, N_LAYERS)
    rows = [
        [
            "schema 2 (blobs, series table)",
            f"{size / 2**20:.1f}",
            f"{size / n_values:.2f}",
            f"<= {SPACE_TARGET:.0f} {C.verdict(size / n_values, SPACE_TARGET)}",
            f"{write_s:.1f} s cpu ({n_values / write_s:,.0f} values/s), {write_wall:.1f} s wall",
            f"{C.median(loads) * 1e3:.0f} ms cpu, {C.median(load_walls) * 1e3:.0f} ms wall",
        ]
    ]
    if not args.no_v1:
        v1 = os.path.join(tmp, "space-v1.db")
        t0 = time.perf_counter()
        write_v1(v1, n)
        v1_write = time.perf_counter() - t0
        v1_size = os.path.getsize(v1)
        rows.append(
            [
                "schema 1 (long rows + blobs, raw SQL)",
                f"{v1_size / 2**20:.1f}",
                f"{v1_size / n_values:.2f}",
                "",
                f"{v1_write:.1f} s (raw SQL)",
                "",
            ]
        )
        t0 = time.perf_counter()
        with Store(v1) as st:  # the one migration, and the VACUUM that gives the space back
            upgrade_s = time.perf_counter() - t0
            hm1 = st.load("a", "rms")
        assert hm1.values.shape == (n, N_LAYERS)
        rows.append(
            [
                "schema 1 -> 2, upgraded in place",
                f"{os.path.getsize(v1) / 2**20:.1f}",
                f"{os.path.getsize(v1) / n_values:.2f}",
                "",
                f"upgrade {upgrade_s:.1f} s",
                "",
            ]
        )
    print(
        C.table(
            [
                f"{n:,} steps x {N_LAYERS} layers x {len(SPACE_METRICS)} metrics",
                "MiB",
                "bytes/value",
                "target",
                "write (flushes of 50 steps)",
                f"load one {n:,} x {N_LAYERS}",
            ],
            rows,
            "lrrlll",
        )
    )
    print(f"{n_values:,} values; raw float64 would be {n_values * 8 / 2**20:.1f} MiB (8 bytes/value)")
    print()


def main(argv: list[str] | None = None) -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved write rounds of 50 steps (default 15)")
    p.add_argument("--steps", type=int, default=5000, help="steps in the loaded matrix (default 5000)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved load repeats (default 15)")
    p.add_argument(
        "--space-steps", type=int, default=20_000, help="steps of the space store (default 20,000)"
    )
    p.add_argument("--no-v1", action="store_true", help="skip the schema-1 reference (most of the run time)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.repeats, args.space_steps = 5, 1000, 7, 2000
    import torch

    torch.set_num_threads(args.threads)
    C.header(f"store: {N_LAYERS} layers x {len(METRICS)} metrics per step, flushes of {BATCH} steps")
    tmp = tempfile.mkdtemp(prefix="ls-bench-")
    bench_write_and_load(args, tmp)
    bench_space(args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
