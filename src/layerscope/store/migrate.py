"""The one migration: schema 1 -> 2, in place, in one write transaction.

Schema 1 kept every value twice: long rows ``metric_values(run_id, metric, site, step, layer,
value)`` (the canonical copy; NULL for NaN) and, in stores written after it was added,
``matrix_rows`` (one blob per step). Schema 2 keeps one blob per (series, step). The migration
rebuilds the blobs from the long rows, which every schema-1 store has, and the histogram blobs from
``hists`` (one row per layer then, one per step now), adds ``runs.n_layers`` and the ``variant``
of ``steps``, replaces the old tables by the ``metric_values`` view, and records
``migrated_from = 1`` in ``meta``. A kill or an error half-way rolls it all back: the store stays
schema 1, unchanged. Damaged schema-1 contents (a value that is text, a histogram of the wrong size)
stop the migration with a ``StoreError`` naming the run and the cell; nothing is changed then.

Afterwards the file is vacuumed once (best effort), so the space of the dropped copies is given
back to the disk.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import schema
from .codec import encode
from .txn import damaged, transaction

_FETCH = 65536  # long rows per fetch: bounded memory however large the store
_INSERT = "INSERT INTO series_rows(series_id, step, part, vals) VALUES (?,?,?,?)"


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store on ``conn`` (writable, no transaction open) to the current schema."""
    with transaction(conn, path, "upgrading the store from schema 1 to 2"):
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or int(row[0]) != 1:  # another process upgraded it while we waited for the lock
            return
        _v1_to_v2(conn, path)
    try:
        conn.execute("VACUUM")  # give the dropped copies' pages back to the disk
    except sqlite3.Error:
        pass  # a reader holds the file open: the space is reused by later writes instead


def _v1_to_v2(conn: sqlite3.Connection, path: Path) -> None:
    names = dict(conn.execute("SELECT id, name FROM runs").fetchall())
    conn.execute("ALTER TABLE runs ADD COLUMN n_layers INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE runs SET n_layers = (SELECT count(*) FROM layers WHERE layers.run_id = runs.id)")
    conn.execute("ALTER TABLE steps RENAME TO steps_v1")
    conn.execute("DROP TABLE IF EXISTS matrix_rows")  # a copy of the long rows: rebuilt from them
    conn.execute("ALTER TABLE metric_values RENAME TO metric_values_v1")
    conn.execute("ALTER TABLE hists RENAME TO hists_v1")
    for stmt in schema.TABLES.split(";"):
        stmt = stmt.strip()
        if stmt and not stmt.startswith(("CREATE TABLE meta ", "CREATE TABLE runs ", "CREATE TABLE layers ")):
            conn.execute(stmt)
    conn.execute(schema.POW2)
    conn.execute(
        "INSERT INTO steps(run_id, variant, step, source, time) SELECT run_id, '', step, source, time FROM steps_v1"
    )
    n_layers = dict(conn.execute("SELECT id, n_layers FROM runs").fetchall())
    chunk = schema.chunk_for(int(conn.execute("PRAGMA page_size").fetchone()[0]))
    _values(conn, path, names, n_layers, chunk)
    _hists(conn, path, names, n_layers, chunk)
    for table in ("steps_v1", "metric_values_v1", "hists_v1"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute(schema.VIEW)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(schema.SCHEMA_VERSION),))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('migrated_from', '1')")
    conn.execute(
        "INSERT OR REPLACE INTO meta VALUES ('migrated', ?)", (time.strftime("%Y-%m-%dT%H:%M:%S%z"),)
    )


def _values(
    conn: sqlite3.Connection, path: Path, names: dict[int, str], n_layers: dict[int, int], chunk: int
) -> None:
    groups = conn.execute(
        "SELECT run_id, metric, site, max(layer) FROM metric_values_v1 GROUP BY run_id, metric, site"
    ).fetchall()
    for run_id, metric, site, max_layer in groups:
        width = max(int(n_layers.get(run_id, 0)), int(max_layer))
        sid = int(
            conn.execute(
                "INSERT INTO series(run_id, variant, kind, metric, site, n_layers, inner, chunk) "
                "VALUES (?, '', 'value', ?, ?, ?, 1, ?)",
                (run_id, metric, site, width, chunk),
            ).lastrowid  # type: ignore[arg-type]
        )
        cur = conn.cursor()
        cur.execute(
            "SELECT step, layer, value FROM metric_values_v1 WHERE run_id=? AND metric=? AND site=? "
            "ORDER BY step, layer",
            (run_id, metric, site),
        )
        carry: list[tuple] = []
        while True:
            fetched = cur.fetchmany(_FETCH)
            rows = carry + fetched
            if not rows:
                break
            if fetched:  # the last step of a fetch may go on in the next one
                last = rows[-1][0]
                cut = len(rows)
                while cut and rows[cut - 1][0] == last:
                    cut -= 1
                rows, carry = rows[:cut], rows[cut:]
                if not rows:
                    continue
            else:
                carry = []
            _write_value_rows(
                conn, path, sid, rows, width, chunk, names.get(run_id, str(run_id)), f"{metric}/{site}"
            )


def _write_value_rows(
    conn: sqlite3.Connection,
    path: Path,
    sid: int,
    rows: list[tuple],
    width: int,
    chunk: int,
    run: str,
    series: str,
) -> None:
    steps = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    layers = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    try:
        vals = np.array([r[2] for r in rows], dtype=np.float64)  # None (NULL) -> NaN
    except (TypeError, ValueError):
        s, layer, v = next(r for r in rows if r[2] is not None and not isinstance(r[2], (int, float)))
        raise damaged(
            path, run, f"the value of {series} at step {s}, layer {layer} is {v!r}, not a number"
        ) from None
    if layers.min() < 1:
        bad = rows[int(np.argmin(layers))]
        raise damaged(
            path, run, f"{series} has a value for layer {bad[1]} at step {bad[0]}; layers start at 1"
        )
    uniq = np.unique(steps)
    mat = np.full((len(uniq), width), np.nan)
    mat[np.searchsorted(uniq, steps), layers - 1] = vals
    conn.executemany(
        "INSERT INTO series_rows(series_id, step, part, vals) VALUES (?,?,?,?)",
        [
            (sid, int(s), p, b)
            for i, s in enumerate(uniq.tolist())
            for p, b in enumerate(encode(mat[i], chunk))
        ],
    )


def _hists(
    conn: sqlite3.Connection, path: Path, names: dict[int, str], n_layers: dict[int, int], chunk: int
) -> None:
    groups = conn.execute("SELECT run_id, site, max(layer) FROM hists_v1 GROUP BY run_id, site").fetchall()
    for run_id, site, max_layer in groups:
        run = names.get(run_id, str(run_id))
        width = max(int(n_layers.get(run_id, 0)), int(max_layer))
        cur = conn.cursor()
        cur.execute(
            "SELECT step, layer, counts FROM hists_v1 WHERE run_id=? AND site=? ORDER BY step, layer",
            (run_id, site),
        )
        sid = 0
        n_bins = 0
        step: int | None = None
        mat = np.zeros((0, 0))
        rows: list[tuple[int, int, int, bytes]] = []
        for s, layer, blob in _fetch(cur):
            if not isinstance(blob, bytes) or not blob or len(blob) % 8:
                raise damaged(
                    path,
                    run,
                    f"the histogram of site {site!r} at step {s}, layer {layer} is not float64 counts",
                )
            if not sid:
                n_bins = len(blob) // 8
                sid = int(
                    conn.execute(
                        "INSERT INTO series(run_id, variant, kind, metric, site, n_layers, inner, chunk) "
                        "VALUES (?, '', 'hist', 'hist', ?, ?, ?, ?)",
                        (run_id, site, width, n_bins, chunk),
                    ).lastrowid  # type: ignore[arg-type]
                )
            if len(blob) != 8 * n_bins:
                raise damaged(
                    path,
                    run,
                    f"the histogram of site {site!r} at step {s}, layer {layer} has {len(blob) // 8} bins, not {n_bins}",
                )
            if s != step:
                if step is not None:
                    rows.extend((sid, step, p, b) for p, b in enumerate(encode(mat, chunk)))
                if len(rows) >= 1024:  # bounded memory: histograms are the widest rows
                    conn.executemany(_INSERT, rows)
                    rows = []
                step, mat = s, np.zeros((width, n_bins))  # a layer without a histogram counts nothing
            mat[layer - 1] = np.frombuffer(blob, dtype="<f8")
        if step is not None:
            rows.extend((sid, step, p, b) for p, b in enumerate(encode(mat, chunk)))
        conn.executemany(_INSERT, rows)


def _fetch(cur: sqlite3.Cursor) -> Iterator[tuple]:
    while True:
        fetched = cur.fetchmany(_FETCH)
        if not fetched:
            return
        yield from fetched
