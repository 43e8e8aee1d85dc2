"""Reading a store: :class:`StoreReader`, the half of :class:`~layerscope.store.Store` that
renderers, the analysis, the dashboard and the CLI use (none of them writes SQL).

Every read that must be consistent (a series and its rows) runs in one read snapshot, so a
concurrent writer's step is all in or all out. Damaged contents (a config that is not JSON, a row
of the wrong size or type, a layer row missing) raise a ``StoreError`` naming the run and what is
damaged.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._io import refuse_special_file
from ..errors import NotFoundError, StoreError
from . import heads as _heads
from .codec import decode
from .connection import connect, is_sqlite
from .heatmap import Heatmap
from .records import Event, HeadMap, HeadSeries, LayerInfo, RunInfo, SeriesInfo
from .txn import damaged, snapshot, translate

_R = TypeVar("_R", bound="StoreReader")


def series_label(metric: str, site: str, variant: str = "") -> str:
    """How messages name a series: ``rms/output``, ``rms/output [width=256]``."""
    return f"{metric}/{site}" + (f" [{variant}]" if variant else "")


class StoreReader:
    """The reading half of :class:`~layerscope.store.Store`: open a store file and read it."""

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
        if self.path.exists() and not is_sqlite(self.path):
            raise StoreError(
                f"{str(self.path)!r} is not a layerscope store (not an SQLite file); "
                "point at a .db file written by layerscope."
            )
        if not readonly and not self.path.parent.exists():
            raise NotFoundError(
                f"folder {str(self.path.parent)!r} for store {str(self.path)!r} does not exist; create it first."
            )
        self._conn: sqlite3.Connection | None = connect(self.path, readonly)
        self._run_ids: dict[str, int] = {}

    # -- connection ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is not None:
            conn.close()

    def __enter__(self: _R) -> _R:
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
            raise translate(e, self.path, "reading") from e

    # -- reading: runs ------------------------------------------------------------------------
    def run_names(self) -> list[str]:
        """Every run's name, in creation order."""
        return [r[0] for r in self._read("SELECT name FROM runs ORDER BY id")]

    def run_table(self) -> list[tuple[int, str, str, str, str, int, int | None, int | None, int]]:
        """``(id, name, created, model, source, n_steps, first_step, last_step, n_layers)`` of every
        run, in creation order, from one short read (no scan of any run's values)."""
        return self._read(
            "SELECT r.id, r.name, r.created, r.model, r.source, "
            "       (SELECT count(DISTINCT step) FROM steps s WHERE s.run_id = r.id), "
            "       (SELECT min(step) FROM steps s WHERE s.run_id = r.id), "
            "       (SELECT max(step) FROM steps s WHERE s.run_id = r.id), "
            "       r.n_layers "
            "FROM runs r ORDER BY r.id"
        )

    def run_id(self, run: str) -> int:
        """The id of run ``run``; a ``NotFoundError`` naming the runs there if there is none."""
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
        """The run's layers, 1..n_layers; a missing or extra layer row is damage."""
        rid = self.run_id(run)
        rows = self._read(
            "SELECT layer, name, stack, depth FROM layers WHERE run_id=? ORDER BY layer", (rid,)
        )
        (n,) = self._read("SELECT n_layers FROM runs WHERE id=?", (rid,))[0]
        got = [r[0] for r in rows]
        if got != list(range(1, len(got) + 1)) or len(got) != n:
            missing = sorted(set(range(1, int(n) + 1)) - set(got))
            what = (
                f"layer {missing[0]} of {n} has no row in the layers table"
                if missing
                else f"the layers table holds layers {got[:3]}... where the run has {n}"
            )
            raise damaged(self.path, run, what)
        return [LayerInfo(*r) for r in rows]

    def steps(self, run: str, variant: str | None = None) -> list[int]:
        """The committed steps of ``run`` (of one ``variant``, or of all of them), ascending."""
        rid = self.run_id(run)
        if variant is None:
            return [
                r[0]
                for r in self._read("SELECT DISTINCT step FROM steps WHERE run_id=? ORDER BY step", (rid,))
            ]
        return [
            r[0]
            for r in self._read(
                "SELECT step FROM steps WHERE run_id=? AND variant=? ORDER BY step", (rid, variant)
            )
        ]

    def metrics(self, run: str, variant: str | None = None) -> list[tuple[str, str]]:
        """The (metric, site) pairs recorded for ``run`` (in one ``variant``, or in any)."""
        rid = self.run_id(run)
        sql = "SELECT DISTINCT metric, site FROM series WHERE run_id=? AND kind='value'"
        args: tuple[Any, ...] = (rid,)
        if variant is not None:
            sql, args = sql + " AND variant=?", (rid, variant)
        return [(m, s) for m, s in self._read(sql + " ORDER BY metric, site", args)]

    def variants(self, run: str) -> list[str]:
        """The variants recorded for ``run``, in the order they were first written (``""``: plain)."""
        rid = self.run_id(run)
        return [
            r[0]
            for r in self._read(
                "SELECT variant FROM series WHERE run_id=? GROUP BY variant ORDER BY min(id)", (rid,)
            )
        ]

    def series(self, run: str) -> list[SeriesInfo]:
        """Every series of ``run`` (statistics and histograms), with its shape and row count."""
        rid = self.run_id(run)
        return [
            SeriesInfo(m, s, v, k, int(n), int(i), int(c))
            for m, s, v, k, n, i, c in self._read(
                "SELECT metric, site, variant, kind, n_layers, inner, "
                "       (SELECT count(*) FROM series_rows r WHERE r.series_id = series.id AND r.part = 0) "
                "FROM series WHERE run_id=? ORDER BY variant, kind, metric, site",
                (rid,),
            )
        ]

    def _parse_config(self, run: str, text: Any) -> dict[str, Any]:
        try:
            cfg = json.loads(text)
        except (TypeError, ValueError):
            raise damaged(self.path, run, "config is not valid JSON") from None
        if not isinstance(cfg, dict):
            raise damaged(self.path, run, f"config is JSON {type(cfg).__name__}, not an object")
        return cfg

    def run_config(self, run: str) -> dict[str, Any]:
        """The run's config (what the Recorder or sweep recorded about how it was made)."""
        rid = self.run_id(run)
        (cfg,) = self._read("SELECT config FROM runs WHERE id=?", (rid,))[0]
        return self._parse_config(run, cfg)

    def run_info(self, run: str) -> RunInfo:
        """What ``layerscope runs`` prints about ``run``."""
        rid = self.run_id(run)
        name, created, model, cfg, version, source, n_layers = self._read(
            "SELECT name, created, model, config, version, source, n_layers FROM runs WHERE id=?", (rid,)
        )[0]
        n, lo, hi = self._read(
            "SELECT count(DISTINCT step), min(step), max(step) FROM steps WHERE run_id=?", (rid,)
        )[0]
        pairs = self.metrics(run)
        return RunInfo(
            name=name,
            created=created,
            model=model,
            config=self._parse_config(run, cfg),
            version=version,
            source=source,
            n_steps=int(n),
            first_step=lo,
            last_step=hi,
            n_layers=len(self.layers(run)) if n_layers else 0,
            metrics=sorted({m for m, _ in pairs}),
            sites=sorted({s for _, s in pairs}),
            variants=[v for v in self.variants(run) if v],
        )

    # -- reading: values ----------------------------------------------------------------------
    def _rows(
        self,
        run: str,
        variant: str,
        kind: str,
        metric: str,
        site: str,
        where: str = "",
        args: tuple[Any, ...] = (),
    ) -> tuple[tuple[int, int, int, int] | None, list[tuple[int, int, Any]], list[LayerInfo], str]:
        """(series id, n_layers, inner, chunk) or None, its rows ``(step, part, blob)`` matching
        ``where``, the run's layers and source: all from one read snapshot."""
        rid = self.run_id(run)
        layer_infos = self.layers(run)
        with snapshot(self.conn, self.path, f"reading run {run!r}") as c:
            s = c.execute(
                "SELECT id, n_layers, inner, chunk FROM series WHERE run_id=? AND variant=? AND kind=? AND metric=? "
                "AND site=?",
                (rid, variant, kind, metric, site),
            ).fetchone()
            rows = (
                c.execute(
                    f"SELECT step, part, vals FROM series_rows WHERE series_id=? {where} ORDER BY step, part",
                    (s[0], *args),
                ).fetchall()
                if s is not None
                else []
            )
            (source,) = c.execute("SELECT source FROM runs WHERE id=?", (rid,)).fetchone()
        return s, rows, layer_infos, source

    def _not_found(self, run: str, metric: str, site: str, variant: str) -> NotFoundError:
        pairs = self.metrics(run)
        if not pairs:
            return NotFoundError(f"run {run!r} in {str(self.path)!r} has no recorded steps yet.")
        if variant and variant not in self.variants(run):
            have = ", ".join(repr(v) for v in self.variants(run))
            return NotFoundError(
                f"variant {variant!r} was not recorded for run {run!r}; recorded variants: {have}."
            )
        metrics = sorted({m for m, _ in pairs})
        if metric not in metrics:
            return NotFoundError(
                f"metric {metric!r} was not recorded for run {run!r}; recorded metrics: {', '.join(metrics)}",
                what="metric",
                value=metric,
                choices=metrics,
                param="metric",
            )
        sites = sorted({s for m, s in self.metrics(run, variant) if m == metric})
        if not sites:
            return NotFoundError(
                f"metric {metric!r} was not recorded in variant {variant!r} of run {run!r}; pass one of its "
                f"variants: {', '.join(repr(v) for v in self.variants(run))}."
            )
        return NotFoundError(
            f"site {site!r} has no {metric!r} values in run {run!r}; recorded sites: {', '.join(sites)}",
            what="site",
            value=site,
            choices=sites,
            param="site",
        )

    @staticmethod
    def _layer_labels(n: int, layer_infos: Sequence[LayerInfo]) -> tuple[list[int], list[str]]:
        names = {li.layer: li.name for li in layer_infos} if n == len(layer_infos) else {}
        layers = list(range(1, n + 1))
        return layers, [names.get(i, str(i)) for i in layers]

    def load(
        self,
        run: str | None = None,
        metric: str = "rms",
        site: str = "output",
        since_step: int | None = None,
        *,
        variant: str = "",
        reduce: str | int | None = None,
    ) -> Heatmap:
        """Read one (run, metric, site) matrix, steps x layers. Absent cells are NaN.

        With ``since_step``, only the rows of later steps (possibly none): what a live view polls.
        ``variant`` picks one variant of the run (``"width=256"``); ``""`` is the plain run.
        A per-head series (several values per layer) needs ``reduce``: ``"max"``, ``"mean"`` or
        ``"min"`` over the heads (NaN heads ignored), or a head index (0-based). The map's
        ``events`` are the run's watch alerts (with ``since_step``, the later ones only).
        """
        run = self.resolve_run(run)
        after = -(2**63) if since_step is None else int(since_step)
        s, rows, layer_infos, source = self._rows(run, variant, "value", metric, site, "AND step>?", (after,))
        if s is None:
            raise self._not_found(run, metric, site, variant)
        sid, n, inner, chunk = s
        if not rows and since_step is None:
            raise NotFoundError(f"run {run!r} in {str(self.path)!r} has no recorded steps yet.")
        label = series_label(metric, site, variant)
        how = _heads.check(reduce, inner, f"{label} of run {run!r}")
        steps, cube = decode(rows, n, inner, chunk, self.path, run, label)
        layers, names = self._layer_labels(n, layer_infos)
        meta: dict[str, Any] = {"store": str(self.path), "source": source}
        if variant:
            meta["variant"] = variant
        if inner > 1:
            meta["reduce"] = how
            meta["heads"] = inner
        # The run's alerts ride along, so that a plot of the map marks them (renderers read no store).
        alerts = [e for e in self.events(run, variant=variant) if e.kind == "alert" and e.step > after]
        return Heatmap(_heads.apply(cube, how), steps, layers, names, metric, site, run, meta, alerts)

    def load_heads(self, run: str | None, metric: str, site: str, step: int, *, variant: str = "") -> HeadMap:
        """The heads x layers matrix of a per-head series at one ``step``.

        >>> st.load_heads("a", "max_logit", "attn", step=100).values.shape   # doctest: +SKIP
        (12, 12)
        """
        run = self.resolve_run(run)
        s, rows, layer_infos, source = self._rows(
            run, variant, "value", metric, site, "AND step=?", (int(step),)
        )
        if s is None:
            raise self._not_found(run, metric, site, variant)
        sid, n, inner, chunk = s
        label = series_label(metric, site, variant)
        if not rows:
            have = self._read(
                "SELECT min(step), max(step), count(DISTINCT step) FROM series_rows WHERE series_id=?", (sid,)
            )[0]
            raise NotFoundError(
                f"step {step} was not recorded for {label} of run {run!r}; it has {have[2]} steps, "
                f"{have[0]}..{have[1]}. Pass one of them."
            )
        _, cube = decode(rows, n, inner, chunk, self.path, run, label)
        layers, names = self._layer_labels(n, layer_infos)
        return HeadMap(
            cube[0].T.copy(),
            list(range(inner)),
            layers,
            names,
            int(step),
            metric,
            site,
            run,
            variant,
            {"store": str(self.path), "source": source},
        )

    def load_head_series(self, run: str | None, metric: str, site: str, *, variant: str = "") -> HeadSeries:
        """Every head of a per-head series at every step: ``values`` is (steps, layers, heads),
        read in one pass (what the report's per-head section reads).

        >>> st.load_head_series("a", "max_logit", "attn").values.shape   # doctest: +SKIP
        (30, 12, 12)
        """
        run = self.resolve_run(run)
        s, rows, layer_infos, source = self._rows(run, variant, "value", metric, site)
        if s is None:
            raise self._not_found(run, metric, site, variant)
        sid, n, inner, chunk = s
        if not rows:
            raise NotFoundError(f"run {run!r} in {str(self.path)!r} has no recorded steps yet.")
        label = series_label(metric, site, variant)
        steps, cube = decode(rows, n, inner, chunk, self.path, run, label)
        layers, names = self._layer_labels(n, layer_infos)
        return HeadSeries(
            cube,
            steps,
            layers,
            names,
            metric,
            site,
            run,
            variant,
            {"store": str(self.path), "source": source},
        )

    def load_hist(
        self, run: str | None = None, site: str = "output", *, variant: str = ""
    ) -> tuple[np.ndarray, list[int], np.ndarray]:
        """Histogram counts ``(steps, layers, bins)``, the steps, and the bin edges of a run."""
        run = self.resolve_run(run)
        edges = np.asarray(self.run_config(run).get("hist_edges") or [], dtype=np.float64)
        s, rows, _, _ = self._rows(run, variant, "hist", "hist", site)
        if s is None or not rows:
            raise NotFoundError(
                f"run {run!r} has no histograms at site {site!r}; record with metrics including 'hist'."
            )
        steps, counts = decode(rows, s[1], s[2], s[3], self.path, run, f"hist/{site}")
        return counts, steps, edges

    def iter_rows(self, run: str | None = None, *, full: bool = False) -> Iterator[tuple[Any, ...]]:
        """Tidy rows ``(run, step, layer, layer_name, site, metric, value)`` of one run or all runs,
        ordered by step, site, metric, layer; ``value`` is None where NaN.

        These are the rows of the plain series (one value per layer, variant ""). With ``full``,
        every series, as ``(..., value, variant, head)`` rows (head None for one value per layer),
        ordered by step, variant, site, metric, layer, head.
        """
        runs = [self.resolve_run(run)] if run is not None else self.run_names()
        for r in runs:
            yield from self._iter_run(r, full)

    def _iter_run(self, run: str, full: bool, per_read: int = 512) -> Iterator[tuple[Any, ...]]:
        rid = self.run_id(run)
        infos = self.layers(run)
        plan = [
            (sid, m, s, v, int(n), int(i), int(c), self._layer_labels(int(n), infos)[1])
            for sid, m, s, v, n, i, c in self._read(
                "SELECT id, metric, site, variant, n_layers, inner, chunk FROM series WHERE run_id=? "
                "AND kind='value' ORDER BY variant, site, metric",
                (rid,),
            )
            if full or (v == "" and i == 1)
        ]
        if not full:
            plan.sort(key=lambda p: (p[2], p[1]))
        steps = self.steps(run)
        for k in range(0, len(steps), per_read):
            lo, hi = steps[k], steps[min(k + per_read, len(steps)) - 1]
            block: list[tuple[Any, ...]] = []
            for sid, metric, site, variant, n, inner, chunk, names in plan:
                rows = self._read(
                    "SELECT step, part, vals FROM series_rows WHERE series_id=? AND step BETWEEN ? AND ? "
                    "ORDER BY step, part",
                    (sid, lo, hi),
                )
                label = series_label(metric, site, variant)
                got, cube = decode(rows, n, inner, chunk, self.path, run, label)
                for step, mat in zip(got, cube.tolist()):
                    for j, vals in enumerate(mat):
                        for h, x in enumerate(vals):
                            value = None if x != x else x  # NaN -> None
                            if full:
                                block.append(
                                    (
                                        step,
                                        variant,
                                        site,
                                        metric,
                                        j + 1,
                                        h if inner > 1 else None,
                                        names[j],
                                        value,
                                    )
                                )
                            else:
                                block.append((step, "", site, metric, j + 1, None, names[j], value))
            block.sort(key=lambda t: (t[0], t[1], t[2], t[3], t[4], -1 if t[5] is None else t[5]))
            for step, variant, site, metric, layer, head, name, value in block:
                if full:
                    yield (run, step, layer, name, site, metric, value, variant, head)
                else:
                    yield (run, step, layer, name, site, metric, value)

    def events(self, run: str | None = None, *, variant: str | None = None) -> list[Event]:
        """The events of ``run`` (of one ``variant``, or all), by step, in the order written."""
        run = self.resolve_run(run)
        rid = self.run_id(run)
        sql = "SELECT step, kind, rule, message, site, metric, layer, head, value, time, variant FROM events WHERE run_id=?"
        args: tuple[Any, ...] = (rid,)
        if variant is not None:
            sql, args = sql + " AND variant=?", (rid, variant)
        return [
            Event(s, k, ru, msg, si, m, la, h, float("nan") if v is None else float(v), t, va)
            for s, k, ru, msg, si, m, la, h, v, t, va in self._read(sql + " ORDER BY step, id", args)
        ]

    def iter_events(self, run: str | None = None) -> Iterator[tuple[Any, ...]]:
        """Rows ``(run, variant, step, site, metric, layer, head, kind, rule, value, message, time)``
        of the events of one run or all runs: what ``layerscope export --events`` writes."""
        runs = [self.resolve_run(run)] if run is not None else self.run_names()
        for r in runs:
            for ev in self.events(r):
                yield (
                    r,
                    ev.variant,
                    ev.step,
                    ev.site,
                    ev.metric,
                    ev.layer,
                    ev.head,
                    ev.kind,
                    ev.rule,
                    None if ev.value != ev.value else ev.value,
                    ev.message,
                    ev.time,
                )
