"""Read-only access to a run store for the dashboard: a fresh connection per request, short reads.

The dashboard polls a store that a training process is writing. So that it never slows that
process down:

- every request opens its own read-only connection (``mode=ro`` and ``PRAGMA query_only``) and
  closes it before answering; nothing is shared between the server's threads;
- each matrix is read in one short transaction (WAL: readers never block the writer, and a
  reader sees a step whole or not at all);
- polling is incremental: ``since_step`` reads only the rows recorded after the last step the page
  has, through the primary key, so a poll costs the same at step 100 as at step 100 000.

Everything is read through :class:`Store` (``run_table``, ``metrics``, ``load(since_step=)``): the
dashboard writes no SQL of its own.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.compare import align, diff_values, summarize
from ..errors import ConfigError, NotFoundError
from ..render.alerts import alert_value_text
from ..render.hist import bin_window, choose_layers, edge_ticks
from ..render.labels import spread_rows
from ..render.reduce import reduce_counts, reduce_rows
from ..store import Heatmap, Store
from ..store.heads import default_reduce
from ..store.histogram import Histograms

# A dashboard read waits at most this long for a lock (only WAL recovery or a checkpoint that
# truncates the log take one a reader must wait for); the page retries at the next poll.
READ_BUSY_TIMEOUT_MS = 2000
PROFILE_REF_ROWS = 5  # reference profiles sent with an overview (first and last step included)


@dataclass(frozen=True)
class RunSummary:
    """One row of the run list: cheap to compute (no scan of the run's values)."""

    id: int
    name: str
    created: str
    model: str
    source: str
    n_steps: int
    first_step: int | None
    last_step: int | None
    n_layers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run": self.name,
            "created": self.created,
            "model": self.model,
            "source": self.source,
            "steps": self.n_steps,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "layers": self.n_layers,
        }


def store_status(path: Path) -> str:
    """``"missing"`` (no file yet), ``"empty"`` (created, nothing committed) or ``"ok"``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if path.is_dir():
        raise NotFoundError(
            f"{str(path)!r} is a folder, not a store file; pass a file path such as {str(path / 'runs.db')!r}."
        )
    return "empty" if size == 0 else "ok"


@contextmanager
def open_readonly(path: str | os.PathLike[str]) -> Iterator[Store]:
    """A read-only Store on its own connection, closed on exit. Writing through it fails."""
    st = Store(path, readonly=True)
    try:
        st.conn.execute("PRAGMA query_only=ON")
        st.conn.execute(f"PRAGMA busy_timeout={READ_BUSY_TIMEOUT_MS}")
        yield st
    finally:
        st.close()


def run_summaries(st: Store) -> list[RunSummary]:
    """Every run with its step count and range, in creation order, from one read transaction."""
    return [
        RunSummary(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], int(r[8]))
        for r in st.run_table()
    ]


def run_summary(st: Store, run: str) -> RunSummary:
    for s in run_summaries(st):
        if s.name == run:
            return s
    st.run_id(run)  # raises NotFoundError naming the runs there
    raise NotFoundError(f"run {run!r} not found in {str(st.path)!r}.")  # pragma: no cover - raced a delete


# A per-head series (site attn) is drawn over its heads: the largest max logit, the mean entropy/sink.
def read_matrix(st: Store, run: str, metric: str, site: str, since_step: int | None = None) -> Heatmap:
    """The (steps x layers) matrix of one run, metric and site; with ``since_step``, only later steps
    (possibly none: nothing new yet). One short read transaction, through the primary key. A
    per-head series is reduced over its heads (:func:`~layerscope.store.heads.default_reduce`; ``meta["reduce"]`` says how)."""
    try:
        return st.load(run, metric, site, since_step=since_step)
    except ConfigError:
        # The one ConfigError load raises for a valid name: a per-head series needs a reduction.
        # Asking for it only then keeps a plain series' read as it was (no series scan per poll).
        return st.load(run, metric, site, since_step=since_step, reduce=default_reduce(metric))


# -- JSON shapes ---------------------------------------------------------------------------------


def finite_or_none(values: np.ndarray) -> list[list[float | None]]:
    """Rows of floats with NaN and +-inf as None (strict JSON has neither)."""
    return [[x if math.isfinite(x) else None for x in row] for row in values.tolist()]


def infinite_cells(values: np.ndarray) -> list[list[int]]:
    """``[row, column, +1 or -1]`` for each infinite cell, so the page can tell inf from absent."""
    rows, cols = np.nonzero(np.isinf(values))
    return [[int(i), int(j), 1 if values[i, j] > 0 else -1] for i, j in zip(rows, cols)]


def heatmap_json(hm: Heatmap, since_step: int | None = None) -> dict[str, Any]:
    """The JSON the page draws: ``values[i][j]`` is ``steps[i]`` x ``layers[j]``; null = absent."""
    return {
        "run": hm.run,
        "metric": hm.metric,
        "site": hm.site,
        "layers": list(hm.layers),
        "layer_names": list(hm.layer_names),
        "steps": list(hm.steps),
        "values": finite_or_none(hm.values),
        "inf": infinite_cells(hm.values),
        "since_step": since_step,
        "last_step": hm.steps[-1] if len(hm.steps) else since_step,
    }


def events_json(st: Store, run: str, since_step: int | None = None) -> dict[str, Any]:
    """The run's watch alerts, newest first (the page's list and its heatmap markers): step, site,
    metric, layer (1-based) and its name, head (0-based or null), the value (null when not finite,
    ``value_text`` says which), rule and message. With ``since_step``, only later ones.

    One short read (the events table's index on run and step); an old store without any is ``[]``.
    """
    names = {li.layer: li.name for li in st.layers(run)}
    out = []
    for ev in st.events(run):
        if ev.kind != "alert" or (since_step is not None and ev.step <= since_step):
            continue
        out.append(
            {
                "step": ev.step,
                "site": ev.site,
                "metric": ev.metric,
                "layer": ev.layer,
                "layer_name": names.get(ev.layer, "") if ev.layer is not None else "",
                "head": ev.head,
                "value": ev.value if math.isfinite(ev.value) else None,
                "value_text": alert_value_text(ev.value),
                "rule": ev.rule,
                "message": ev.message,
                "variant": ev.variant,
            }
        )
    out.reverse()  # newest first (events come by step, in the order written)
    return {"run": run, "since_step": since_step, "n": len(out), "alerts": out}


def compare_json(a: Heatmap, b: Heatmap, relative: bool = False) -> dict[str, Any]:
    """Runs A and B on their common steps and layers, B - A (``relative``: 100 x (B - A) / |A|, %)
    and the summary of where they differ, all from :mod:`layerscope.analysis.compare` (the same numbers
    and sentences as ``layerscope compare``). No common step yet is an answer, not an error."""
    head: dict[str, Any] = {
        "run_a": a.run,
        "run_b": b.run,
        "metric": a.metric,
        "site": a.site,
        "mode": "relative" if relative else "absolute",
        "a_steps": len(a.steps),
        "b_steps": len(b.steps),
        "a_last_step": a.steps[-1] if len(a.steps) else None,
        "b_last_step": b.steps[-1] if len(b.steps) else None,
    }
    try:
        al = align(a, b)
    except NotFoundError as e:  # a run that has just started shares no step with the other yet
        return {
            **head,
            "steps": [],
            "layers": [],
            "layer_names": [],
            "a": [],
            "b": [],
            "diff": [],
            "steps_only_a": list(a.steps),
            "steps_only_b": list(b.steps),
            "layers_only_a": [],
            "layers_only_b": [],
            "notes": [str(e)],
            "summary": [],
        }
    return {
        **head,
        "steps": al.steps,
        "layers": al.layers,
        "layer_names": al.layer_names,
        "a": finite_or_none(al.a),
        "b": finite_or_none(al.b),
        "diff": finite_or_none(diff_values(al.a, al.b, relative)),
        "steps_only_a": al.steps_only_a,
        "steps_only_b": al.steps_only_b,
        "layers_only_a": al.layers_only_a,
        "layers_only_b": al.layers_only_b,
        "notes": [],
        "summary": summarize(a, b, relative).sentences,
    }


# -- the overview a long run is drawn from (render.reduce) ---------------------------------------


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def overview_json(
    hm: Heatmap,
    max_rows: int,
    step_min: int | None = None,
    step_max: int | None = None,
    since_step: int | None = None,
) -> dict[str, Any]:
    """The rows of ``hm`` between ``step_min`` and ``step_max`` (all by default) cut to at most
    ``max_rows`` rows by the spike-preserving reduction; compact and exact.

    ``values`` is base64 of little-endian float64 (``rows x layers``; NaN where absent, +-inf as
    recorded), ``src`` the offset inside its block of the row each shown value came from (base64
    of ``src_dtype``: uint8 for blocks of up to 256 steps, so it costs an eighth of the values). ``steps`` are every step of the range, so the page can name a shown value's exact step
    and put round ticks on the axis; ``row0`` is the index of the range's first step in the run.

    >>> hm = Heatmap(np.arange(12.0).reshape(6, 2), steps=range(10, 70, 10), layers=[1, 2])
    >>> d = overview_json(hm, 3)
    >>> d["factor"], d["n_rows"], d["starts"], d["row0"]
    (2, 3, [0, 2, 4], 0)
    """
    steps = np.asarray(hm.steps, dtype=np.int64)
    lo = 0 if step_min is None else int(np.searchsorted(steps, step_min, side="left"))
    hi = len(steps) if step_max is None else int(np.searchsorted(steps, step_max, side="right"))
    hi = max(lo, hi)
    vals = np.asarray(hm.values, dtype=np.float64)
    red = reduce_rows(vals[lo:hi], max_rows)
    src_dtype = "u1" if red.factor <= 256 else ("<u2" if red.factor <= 65536 else "<i4")
    ref = spread_rows(hm.steps, PROFILE_REF_ROWS) if step_min is None and step_max is None else []
    return {
        "run": hm.run,
        "metric": hm.metric,
        "site": hm.site,
        "layers": list(hm.layers),
        "layer_names": list(hm.layer_names),
        "steps": steps[lo:hi].tolist(),
        "row0": lo,
        "n_steps": len(steps),
        "factor": red.factor,
        "n_rows": int(len(red.starts)),
        "starts": red.starts.tolist(),
        "values": _b64(red.values, "<f8"),
        "src": _b64(red.src - red.starts[:, None], src_dtype),
        "src_dtype": src_dtype,
        "encoding": "base64 float64 LE (values, ref_values); src: offsets inside each block",
        "ref_rows": ref,  # a few spread steps, exact: the profile's reference lines
        "ref_values": _b64(vals[ref] if ref else np.zeros((0, vals.shape[1])), "<f8"),
        "since_step": since_step,
        "last_step": int(steps[-1]) if len(steps) else since_step,
    }


def hist_sites(config: dict[str, Any]) -> list[str]:
    """The sites whose histograms a run recorded (from its config: no scan of the store)."""
    if not config.get("hist_edges") or "hist" not in (config.get("metrics") or []):
        return []
    return [str(s) for s in config.get("sites") or ["output"]]


def hist_json(h: Histograms, layers: list[int] | None, max_rows: int) -> dict[str, Any]:
    """The histograms of ``layers`` (default: up to 12 spread over the depth), cut to the bins any
    of them uses and to ``max_rows`` steps (blocks of steps: the mean count per bin)."""
    shown = choose_layers(h, layers)
    lo, hi = bin_window(shown)
    counts = []
    starts: list[int] = []
    for layer in shown.layers:
        c, a, _ = reduce_counts(shown.layer(layer)[:, lo:hi], max_rows)
        counts.append(c)
        starts = a.tolist()
    block = np.stack(counts, axis=1) if counts else np.zeros((0, 0, hi - lo))  # (R, L, B)
    ranges = [shown.bin_range(b) for b in range(lo, hi)]
    tick_pos, tick_text = edge_ticks(shown.edges, lo, hi, 5)
    return {
        "run": h.run,
        "site": h.site,
        "layers": list(shown.layers),
        "layer_names": list(shown.layer_names),
        "all_layers": list(h.layers),
        "steps": [int(s) for s in h.steps],
        "starts": starts,
        "bins": [
            [None if not math.isfinite(a) else a, None if not math.isfinite(b) else b] for a, b in ranges
        ],
        "counts": _b64(block, "<f8"),
        "ticks": {"cols": [p - lo - 0.5 for p in tick_pos], "text": tick_text},  # bin-edge labels
        "shape": list(block.shape),
        "last_step": int(h.steps[-1]) if len(h.steps) else None,
    }
