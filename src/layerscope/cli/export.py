"""``layerscope export``: a store's values as tidy CSV rows."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import run_option, store_argument


@click.command("export")
@store_argument
@run_option
@click.option("-o", "--output", required=True, metavar="FILE.csv", help="CSV file to write ('-' for stdout).")
def export(store: str, run: str | None, output: str) -> None:
    """Write the values of STORE as tidy CSV: run, step, layer, layer_name, site, metric, value.

    All runs unless --run is given. The file is written next to its final name and renamed into
    place, so a failure never leaves half a CSV.

    \b
    Examples:
      layerscope export layerscope-demo/runs.db -o values.csv
      layerscope export runs.db --run baseline -o - | head
    """
    import csv
    import sys

    from .._io import check_outputs_are_not_inputs, is_stream, write_atomic
    from ..errors import ConfigError, NotFoundError, escape_controls, quote
    from ..store import Store

    if not Path(store).exists():
        raise NotFoundError(f"store {quote(store)} does not exist; check the path.")
    header = ["run", "step", "layer", "layer_name", "site", "metric", "value"]

    def write_rows(f: object, rows: object) -> int:
        w = csv.writer(f, lineterminator="\n")  # type: ignore[arg-type]
        w.writerow(header)
        n = 0
        for r in rows:  # type: ignore[attr-defined]
            w.writerow([*r[:-1], "" if r[-1] is None else repr(r[-1])])
            n += 1
        return n

    out = Path(output)
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
    check_outputs_are_not_inputs([("-o", output)], [("STORE", store)])
    with Store(store, readonly=True) as st:
        if run is not None:
            st.run_id(run)
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
    click.echo(escape_controls(f"wrote {n} rows to {output}"), err=is_stream(out))
