"""Read-only access to a run store for the dashboard: a fresh connection per request, short reads.

The dashboard polls a store that a training process is writing. So that it never slows that
process down:

- every request opens its own read-only connection (``mode=ro`` and ``PRAGMA query_only``) and
  closes it before answering; nothing is shared between the server's threads;
- each matrix is read in one short transaction (WAL: readers never block the writer, and a
  reader sees a step whole or not at all);
- polling is incremental: ``since_step`` reads only the rows recorded after the last step the page
  has, through the primary key, so a poll costs the same at step 100 as at step 100 000.

Full matrices come from :meth:`Store.load`, the reader every renderer uses. The three queries
below (run summaries, (metric, site) pairs, rows after a step) are here rather than in
``store/sqlite.py`` only because the store has no cheap equivalent yet: ``Store.run_info`` and
``Store.metrics`` scan a run's values (their cost grows with the run, which a poll cannot afford)
and ``Store.load`` has no ``since_step``. They read the schema documented in ``store/sqlite.py``
and nothing else, and belong in ``Store`` once it offers them.
"""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import NotFoundError, StoreError
from ..store import Heatmap, Store

# A dashboard read waits at most this long for a lock (only WAL recovery or a checkpoint that
# truncates the log take one a reader must wait for); the page retries at the next poll.
READ_BUSY_TIMEOUT_MS = 2000


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
        return {"id": self.id, "run": self.name, "created": self.created, "model": self.model,
                "source": self.source, "steps": self.n_steps, "first_step": self.first_step,
                "last_step": self.last_step, "layers": self.n_layers}


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


def _query(st: Store, sql: str, args: tuple[Any, ...], doing: str) -> list[tuple]:
    """Run one SELECT in one short read transaction."""
    conn = st.conn
    try:
        conn.execute("BEGIN")
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as e:
        raise StoreError(f"store {str(st.path)!r}: {doing} failed ({e}); the page retries at its next poll.") from e


def run_summaries(st: Store) -> list[RunSummary]:
    """Every run with its step count and range, in creation order, from one read transaction."""
    rows = _query(
        st,
        "SELECT r.id, r.name, r.created, r.model, r.source, "
        "       (SELECT count(*) FROM steps s WHERE s.run_id = r.id), "
        "       (SELECT min(step) FROM steps s WHERE s.run_id = r.id), "
        "       (SELECT max(step) FROM steps s WHERE s.run_id = r.id), "
        "       (SELECT count(*) FROM layers l WHERE l.run_id = r.id) "
        "FROM runs r ORDER BY r.id",
        (), "listing runs",
    )
    return [RunSummary(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], int(r[8])) for r in rows]


def run_summary(st: Store, run: str) -> RunSummary:
    for s in run_summaries(st):
        if s.name == run:
            return s
    st.run_id(run)  # raises NotFoundError naming the runs there
    raise NotFoundError(f"run {run!r} not found in {str(st.path)!r}.")  # pragma: no cover - raced a delete


def metric_pairs(st: Store, run: str) -> list[tuple[str, str]]:
    """The (metric, site) pairs recorded for ``run``: one primary-key probe per pair.

    Same answer as ``Store.metrics``; each probe is an equality or a range on a key prefix, so it
    costs O(pairs x log rows), not a scan of the run.
    """
    rid = st.run_id(run)
    out: list[tuple[str, str]] = []
    first = "SELECT metric, site FROM metric_values WHERE run_id=? ORDER BY metric, site LIMIT 1"
    row = _query(st, first, (rid,), f"listing metrics of run {run!r}")
    while row:
        metric, site = row[0]
        out.append((metric, site))
        row = _query(st, "SELECT metric, site FROM metric_values WHERE run_id=? AND metric=? AND site>? "
                         "ORDER BY site LIMIT 1", (rid, metric, site), f"listing metrics of run {run!r}")
        if not row:
            row = _query(st, "SELECT metric, site FROM metric_values WHERE run_id=? AND metric>? "
                             "ORDER BY metric, site LIMIT 1", (rid, metric), f"listing metrics of run {run!r}")
    return out


def _missing_pair(run: str, metric: str, site: str, pairs: list[tuple[str, str]]) -> NotFoundError:
    if not pairs:
        return NotFoundError(f"run {run!r} has no recorded steps yet.")
    metrics = sorted({m for m, _ in pairs})
    if metric not in metrics:
        return NotFoundError(
            f"metric {metric!r} was not recorded for run {run!r}; recorded metrics: {', '.join(metrics)}."
        )
    sites = sorted({s for m, s in pairs if m == metric})
    return NotFoundError(f"site {site!r} has no {metric!r} values in run {run!r}; recorded sites: {', '.join(sites)}.")


def read_matrix(st: Store, run: str, metric: str, site: str, since_step: int | None = None) -> Heatmap:
    """The (steps x layers) matrix of one run, metric and site; with ``since_step``, only later steps.

    Without ``since_step`` this is exactly :meth:`Store.load`. With it, the rows after
    ``since_step`` are read through the primary key in one short transaction and the result may
    have no steps (nothing new yet).
    """
    if since_step is None:
        return st.load(run, metric, site)
    rid = st.run_id(run)
    layer_infos = st.layers(run)
    rows = _query(
        st,
        "SELECT step, layer, value FROM metric_values WHERE run_id=? AND metric=? AND site=? AND step>? "
        "ORDER BY step, layer",
        (rid, metric, site, int(since_step)),
        f"reading run {run!r}",
    )
    if not rows:
        pairs = metric_pairs(st, run)
        if (metric, site) not in pairs:
            raise _missing_pair(run, metric, site, pairs)
    n_layers = max([len(layer_infos)] + [int(r[1]) for r in rows])
    steps = sorted({int(r[0]) for r in rows})
    index = {s: i for i, s in enumerate(steps)}
    values = np.full((len(steps), n_layers), np.nan)
    for step, layer, value in rows:
        values[index[step], int(layer) - 1] = np.nan if value is None else value
    names = {li.layer: li.name for li in layer_infos}
    layers = list(range(1, n_layers + 1))
    return Heatmap(values=values, steps=steps, layers=layers,
                   layer_names=[names.get(i, str(i)) for i in layers], metric=metric, site=site, run=run,
                   meta={"store": str(st.path)})


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
        "run": hm.run, "metric": hm.metric, "site": hm.site,
        "layers": list(hm.layers), "layer_names": list(hm.layer_names),
        "steps": list(hm.steps), "values": finite_or_none(hm.values), "inf": infinite_cells(hm.values),
        "since_step": since_step,
        "last_step": hm.steps[-1] if len(hm.steps) else since_step,
    }


def compare_json(a: Heatmap, b: Heatmap, relative: bool = False) -> dict[str, Any]:
    """Runs A and B on their common steps and layers, B - A (``relative``: 100 x (B - A) / |A|, %)
    and the summary of where they differ, all from :mod:`layerscope.render.diff` (the same numbers
    and sentences as ``layerscope compare``). No common step yet is an answer, not an error."""
    from ..render.diff import align, diff_values, summarize

    head: dict[str, Any] = {
        "run_a": a.run, "run_b": b.run, "metric": a.metric, "site": a.site,
        "mode": "relative" if relative else "absolute",
        "a_steps": len(a.steps), "b_steps": len(b.steps),
        "a_last_step": a.steps[-1] if len(a.steps) else None, "b_last_step": b.steps[-1] if len(b.steps) else None,
    }
    try:
        al = align(a, b)
    except NotFoundError as e:  # a run that has just started shares no step with the other yet
        return {**head, "steps": [], "layers": [], "layer_names": [], "a": [], "b": [], "diff": [],
                "steps_only_a": list(a.steps), "steps_only_b": list(b.steps), "layers_only_a": [], "layers_only_b": [],
                "notes": [str(e)], "summary": []}
    return {
        **head, "steps": al.steps, "layers": al.layers, "layer_names": al.layer_names,
        "a": finite_or_none(al.a), "b": finite_or_none(al.b), "diff": finite_or_none(diff_values(al.a, al.b, relative)),
        "steps_only_a": al.steps_only_a, "steps_only_b": al.steps_only_b,
        "layers_only_a": al.layers_only_a, "layers_only_b": al.layers_only_b,
        "notes": [], "summary": summarize(a, b, relative).sentences,
    }
