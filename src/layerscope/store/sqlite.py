"""The run store: one SQLite file in WAL mode.

Schema (version ``SCHEMA_VERSION``)::

    meta(key PRIMARY KEY, value)                    -- schema_version, created_by
    runs(id, name UNIQUE, created, model, config JSON, version, source)
    layers(run_id, layer, name, stack, depth)       -- layer: 1..N over all stacks, fixed at discovery
    steps(run_id, step, source, time)               -- one row per committed step (the step is whole)
    metric_values(run_id, metric, site, step, layer, value)   -- long format: the canonical rows,
                                                              -- for SQL users and export
    matrix_rows(run_id, metric, site, step, vals BLOB)        -- the same values, one row per step
                                                              -- (float64 LE, one per layer, NaN
                                                              -- where absent): what load() reads
    hists(run_id, site, step, layer, counts BLOB)   -- fixed-edge histogram counts (float64 LE)

``matrix_rows`` repeats ``metric_values`` in the shape readers need: SQLite hands Python one
tuple per row, so 480,000 long rows (a 96-layer x 5000-step matrix) take ~300 ms to read, and the
5,000 rows of ``matrix_rows`` a few ms. Both are written in the same transaction.

Each flushed step is written in one transaction: a reader sees all of a step or none of it, and a
process killed mid-write loses at most the step it was writing. Readers use short transactions and
never block the writer (WAL).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .._io import refuse_special_file
from .._version import __version__
from ..errors import ConfigError, NotFoundError, RunExistsError, StoreError
from .heatmap import Heatmap

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  TEXT NOT NULL,
    model    TEXT NOT NULL DEFAULT '',
    config   TEXT NOT NULL DEFAULT '{}',
    version  TEXT NOT NULL DEFAULT '',
    source   TEXT NOT NULL DEFAULT 'live'
);
CREATE TABLE IF NOT EXISTS layers (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    layer  INTEGER NOT NULL,
    name   TEXT NOT NULL,
    stack  TEXT NOT NULL DEFAULT '',
    depth  INTEGER NOT NULL,
    PRIMARY KEY (run_id, layer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'live',
    time   REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metric_values (
    run_id INTEGER NOT NULL,
    metric TEXT NOT NULL,
    site   TEXT NOT NULL,
    step   INTEGER NOT NULL,
    layer  INTEGER NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, metric, site, step, layer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matrix_rows (
    run_id INTEGER NOT NULL,
    metric TEXT NOT NULL,
    site   TEXT NOT NULL,
    step   INTEGER NOT NULL,
    vals   BLOB NOT NULL,
    PRIMARY KEY (run_id, metric, site, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hists (
    run_id INTEGER NOT NULL,
    site   TEXT NOT NULL,
    step   INTEGER NOT NULL,
    layer  INTEGER NOT NULL,
    counts BLOB NOT NULL,
    PRIMARY KEY (run_id, site, step, layer)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class LayerInfo:
    """A recorded layer: ``layer`` is its 1-based column, fixed when the layers were discovered."""

    layer: int
    name: str
    stack: str = ""
    depth: int = 0


@dataclass(frozen=True)
class RunInfo:
    """What ``layerscope runs`` prints about one run."""

    name: str
    created: str
    model: str
    config: dict[str, Any]
    version: str
    source: str
    n_steps: int
    first_step: int | None
    last_step: int | None
    n_layers: int
    metrics: list[str]
    sites: list[str]


@dataclass
class StepRecord:
    """Everything recorded for one step: ``values[(metric, site)]`` is one value per layer."""

    step: int
    values: Mapping[tuple[str, str], Sequence[float]]
    hists: dict[str, np.ndarray] | None = None  # site -> (n_layers, n_bins) counts
    source: str = "live"


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts like an SQLite file (an empty file counts: SQLite makes it one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except IsADirectoryError:
        return False
    except OSError as e:
        # Not "not a store": the user must hear that the file cannot be read, and why.
        raise StoreError(
            f"store {str(path)!r} cannot be read ({e.strerror or e}); check its permissions or point at "
            "another file."
        ) from None
    return head == b"SQLite format 3\x00" or head == b""


def _translate(e: sqlite3.Error, path: Path, doing: str) -> StoreError:
    msg = str(e)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        hint = "another process holds a write lock for too long; retry, or record into another store file"
    elif "readonly" in low or "read-only" in low:
        hint = "the file or its folder is read-only; make it writable or use another store file"
    elif "full" in low:
        hint = "the disk is full; free space and resume: everything committed before is kept"
    elif "i/o" in low:
        hint = (
            "the disk could not be written (full, over a quota or failing); free space and resume: "
            "everything committed before is kept"
        )
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        hint = "the file is not a layerscope store or is damaged; point at another file"
    elif "unable to open" in low:
        hint = "check that the folder exists and is writable"
    else:  # SQLite's own words are in the parentheses; nothing more specific to say
        hint = "retry; if it fails again, rerun with LAYERSCOPE_DEBUG=1 and report the traceback"
    msg = " ".join(msg.split())  # one line, whatever SQLite said
    return StoreError(f"store {str(path)!r}: {doing} failed ({msg}); {hint}.")


class Store:
    """A run store on disk. Open with ``Store(path)``; writers and readers share the class.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with Store(os.path.join(d, "runs.db")) as st:
    ...     rid = st.create_run("demo", layers=[LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
    ...     st.write_step("demo", StepRecord(10, {("rms", "output"): [1.0, 2.0]}))
    ...     st.load("demo", "rms").values.tolist()
    [[1.0, 2.0]]
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise NotFoundError(
                f"{str(self.path)!r} is a folder, not a store file; pass a file path such as "
                f"{str(self.path / 'runs.db')!r}."
            )
        if readonly and not self.path.exists():
            raise NotFoundError(
                f"store {str(self.path)!r} does not exist; record a run first (layerscope demo, "
                "layerscope sweep or layerscope.Recorder) or check the path."
            )
        refuse_special_file(self.path, "store")  # opening a FIFO would block forever
        if self.path.exists() and not _is_sqlite(self.path):
            raise StoreError(
                f"{str(self.path)!r} is not a layerscope store (not an SQLite file); "
                "point at a .db file written by layerscope."
            )
        if not readonly and not self.path.parent.exists():
            raise NotFoundError(
                f"folder {str(self.path.parent)!r} for store {str(self.path)!r} does not exist; create it first."
            )
        self._conn = self._connect()
        self._run_ids: dict[str, int] = {}

    # -- connection ---------------------------------------------------------------------------
    def _open(self, immutable: bool = False) -> sqlite3.Connection:
        if self.readonly:
            flags = "mode=ro&immutable=1" if immutable else "mode=ro"
            uri = f"file:{quote(self.path.resolve().as_posix())}?{flags}"
            return sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        return sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = self._open()
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                # Inspect before changing anything: a foreign or newer file is refused untouched.
                create = self._check_schema(conn)
            except sqlite3.OperationalError:
                if conn is not None:
                    conn.close()
                    conn = None
                if not self._can_open_immutable():
                    raise
                # A WAL store in a folder we cannot write: SQLite cannot create the -shm file a
                # reader needs. With no -wal file there is nothing outside the main file, and nobody
                # can be writing it from here, so read it as an immutable file.
                conn = self._open(immutable=True)
                create = self._check_schema(conn)
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # e.g. a network file system without shared memory
                    conn.execute("PRAGMA journal_mode=DELETE")
                # WAL + NORMAL: a killed process loses nothing committed; power loss may lose the
                # last transactions but never corrupts the file.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                if create:
                    self._create_schema(conn)
                else:
                    self._add_matrix_rows(conn)
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise _translate(e, self.path, "opening") from e
        except BaseException:
            if conn is not None:
                conn.close()  # never leave a handle (and its -wal/-shm files) on a refused file
            raise
        return conn

    def _can_open_immutable(self) -> bool:
        if not self.readonly or Path(f"{self.path}-wal").exists():
            return False
        parent = self.path.resolve().parent
        return not os.access(parent, os.W_OK)

    def _check_schema(self, conn: sqlite3.Connection) -> bool:
        """Refuse a file that is not a layerscope store of a version we read; True if it is empty
        (a new store, whose schema the caller creates). Reads only."""
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                raise StoreError(
                    f"{str(self.path)!r} has no schema version; it was not written by layerscope."
                )
            try:
                ver = int(row[0])
            except (TypeError, ValueError):
                raise StoreError(
                    f"store {str(self.path)!r} has schema version {row[0]!r}, which is not a number; "
                    "it was not written by layerscope."
                ) from None
            if ver > SCHEMA_VERSION:
                raise StoreError(
                    f"store {str(self.path)!r} has schema version {ver}, newer than this layerscope "
                    f"({__version__}, schema {SCHEMA_VERSION}) can read; upgrade layerscope "
                    "(pip install -U layerscope)."
                )
            return False
        others = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if others:
            raise StoreError(
                f"{str(self.path)!r} is an SQLite database but not a layerscope store; "
                "choose another store file."
            )
        if self.readonly:
            raise StoreError(f"store {str(self.path)!r} is empty; record a run into it first.")
        return True

    @staticmethod
    def _add_matrix_rows(conn: sqlite3.Connection) -> None:
        """A store written before ``matrix_rows`` existed: add the table and fill it from the long
        rows, in one transaction (readers of such a store fall back to the long rows meanwhile)."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name='matrix_rows'").fetchone():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='matrix_rows'").fetchone():
                ddl = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS matrix_rows") :]
                conn.execute(ddl[: ddl.index(";")])
                cur = conn.execute(
                    "SELECT run_id, metric, site, step, layer, value FROM metric_values "
                    "ORDER BY run_id, metric, site, step, layer"
                )
                key: tuple[Any, ...] | None = None
                vals: dict[int, Any] = {}

                def emit() -> None:
                    if key is not None:
                        arr = np.full(max(vals), np.nan)
                        for j, v in vals.items():
                            arr[j - 1] = np.nan if v is None else v
                        conn.execute(
                            "INSERT INTO matrix_rows VALUES (?,?,?,?,?)", (*key, arr.astype("<f8").tobytes())
                        )

                for run_id, metric, site, step, layer, value in cur.fetchall():
                    if (run_id, metric, site, step) != key:
                        emit()
                        key, vals = (run_id, metric, site, step), {}
                    vals[layer] = value
                emit()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have created it meanwhile.
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT INTO meta VALUES ('created_by', ?)", (f"layerscope {__version__}",))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = getattr(self, "_conn", None), None  # type: ignore[assignment]
        if conn is not None:
            conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {str(self.path)!r} is closed; open a new Store.")
        return self._conn

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as e:
            raise _translate(e, self.path, "reading") from e

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
        if self.readonly:
            raise StoreError(f"store {str(self.path)!r} was opened read-only; cannot create run {name!r}.")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"run name {name!r} is empty; pass a non-empty name such as 'baseline'.")
        cfg = json.dumps(config or {}, sort_keys=True, default=str)
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
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
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _translate(e, self.path, f"creating run {name!r}") from e
        self._run_ids[name] = run_id
        return run_id

    @staticmethod
    def _insert_layers(conn: sqlite3.Connection, run_id: int, layers: Sequence[LayerInfo]) -> None:
        conn.executemany(
            "INSERT INTO layers(run_id, layer, name, stack, depth) VALUES (?,?,?,?,?)",
            [(run_id, li.layer, li.name, li.stack, li.depth or li.layer) for li in layers],
        )

    def delete_run(self, run: str) -> None:
        """Remove a run and everything recorded for it, in one transaction."""
        run_id = self.run_id(run)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("metric_values", "matrix_rows", "hists", "steps", "layers"):
                    self.conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
                self.conn.execute("DELETE FROM runs WHERE id=?", (run_id,))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _translate(e, self.path, f"deleting run {run!r}") from e
        self._run_ids.pop(run, None)

    def update_run_config(self, run: str, **updates: Any) -> None:
        """Merge ``updates`` into the run's config JSON (e.g. the probe hash)."""
        run_id = self.run_id(run)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                (cfg,) = self.conn.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
                merged = {**json.loads(cfg), **updates}
                self.conn.execute(
                    "UPDATE runs SET config=? WHERE id=?",
                    (json.dumps(merged, sort_keys=True, default=str), run_id),
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _translate(e, self.path, f"updating run {run!r}") from e

    def write_step(self, run: str, rec: StepRecord) -> None:
        """Write one step, whole, in one transaction. A step written again replaces the old rows."""
        self.write_steps(run, [rec])

    def write_steps(self, run: str, records: Sequence[StepRecord]) -> None:
        """Write several steps, each in its own transaction (each step is whole on its own)."""
        if self.readonly:
            raise StoreError(f"store {str(self.path)!r} was opened read-only; cannot write run {run!r}.")
        run_id = self.run_id(run)
        conn = self.conn
        for rec in records:
            step = int(rec.step)
            rows = []
            mrows = []
            for (metric, site), vals in rec.values.items():
                arr = np.asarray([float(v) for v in vals], dtype="<f8")
                mrows.append((run_id, metric, site, step, arr.tobytes()))
                for j, fv in enumerate(arr.tolist()):
                    rows.append((run_id, metric, site, step, j + 1, None if math.isnan(fv) else fv))
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    seen = conn.execute(
                        "SELECT 1 FROM steps WHERE run_id=? AND step=?", (run_id, step)
                    ).fetchone()
                    if seen:  # recorded before (a resumed run): its rows are replaced, never duplicated
                        for metric, site in rec.values:
                            conn.execute(
                                "DELETE FROM metric_values WHERE run_id=? AND metric=? AND site=? AND step=?",
                                (run_id, metric, site, step),
                            )
                    conn.executemany("INSERT OR REPLACE INTO metric_values VALUES (?,?,?,?,?,?)", rows)
                    conn.executemany("INSERT OR REPLACE INTO matrix_rows VALUES (?,?,?,?,?)", mrows)
                    if rec.hists:
                        for site, counts in rec.hists.items():
                            arr = np.ascontiguousarray(counts, dtype="<f8")
                            conn.executemany(
                                "INSERT OR REPLACE INTO hists VALUES (?,?,?,?,?)",
                                [(run_id, site, step, j + 1, arr[j].tobytes()) for j in range(arr.shape[0])],
                            )
                    conn.execute(
                        "INSERT OR REPLACE INTO steps(run_id, step, source, time) VALUES (?,?,?,?)",
                        (run_id, step, rec.source, time.time()),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise _translate(e, self.path, f"writing step {step} of run {run!r}") from e

    # -- reading ------------------------------------------------------------------------------
    def run_names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM runs ORDER BY id")]

    def run_table(self) -> list[tuple[int, str, str, str, str, int, int | None, int | None, int]]:
        """``(id, name, created, model, source, n_steps, first_step, last_step, n_layers)`` of every
        run, in creation order, from one short read (no scan of any run's values)."""
        return self._read(
            "SELECT r.id, r.name, r.created, r.model, r.source, "
            "       (SELECT count(*) FROM steps s WHERE s.run_id = r.id), "
            "       (SELECT min(step) FROM steps s WHERE s.run_id = r.id), "
            "       (SELECT max(step) FROM steps s WHERE s.run_id = r.id), "
            "       (SELECT count(*) FROM layers l WHERE l.run_id = r.id) "
            "FROM runs r ORDER BY r.id"
        )

    def run_id(self, run: str) -> int:
        if run in self._run_ids:
            return self._run_ids[run]
        row = self._read("SELECT id FROM runs WHERE name=?", (run,))
        if not row:
            names = self.run_names()
            have = ", ".join(repr(n) for n in names) if names else "none"
            raise NotFoundError(
                f"run {run!r} not found in {str(self.path)!r}; runs there: {have}",
                what="run",
                value=run,
                choices=names,
                param="run",
            )
        self._run_ids[run] = int(row[0][0])
        return self._run_ids[run]

    def resolve_run(self, run: str | None) -> str:
        """``run`` itself if given; the only run when the store holds one; else a NotFoundError."""
        if run is not None:
            self.run_id(run)
            return run
        names = self.run_names()
        if len(names) == 1:
            return names[0]
        if not names:
            raise NotFoundError(f"store {str(self.path)!r} holds no runs yet; record one first.")
        raise NotFoundError(
            f"store {str(self.path)!r} holds {len(names)} runs ({', '.join(repr(n) for n in names)})",
            what="run",
            choices=names,
            param="run",
            fix="choose one with {arg} (e.g. {example})",
        )

    def layers(self, run: str) -> list[LayerInfo]:
        rid = self.run_id(run)
        return [
            LayerInfo(*r)
            for r in self._read(
                "SELECT layer, name, stack, depth FROM layers WHERE run_id=? ORDER BY layer", (rid,)
            )
        ]

    def steps(self, run: str) -> list[int]:
        rid = self.run_id(run)
        return [r[0] for r in self._read("SELECT step FROM steps WHERE run_id=? ORDER BY step", (rid,))]

    def metrics(self, run: str) -> list[tuple[str, str]]:
        """The (metric, site) pairs recorded for ``run``."""
        rid = self.run_id(run)
        # A skip-scan over the primary key (run_id, metric, site, ...): one index seek per distinct
        # metric and per distinct site, never a scan of the run's rows.
        out: list[tuple[str, str]] = []
        metric = self._read("SELECT min(metric) FROM metric_values WHERE run_id=?", (rid,))[0][0]
        while metric is not None:
            site = self._read(
                "SELECT min(site) FROM metric_values WHERE run_id=? AND metric=?", (rid, metric)
            )[0][0]
            while site is not None:
                out.append((metric, site))
                site = self._read(
                    "SELECT min(site) FROM metric_values WHERE run_id=? AND metric=? AND site>?",
                    (rid, metric, site),
                )[0][0]
            metric = self._read(
                "SELECT min(metric) FROM metric_values WHERE run_id=? AND metric>?", (rid, metric)
            )[0][0]
        return out

    def run_config(self, run: str) -> dict[str, Any]:
        rid = self.run_id(run)
        (cfg,) = self._read("SELECT config FROM runs WHERE id=?", (rid,))[0]
        return json.loads(cfg)

    def run_info(self, run: str) -> RunInfo:
        rid = self.run_id(run)
        name, created, model, cfg, version, source = self._read(
            "SELECT name, created, model, config, version, source FROM runs WHERE id=?", (rid,)
        )[0]
        n, lo, hi = self._read("SELECT count(*), min(step), max(step) FROM steps WHERE run_id=?", (rid,))[0]
        pairs = self.metrics(run)
        return RunInfo(
            name=name,
            created=created,
            model=model,
            config=json.loads(cfg),
            version=version,
            source=source,
            n_steps=int(n),
            first_step=lo,
            last_step=hi,
            n_layers=len(self.layers(run)),
            metrics=sorted({m for m, _ in pairs}),
            sites=sorted({s for _, s in pairs}),
        )

    def load(
        self, run: str | None = None, metric: str = "rms", site: str = "output", since_step: int | None = None
    ) -> Heatmap:
        """Read one (run, metric, site) matrix. Absent cells are NaN.

        With ``since_step``, only the rows of later steps (possibly none): what a live view polls.
        """
        run = self.resolve_run(run)
        rid = self.run_id(run)
        layer_infos = self.layers(run)
        after = -(2**63) if since_step is None else int(since_step)
        try:
            # One short read transaction: a concurrent writer's step is either all in or all out.
            self.conn.execute("BEGIN")
            try:
                mrows = (
                    self.conn.execute(
                        "SELECT step, vals FROM matrix_rows WHERE run_id=? AND metric=? AND site=? AND step>? "
                        "ORDER BY step",
                        (rid, metric, site, after),
                    ).fetchall()
                    if self._has_matrix_rows()
                    else []
                )
                rows = (
                    []
                    if mrows
                    else self.conn.execute(  # a store written before matrix_rows existed
                        "SELECT step, layer, value FROM metric_values WHERE run_id=? AND metric=? AND site=? "
                        "AND step>? ORDER BY step, layer",
                        (rid, metric, site, after),
                    ).fetchall()
                )
            finally:
                self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise _translate(e, self.path, f"reading run {run!r}") from e
        if mrows:
            rows = mrows
        names = {li.layer: li.name for li in layer_infos}
        source = self._read("SELECT source FROM runs WHERE id=?", (rid,))[0][0]
        meta = {"store": str(self.path), "source": source}
        if not rows and since_step is not None and (metric, site) in self.metrics(run):
            layers = [li.layer for li in layer_infos]
            return Heatmap(
                np.zeros((0, len(layers))), [], layers, [names[i] for i in layers], metric, site, run, meta
            )
        if not rows:
            pairs = self.metrics(run)
            if not pairs:
                raise NotFoundError(f"run {run!r} in {str(self.path)!r} has no recorded steps yet.")
            metrics = sorted({m for m, _ in pairs})
            if metric not in metrics:
                raise NotFoundError(
                    f"metric {metric!r} was not recorded for run {run!r}; recorded metrics: "
                    f"{', '.join(metrics)}",
                    what="metric",
                    value=metric,
                    choices=metrics,
                    param="metric",
                )
            sites = sorted({s for m, s in pairs if m == metric})
            raise NotFoundError(
                f"site {site!r} has no {metric!r} values in run {run!r}; recorded sites: {', '.join(sites)}",
                what="site",
                value=site,
                choices=sites,
                param="site",
            )
        if mrows:
            steps = np.fromiter((r[0] for r in mrows), dtype=np.int64, count=len(mrows))
            widths = {len(r[1]) for r in mrows}
            n_layers = max(len(layer_infos), max(widths) // 8)
            if widths == {8 * n_layers}:
                values = np.frombuffer(b"".join(r[1] for r in mrows), dtype="<f8").reshape(
                    len(mrows), n_layers
                )
                values = values.astype(np.float64)  # a writable, native-order copy
            else:
                values = np.full((len(mrows), n_layers), np.nan)
                for i, (_, blob) in enumerate(mrows):
                    v = np.frombuffer(blob, dtype="<f8")
                    values[i, : v.size] = v
        else:
            arr = np.array(rows, dtype=np.float64)  # None -> NaN
            steps, step_idx = np.unique(arr[:, 0].astype(np.int64), return_inverse=True)
            n_layers = max(len(layer_infos), int(arr[:, 1].max()))
            values = np.full((len(steps), n_layers), np.nan)
            values[step_idx, arr[:, 1].astype(np.int64) - 1] = arr[:, 2]
        layers = list(range(1, n_layers + 1))
        return Heatmap(
            values=values,
            steps=steps.tolist(),
            layers=layers,
            layer_names=[names.get(i, str(i)) for i in layers],
            metric=metric,
            site=site,
            run=run,
            meta=meta,
        )

    def _has_matrix_rows(self) -> bool:
        if getattr(self, "_matrix_rows_ok", False):
            return True
        self._matrix_rows_ok = bool(self._read("SELECT 1 FROM sqlite_master WHERE name='matrix_rows'"))
        return self._matrix_rows_ok

    def load_hist(
        self, run: str | None = None, site: str = "output"
    ) -> tuple[np.ndarray, list[int], np.ndarray]:
        """Histogram counts ``(steps, layers, bins)``, the steps, and the bin edges of a run."""
        run = self.resolve_run(run)
        rid = self.run_id(run)
        edges = np.asarray(self.run_config(run).get("hist_edges") or [], dtype=np.float64)
        rows = self._read(
            "SELECT step, layer, counts FROM hists WHERE run_id=? AND site=? ORDER BY step, layer",
            (rid, site),
        )
        if not rows:
            raise NotFoundError(
                f"run {run!r} has no histograms at site {site!r}; record with metrics including 'hist'."
            )
        steps = sorted({r[0] for r in rows})
        n_layers = max(r[1] for r in rows)
        nb = len(np.frombuffer(rows[0][2], dtype="<f8"))
        out = np.zeros((len(steps), n_layers, nb))
        si = {s: i for i, s in enumerate(steps)}
        for s, layer, blob in rows:
            out[si[s], layer - 1] = np.frombuffer(blob, dtype="<f8")
        return out, steps, edges

    def iter_rows(
        self, run: str | None = None
    ) -> Iterator[tuple[str, int, int, str, str, str, float | None]]:
        """Tidy rows ``(run, step, layer, layer_name, site, metric, value)`` of one run or all runs."""
        runs = [self.resolve_run(run)] if run is not None else self.run_names()
        for r in runs:
            rid = self.run_id(r)
            names = {li.layer: li.name for li in self.layers(r)}
            for metric, site, step, layer, value in self._read(
                "SELECT metric, site, step, layer, value FROM metric_values WHERE run_id=? "
                "ORDER BY step, site, metric, layer",
                (rid,),
            ):
                yield (r, step, layer, names.get(layer, str(layer)), site, metric, value)


def load(
    store: str | os.PathLike[str] | Store,
    run: str | None = None,
    metric: str = "rms",
    site: str = "output",
) -> Heatmap:
    """Load one metric of one run as a Heatmap (steps x layers).

    ``run`` may be omitted when the store holds exactly one run.

    >>> hm = load("layerscope-demo/runs.db", metric="rms")   # doctest: +SKIP
    >>> hm.values.shape                                       # doctest: +SKIP
    (30, 12)
    """
    if isinstance(store, Store):
        return store.load(run, metric, site)
    with Store(store, readonly=True) as st:
        return st.load(run, metric, site)
