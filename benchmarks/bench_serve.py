"""Does a dashboard watching the store slow down the process recording into it?

A writer records into a store for ``--seconds`` per window, alternately with and without a
dashboard following it, in interleaved rounds (off/on, on/off, ...; each window records a new run,
so every window measures the same thing), and the write throughput (steps per second) of adjacent
windows is compared. Writers (``--writer``):

    recorder   a Recorder on a 4-layer GPT doing forwards only, every step recorded with the
               default 4 metrics and flush_every=1 (one store transaction per step): recording
               and writing are a large share of each step, so a slower store would show
    training   the same Recorder on the built-in 12-layer GPT's training loop
    store      Store.write_step alone as fast as it goes (12 layers x 4 metrics a step): a stress
               test, far above any training loop's rate

"With the dashboard" is the real server (``layerscope serve``, its own process) answering a client
in a third process that makes the page's requests at the page's default interval: ``/api/runs``
every poll, ``/api/heatmap?since_step=`` when the run grew (the whole run on its first poll),
``/api/report`` at most every 10 s and at most 1/50 of the time (the page's throttle). "Without"
is the same server with no page open. The client checks that it saw every step the writer
committed, and the server's CPU time is read from /proc: that figure does not depend on how
busy the machine is, while the throughput ratio does (run it on a quiet machine).

Target (issue 9): with/without >= 0.95.

``--paint`` measures instead the first paint of a long run in Chromium (issue 23): a 20,000-step
x 96-layer run is written, served, and the page opened; the time from navigation to a drawn
heatmap is taken in interleaved rounds, for the page as it is (an overview sized to the plot:
``/api/heatmap?max_rows=``) and for what it did before (the whole matrix as JSON, parsed and drawn
the same way), with the size of each answer.

    python benchmarks/bench_serve.py              # ~4 min on 2 CPU cores
    python benchmarks/bench_serve.py --quick      # ~1 min, rough
    python benchmarks/bench_serve.py --paint      # ~2 min: first paint of 20,000 x 96
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

TARGET = 0.95  # with / without
DEFAULT_POLL_MS = 1500
REPORT_EVERY_S = 10.0  # the page's REPORT_EVERY_MS
REPORT_COST_FACTOR = 50  # the page's REPORT_COST_FACTOR
METRIC, SITE = "rms", "output"


# -- the dashboard's client: the page's requests, in a process of its own ----------------------------


def page_client(url: str, poll_ms: int, active: Any, idle: Any, seen: Any, stop: Any, out: Any) -> None:
    """Poll like app.js while ``active`` is set, following the newest run; ``seen`` is the last step
    it has; ``idle`` is set between rounds. Puts its stats on ``out`` when ``stop`` is set."""
    stats: dict[str, Any] = {"runs": 0, "heatmap": 0, "report": 0, "errors": [], "latency": [], "rounds": []}

    def get(path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}api/{path}{'?' + q if q else ''}", timeout=60) as r:
            body = json.load(r)
        stats["latency"].append(time.perf_counter() - t0)
        stats[path] += 1
        return body

    idle.set()
    while not stop.is_set():
        if not active.wait(0.02):
            continue
        idle.clear()
        # The page (left open) sees a new run start, reads it whole, then follows it.
        run: str | None = None
        last: int | None = None
        rows = 0
        report_at, report_every = 0.0, REPORT_EVERY_S
        grew = False
        next_poll = time.monotonic()
        while active.is_set() and not stop.is_set():
            try:
                listed = get("runs")["runs"]
                if run is None and listed:
                    run = listed[-1]["run"]
                summary = next((r for r in listed if r["run"] == run), None)
                if summary and summary["steps"] and summary["last_step"] != last:
                    d = get("heatmap", run=run, metric=METRIC, site=SITE, since_step=last)
                    rows += len(d["steps"])
                    last = d["last_step"]
                    seen.value = last
                    grew = True
                now = time.monotonic()
                if grew and now - report_at >= report_every:
                    t0 = time.perf_counter()
                    get("report", run=run, metric=METRIC, site=SITE)
                    report_every = max(REPORT_EVERY_S, REPORT_COST_FACTOR * (time.perf_counter() - t0))
                    report_at, grew = now, False
            except Exception as e:
                stats["errors"].append(f"{type(e).__name__}: {e}")
            next_poll += poll_ms / 1000
            while active.is_set() and time.monotonic() < next_poll:
                time.sleep(0.01)
        stats["rounds"].append({"run": run, "last_step": last, "rows": rows})
        seen.value = -1
        idle.set()
    out.put(stats)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc; NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def start_server(store: str, poll_ms: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", "serve", store, "--port", "0", "--poll-ms", str(poll_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"layerscope serve did not start: {line!r} {proc.communicate()[1]}")
    return proc, m.group(0)


# -- writers ------------------------------------------------------------------------------------------


class RecorderWriter:
    """A training loop recording every step with a Recorder (default 4 metrics, flush_every=1)."""

    SIZES = {
        "recorder": dict(n_layer=4, n_embd=32, n_head=2, block_size=16, batch=2),
        "training": dict(n_layer=12, n_embd=64, n_head=4, block_size=32, batch=8),
    }
    LABELS = {
        "recorder": "Recorder, 4-layer GPT, forward only (recording-bound)",
        "training": "Recorder, 12-layer GPT training loop",
    }

    def __init__(self, store: str, kind: str) -> None:
        import torch

        import layerscope
        from layerscope.testing import tiny_gpt

        size = dict(self.SIZES[kind])
        batch = size.pop("batch")
        torch.manual_seed(0)
        self.layerscope = layerscope
        self.store = store
        self.label = self.LABELS[kind]
        self.model = tiny_gpt(**size)
        self.train = kind == "training"  # else: forwards only, so that recording dominates the step
        self.no_grad = torch.no_grad
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.x = torch.randint(0, 256, (batch, size["block_size"]))
        self.rec: Any = None
        self.n = 0
        self.t_train = self.t_record = 0.0
        self.new_run("warmup")

    def new_run(self, run: str) -> None:
        if self.rec is not None:
            self.rec.close()
        self.rec = self.layerscope.Recorder(self.model, self.store, run=run, flush_every=1)
        self.n = 0

    def step(self) -> None:
        t0 = time.perf_counter()
        if self.train:
            _, loss = self.model(self.x, self.x)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        else:
            with self.no_grad():
                self.model(self.x)  # train mode: the Recorder's hooks record it
        self.n += 1
        t1 = time.perf_counter()
        self.rec.step(self.n)  # collect, and flush the step to the store (flush_every=1)
        t2 = time.perf_counter()
        self.t_train += t1 - t0
        self.t_record += t2 - t1

    @property
    def record_share(self) -> float:
        return self.t_record / max(1e-12, self.t_train + self.t_record)

    def close(self) -> None:
        self.rec.close()


class StoreWriter:
    """Store.write_step as fast as it goes: 12 layers x 4 metrics a step, one transaction each."""

    label = "Store.write_step alone, as fast as it goes (stress)"
    record_share = 1.0

    def __init__(self, store: str, kind: str) -> None:
        import numpy as np

        from layerscope.store import LayerInfo, StepRecord, Store

        self.np, self.StepRecord, self.LayerInfo = np, StepRecord, LayerInfo
        self.st = Store(store)
        self.rng = np.random.default_rng(0)
        self.new_run("warmup")

    def new_run(self, run: str) -> None:
        self.run = run
        self.st.create_run(run, [self.LayerInfo(i + 1, f"h.{i}") for i in range(12)])
        self.n = 0

    def step(self) -> None:
        self.n += 1
        v = self.rng.random((4, 12)) + self.n * 1e-4
        self.st.write_step(
            self.run,
            self.StepRecord(
                self.n, {(m, SITE): v[k] for k, m in enumerate(("mean", "std", "rms", "max_abs"))}
            ),
        )

    def close(self) -> None:
        self.st.close()


def wal_mib(store: str) -> float:
    """Size of the store's write-ahead log: readers that hold snapshots keep it from being reset."""
    try:
        return os.path.getsize(store + "-wal") / 2**20
    except OSError:
        return 0.0


def throughput(step: Callable[[], None], seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        step()
        n += 1
        t = time.perf_counter()
        if t >= end:
            return n / (t - t0)


def bench(kind: str, rounds: int, seconds: float, poll_ms: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench_serve_")
    store = os.path.join(tmp, "runs.db")
    writer: Any = StoreWriter(store, kind) if kind == "store" else RecorderWriter(store, kind)
    for _ in range(20):  # warm up: the first steps allocate, and the first SQL compiles
        writer.step()
    server, url = start_server(store, poll_ms)
    ctx = mp.get_context("spawn")
    active, idle, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    seen = ctx.Value("q", -1)
    client = ctx.Process(target=page_client, args=(url, poll_ms, active, idle, seen, stop, out), daemon=True)
    client.start()
    off: list[float] = []
    on: list[float] = []
    committed: list[tuple[str, int]] = []
    wal: dict[str, list[float]] = {"off": [], "on": []}
    cpu = {"off": 0.0, "on": 0.0, "off_s": 0.0, "on_s": 0.0}
    try:
        idle.wait(60)
        for r in range(rounds):
            for with_page in (False, True) if r % 2 == 0 else (True, False):
                # Every window records a new run, so each measures the same thing: a run starting.
                run = f"{kind}-{r}-{'on' if with_page else 'off'}"
                writer.new_run(run)
                writer.step()  # the run exists, with its first step
                key = "on" if with_page else "off"
                if with_page:
                    active.set()
                    wait_for(lambda: seen.value >= 1, 10)  # the page found the run and read it
                c0, t0 = cpu_seconds(server.pid), time.perf_counter()
                (on if with_page else off).append(throughput(writer.step, seconds))
                cpu[key] += cpu_seconds(server.pid) - c0
                cpu[key + "_s"] += time.perf_counter() - t0
                wal[key].append(wal_mib(store))
                if with_page:
                    committed.append((run, writer.n))
                    wait_for(lambda: seen.value == writer.n, 3 * poll_ms / 1000 + 5)  # the page catches up
                    active.clear()
                    idle.wait(60)
        stop.set()
        stats = out.get(timeout=120)
        client.join(timeout=10)
    finally:
        stop.set()
        writer.close()
        server.terminate()
        server.communicate(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [a / b for a, b in zip(on, off)]
    lo, hi = C.bootstrap_ratio([[x] for x in on], [[x] for x in off], lambda xs: C.median(x[0] for x in xs))
    lat = sorted(stats["latency"])
    return {
        "kind": kind,
        "label": writer.label,
        "record_share": writer.record_share,
        "off": off,
        "on": on,
        "pair_ratio": C.median(ratios),
        "ci": (lo, hi),
        "stats": stats,
        "committed": committed,
        "wal": wal,
        "server_cpu_on": cpu["on"] / max(cpu["on_s"], 1e-9),
        "server_cpu_off": cpu["off"] / max(cpu["off_s"], 1e-9),
        "lat_median_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "lat_max_ms": 1000 * lat[-1] if lat else float("nan"),
    }


def write_long_run(path: str, n_steps: int, n_layers: int) -> None:
    """A run of ``n_steps`` x ``n_layers`` rms values with a one-step spike, written through Store."""
    import numpy as np

    from layerscope.store import LayerInfo, StepRecord, Store

    rng = np.random.default_rng(0)
    with Store(path) as st:
        st.create_run("long", [LayerInfo(i + 1, f"h.{i}", "h", i + 1) for i in range(n_layers)])
        base = 0.01 * (1 + np.linspace(0, 1, n_layers))
        batch = []
        for i in range(n_steps):
            row = base * (1 + 0.5 * i / n_steps) + rng.normal(0, 2e-4, n_layers)
            if i == n_steps // 3:
                row[n_layers // 2 : n_layers // 2 + 4] = 0.2
            batch.append(StepRecord(10 * (i + 1), {("rms", "output"): row.tolist()}))
            if len(batch) == 2000:
                st.write_steps("long", batch)
                batch = []
        if batch:
            st.write_steps("long", batch)


# The page before issue 23: the whole matrix as JSON, parsed, drawn as a heatmap (category rows).
OLD_PAINT_JS = """async () => {
  const t0 = performance.now();
  const res = await fetch('/api/heatmap?run=long&metric=rms&site=output');
  const d = await res.json();
  const t1 = performance.now();
  const div = document.createElement('div'); div.style.height = '480px'; document.body.append(div);
  await Plotly.newPlot(div, [{type: 'heatmap', x: d.layers, y: d.steps.map(String), z: d.values}],
    {yaxis: {type: 'category', autorange: 'reversed'}});
  return [performance.now() - t0, t1 - t0, Number(res.headers.get('content-length') || 0)];
}"""


def paint(rounds: int, n_steps: int, n_layers: int) -> None:
    import tempfile

    from playwright.sync_api import sync_playwright

    C.header(f"bench_serve --paint: first paint of a {n_steps} x {n_layers} run in Chromium")
    tmp = tempfile.mkdtemp(prefix="bench-paint-")
    store = os.path.join(tmp, "runs.db")
    t = time.perf_counter()
    write_long_run(store, n_steps, n_layers)
    print(f"wrote the run in {time.perf_counter() - t:.1f} s")
    proc, url = start_server(store, 1500)
    chromium = os.environ.get("LAYERSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    new, old, sizes = [], [], {}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"]
            )
            for k in range(rounds):
                for variant in ("new", "old") if k % 2 == 0 else ("old", "new"):
                    ctx = b.new_context(viewport={"width": 1400, "height": 1000})
                    page = ctx.new_page()
                    if variant == "new":
                        got: list[int] = []
                        page.on(
                            "response",
                            lambda r, got=got: (
                                got.append(int(r.headers.get("content-length", 0)))
                                if "/api/heatmap" in r.url
                                else None
                            ),
                        )
                        t0 = time.perf_counter()
                        page.goto(url + "#view=run&run=long&metric=rms&site=output")
                        page.wait_for_function(
                            "() => { const d = document.getElementById('heatmap');"
                            " return d && d.data && d.data[0].z.length > 0 && d.querySelector('.hm'); }",
                            timeout=120000,
                        )
                        new.append(1000 * (time.perf_counter() - t0))
                        sizes["overview"] = got[0] if got else 0
                        sizes["rows"] = page.evaluate("document.getElementById('heatmap').data[0].z.length")
                    else:
                        t0 = time.perf_counter()
                        page.goto(url + "#view=compare")  # the page, without drawing the run
                        page.wait_for_function("() => window.Plotly !== undefined", timeout=60000)
                        load = 1000 * (time.perf_counter() - t0)
                        total, _fetch, size = page.evaluate(OLD_PAINT_JS)
                        old.append(load + total)
                        sizes["whole"] = size
                    ctx.close()
            b.close()
    finally:
        proc.kill()
        proc.communicate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"overview answer: {sizes.get('overview', 0) / 1e6:.2f} MB, {sizes.get('rows')} rows drawn; "
        f"whole matrix as JSON: {sizes.get('whole', 0) / 1e6:.1f} MB"
    )
    print("first paint, overview (ms):   " + ", ".join(f"{x:.0f}" for x in new))
    print("first paint, whole JSON (ms): " + ", ".join(f"{x:.0f}" for x in old))
    print(
        C.table(
            ["page", "first paint, median ms", "answer"],
            [
                ["overview (max_rows)", f"{C.median(new):.0f}", f"{sizes.get('overview', 0) / 1e6:.2f} MB"],
                ["whole matrix as JSON", f"{C.median(old):.0f}", f"{sizes.get('whole', 0) / 1e6:.2f} MB"],
            ],
            align="lrl",
        )
    )


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--paint", action="store_true", help="first paint of a 20,000 x 96 run in Chromium")
    p.add_argument(
        "--paint-steps", type=int, default=20_000, help="--paint: steps of the run (default 20000)"
    )
    p.add_argument("--writer", choices=["recorder", "training", "store", "all"], default="all")
    p.add_argument("--rounds", type=int, default=None, help="off/on pairs (default 10; --quick 4)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per window (default 2; --quick 1.5)")
    p.add_argument(
        "--poll-ms", type=int, default=DEFAULT_POLL_MS, help="the page's poll interval (default: the page's)"
    )
    a = p.parse_args()
    if a.paint:
        paint(a.rounds or (2 if a.quick else 3), a.paint_steps, 96)
        return
    rounds = a.rounds or (4 if a.quick else 10)
    seconds = a.seconds or (1.5 if a.quick else 2.0)
    import torch

    torch.set_num_threads(a.threads)
    C.header("bench_serve: write throughput with and without the dashboard watching the store")
    print(
        f"{rounds} interleaved rounds of {seconds:g} s per variant; the page polls every {a.poll_ms} ms; "
        f"target with/without >= {TARGET}"
    )
    print()
    rows = []
    for kind in ["recorder", "training", "store"] if a.writer == "all" else [a.writer]:
        res = bench(kind, rounds, seconds, a.poll_ms)
        s = res["stats"]
        missed = [
            f"run {run}: page at step {rd['last_step']} of run {rd['run']}, writer at {n}"
            for rd, (run, n) in zip(s["rounds"], res["committed"])
            if (rd["run"], rd["last_step"]) != (run, n)
        ]
        rows.append(
            [
                res["label"],
                C.median(res["off"]),
                C.median(res["on"]),
                res["pair_ratio"],
                f"{res['ci'][0]:.3f}-{res['ci'][1]:.3f}",
                f"{1000 * res['server_cpu_on']:.1f}",
                C.verdict(res["pair_ratio"], TARGET, lower_is_better=False),
            ]
        )
        print(f"### {res['label']}")
        print(f"recording and writing the store: {100 * res['record_share']:.0f}% of the writer's step time")
        print("steps/s without: " + ", ".join(f"{x:.1f}" for x in res["off"]))
        print("steps/s with:    " + ", ".join(f"{x:.1f}" for x in res["on"]))
        print(
            f"dashboard: {s['runs']} /api/runs, {s['heatmap']} /api/heatmap ({sum(r['rows'] for r in s['rounds'])} "
            f"rows), {s['report']} /api/report; latency median {res['lat_median_ms']:.1f} ms, max "
            f"{res['lat_max_ms']:.0f} ms; {len(s['errors'])} errors"
        )
        for e in s["errors"][:5]:
            print(f"  error: {e}")
        print(
            "the page saw every committed step"
            if not missed
            else "the page fell behind: " + "; ".join(missed)
        )
        print(
            f"server CPU: {1000 * res['server_cpu_on']:.1f} ms per second while the page follows the run, "
            f"{1000 * res['server_cpu_off']:.1f} ms/s with no page open"
        )
        print(
            f"WAL at the end of a window: without {max(res['wal']['off']):.1f} MiB, with "
            f"{max(res['wal']['on']):.1f} MiB (largest)"
        )
        print()
    print(
        C.table(
            [
                "writer",
                "steps/s without",
                "steps/s with",
                "with/without (median of pairs)",
                "90% interval",
                "server CPU ms/s",
                "target >= 0.95",
            ],
            rows,
            align="lrrrrrl",
        )
    )


if __name__ == "__main__":
    main()
