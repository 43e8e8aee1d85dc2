"""``layerscope export``: a store's values as tidy rows, in CSV or Parquet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ._common import run_option, store_argument

HEADER = ["run", "step", "layer", "layer_name", "site", "metric", "value"]
# A store holding per-head statistics or variants (coord-check widths) adds these two.
FULL_HEADER = [*HEADER, "variant", "head"]
EVENT_HEADER = [
    "run",
    "variant",
    "step",
    "site",
    "metric",
    "layer",
    "head",
    "kind",
    "rule",
    "value",
    "message",
    "time",
]
# Parquet column types (everything else is a string).
_INT_COLUMNS = {"step", "layer", "head"}
_FLOAT_COLUMNS = {"value", "time"}


@click.command("export")
@store_argument
@run_option
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="File to write: .csv ('-' for stdout) or .parquet (needs pyarrow).",
)
@click.option(
    "--metric",
    "--metrics",
    "metric",
    default=None,
    metavar="LIST",
    help="Only these metrics, comma-separated. Default: all.",
)
@click.option(
    "--site",
    "--sites",
    "site",
    default=None,
    metavar="LIST",
    help="Only these sites, comma-separated. Default: all.",
)
@click.option("--events", is_flag=True, help="Write the runs' events (alerts) instead of their values.")
def export(
    store: str, run: str | None, output: str, metric: str | None, site: str | None, events: bool
) -> None:
    """Write the values of STORE as tidy rows: run, step, layer, layer_name, site, metric, value.

    All runs unless --run is given. A store holding per-head statistics or variants (e.g. the
    widths of a coord-check) gets two more columns, variant and head (0-based). With --events,
    the events instead: run, variant, step, site, metric, layer, head, kind, rule, value,
    message, time. The format comes from the file name: .csv, or .parquet (with pyarrow
    installed: pip install pyarrow). The file is written next to its final name and renamed into
    place, so a failure never leaves half a file.

    \b
    Examples:
      layerscope export layerscope-demo/runs.db -o values.csv
      layerscope export runs.db --run baseline --metric rms,kurtosis --site output -o values.parquet
      layerscope export runs.db --run baseline -o - | head
      layerscope export runs.db --events -o alerts.csv
    """
    import sys

    from .._io import check_outputs_are_not_inputs, is_stream, write_atomic
    from ..errors import ConfigError, NotFoundError, escape_controls, quote
    from ..store import Store
    from .plot import parse_list

    if not Path(store).exists():
        raise NotFoundError(f"store {quote(store)} does not exist; check the path.")
    check_outputs_are_not_inputs([("-o", output)], [("STORE", store)])
    out = Path(output)
    fmt = "csv" if output == "-" or is_stream(out) else out.suffix.lower().lstrip(".")
    if fmt not in ("csv", "parquet"):
        raise ConfigError(
            f"cannot tell the format of {quote(output)}; end the file name with .csv or .parquet (or pass - for stdout)."
        )
    arrow: tuple[Any, Any] | None = None
    if fmt == "parquet":
        try:
            import pyarrow
            import pyarrow.parquet

            arrow = (pyarrow, pyarrow.parquet)
        except ImportError:
            raise ConfigError(
                f"writing {quote(output)} as Parquet needs pyarrow, which is not installed; "
                "pip install pyarrow, or write .csv."
            ) from None
    parent = out.parent if str(out.parent) else Path(".")
    if output != "-":  # checked before the store is read: a usage error costs nothing
        if out.is_dir():
            raise ConfigError(
                f"{quote(output)} is a folder; give a file name such as {quote(out / 'values.csv')}."
            )
        if not parent.is_dir():
            raise NotFoundError(
                f"folder {quote(parent)} for {quote(output)} does not exist; create it first."
            )
    metrics, sites = parse_list(metric), parse_list(site)
    with Store(store, readonly=True) as st:
        runs = [st.resolve_run(run)] if run is not None else st.run_names()
        if not events:
            _check_filter(st, runs, metrics, sites)
        if events:
            header, i_site, i_metric = EVENT_HEADER, 3, 4
            source: Callable[[], Iterator[tuple[Any, ...]]] = lambda: st.iter_events(run)
        elif any(s.variant or s.inner > 1 for r in runs for s in st.series(r) if s.kind == "value"):
            header, i_site, i_metric = FULL_HEADER, 4, 5
            source = lambda: st.iter_rows(run, full=True)
        else:
            header, i_site, i_metric = HEADER, 4, 5
            source = lambda: st.iter_rows(run)

        def rows() -> Iterator[tuple[Any, ...]]:
            for r in source():
                if (metrics is None or r[i_metric] in metrics) and (sites is None or r[i_site] in sites):
                    yield r

        if output == "-":
            _write_csv(sys.stdout, header, rows())
            return
        n = 0

        def write(name: str) -> None:
            nonlocal n
            if arrow is not None:
                n = _write_parquet(name, header, rows(), *arrow)
            else:
                with open(name, "w", newline="") as f:
                    n = _write_csv(f, header, rows())

        write_atomic(out, write)
    # Into a pipe or /dev/stdout the CSV itself may be on stdout: keep the message out of it.
    click.echo(escape_controls(f"wrote {n} {'events' if events else 'rows'} to {output}"), err=is_stream(out))


def _check_filter(st: object, runs: list[str], metrics: list[str] | None, sites: list[str] | None) -> None:
    """A --metric or --site nothing was recorded for is a one-line error naming what was."""
    from ..errors import NotFoundError

    pairs = {p for r in runs for p in st.metrics(r)}  # type: ignore[attr-defined]
    for flag, asked, have in (
        ("--metric", metrics, sorted({m for m, _ in pairs})),
        ("--site", sites, sorted({s for _, s in pairs})),
    ):
        missing = [x for x in asked or [] if x not in have]
        if missing:
            raise NotFoundError(
                f"{flag} {','.join(missing)}: not recorded in {', '.join(runs) or 'the store'}; recorded: "
                f"{', '.join(have) or 'nothing yet'}."
            )


def _cell(v: object) -> object:
    """None as an empty cell; floats with every digit (repr round-trips float64)."""
    return "" if v is None else repr(v) if isinstance(v, float) else v


def _write_csv(f: object, header: list[str], rows: object) -> int:
    import csv

    w = csv.writer(f, lineterminator="\n")  # type: ignore[arg-type]
    w.writerow(header)
    n = 0
    for r in rows:  # type: ignore[attr-defined]
        w.writerow([_cell(v) for v in r])
        n += 1
    return n


def _write_parquet(name: str, header: list[str], rows: object, pa: Any, pq: Any) -> int:
    """Tidy rows as a Parquet table (value: float64, null where absent), written in batches."""
    types = [
        pa.int64() if c in _INT_COLUMNS else pa.float64() if c in _FLOAT_COLUMNS else pa.string()
        for c in header
    ]
    schema = pa.schema(list(zip(header, types)))
    n = 0
    with pq.ParquetWriter(name, schema) as w:
        batch: list[tuple] = []
        for r in rows:  # type: ignore[attr-defined]
            batch.append(r)
            if len(batch) == 100_000:
                w.write_table(pa.Table.from_pylist([dict(zip(header, b)) for b in batch], schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            w.write_table(pa.Table.from_pylist([dict(zip(header, b)) for b in batch], schema))
            n += len(batch)
    return n
