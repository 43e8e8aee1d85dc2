"""``layerscope export``: a store's values as tidy rows, in CSV or Parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ._common import run_option, store_argument

HEADER = ["run", "step", "layer", "layer_name", "site", "metric", "value"]


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
def export(store: str, run: str | None, output: str, metric: str | None, site: str | None) -> None:
    """Write the values of STORE as tidy rows: run, step, layer, layer_name, site, metric, value.

    All runs unless --run is given. The format comes from the file name: .csv, or .parquet (with
    pyarrow installed: pip install pyarrow). The file is written next to its final name and
    renamed into place, so a failure never leaves half a file.

    \b
    Examples:
      layerscope export layerscope-demo/runs.db -o values.csv
      layerscope export runs.db --run baseline --metric rms,kurtosis --site output -o values.parquet
      layerscope export runs.db --run baseline -o - | head
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
        _check_filter(st, runs, metrics, sites)

        def rows() -> Iterator[tuple[Any, ...]]:
            for r in st.iter_rows(run):
                if (metrics is None or r[5] in metrics) and (sites is None or r[4] in sites):
                    yield r

        if output == "-":
            _write_csv(sys.stdout, rows())
            return
        n = 0

        def write(name: str) -> None:
            nonlocal n
            if arrow is not None:
                n = _write_parquet(name, rows(), *arrow)
            else:
                with open(name, "w", newline="") as f:
                    n = _write_csv(f, rows())

        write_atomic(out, write)
    # Into a pipe or /dev/stdout the CSV itself may be on stdout: keep the message out of it.
    click.echo(escape_controls(f"wrote {n} rows to {output}"), err=is_stream(out))


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


def _write_csv(f: object, rows: object) -> int:
    import csv

    w = csv.writer(f, lineterminator="\n")  # type: ignore[arg-type]
    w.writerow(HEADER)
    n = 0
    for r in rows:  # type: ignore[attr-defined]
        w.writerow([*r[:-1], "" if r[-1] is None else repr(r[-1])])
        n += 1
    return n


def _write_parquet(name: str, rows: object, pa: object, pq: object) -> int:
    """Tidy rows as a Parquet table (value: float64, null where absent), written in batches."""
    types = [pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string(), pa.string(), pa.float64()]  # type: ignore[attr-defined]
    schema = pa.schema(list(zip(HEADER, types)))  # type: ignore[attr-defined]
    n = 0
    with pq.ParquetWriter(name, schema) as w:  # type: ignore[attr-defined]
        batch: list[tuple] = []
        for r in rows:  # type: ignore[attr-defined]
            batch.append(r)
            if len(batch) == 100_000:
                w.write_table(pa.Table.from_pylist([dict(zip(HEADER, b)) for b in batch], schema))  # type: ignore[attr-defined]
                n += len(batch)
                batch = []
        if batch or n == 0:
            w.write_table(pa.Table.from_pylist([dict(zip(HEADER, b)) for b in batch], schema))  # type: ignore[attr-defined]
            n += len(batch)
    return n
