"""Resolve a SOURCE argument (a run store or a CSV file) to a Heatmap. Used by plot, report, view."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import NotFoundError
from .store.heatmap import Heatmap

CSV_SUFFIXES = (".csv", ".tsv", ".txt")


def is_csv(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in CSV_SUFFIXES


def refuse_folder_or_missing(source: str | os.PathLike[str]) -> None:
    """The one-line errors of a SOURCE that does not exist or is a folder."""
    p = Path(source)
    if not p.exists():
        raise NotFoundError(f"{str(source)!r} does not exist; pass a run store (.db) or a CSV file.")
    if p.is_dir():
        raise NotFoundError(f"{str(source)!r} is a folder; pass a run store (.db) or a CSV file inside it.")


def open_heatmap(
    source: str | os.PathLike[str],
    run: str | None = None,
    metric: str | None = None,
    site: str | None = None,
) -> Heatmap:
    """Read one (run, metric, site) matrix from a store, or the matrix held in a CSV file.

    ``metric`` and ``site`` default to ``rms`` and ``output`` for a store; for a CSV they select
    rows of a tidy file that has those columns.
    """
    p = Path(source)
    refuse_folder_or_missing(p)
    if is_csv(p):
        from .store.csvio import read_csv

        return read_csv(p, run=run, metric=metric, site=site)
    from .store import load

    return load(p, run=run, metric=metric or "rms", site=site or "output")
