"""``layerscope export``: a store's values as tidy CSV rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from ._common import run_option, store_argument


@click.command("export")
@store_argument
@run_option
@click.option("-o", "--output", required=True, metavar="FILE.csv", help="CSV file to write ('-' for stdout).")
@click.option("--events", is_flag=True, help="Write the runs' events (alerts) instead of their values.")
def export(store: str, run: str | None, output: str, events: bool) -> None:
    """Write the values of STORE as tidy CSV: run, step, layer, layer_name, site, metric, value.

    All runs unless --run is given. A store holding per-head statistics or variants (e.g. the
    widths of a coord-check) gets two more columns, variant and head (0-based). With --events,
    the events instead: run, variant, step, site, metric, layer, head, kind, rule, value,
    message, time. The file is written next to its final name and renamed into place, so a
    failure never leaves half a CSV.

    \b
    Examples:
      layerscope export layerscope-demo/runs.db -o values.csv
      layerscope export runs.db --run baseline -o - | head
      layerscope export runs.db --events -o alerts.csv
    """
    import csv
    import sys

    from .._io import is_stream, write_atomic
    from ..errors import ConfigError, NotFoundError
    from ..store import Store

    if not Path(store).exists():
        raise NotFoundError(f"store {store!r} does not exist; check the path.")
    header = ["run", "step", "layer", "layer_name", "site", "metric", "value"]

    def cell(v: object) -> object:
        return "" if v is None else repr(v) if isinstance(v, float) else v

    def write_rows(f: object, rows: object) -> int:
        w = csv.writer(f, lineterminator="\n")  # type: ignore[arg-type]
        w.writerow(header)
        n = 0
        for r in rows:  # type: ignore[attr-defined]
            w.writerow([cell(v) for v in r])
            n += 1
        return n

    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    if output != "-":  # checked before the store is read: a usage error costs nothing
        if out.is_dir():
            raise ConfigError(
                f"{output!r} is a folder; give a file name such as {str(out / 'values.csv')!r}."
            )
        if not parent.is_dir():
            raise NotFoundError(f"folder {str(parent)!r} for {output!r} does not exist; create it first.")
    with Store(store, readonly=True) as st:
        if run is not None:
            st.run_id(run)
        runs = [run] if run is not None else st.run_names()
        if events:
            header = ["run", "variant", "step", "site", "metric", "layer", "head", "kind", "rule", "value"]
            header += ["message", "time"]
            rows: Iterator[tuple[object, ...]] = st.iter_events(run)
        elif any(s.variant or s.inner > 1 for r in runs for s in st.series(r) if s.kind == "value"):
            header = [*header, "variant", "head"]
            rows = st.iter_rows(run, full=True)
        else:
            rows = st.iter_rows(run)
        if output == "-":
            write_rows(sys.stdout, rows)
            return
        n = 0

        def write(name: str) -> None:
            nonlocal n
            with open(name, "w", newline="") as f:
                n = write_rows(f, rows)

        write_atomic(out, write)
    # Into a pipe or /dev/stdout the CSV itself may be on stdout: keep the message out of it.
    click.echo(f"wrote {n} {'events' if events else 'rows'} to {output}", err=is_stream(out))
