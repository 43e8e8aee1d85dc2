"""``layerscope runs STORE --check``: is the store whole and consistent? One problem per line.

SQLite's own ``PRAGMA integrity_check`` and ``foreign_key_check`` first, then ours, for every run:
its config is a JSON object; its layers are 1..n_layers, each with a row; every series has a
sensible shape, and a row at every step recorded for its variant (a step is whole) and none at a
step that is not recorded; every row is a BLOB of exactly ``8 x n_layers x inner`` bytes (the
float64 values; a row of text or a number is not); histogram series have one bin per edge + 1;
events name a layer of the run.

>>> problems = check_store("runs.db")          # doctest: +SKIP
>>> [p.line() for p in problems]               # doctest: +SKIP
["run 'r': rms/output: no row at 3 of 20 recorded steps (first: step 40); the step is not whole"]
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import LayerscopeError
from . import schema
from .codec import n_parts
from .reader import series_label
from .sqlite import Store
from .txn import snapshot

_TABLES = ("meta", "runs", "layers", "steps", "series", "series_rows", "events", "pow2")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store: ``run`` (None for the file as a whole), ``kind`` (``sqlite``,
    ``open``, ``schema``, ``config``, ``layers``, ``series``, ``steps``, ``rows``, ``events``) and
    a message that says what and where."""

    run: str | None
    kind: str
    message: str

    def line(self) -> str:
        """The problem as one line, as ``layerscope runs --check`` prints it."""
        return f"run {self.run!r}: {self.message}" if self.run is not None else self.message


def check_store(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem found in the store at ``path`` (an empty list: the store is whole).

    The store is opened read-only (a schema-1 store is upgraded first, when it may be written;
    a damaged one that cannot be is reported as the problem that stops the check).
    """
    try:
        st = Store(path, readonly=True)
    except LayerscopeError as e:
        return [Problem(None, "open", str(e))]
    with st:
        found: list[Problem] = []
        try:
            for p in _check(st):
                found.append(p)
        except sqlite3.Error as e:
            found.append(Problem(None, "sqlite", f"the check stopped: {' '.join(str(e).split())}"))
        except LayerscopeError as e:
            found.append(Problem(None, "sqlite", f"the check stopped: {e}"))
        return found


def _check(st: Store) -> Iterator[Problem]:
    c = st.conn
    for (msg,) in c.execute("PRAGMA integrity_check").fetchall():
        if msg != "ok":
            yield Problem(None, "sqlite", f"integrity_check: {' '.join(str(msg).split())}")
    for table, rowid, parent, _ in c.execute("PRAGMA foreign_key_check").fetchall():
        yield Problem(
            None, "sqlite", f"row {rowid} of table {table!r} refers to a {parent!r} row that does not exist"
        )
    have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    missing = [t for t in (*_TABLES, "metric_values") if t not in have]
    if missing:
        yield Problem(
            None, "schema", f"the store has no {', '.join(missing)} (schema {schema.SCHEMA_VERSION})"
        )
        return
    (n_pow2,) = c.execute("SELECT count(*) FROM pow2").fetchone()
    if n_pow2 != 2047:
        yield Problem(
            None, "schema", f"table pow2 holds {n_pow2} rows, not 2047; the metric_values view reads wrong"
        )
    with snapshot(c, st.path, "checking the store"):  # one committed state for every count below
        for rid, name, cfg, n_layers in c.execute(
            "SELECT id, name, config, n_layers FROM runs ORDER BY id"
        ).fetchall():
            yield from _check_run(c, rid, name, cfg, n_layers)


def _check_run(c: sqlite3.Connection, rid: int, run: str, cfg: object, n_layers: object) -> Iterator[Problem]:
    edges = None
    try:
        config = json.loads(cfg)  # type: ignore[arg-type]
        if not isinstance(config, dict):
            yield Problem(run, "config", f"config is JSON {type(config).__name__}, not an object")
        else:
            edges = config.get("hist_edges")
    except (TypeError, ValueError):
        yield Problem(run, "config", "config is not valid JSON")
    if not isinstance(n_layers, int) or n_layers < 0:
        yield Problem(run, "layers", f"n_layers is {n_layers!r}, not a count")
        n_layers = 0
    got = [r[0] for r in c.execute("SELECT layer FROM layers WHERE run_id=? ORDER BY layer", (rid,))]
    missing = sorted(set(range(1, int(n_layers) + 1)) - set(got))
    extra = [x for x in got if not (isinstance(x, int) and 1 <= x <= n_layers)]
    if missing:
        yield Problem(
            run,
            "layers",
            f"{len(missing)} of {n_layers} layers {'has' if len(missing) == 1 else 'have'} no row in the layers "
            f"table (first: layer {missing[0]})",
        )
    if extra:
        yield Problem(run, "layers", f"the layers table holds layer {extra[0]!r}, outside 1..{n_layers}")
    for v, step in c.execute(
        "SELECT variant, step FROM steps WHERE run_id=? AND typeof(step) != 'integer' LIMIT 1", (rid,)
    ):
        yield Problem(run, "steps", f"step {step!r} of variant {v!r} is not a whole number")
    series = c.execute(
        "SELECT id, variant, kind, metric, site, n_layers, inner, chunk FROM series WHERE run_id=? ORDER BY id",
        (rid,),
    ).fetchall()
    for sid, variant, kind, metric, site, n, inner, chunk in series:
        label = series_label(metric, site, variant) if kind == "value" else f"histograms of site {site!r}"
        yield from _check_series(
            c, rid, run, sid, label, variant, kind, n, inner, chunk, int(n_layers), edges
        )
    for step, layer, kind in c.execute(
        "SELECT step, layer, kind FROM events WHERE run_id=? AND layer IS NOT NULL AND (layer < 1 OR layer > ?) LIMIT 1",
        (rid, n_layers),
    ):
        yield Problem(
            run,
            "events",
            f"an event at step {step!r} ({kind!r}) names layer {layer!r}, outside 1..{n_layers}",
        )


def _check_series(
    c: sqlite3.Connection,
    rid: int,
    run: str,
    sid: int,
    label: str,
    variant: str,
    kind: str,
    n: object,
    inner: object,
    chunk: object,
    n_layers: int,
    edges: object,
) -> Iterator[Problem]:
    if kind not in ("value", "hist"):
        yield Problem(run, "series", f"{label}: kind {kind!r} is neither 'value' nor 'hist'")
        return
    if not all(isinstance(x, int) and x >= 1 for x in (n, inner, chunk)):
        yield Problem(
            run, "series", f"{label}: shape {n!r} x {inner!r} (parts of {chunk!r}) is not positive counts"
        )
        return
    assert isinstance(n, int) and isinstance(inner, int) and isinstance(chunk, int)
    if n_layers and n != n_layers and not (kind == "value" and n == 1):
        yield Problem(run, "series", f"{label}: {n} values per step for a run of {n_layers} layers")
    if kind == "hist" and isinstance(edges, list) and inner != len(edges) + 1:
        yield Problem(
            run,
            "series",
            f"{label}: {inner} bins, but the run's {len(edges)} hist_edges make {len(edges) + 1}",
        )
    total = n * inner
    k = n_parts(n, inner, chunk)
    last = 8 * (total - chunk * (k - 1))
    cnt, first = c.execute(
        "SELECT count(*), min(step) FROM series_rows WHERE series_id=? AND typeof(vals) != 'blob'", (sid,)
    ).fetchone()
    if cnt:
        yield Problem(
            run,
            "rows",
            f"{label}: the row at step {first} is not a BLOB of float64 values (text, a number or NULL) "
            f"({_n(cnt, 'such row')})",
        )
    cnt, first = c.execute(
        "SELECT count(*), min(step) FROM series_rows WHERE series_id=? AND typeof(vals) = 'blob' AND "
        "(part < 0 OR part >= ? OR length(vals) != CASE WHEN part < ? THEN ? ELSE ? END)",
        (sid, k, k - 1, 8 * chunk, last),
    ).fetchone()
    if cnt:
        size = (
            f"{8 * total} bytes ({n} x {inner} float64)" if k == 1 else f"its {k} parts of {8 * chunk} bytes"
        )
        yield Problem(
            run, "rows", f"{label}: the row at step {first} does not hold {size} ({_n(cnt, 'such row')})"
        )
    (n_steps,) = c.execute(
        "SELECT count(*) FROM steps WHERE run_id=? AND variant=?", (rid, variant)
    ).fetchone()
    cnt, first = c.execute(
        "SELECT count(*), min(st.step) FROM steps st WHERE st.run_id=? AND st.variant=? AND NOT EXISTS "
        "(SELECT 1 FROM series_rows r WHERE r.series_id=? AND r.step=st.step)",
        (rid, variant, sid),
    ).fetchone()
    if cnt:
        yield Problem(
            run,
            "steps",
            f"{label}: no row at {cnt} of {n_steps} recorded steps (first: step {first}); the step is not whole",
        )
    if k > 1:
        cnt, first = c.execute(
            "SELECT count(*), min(step) FROM (SELECT step, count(*) AS parts FROM series_rows WHERE series_id=? "
            "GROUP BY step) WHERE parts != ?",
            (sid, k),
        ).fetchone()
        if cnt:
            yield Problem(
                run,
                "rows",
                f"{label}: the row at step {first} lacks some of its {k} parts ({_n(cnt, 'such row')})",
            )
    cnt, first = c.execute(
        "SELECT count(DISTINCT r.step), min(r.step) FROM series_rows r WHERE r.series_id=? AND NOT EXISTS "
        "(SELECT 1 FROM steps st WHERE st.run_id=? AND st.variant=? AND st.step=r.step)",
        (sid, rid, variant),
    ).fetchone()
    if cnt:
        yield Problem(
            run,
            "steps",
            f"{label}: {_n(cnt, 'row')} at steps that were never committed (first: step {first})",
        )


def _n(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")
