"""``layerscope export``: a store's values as tidy CSV rows."""

from __future__ import annotations

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
    import os
    import sys
    import tempfile
    from pathlib import Path

    from ..errors import NotFoundError, StoreError
    from ..store import Store

    if not Path(store).exists():
        raise NotFoundError(f"store {store!r} does not exist; check the path.")
    header = ["run", "step", "layer", "layer_name", "site", "metric", "value"]
    with Store(store, readonly=True) as st:
        if run is not None:
            st.run_id(run)
        rows = st.iter_rows(run)
        if output == "-":
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                w.writerow([*r[:-1], "" if r[-1] is None else repr(r[-1])])
            return
        out = Path(output)
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise StoreError(f"folder {str(parent)!r} for {output!r} does not exist; create it first.")
        if out.is_dir():
            raise StoreError(f"{output!r} is a folder; give a file name such as {str(out / 'values.csv')!r}.")
        try:
            fd, tmp = tempfile.mkstemp(prefix=".layerscope-", suffix=".csv", dir=parent)
        except OSError as e:
            raise StoreError(f"cannot write in {str(parent)!r}: {e.strerror}; choose another output path.") from e
        n = 0
        try:
            with os.fdopen(fd, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(header)
                for r in rows:
                    w.writerow([*r[:-1], "" if r[-1] is None else repr(r[-1])])
                    n += 1
            os.replace(tmp, out)
        except OSError as e:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise StoreError(f"cannot write {output!r}: {e.strerror or e}; free space or choose another path.") from e
        except BaseException:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise
    click.echo(f"wrote {n} rows to {output}")
