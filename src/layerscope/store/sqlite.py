"""The run store: one SQLite file in WAL mode, read and written through :class:`Store`.

The schema (version 2) is described in :mod:`layerscope.store.schema`: one float64 blob per
(series, step), the names of a series stored once. Each ``write_steps`` call is written in one
transaction (at most ``MAX_BATCH`` steps each): a reader sees all of a step or none of it, and a
process killed mid-write loses at most the steps of the call it was in. Readers use short read
transactions and never block the writer (WAL).

The API, for renderers, the analysis, the dashboard and the CLI (none of them writes SQL)::

    st = Store("runs.db")                      # or Store(path, readonly=True)
    st.create_run("a", layers=[LayerInfo(1, "h.0"), ...], config={...})
    st.write_steps("a", [StepRecord(step, {(metric, site): per_layer_values}, hists=..., events=...)])
    st.load("a", "rms", "output")              # Heatmap (steps x layers); since_step= for new rows
    st.load("a", "max_logit", "attn", reduce="max")     # a per-head series, aggregated over heads
    st.load_heads("a", "max_logit", "attn", step=100)   # HeadMap (heads x layers) at one step
    st.load("a", "rms", variant="width=256")   # one variant of a run (e.g. a coord-check width)
    st.variants("a"), st.metrics("a"), st.steps("a"), st.layers("a"), st.series("a")
    st.write_events("a", [Event(...)]); st.events("a")
    st.run_names(), st.run_table(), st.run_info("a"), st.run_config("a"), st.load_hist("a")
    st.iter_rows("a")                          # tidy rows, what `layerscope export` writes

Damaged contents (a config that is not JSON, a row of the wrong size or type, a layer row missing)
raise a ``StoreError`` naming the run and what is damaged; ``layerscope runs STORE --check`` lists
every such problem (:mod:`layerscope.store.check`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ConfigError, RunExistsError, StoreError
from .codec import as_matrix, encode
from .heatmap import Heatmap
from .reader import StoreReader, series_label
from .records import Event, HeadMap, LayerInfo, RunInfo, SeriesInfo, StepRecord, check_variant
from .schema import SCHEMA_VERSION, chunk_for
from .txn import transaction

_SeriesKey = tuple[int, str, str, str, str]  # run_id, variant, kind, metric, site

MAX_BATCH = 256  # steps per write transaction: bounded transactions however many steps one call gets


class Store(StoreReader):
    """A run store on disk. Open with ``Store(path)``; writers and readers share the class (the
    reading half is :class:`~layerscope.store.reader.StoreReader`).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with Store(os.path.join(d, "runs.db")) as st:
    ...     rid = st.create_run("demo", layers=[LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
    ...     st.write_step("demo", StepRecord(10, {("rms", "output"): [1.0, 2.0]}))
    ...     st.load("demo", "rms").values.tolist()
    [[1.0, 2.0]]
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        super().__init__(path, readonly)
        self._series: dict[_SeriesKey, tuple[int, int, int, int]] = {}  # -> (id, n_layers, inner, chunk)
        self._n_layers: dict[int, int] = {}  # run id -> its layer count, for checking new series
        self._chunk_size = 0  # values per part of a row, from the page size (read once)

    def _writable(self, doing: str) -> None:
        if self.readonly:
            raise StoreError(f"store {str(self.path)!r} was opened read-only; cannot {doing}.")

    # -- writing ------------------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        layers: Sequence[LayerInfo],
        model: str = "",
        config: dict[str, Any] | None = None,
        source: str = "live",
        resume: bool = True,
    ) -> int:
        """Create run ``name`` (or, with ``resume``, reuse it if its layers match) and return its id."""
        self._writable(f"create run {name!r}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"run name {name!r} is empty; pass a non-empty name such as 'baseline'.")
        cfg = json.dumps(config or {}, sort_keys=True, default=str)
        with transaction(self.conn, self.path, f"creating run {name!r}") as conn:
            row = conn.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()
            if row is not None:
                if not resume:
                    raise RunExistsError(
                        f"run {name!r} already exists in {str(self.path)!r}",
                        what="run",
                        value=name,
                        param="resume",
                        example=True,
                        fix="choose another run name, or pass {example} to continue it",
                    )
                run_id = int(row[0])
                old = [
                    (r[0], r[1])
                    for r in conn.execute(
                        "SELECT layer, name FROM layers WHERE run_id=? ORDER BY layer", (run_id,)
                    )
                ]
                new = [(li.layer, li.name) for li in layers]
                if old and old != new:
                    raise ConfigError(
                        f"run {name!r} in {str(self.path)!r} was recorded with {len(old)} layers "
                        f"({old[0][1]} ...), not the {len(new)} given now ({new[0][1] if new else '-'} ...); "
                        "record into a new run name."
                    )
                if not old:
                    self._insert_layers(conn, run_id, layers)
            else:
                cur = conn.execute(
                    "INSERT INTO runs(name, created, model, config, version, source) VALUES (?,?,?,?,?,?)",
                    (name, time.strftime("%Y-%m-%dT%H:%M:%S%z"), model, cfg, __version__, source),
                )
                run_id = int(cur.lastrowid)  # type: ignore[arg-type]
                self._insert_layers(conn, run_id, layers)
        self._run_ids[name] = run_id
        self._n_layers.pop(run_id, None)
        return run_id

    @staticmethod
    def _insert_layers(conn: sqlite3.Connection, run_id: int, layers: Sequence[LayerInfo]) -> None:
        conn.executemany(
            "INSERT INTO layers(run_id, layer, name, stack, depth) VALUES (?,?,?,?,?)",
            [(run_id, li.layer, li.name, li.stack, li.depth or li.layer) for li in layers],
        )
        conn.execute("UPDATE runs SET n_layers=? WHERE id=?", (len(layers), run_id))

    def delete_run(self, run: str) -> None:
        """Remove a run and everything recorded for it, in one transaction."""
        self._writable(f"delete run {run!r}")
        run_id = self.run_id(run)
        with transaction(self.conn, self.path, f"deleting run {run!r}") as conn:
            conn.execute(
                "DELETE FROM series_rows WHERE series_id IN (SELECT id FROM series WHERE run_id=?)", (run_id,)
            )
            for table in ("series", "events", "steps", "layers"):
                conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id=?", (run_id,))
        self._run_ids.pop(run, None)
        self._series = {k: v for k, v in self._series.items() if k[0] != run_id}

    def update_run_config(self, run: str, **updates: Any) -> None:
        """Merge ``updates`` into the run's config JSON (e.g. the probe hash)."""
        self._writable(f"update run {run!r}")
        run_id = self.run_id(run)
        with transaction(self.conn, self.path, f"updating run {run!r}") as conn:
            (cfg,) = conn.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            merged = {**self._parse_config(run, cfg), **updates}
            conn.execute(
                "UPDATE runs SET config=? WHERE id=?",
                (json.dumps(merged, sort_keys=True, default=str), run_id),
            )

    def write_step(self, run: str, rec: StepRecord) -> None:
        """Write one step, whole, in one transaction. A step written again replaces the old rows."""
        self.write_steps(run, [rec])

    def write_steps(self, run: str, records: Sequence[StepRecord]) -> None:
        """Write steps, each whole: one transaction per call (per ``MAX_BATCH`` steps).

        A step written again replaces the rows of the series it holds (and, if the record has
        ``events``, the events stored for that step). Every record is checked before anything is
        written: a record that does not fit (a value that is not a number, a series of a different
        shape than before) is a ``ConfigError`` and nothing of the call is written.
        """
        self._writable(f"write run {run!r}")
        run_id = self.run_id(run)
        prepared = [self._prepare(run, rec) for rec in records]
        for i in range(0, len(prepared), MAX_BATCH):
            batch = prepared[i : i + MAX_BATCH]
            lo, hi = batch[0][0].step, batch[-1][0].step
            doing = (
                f"writing step {lo} of run {run!r}"
                if len(batch) == 1
                else f"writing steps {lo}..{hi} of run {run!r}"
            )
            new: dict[_SeriesKey, tuple[int, int, int, int]] = {}
            with transaction(self.conn, self.path, doing) as conn:
                rows: list[tuple[int, int, int, bytes]] = []
                for rec, arrays in batch:
                    step = int(rec.step)
                    for (kind, metric, site), arr in arrays.items():
                        sid, chunk = self._series_id(
                            conn, run, run_id, rec.variant, kind, metric, site, arr, step, new
                        )
                        rows.extend((sid, step, p, b) for p, b in enumerate(encode(arr, chunk)))
                    if rec.events is not None:
                        conn.execute(
                            "DELETE FROM events WHERE run_id=? AND variant=? AND step=?",
                            (run_id, rec.variant, step),
                        )
                        self._insert_events(conn, run_id, rec.events, rec.variant)
                    conn.execute(
                        "INSERT OR REPLACE INTO steps(run_id, variant, step, source, time) VALUES (?,?,?,?,?)",
                        (run_id, rec.variant, step, rec.source, time.time()),
                    )
                rows.sort()  # in key order: each series' rows go to its pages in one pass
                conn.executemany(
                    "INSERT OR REPLACE INTO series_rows(series_id, step, part, vals) VALUES (?,?,?,?)", rows
                )
            self._series.update(new)  # only once committed: a rolled-back id must not be reused

    def _prepare(
        self, run: str, rec: StepRecord
    ) -> tuple[StepRecord, dict[tuple[str, str, str], np.ndarray]]:
        try:
            step = int(rec.step)
        except (TypeError, ValueError):
            raise ConfigError(
                f"step {rec.step!r} of run {run!r} is not a whole number; pass an int."
            ) from None
        if not -(2**63) <= step < 2**63:
            raise ConfigError(f"step {step} of run {run!r} does not fit in 64 bits; pass a smaller step.")
        check_variant(rec.variant)
        arrays: dict[tuple[str, str, str], np.ndarray] = {}
        for (metric, site), vals in rec.values.items():
            arrays[("value", metric, site)] = as_matrix(
                vals, f"step {step}, {series_label(metric, site, rec.variant)}"
            )
        for site, counts in (rec.hists or {}).items():
            arr = np.asarray(counts, dtype=np.float64)
            if arr.ndim != 2:
                raise ConfigError(
                    f"step {step}: histogram counts of site {site!r} have shape {arr.shape}; give (n_layers, n_bins)."
                )
            arrays[("hist", "hist", site)] = arr
        return rec, arrays

    def _series_id(
        self,
        conn: sqlite3.Connection,
        run: str,
        run_id: int,
        variant: str,
        kind: str,
        metric: str,
        site: str,
        arr: np.ndarray,
        step: int,
        new: dict[_SeriesKey, tuple[int, int, int, int]],
    ) -> tuple[int, int]:
        """(id, chunk) of the series, created with the shape of ``arr`` if it is new; a
        ConfigError if ``arr`` does not have its shape."""
        key = (run_id, variant, kind, metric, site)
        known = self._series.get(key) or new.get(key)
        if known is None:
            row = conn.execute(
                "SELECT id, n_layers, inner, chunk FROM series WHERE run_id=? AND variant=? AND kind=? "
                "AND metric=? AND site=?",
                key,
            ).fetchone()
            if row is None:
                n_run = self._run_layers(conn, run_id)
                wide = kind == "value" and arr.shape[0] == 1  # one value for the whole model (e.g. logits)
                if n_run and arr.shape[0] != n_run and not wide:
                    raise ConfigError(
                        f"step {step}, {series_label(metric, site, variant)}: {arr.shape[0]} values, but run "
                        f"{run!r} has {n_run} layers; give one value per layer (NaN where a layer has none)."
                    )
                chunk = self._chunk(conn)
                cur = conn.execute(
                    "INSERT INTO series(run_id, variant, kind, metric, site, n_layers, inner, chunk) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (*key, arr.shape[0], arr.shape[1], chunk),
                )
                row = (int(cur.lastrowid), arr.shape[0], arr.shape[1], chunk)  # type: ignore[arg-type]
            known = (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
            new[key] = known
        if (known[1], known[2]) != arr.shape:
            have = f"{known[1]} x {known[2]}" if known[2] > 1 else f"{known[1]}"
            raise ConfigError(
                f"step {step}, {series_label(metric, site, variant)} of run {run!r}: {arr.shape[0]}"
                + (f" x {arr.shape[1]}" if arr.shape[1] > 1 else "")
                + f" values, but this series was recorded with {have}; keep its shape, or record into a new run."
            )
        return known[0], known[3]

    def _chunk(self, conn: sqlite3.Connection) -> int:
        if not self._chunk_size:
            self._chunk_size = chunk_for(int(conn.execute("PRAGMA page_size").fetchone()[0]))
        return self._chunk_size

    def _run_layers(self, conn: sqlite3.Connection, run_id: int) -> int:
        if run_id not in self._n_layers:
            self._n_layers[run_id] = int(
                conn.execute("SELECT n_layers FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            )
        return self._n_layers[run_id]

    def write_events(self, run: str, events: Sequence[Event]) -> None:
        """Add ``events`` (alerts of the watch, ...) to ``run``, in one transaction."""
        self._writable(f"write events of run {run!r}")
        run_id = self.run_id(run)
        for ev in events:
            check_variant(ev.variant)
        with transaction(self.conn, self.path, f"writing events of run {run!r}") as conn:
            self._insert_events(conn, run_id, events, None)

    @staticmethod
    def _insert_events(
        conn: sqlite3.Connection, run_id: int, events: Sequence[Event], variant: str | None
    ) -> None:
        now = time.time()
        conn.executemany(
            "INSERT INTO events(run_id, variant, step, site, metric, layer, head, kind, rule, value, message, time) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    run_id,
                    ev.variant if variant is None else variant,
                    int(ev.step),
                    ev.site,
                    ev.metric,
                    None if ev.layer is None else int(ev.layer),
                    None if ev.head is None else int(ev.head),
                    ev.kind,
                    ev.rule,
                    float(ev.value),  # NaN is stored as NULL and read back as NaN
                    ev.message,
                    now if ev.time is None else float(ev.time),
                )
                for ev in events
            ],
        )


def load(
    store: str | os.PathLike[str] | Store,
    run: str | None = None,
    metric: str = "rms",
    site: str = "output",
    *,
    variant: str = "",
    reduce: str | int | None = None,
) -> Heatmap:
    """Load one metric of one run as a Heatmap (steps x layers).

    ``run`` may be omitted when the store holds exactly one run. ``variant`` and ``reduce`` are as
    in :meth:`Store.load`.

    >>> hm = load("layerscope-demo/runs.db", metric="rms")   # doctest: +SKIP
    >>> hm.values.shape                                       # doctest: +SKIP
    (30, 12)
    """
    if isinstance(store, Store):
        return store.load(run, metric, site, variant=variant, reduce=reduce)
    with Store(store, readonly=True) as st:
        return st.load(run, metric, site, variant=variant, reduce=reduce)


__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "HeadMap",
    "LayerInfo",
    "RunInfo",
    "SeriesInfo",
    "StepRecord",
    "Store",
    "load",
]
