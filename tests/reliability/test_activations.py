"""Activations that are NaN, +-Inf or all zero are recorded as such (``nan_frac``, ``inf_frac``,
``zero_frac``), without a crash, and they poison nothing: the other statistics of that layer are
over its finite values, other layers are untouched, and the next step starts clean. Everything
that reads the store afterwards (plot, report, export, view, runs) copes with the holes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from tests.reliability._helpers import assert_whole, run_cli

import layerscope
from layerscope.cli.main import COMMANDS
from layerscope.store import Store

PATTERNS = ("normal", "nan", "inf", "zero", "all_nan", "normal_after")
METRICS = ("mean", "std", "rms", "max_abs", "min", "max", "kurtosis", "zero_frac", "nan_frac", "inf_frac")


class Faulty(nn.Module):
    """One layer's output: the input, with NaN / +-Inf planted, all zero, or all NaN."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self.clean = False  # the next step's forwards are healthy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        if self.clean:
            return y
        flat = y.view(-1)
        if self.pattern == "nan":
            flat[::4] = float("nan")  # a quarter NaN
        elif self.pattern == "inf":
            flat[::8] = float("inf")
            flat[1::8] = float("-inf")  # a quarter +-Inf
        elif self.pattern == "zero":
            y.zero_()
        elif self.pattern == "all_nan":
            y.fill_(float("nan"))
        return y


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Faulty(p) for p in PATTERNS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.blocks]  # each layer sees the same input: faults do not propagate
        return torch.nan_to_num(torch.stack(outs)).sum(0)


def _expected(x: np.ndarray, pattern: str, clean: bool) -> dict[str, float]:
    v = x.astype(np.float64).reshape(-1).copy()
    if not clean:
        if pattern == "nan":
            v[::4] = np.nan
        elif pattern == "inf":
            v[::8], v[1::8] = np.inf, -np.inf
        elif pattern == "zero":
            v[:] = 0.0
        elif pattern == "all_nan":
            v[:] = np.nan
    fin = v[np.isfinite(v)]
    n = v.size
    out = {
        "nan_frac": np.isnan(v).sum() / n,
        "inf_frac": np.isinf(v).sum() / n,
        "zero_frac": (np.abs(np.nan_to_num(v, nan=1.0, posinf=1.0, neginf=1.0)) <= 1e-6).sum() / n,
    }
    if fin.size:
        m2 = ((fin - fin.mean()) ** 2).mean()
        out.update(
            mean=fin.mean(),
            std=fin.std(),
            rms=math.sqrt((fin**2).mean()),
            max_abs=np.abs(fin).max(),
            min=fin.min(),
            max=fin.max(),
            kurtosis=((fin - fin.mean()) ** 4).mean() / m2**2 if m2 > 0 else math.nan,
        )
    else:
        out.update(
            mean=math.nan,
            std=math.nan,
            rms=math.nan,
            max_abs=math.nan,
            min=math.nan,
            max=math.nan,
            kurtosis=math.nan,
        )
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    store = tmp_path_factory.mktemp("acts") / "runs.db"
    model = Stack()
    x = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(0))  # (B, T, C)
    with layerscope.Recorder(
        model, store, run="faulty", metrics=METRICS, layers="blocks.*", flush_every=1, start_step=1
    ) as rec:
        model(x)
        rec.step(1)  # the faults
        for b in model.blocks:
            b.clean = True
        model(x)
        rec.step(2)  # a healthy step after them
    return store, x.numpy()


@pytest.mark.parametrize("metric", METRICS)
def test_each_statistic_is_over_the_finite_values_and_faults_are_counted(recorded, metric: str) -> None:
    store, x = recorded
    hm = layerscope.load(store, run="faulty", metric=metric)
    assert hm.steps == [1, 2] and hm.layer_names == [f"blocks.{i}" for i in range(len(PATTERNS))]
    for row, clean in ((0, False), (1, True)):
        for j, pattern in enumerate(PATTERNS):
            want = _expected(x, pattern, clean)[metric]
            got = hm.values[row, j]
            if math.isnan(want):
                assert math.isnan(got), (metric, pattern, clean, got)  # undefined is stored as missing
            else:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-9), (metric, pattern, clean)


def test_faults_poison_nothing_else(recorded) -> None:
    store, _ = recorded
    for metric in ("mean", "std", "rms", "max_abs"):
        hm = layerscope.load(store, run="faulty", metric=metric)
        assert np.isfinite(hm.values[1]).all(), f"{metric}: a fault leaked into the next step"
        faulty = [PATTERNS.index(p) for p in ("nan", "inf", "zero")]
        assert np.isfinite(hm.values[0, faulty]).all(), f"{metric}: a NaN/Inf poisoned its layer's statistic"
    nan_frac = layerscope.load(store, run="faulty", metric="nan_frac").values
    assert nan_frac[0].tolist() == [0.0, 0.25, 0.0, 0.0, 1.0, 0.0] and not nan_frac[1].any()
    inf_frac = layerscope.load(store, run="faulty", metric="inf_frac").values
    assert inf_frac[0].tolist() == [0.0, 0.0, 0.25, 0.0, 0.0, 0.0] and not inf_frac[1].any()
    zero_frac = layerscope.load(store, run="faulty", metric="zero_frac").values
    assert zero_frac[0, PATTERNS.index("zero")] == 1.0
    assert assert_whole(store, scalar_metrics=len(METRICS)) == {"faulty": [1, 2]}


@pytest.mark.parametrize("metric", ["rms", "kurtosis", "nan_frac", "min"])
def test_readers_cope_with_the_holes(recorded, tmp_path: Path, metric: str) -> None:
    store, _ = recorded
    r = run_cli("plot", store, "--metric", metric, "-o", tmp_path / "h.png")
    assert r.returncode == 0, r.stderr
    r = run_cli("report", store, "--metric", metric, "--json", "-")
    assert r.returncode == 0, r.stderr

    def strict(token: str) -> float:
        raise AssertionError(f"the JSON report holds {token}, which is not JSON")

    data = json.loads(r.stdout, parse_constant=strict)
    assert data  # a report, with every number finite or null
    if metric == "rms":
        r = run_cli("export", store, "-o", tmp_path / "v.csv")
        assert r.returncode == 0, r.stderr
        import csv

        rows = list(csv.DictReader((tmp_path / "v.csv").open()))
        assert len(rows) == 2 * len(PATTERNS) * len(METRICS)
        hole = [
            r["value"]
            for r in rows
            if r["layer_name"] == "blocks.4" and r["metric"] == "rms" and r["step"] == "1"
        ]
        assert hole == [""]  # a missing value is an empty cell, which read_csv reads back as missing
        r = run_cli("runs", store, "--format", "json")
        assert r.returncode == 0 and json.loads(r.stdout)[0]["steps"] == 2, r.stderr
        assert "view" in COMMANDS
        r = run_cli("view", store, "-o", tmp_path / "bundle")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "bundle" / "index.html").stat().st_size > 0


def test_store_reports_nonfinite_values_as_recorded(recorded) -> None:
    # A NaN statistic is a missing value (NULL); an infinite one would stay infinite.
    store, _ = recorded
    with Store(store, readonly=True) as st:
        (n_null,) = st.conn.execute(
            "SELECT count(*) FROM metric_values WHERE value IS NULL AND step=1"
        ).fetchone()
        (n_all_nan,) = st.conn.execute(
            "SELECT count(*) FROM metric_values WHERE value IS NULL AND step=1 AND layer=?",
            (PATTERNS.index("all_nan") + 1,),
        ).fetchone()
    # all_nan: every metric but the three fractions is undefined; zero: kurtosis is undefined (0/0).
    assert n_all_nan == len(METRICS) - 3
    assert n_null == n_all_nan + 1
