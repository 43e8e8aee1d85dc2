"""The store's schema (version 2): tables, the ``metric_values`` view, creation, version check.

One canonical representation of values: all layers of one series at one step, as float64
little-endian (NaN where absent), in ``series_rows``. The text that names a series (metric, site,
variant) is stored once, in ``series``. A row is clustered with the other steps of its series
(the table is keyed and stored by (series_id, step, part)), so loading a series reads its own pages
and no other series'. A row longer than ``series.chunk`` values is stored as several parts, each
small enough to stay inside a B-tree page (a record that spills to an overflow page of its own
wastes most of that page); a 96-layer row is one part, ~8.8 bytes per value on disk.

::

    meta(key PRIMARY KEY, value)                       -- schema_version, created_by, migrated_from
    runs(id, name UNIQUE, created, model, config JSON, version, source, n_layers)
    layers(run_id, layer, name, stack, depth)          -- layer: 1..n_layers, fixed at discovery
    steps(run_id, variant, step, source, time)         -- one row per committed step of a variant
    series(id, run_id, variant, kind, metric, site, n_layers, inner, chunk)
        -- kind 'value': a statistic, `inner` values per layer (1, or one per attention head);
        -- kind 'hist':  histogram counts, metric 'hist', `inner` = the number of bins
    series_rows(series_id, step, part, vals BLOB)      -- PRIMARY KEY (series_id, step, part);
        -- the row's n_layers x inner float64 LE, layer-major (value (layer j, head h) at index
        -- j*inner + h), cut into parts of `chunk` values: part p holds indices p*chunk ...
    events(id, run_id, variant, step, site, metric, layer, head, kind, rule, value, message, time)
    pow2(e, v)                                         -- 2^e, e = -1074..972, for the view
    VIEW metric_values(run_id, metric, site, step, layer, value, head, variant, run)

``variant`` is "" for a plain run, or ``name=value[,...]`` (``width=256``) for an extra dimension:
one run then holds rows per (variant, step, layer).

``metric_values`` gives SQL users the long rows of schema 1 (one per step x layer [x head], value
NULL where NaN), decoded from the blobs in plain SQL (no registered function: it works in the
``sqlite3`` shell and any SQLite client). It decodes each float64's sign, exponent and mantissa
with integer arithmetic and scales by an exact power of two, so every value is bit-exact (but -0.0
reads as 0.0, as SQLite stores it). It costs some microseconds per value: fine for a query that
selects a run, metric, site and a range of steps; for bulk reads use ``layerscope export`` or
``Store.load`` / ``Store.iter_rows`` (orders of magnitude faster).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._version import __version__
from ..errors import StoreError

SCHEMA_VERSION = 2

TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    created  TEXT NOT NULL,
    model    TEXT NOT NULL DEFAULT '',
    config   TEXT NOT NULL DEFAULT '{}',
    version  TEXT NOT NULL DEFAULT '',
    source   TEXT NOT NULL DEFAULT 'live',
    n_layers INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE layers (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    layer  INTEGER NOT NULL,
    name   TEXT NOT NULL,
    stack  TEXT NOT NULL DEFAULT '',
    depth  INTEGER NOT NULL,
    PRIMARY KEY (run_id, layer)
) WITHOUT ROWID;
CREATE TABLE steps (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    variant TEXT NOT NULL DEFAULT '',
    step    INTEGER NOT NULL,
    source  TEXT NOT NULL DEFAULT 'live',
    time    REAL NOT NULL,
    PRIMARY KEY (run_id, variant, step)
) WITHOUT ROWID;
CREATE TABLE series (
    id       INTEGER PRIMARY KEY,
    run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    variant  TEXT NOT NULL DEFAULT '',
    kind     TEXT NOT NULL DEFAULT 'value',
    metric   TEXT NOT NULL,
    site     TEXT NOT NULL,
    n_layers INTEGER NOT NULL,
    inner    INTEGER NOT NULL DEFAULT 1,
    chunk    INTEGER NOT NULL,
    UNIQUE (run_id, variant, kind, metric, site)
);
CREATE TABLE series_rows (
    series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    step      INTEGER NOT NULL,
    part      INTEGER NOT NULL DEFAULT 0,
    vals      BLOB NOT NULL,
    PRIMARY KEY (series_id, step, part)
) WITHOUT ROWID;
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    variant TEXT NOT NULL DEFAULT '',
    step    INTEGER NOT NULL,
    site    TEXT NOT NULL DEFAULT '',
    metric  TEXT NOT NULL DEFAULT '',
    layer   INTEGER,
    head    INTEGER,
    kind    TEXT NOT NULL,
    rule    TEXT NOT NULL DEFAULT '',
    value   REAL,
    message TEXT NOT NULL DEFAULT '',
    time    REAL NOT NULL
);
CREATE INDEX events_step ON events(run_id, variant, step);
CREATE TABLE pow2 (e INTEGER PRIMARY KEY, v REAL NOT NULL);
"""

# pow2 holds 2^e for e = -1074..972, made by exact doublings and halvings: the view scales each
# decoded mantissa by one of them (SQLite has no ldexp, and pow() is not in every build).
POW2 = """
INSERT INTO pow2(e, v)
WITH RECURSIVE p(e, v) AS (
    SELECT 0, 1.0 UNION ALL
    SELECT CASE WHEN e >= 972 THEN -1 WHEN e >= 0 THEN e + 1 ELSE e - 1 END,
           CASE WHEN e >= 972 THEN 0.5 WHEN e >= 0 THEN v * 2 ELSE v / 2 END
    FROM p WHERE e > -1074)
SELECT e, v FROM p
"""


def chunk_for(page_size: int) -> int:
    """Values per part of a row: the most whose record stays inside a page of ``page_size`` bytes.

    SQLite keeps a record of an index B-tree (a WITHOUT ROWID table's) in the page up to
    ``(U - 12) * 64 / 255 - 23`` bytes (U = the page size); 24 bytes are left for the record
    header, the series id, the step and the part.

    >>> chunk_for(4096), chunk_for(8192)
    (122, 250)
    """
    local = (page_size - 12) * 64 // 255 - 23
    return (local - 24) // 8


_BYTES = "X'" + "".join(f"{i:02X}" for i in range(256)) + "'"  # instr() of a byte in it = byte + 1


def _byte(k: int) -> str:
    """SQL for byte ``k`` (0 = least significant) of the float64 at index ``i`` of ``vals``."""
    return f"(instr({_BYTES}, substr(vals, 8 * i + {k + 1}, 1)) - 1)"


_HI = f"({_byte(7)} * 256 + {_byte(6)})"  # sign (1 bit), exponent (11), top 4 mantissa bits
_LO = " + ".join(f"({_byte(k)} << {8 * k})" for k in range(6))

VIEW = f"""
CREATE VIEW metric_values AS
WITH RECURSIVE
  idx(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM idx
             WHERE i + 1 < (SELECT max(chunk) FROM series WHERE kind = 'value')),
  cells AS (
    SELECT s.run_id, s.metric, s.site, s.variant, s.inner, r.step, r.vals, idx.i, r.part * s.chunk + idx.i AS g
    FROM series s CROSS JOIN series_rows r CROSS JOIN idx
    WHERE s.kind = 'value' AND r.series_id = s.id AND idx.i < length(r.vals) / 8
      AND r.part * s.chunk + idx.i < s.n_layers * s.inner),
  bits AS (
    SELECT run_id, metric, site, variant, inner, step, g,
           {_HI} >> 15 AS sgn, ({_HI} >> 4) & 2047 AS ex, (({_HI} & 15) << 48) + {_LO} AS mant
    FROM cells)
SELECT b.run_id AS run_id, b.metric AS metric, b.site AS site, b.step AS step,
       b.g / b.inner + 1 AS layer,
       CASE WHEN b.ex = 2047 THEN (CASE WHEN b.mant = 0 THEN (1 - 2 * b.sgn) * 1e999 END)
            ELSE (1 - 2 * b.sgn) * (b.mant + (b.ex > 0) * 4503599627370496)
                 * (SELECT v FROM pow2 WHERE pow2.e = max(b.ex, 1) - 1075) END AS value,
       CASE WHEN b.inner > 1 THEN b.g % b.inner END AS head,
       b.variant AS variant,
       (SELECT name FROM runs WHERE runs.id = b.run_id) AS run
FROM bits b
"""


def create(conn: sqlite3.Connection) -> None:
    """Create the tables, the view and the meta rows (the caller holds the write transaction)."""
    for stmt in TABLES.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute(POW2)
    conn.execute(VIEW)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    conn.execute("INSERT INTO meta VALUES ('created_by', ?)", (f"layerscope {__version__}",))


def version(conn: sqlite3.Connection, path: Path, readonly: bool) -> int | None:
    """The schema version of the store on ``conn``, or None if the file is empty (a new store,
    which the caller creates). Refuses a file that is not a layerscope store, or one of a newer
    version, before anything is changed. Reads only."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if has_meta:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise StoreError(f"{str(path)!r} has no schema version; it was not written by layerscope.")
        try:
            ver = int(row[0])
        except (TypeError, ValueError):
            raise StoreError(
                f"store {str(path)!r} has schema version {row[0]!r}, which is not a number; "
                "it was not written by layerscope."
            ) from None
        if ver > SCHEMA_VERSION:
            raise StoreError(
                f"store {str(path)!r} has schema version {ver}, newer than this layerscope "
                f"({__version__}, schema {SCHEMA_VERSION}) can read; upgrade layerscope "
                "(pip install -U layerscope)."
            )
        if ver < 1:
            raise StoreError(
                f"store {str(path)!r} has schema version {ver}; layerscope never wrote it. Point at a "
                "store written by layerscope."
            )
        return ver
    others = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    if others:
        raise StoreError(
            f"{str(path)!r} is an SQLite database but not a layerscope store; choose another store file."
        )
    if readonly:
        raise StoreError(f"store {str(path)!r} is empty; record a run into it first.")
    return None
