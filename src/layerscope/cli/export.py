"""``layerscope export``: a store's values as tidy CSV rows."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import run_option, store_argument


def _is_stream(out: Path) -> bool:
    """Whether ``-o`` names something to write into rather than a file to replace."""
    import stat

    try:
        if str(out).startswith(("/dev/", "/proc/")):
            return out.exists()
        return out.exists() and not stat.S_ISREG(out.stat().st_mode)
    except OSError:
        return False


def _file_mode(out: Path) -> int:
    """The mode a replaced file keeps, or what ``open()`` would give a new one (0666 less the umask)."""
    import os

    try:
        return out.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


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

    from ..errors import ConfigError, NotFoundError, StoreError
    from ..store import Store

    if not Path(store).exists():
        raise NotFoundError(f"store {store!r} does not exist; check the path.")
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
            raise ConfigError(f"{output!r} is a folder; give a file name such as {str(out / 'values.csv')!r}.")
        if not parent.is_dir():
            raise NotFoundError(f"folder {str(parent)!r} for {output!r} does not exist; create it first.")
    with Store(store, readonly=True) as st:
        if run is not None:
            st.run_id(run)
        rows = st.iter_rows(run)
        if output == "-":
            write_rows(sys.stdout, rows)
            return
        if _is_stream(out):
            # A pipe, a device or /dev/stdout: write into it ("a": after what a shell redirect
            # already holds). Renaming a temporary file over it would replace the node itself.
            try:
                with open(out, "a", newline="") as f:
                    n = write_rows(f, rows)
            except OSError as e:
                raise StoreError(f"cannot write {output!r}: {e.strerror or e}; choose another output path.") from e
            click.echo(f"wrote {n} rows to {output}", err=True)
            return
        if out.is_symlink():
            out = out.resolve()  # replace the file the link points to; the link stays a link
            parent = out.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=".layerscope-", suffix=".csv", dir=parent)
        except OSError as e:
            raise StoreError(f"cannot write in {str(parent)!r}: {e.strerror}; choose another output path.") from e
        try:
            with os.fdopen(fd, "w", newline="") as f:
                n = write_rows(f, rows)
            os.chmod(tmp, _file_mode(out))  # mkstemp makes 0600; the CSV gets a normal file's mode
            os.replace(tmp, out)
        except OSError as e:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise StoreError(
                f"cannot write {output!r}: {e.strerror or e}; free space or choose another output path."
            ) from e
        except BaseException:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise
    click.echo(f"wrote {n} rows to {output}")
