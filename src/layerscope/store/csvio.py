"""Heatmaps to and from CSV, in the two shapes people keep them in.

*Wide*: a ``step`` column, then one column per layer headed by its number::

    step,1,2,3
    30000,0.0001,0.0004,0.0021
    60000,0.0002,,0.0035          <- an empty cell is a missing value

*Tidy*: one row per cell, columns ``step,layer,value`` in any order, optionally ``metric``, ``site``,
``run`` (to select from) and ``layer_name``/``name``::

    step,layer,value,metric
    30000,1,0.0001,rms

The shape is told from the header. Comma, tab (or semicolon, when the header has neither) delimit
cells; a UTF-8 BOM, CRLF line ends, blank lines and ``#`` comment lines are fine. A cell that is
empty or ``nan``/``NA``/``null`` is missing; ``inf``/``-inf`` stay infinite. Layer headers may be
``3``, ``layer_3``, ``layer3``, ``L3``; a file whose layers start at 0 is read as 0-based and
shifted to layerscope's 1-based depth (the file's labels are kept as layer names). Any problem is a
:class:`~layerscope.errors.DataError` (or :class:`~layerscope.errors.NotFoundError` for a selection
that does not exist) naming the file, the line, the value and what to do.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import refuse_special_file
from ..errors import DataError, NotFoundError
from .heatmap import Heatmap

MISSING_TOKENS = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none"})
_LAYER_RE = re.compile(r"^(?:(?:layer|l)[ _\-.]?)?([0-9]{1,9})$", re.IGNORECASE)
_MAX_STEP = 2**63 - 1
_SELECT = ("metric", "site", "run")
_NAME_COLS = ("layer_name", "name")

__all__ = ["read_csv", "write_tidy_csv", "write_wide_csv"]


def _show(text: str, limit: int = 40) -> str:
    """A cell value for an error message: quoted, shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    def fail(self, line: int | None, msg: str) -> DataError:
        loc = f"{self.where}: line {line}: " if line else f"{self.where}: "
        return DataError(loc + msg)

    # -- cells -----------------------------------------------------------------------------------
    def step(self, text: str, line: int) -> int:
        s = text.strip()
        try:
            v = int(s)
        except ValueError:
            try:
                x = float(s)
            except ValueError:
                x = math.nan
            if not (math.isfinite(x) and x.is_integer()):
                raise self.fail(
                    line,
                    f"step {_show(text)} is not a whole number; steps are optimizer-update counts "
                    "such as 30000.",
                ) from None
            v = int(x)
        if v < 0:
            raise self.fail(line, f"step {_show(text)} is negative; steps count optimizer updates from 0 up.")
        if v > _MAX_STEP:
            raise self.fail(
                line, f"step {_show(text)} is too large (more than 2**63 - 1); check the step column."
            )
        return v

    def value(self, text: str, line: int, column: str) -> float:
        s = text.strip()
        if s.lower() in MISSING_TOKENS:
            return math.nan
        try:
            return float(s)
        except ValueError:
            raise self.fail(
                line,
                f"value {_show(text)} in column {_show(column)} is not a number; write a number, or "
                "leave the cell empty (or nan) where nothing was recorded.",
            ) from None

    def layer(self, text: str, line: int | None, what: str) -> int:
        m = _LAYER_RE.match(text.strip())
        if not m:
            raise self.fail(
                line,
                f"{what} {_show(text)} is not a layer number; write layers as 1, 2, ... (or layer_1, L1).",
            )
        return int(m.group(1))

    # -- file --------------------------------------------------------------------------------------
    def rows(self) -> list[tuple[int, list[str]]]:
        """(line number, cells) of every non-blank, non-comment record, header first."""
        refuse_special_file(self.path, "CSV")  # a FIFO would block forever, /dev/zero never end
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.where!r} does not exist; pass the path of a CSV file.") from None
        except IsADirectoryError:
            raise NotFoundError(
                f"{self.where!r} is a folder; pass the path of a CSV file inside it."
            ) from None
        except OSError as e:
            raise DataError(
                f"{self.where}: cannot be read ({e.strerror or e}); check its permissions."
            ) from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{self.where}: byte {e.start} is not UTF-8 text; save the file as UTF-8 CSV."
            ) from None
        if "\x00" in text:
            raise DataError(
                f"{self.where}: contains NUL bytes, so it is not a text CSV; export it as CSV text."
            )
        first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), None)
        if first is None:
            raise DataError(
                f"{self.where}: is empty; a heatmap CSV needs a header (step,1,2,... or "
                "step,layer,value) and rows."
            )
        delim = "\t" if "\t" in first else "," if "," in first else ";" if ";" in first else ","
        out: list[tuple[int, list[str]]] = []
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        start = 1
        try:
            for cells in reader:
                line = start
                start = reader.line_num + 1
                if not "".join(cells).strip():
                    continue  # a blank line, or only delimiters
                if cells[0][:1] in ("#", " ", "\t") and cells[0].lstrip().startswith("#"):
                    continue
                out.append((line, cells))
        except csv.Error as e:
            raise DataError(
                f"{self.where}: line {reader.line_num}: not valid CSV ({e}); fix the quoting."
            ) from None
        if not out:
            raise DataError(
                f"{self.where}: has no cells, only delimiters; a heatmap CSV needs a header "
                "(step,1,2,... or step,layer,value) and rows."
            )
        return out


def read_csv(
    path: str | os.PathLike[str],
    run: str | None = None,
    metric: str | None = None,
    site: str | None = None,
) -> Heatmap:
    """Read a wide or tidy CSV (shape told from the header) into a :class:`Heatmap`.

    In a tidy file with ``metric``/``site``/``run`` columns, the given values select rows; when such a
    column holds several values and none was given, :class:`NotFoundError` lists them. When the file
    has no such column, a given value only labels the heatmap (the run defaults to the file's stem).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "acts.csv"
    >>> _ = p.write_text("step,1,2\\n100,0.5,\\n200,0.7,0.9\\n")
    >>> hm = read_csv(p, metric="rms")
    >>> hm.steps, hm.layers, hm.metric, float(hm.values[0, 1])
    ([100, 200], [1, 2], 'rms', nan)
    """
    p = Path(path)
    r = _Reader(p)
    rows = r.rows()
    header_line, header = rows[0]
    names = [h.strip() for h in header]
    lower = [h.lower() for h in names]
    if {"step", "layer", "value"} <= set(lower):
        return _read_tidy(r, rows, names, lower, run=run, metric=metric, site=site)
    if lower[0] in ("step", "steps"):
        return _read_wide(r, rows, names, run=run, metric=metric, site=site)
    raise r.fail(
        header_line,
        f"cannot tell the shape from the header {_show(','.join(names), 80)}: a wide CSV starts with "
        "a 'step' column followed by one column per layer (step,1,2,...), a tidy CSV has columns "
        "step,layer,value (optionally metric,site,run).",
    )


def _label(given: str | None, default: str) -> str:
    return given if given is not None else default


def _read_wide(
    r: _Reader,
    rows: list[tuple[int, list[str]]],
    names: list[str],
    *,
    run: str | None,
    metric: str | None,
    site: str | None,
) -> Heatmap:
    header_line = rows[0][0]
    data = rows[1:]
    # trailing empty header cells (a trailing delimiter) are allowed when their column is empty
    ncol = len(names)
    while ncol > 1 and not names[ncol - 1]:
        ncol -= 1
    if ncol < 2:
        raise r.fail(
            header_line, "the header has a 'step' column but no layer columns; add one column per layer."
        )
    layer_cols = names[1:ncol]
    layers = [r.layer(h, header_line, f"column header {i + 2}") for i, h in enumerate(layer_cols)]
    seen: dict[int, int] = {}
    for i, lay in enumerate(layers):
        if lay in seen:
            raise r.fail(
                header_line,
                f"layer {lay} heads two columns ({_show(layer_cols[seen[lay]])} and "
                f"{_show(layer_cols[i])}); give each layer one column.",
            )
        seen[lay] = i
    if not data:
        raise r.fail(None, "has a header but no data rows; add one row per recorded step.")
    steps: list[int] = []
    mat: list[list[float]] = []
    step_line: dict[int, int] = {}
    for line, cells in data:
        if len(cells) < ncol:
            raise r.fail(
                line,
                f"has {len(cells)} cells but the header has {ncol}; every row needs a step and one "
                "cell per layer (leave a cell empty where a value is missing).",
            )
        extra = [c for c in cells[ncol:] if c.strip()]
        if extra:
            raise r.fail(
                line,
                f"has {len(cells)} cells but the header has {ncol} (extra value {_show(extra[0])}); "
                "remove it or add its layer to the header.",
            )
        s = r.step(cells[0], line)
        if s in step_line:
            raise r.fail(
                line,
                f"step {s} appears twice (lines {step_line[s]} and {line}), so each of its (step, "
                "layer) cells is duplicated; keep one row per step.",
            )
        step_line[s] = line
        steps.append(s)
        mat.append([r.value(c, line, layer_cols[k]) for k, c in enumerate(cells[1:ncol])])
    values = np.asarray(mat, dtype=np.float64).reshape(len(steps), len(layers))
    shift = 1 if min(layers) == 0 else 0
    order_s = np.argsort(np.asarray(steps, dtype=np.int64), kind="stable")
    order_l = np.argsort(np.asarray(layers), kind="stable")
    values = values[order_s][:, order_l]
    sorted_layers = [layers[k] + shift for k in order_l]
    labels = [layer_cols[k] for k in order_l]
    keep_labels = shift or any(lbl != str(lay) for lbl, lay in zip(labels, sorted_layers))
    meta: dict[str, Any] = {"path": r.where, "shape": "wide"}
    if shift:
        meta["layer_shift"] = 1
    return Heatmap(
        values,
        steps=[steps[k] for k in order_s],
        layers=sorted_layers,
        layer_names=labels if keep_labels else [],
        metric=_label(metric, "value"),
        site=_label(site, "output"),
        run=_label(run, r.path.stem),
        meta=meta,
    )


def _read_tidy(
    r: _Reader,
    rows: list[tuple[int, list[str]]],
    names: list[str],
    lower: list[str],
    *,
    run: str | None,
    metric: str | None,
    site: str | None,
) -> Heatmap:
    header_line = rows[0][0]
    dup = sorted({c for c in lower if c and lower.count(c) > 1})
    if dup:
        raise r.fail(header_line, f"column {_show(dup[0])} appears twice in the header; keep one.")
    col = {c: lower.index(c) for c in lower if c}
    i_sel = {k: col[k] for k in _SELECT if k in col}
    i_name = next((col[c] for c in _NAME_COLS if c in col), None)
    needed = max(col.values()) + 1
    data = rows[1:]
    if not data:
        raise r.fail(None, "has a header but no data rows; add one row per (step, layer) cell.")
    short = next(((ln, c) for ln, c in data if len(c) < needed), None)
    if short is not None:
        raise r.fail(
            short[0],
            f"has {len(short[1])} cells but the header has {len(names)}; every row needs "
            + ", ".join(names[:needed])
            + ".",
        )
    # Column-wise from here: a 1M-row file is parsed in a few seconds, each distinct step or layer
    # label once.
    keep = list(range(len(data)))
    given = {"metric": metric, "site": site, "run": run}
    labels: dict[str, str] = {}
    for key, idx in i_sel.items():
        texts = [data[k][1][idx].strip() for k in keep]
        distinct = list(dict.fromkeys(texts))
        want = given[key]
        if want is not None:
            keep = [k for k, t in zip(keep, texts) if t == want]
            if not keep:
                raise NotFoundError(
                    f"{r.where}: no rows with {key} {want!r}; {key}s there: {', '.join(distinct)}",
                    what=key,
                    value=want,
                    choices=distinct,
                    param=key,
                )
            labels[key] = want
        elif len(distinct) > 1:
            raise NotFoundError(
                f"{r.where}: holds several {key}s ({', '.join(distinct)})",
                what=key,
                choices=distinct,
                param=key,
                fix="choose one with {arg} (e.g. {example})",
            )
        else:
            labels[key] = distinct[0]
    lines = [data[k][0] for k in keep]
    cells = [data[k][1] for k in keep]

    def parse_column(i: int, parse: Any) -> np.ndarray:
        texts = [c[i] for c in cells]
        first_at = {t: n for n, t in reversed(list(enumerate(texts)))}  # each label's first row
        out = {t: parse(t, lines[n]) for t, n in first_at.items()}
        return np.fromiter((out[t] for t in texts), dtype=np.int64, count=len(texts))

    steps = parse_column(col["step"], r.step)
    lays = parse_column(col["layer"], lambda t, ln: r.layer(t, ln, "layer"))
    vtexts = [c[col["value"]] for c in cells]
    try:  # fast path: every cell is a number numpy reads as Python would
        vals = np.asarray(vtexts, dtype=np.float64)
    except ValueError:
        vals = np.fromiter(
            (r.value(t, ln, names[col["value"]]) for t, ln in zip(vtexts, lines)),
            dtype=np.float64,
            count=len(vtexts),
        )
    uniq_steps, row_idx = np.unique(steps, return_inverse=True)
    uniq_layers, first_of_layer, col_idx = np.unique(lays, return_index=True, return_inverse=True)
    flat = row_idx.astype(np.int64) * len(uniq_layers) + col_idx
    order = np.argsort(flat, kind="stable")
    same = flat[order][1:] == flat[order][:-1]
    if same.any():
        second, first = order[1:][same], order[:-1][same]
        k = int(np.argmin(second))  # the earliest repeated cell, and where it first appeared
        a, b = int(first[k]), int(second[k])
        raise r.fail(
            lines[b],
            f"step {int(steps[b])}, layer {int(lays[b])} appears twice (lines {lines[a]} and {lines[b]}); "
            "keep one value per (step, layer), or select one metric/site/run if the file mixes them.",
        )
    values = np.full((len(uniq_steps), len(uniq_layers)), np.nan)
    values[row_idx, col_idx] = vals
    label_col = i_name if i_name is not None else col["layer"]
    names_out = [cells[int(n)][label_col].strip() for n in first_of_layer]
    shift = 1 if int(uniq_layers[0]) == 0 else 0
    final_layers = [int(x) + shift for x in uniq_layers]
    keep_names = shift or any(n != str(x) for n, x in zip(names_out, final_layers))
    meta: dict[str, Any] = {"path": r.where, "shape": "tidy"}
    if shift:
        meta["layer_shift"] = 1
    return Heatmap(
        values,
        steps=[int(s) for s in uniq_steps],
        layers=final_layers,
        layer_names=names_out if keep_names else [],
        metric=labels.get("metric", _label(metric, "value")),
        site=labels.get("site", _label(site, "output")),
        run=labels.get("run", _label(run, r.path.stem)),
        meta=meta,
    )


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def _cell(v: float) -> str:
    if math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(float(v))  # shortest text that reads back to the same float


def _write_atomic(path: Path, header: Sequence[str], rows: Any) -> Path:
    """Write the CSV through :func:`layerscope._io.write_atomic`: a crash never leaves half a file."""
    from .._io import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(name: str) -> None:
        with open(name, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)

    return write_atomic(path, write)


def write_wide_csv(heatmap: Heatmap, path: str | os.PathLike[str]) -> Path:
    """Write ``heatmap`` as a wide CSV (``step,1,2,...``; empty cell = missing). Returns the path.

    :func:`read_csv` reads it back to the same values, steps and layers.
    """
    v = np.asarray(heatmap.values, dtype=np.float64)
    rows = ([str(s)] + [_cell(float(x)) for x in v[i]] for i, s in enumerate(heatmap.steps))
    return _write_atomic(Path(path), ["step"] + [str(x) for x in heatmap.layers], rows)


def write_tidy_csv(heatmap: Heatmap, path: str | os.PathLike[str]) -> Path:
    """Write ``heatmap`` as a tidy CSV (``step,layer,value,metric,site,run``), one row per recorded
    cell (missing cells are left out). Returns the path."""
    v = np.asarray(heatmap.values, dtype=np.float64)
    rows = (
        [str(s), str(lay), _cell(float(v[i, j])), heatmap.metric, heatmap.site, heatmap.run]
        for i, s in enumerate(heatmap.steps)
        for j, lay in enumerate(heatmap.layers)
        if not math.isnan(v[i, j])
    )
    return _write_atomic(Path(path), ["step", "layer", "value", "metric", "site", "run"], rows)
