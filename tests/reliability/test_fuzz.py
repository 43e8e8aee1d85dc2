"""Fuzzing the parsers that read what users hand us: the CSV reader (files from spreadsheets,
pandas, other tools) and the checkpoint step parser (file names from any training framework).
Whatever the input, the only exception that may escape is layerscope's own error type (which the
CLI turns into one line); and what is accepted obeys the Heatmap's contract.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layerscope.sweep.discover as discover
from layerscope.errors import LayerscopeError
from layerscope.store.csvio import read_csv

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_DIR = tempfile.mkdtemp(prefix="layerscope-fuzz-")


def _read(data: bytes, **sel: str | None):
    p = Path(_DIR) / "fuzz.csv"
    p.write_bytes(data)
    try:
        return read_csv(p, **sel)
    except LayerscopeError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(str(e))  # one line for the CLI
        return None


def _check(hm) -> None:
    if hm is None:
        return
    v = np.asarray(hm.values)
    assert v.dtype == np.float64 and v.shape == (len(hm.steps), len(hm.layers))
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in hm.steps)
    assert all(b > a for a, b in zip(hm.steps, hm.steps[1:]))
    assert all(isinstance(x, int) and x >= 1 for x in hm.layers) and len(set(hm.layers)) == len(hm.layers)
    assert len(hm.layer_names) == len(hm.layers) and all(isinstance(n, str) for n in hm.layer_names)


@FUZZ
@given(st.binary(max_size=400))
def test_read_csv_any_bytes(data: bytes) -> None:
    _check(_read(data))


# Cells and headers as spreadsheets, pandas and hand edits write them, good and bad.
_CELL = st.one_of(
    st.integers(-10, 10**6).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "NA",
            "#N/A",
            "null",
            "None",
            "inf",
            "-inf",
            "+inf",
            "1e400",
            "-0",
            "0.0",
            "1.5",
            "1,5",
            "3e4",
            "30000.0",
            "30000.5",
            "9" * 25,
            "0x1F",
            "١٢",
            "½",
            '"1"',
            '"a,b"',
            '"',
            "''",
            "#x",
            "true",
            "step",
            "layer_3",
            "L0",
            "\u00a0",
            "1_000",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
_HEAD = st.one_of(
    st.sampled_from(
        [
            "step",
            "Step",
            "steps",
            "layer",
            "value",
            "metric",
            "site",
            "run",
            "layer_name",
            "name",
            "1",
            "2",
            "3",
            "0",
            "layer_1",
            "L2",
            "layer3",
            "",
            "x",
            "step ",
            "\ufeffstep",
            "01",
            "-1",
        ]
    ),
    st.text(max_size=5),
)


@st.composite
def _csv_text(draw: st.DrawFn) -> bytes:
    sep = draw(st.sampled_from([",", "\t", ";"]))
    nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    header = draw(st.lists(_HEAD, min_size=0, max_size=6))
    if draw(st.booleans()):
        header = (
            draw(
                st.sampled_from(
                    [
                        ["step", "1", "2"],
                        ["step", "layer", "value"],
                        ["step", "layer", "value", "metric", "run"],
                    ]
                )
            )
            + header[:1]
        )
    rows = draw(st.lists(st.lists(_CELL, min_size=0, max_size=len(header) + 2), max_size=6))
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["# a comment", "", "  ", "#"])))
    text = nl.join(lines) + draw(st.sampled_from(["", nl, nl + nl]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + text.encode("utf-8")


@FUZZ
@given(
    _csv_text(),
    st.sampled_from([None, "rms", "value", ""]),
    st.sampled_from([None, "output", "x"]),
    st.sampled_from([None, "a", "run"]),
)
def test_read_csv_spreadsheet_like_text(
    data: bytes, metric: str | None, site: str | None, run: str | None
) -> None:
    _check(_read(data, metric=metric, site=site, run=run))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4), st.floats(allow_nan=True)), max_size=12))
def test_read_csv_tidy_cells_land_where_they_belong(cells: list[tuple[int, int, float]]) -> None:
    # A tidy file is accepted exactly when no (step, layer) repeats; then every cell is where it said.
    text = "step,layer,value\n" + "".join(f"{s},{lay},{v!r}\n" for s, lay, v in cells)
    hm = _read(text.encode())
    keys = [(s, lay) for s, lay, _ in cells]
    if not cells or len(set(keys)) < len(keys):
        assert hm is None
        return
    assert hm is not None
    _check(hm)
    shift = 1 if min(lay for _, lay, _ in cells) == 0 else 0
    for s, lay, v in cells:
        got = hm.values[hm.steps.index(s), hm.layers.index(lay + shift)]
        assert (math.isnan(v) and math.isnan(got)) or got == v


# -- the checkpoint step parser --------------------------------------------------------------------

_PART = st.one_of(
    st.sampled_from(
        [
            "step",
            "steps",
            "global_step",
            "iter",
            "iteration",
            "ckpt",
            "checkpoint",
            "model",
            "epoch",
            "last",
            "best",
            "final",
            "-",
            "_",
            "=",
            ".",
            "/",
            "of",
            "00001",
            "-00001-of-00004",
        ]
    ),
    st.integers(0, 10**20).map(str),
    st.text(max_size=4),
)
_SUFFIX = st.sampled_from(["", ".pt", ".pth", ".bin", ".ckpt", ".safetensors", "/", ".PT", ".json"])


@FUZZ
@given(st.lists(_PART, max_size=8).map("".join), _SUFFIX)
def test_parse_step_of_any_name(name: str, suffix: str) -> None:
    _check_step(name + suffix)


@FUZZ
@given(st.text(max_size=40))
def test_parse_step_of_any_text(text: str) -> None:
    _check_step(text)


@FUZZ
@given(st.text(max_size=40), st.text(max_size=12))
def test_parse_step_with_any_step_regex(path: str, regex: str) -> None:
    _check_step(path, regex)


@FUZZ
@given(st.binary(max_size=30))
def test_parse_step_of_bytes_and_odd_types(data: bytes) -> None:
    _check_step(data)
    _check_step(os.fsdecode(data))


@pytest.mark.parametrize("odd", [None, 3, 3.5, object(), ["step_3.pt"]])
def test_parse_step_of_a_non_path_is_our_error(odd: object) -> None:
    _check_step(odd)


def _check_step(path: object, regex: object = None) -> None:
    try:
        step = discover.parse_step(path, regex)  # type: ignore[arg-type]
    except LayerscopeError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return
    assert step is None or (type(step) is int and 0 <= step < 2**63), step
