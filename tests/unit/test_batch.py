"""layerscope.batch: the one walker over nested batches, and what is built on it."""

from __future__ import annotations

from collections import UserDict, namedtuple

import numpy as np
import pytest
import torch
import torch.nn as nn

from layerscope.batch import (
    check_not_empty,
    first_rows,
    map_batch,
    probe_hash,
    run_forward,
    tensors,
    to_device,
)
from layerscope.errors import DataError
from layerscope.sweep.probe import check_probe

Pair = namedtuple("Pair", "x y")


class Encoding(UserDict):
    """Like transformers' BatchEncoding: a mapping that is not a dict."""


def test_map_batch_keeps_the_structure() -> None:
    t = torch.ones(4, 3)
    b = {"a": [t, (t, 1)], "p": Pair(t, "s"), "e": Encoding(ids=t)}
    out = map_batch(lambda v: v * 2 if isinstance(v, torch.Tensor) else v, b)
    assert isinstance(out["a"], list) and isinstance(out["a"][1], tuple) and out["a"][1][1] == 1
    assert isinstance(out["p"], Pair) and out["p"].y == "s" and torch.equal(out["p"].x, 2 * t)
    assert torch.equal(out["e"]["ids"], 2 * t)
    assert torch.equal(b["a"][0], t)  # the input is not modified


def test_first_rows_and_to_device() -> None:
    b = {"ids": torch.arange(12).view(4, 3), "scale": torch.tensor(2.0), "n": 5}
    r = first_rows(b, 2)
    assert r["ids"].shape == (2, 3) and r["scale"].shape == () and r["n"] == 5
    d = to_device(Encoding(ids=torch.ones(2)), torch.device("meta"))
    assert d["ids"].device.type == "meta"


def test_probe_hash_is_the_one_stored_runs_have() -> None:
    """The hashes of runs recorded before the walker was shared (values computed by the old code):
    a changed hash would make every existing run refuse its own probe."""
    a = torch.arange(12, dtype=torch.int64).view(3, 4)
    assert probe_hash(a) == "3f23163568f8c2ed"
    assert (
        probe_hash({"input_ids": a, "attention_mask": torch.ones(3, 4, dtype=torch.long)})
        == "a8cea383983ea351"
    )
    assert probe_hash((a, torch.linspace(0, 1, 5))) == "8c5d5f67838faf10"
    assert probe_hash(np.arange(6, dtype=np.float32)) == "0096149558739fc8"
    # key order does not matter; values, dtypes and shapes do
    assert probe_hash({"b": a, "a": a + 1}) == probe_hash({"a": a + 1, "b": a})
    assert probe_hash(a) != probe_hash(a.to(torch.int32)) != probe_hash(a.view(4, 3))
    assert probe_hash(Encoding(input_ids=a)) == probe_hash({"input_ids": a})


def test_tensors_are_named_by_key_or_position() -> None:
    assert [n for n, _ in tensors({"input_ids": torch.ones(1), "mask": torch.ones(1)})] == [
        "input_ids",
        "mask",
    ]
    assert [n for n, _ in tensors((torch.ones(1), torch.ones(1)))] == ["input 0", "input 1"]


@pytest.mark.parametrize(
    "batch",
    [
        torch.zeros(0, 8),
        {"input_ids": torch.zeros(0, 8, dtype=torch.long)},
        [torch.ones(2, 3), torch.zeros(2, 0)],
    ],
)
def test_empty_batches_are_refused_in_one_line(batch) -> None:
    with pytest.raises(DataError) as e:
        check_not_empty(batch, "probe.pt")
    assert "\n" not in str(e.value) and str(e.value).startswith("probe probe.pt: ")
    with pytest.raises(DataError):
        check_probe(batch, "probe.pt")


def test_check_probe_converts_arrays_and_refuses_other_objects() -> None:
    out = check_probe({"x": np.ones((2, 3), dtype=np.float32)}, "p.npz")
    assert isinstance(out["x"], torch.Tensor)
    for bad in ([], {}, {"x": "text"}, {1: torch.ones(1)}, "a string"):
        with pytest.raises(DataError, match="save a tensor"):
            check_probe(bad, "p.pt")


def test_run_forward_calls_as_the_batch_says() -> None:
    class M(nn.Module):
        def forward(self, x, y=0):
            return ("called", x, y)

    m = M()
    assert run_forward(m, 1) == ("called", 1, 0)
    assert run_forward(m, (1, 2)) == ("called", 1, 2)
    assert run_forward(m, Encoding(x=1, y=3)) == ("called", 1, 3)  # a mapping is keyword inputs
    assert run_forward(m, 5, probe_fn=lambda model, b: ("fn", b)) == ("fn", 5)
    assert run_forward(m, lambda model: "callable probe") == "callable probe"
