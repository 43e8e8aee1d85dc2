"""The statistics pass: every backend against float64, huge magnitudes, token masks, sampling.

The compiled backend (torch.compile) is checked against these in tests/integration/test_compile.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layerscope.stats import GROUPS, Stats, raw_to_state
from layerscope.stats import native as native_mod
from layerscope.stats.kernels import (
    R_MAX,
    R_MIN,
    R_N,
    R_NF,
    R_NNAN,
    R_NPINF,
    R_NPOS,
    R_NZERO,
    StatsPass,
    mask_rows,
    rows_view,
    torch_raw,
)

SCALAR = frozenset(GROUPS) - {"hist", "units"}
EXACT = [R_N, R_NF, R_NZERO, R_NPOS, R_NNAN, R_NPINF, R_MIN, R_MAX]  # counts and extremes


def test_the_c_pass_builds_here() -> None:
    # CI machines have a C compiler (as CPU inductor needs one); without it the torch path runs.
    assert native_mod.available(), native_mod.build_error()


def _backends() -> list[str]:
    return ["native", "eager"]


def _stats(raw: torch.Tensor) -> Stats:
    return Stats(raw_to_state(raw[None]).numpy())


def _ref(x: torch.Tensor) -> dict[str, float]:
    """float64 reference over the finite values of x."""
    f = x.double().reshape(-1)
    f = f[torch.isfinite(f)]
    m = f.mean()
    var = ((f - m) ** 2).mean()
    return {
        "n": float(f.numel()),
        "mean": float(m),
        "std": float(var.sqrt()),
        "kurtosis": float(((f - m) ** 4).mean() / var**2),
        "max_abs": float(f.abs().max()),
        "sum_abs": float(f.abs().sum()),
    }


def _check(raw: torch.Tensor, ref: dict[str, float], rel: float = 1e-6) -> None:
    s = _stats(raw)
    assert float(s.n_finite[0]) == ref["n"]
    assert float(s.mean[0]) == pytest.approx(ref["mean"], rel=rel, abs=rel * ref["std"])
    assert float(np.sqrt(s.var[0])) == pytest.approx(ref["std"], rel=rel)
    k = float(s.n_finite[0] * s.m4[0] / s.m2[0] ** 2)
    assert k == pytest.approx(ref["kurtosis"], rel=rel * 10)
    assert float(s.max_abs[0]) == pytest.approx(ref["max_abs"], rel=1e-7)
    assert float(s.sum_abs[0]) == pytest.approx(ref["sum_abs"], rel=rel)


@pytest.mark.parametrize("backend", _backends())
def test_every_group_in_one_pass_matches_float64(backend: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 300, generator=g) * 2.5 + 0.7
    x[3, 5], x[7, 9], x[8, 1], x[9, 0], x[9, 1] = math.nan, math.inf, -math.inf, 0.0, 1e-7
    raw, units = StatsPass(SCALAR, 1e-6, backend, units=True)(x, None)
    _check(raw, _ref(x))
    f = x.double()
    fin = torch.isfinite(f)
    assert raw[R_N] == x.numel() and raw[R_NF] == fin.sum()
    assert raw[R_NNAN] == 1 and raw[R_NPINF] == 1
    assert raw[R_NZERO] == ((f.abs() <= 1e-6) & fin).sum() and raw[R_NPOS] == ((f > 0) & fin).sum()
    assert raw[R_MIN] == f[fin].min() and raw[R_MAX] == f[fin].max()  # values of the data, exactly
    assert units is not None
    assert torch.equal(units, torch.where(torch.isfinite(x), x.abs(), 0.0).amax(0))


def test_native_and_eager_agree() -> None:
    """Same shift, same scale, same arithmetic: counts and extremes identical, sums to rounding."""
    g = torch.Generator().manual_seed(1)
    for shape, mask in [((64, 384), None), ((8, 16, 96), torch.rand(8, 16, generator=g) > 0.3)]:
        x = torch.randn(*shape, generator=g) * 3 + 1e3
        v, m = rows_view(x, mask, None)
        a, ua = StatsPass(SCALAR, 1e-6, "native", units=True)(v, m)
        b, ub = StatsPass(SCALAR, 1e-6, "eager", units=True)(v, m)
        assert torch.equal(a[EXACT], b[EXACT]) and a[6] == b[6]  # the shift too
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
        assert ua is not None and ub is not None and torch.equal(ua, ub)


@pytest.mark.parametrize("backend", _backends())
def test_large_magnitudes_stay_finite(backend: str) -> None:
    """float32 ~1e8 over 8M elements: sum x**4 overflows float32 unscaled (kurtosis inf);
    ~1e18: sum x**2 does (std 0 or inf). A power-of-two scale keeps both right."""
    g = torch.Generator().manual_seed(2)
    base = torch.randn(8_000_000, generator=g)
    for scale in (1e8, 1e18):
        x = (base * scale).view(8000, 1000)
        raw, _ = StatsPass(SCALAR, 1e-6, backend)(x, None)
        assert torch.isfinite(raw).all(), scale
        _check(raw, _ref(x), rel=1e-5)


@pytest.mark.parametrize("backend", _backends())
def test_offset_data_keeps_precision(backend: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = (1e4 + 1e-2 * torch.randn(300, 1000, generator=g, dtype=torch.float64)).float()
    raw, _ = StatsPass(SCALAR, 1e-6, backend)(x, None)
    _check(raw, _ref(x), rel=1e-5)


@pytest.mark.parametrize("backend", _backends())
def test_mask_counts_only_real_tokens(backend: str) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 10, 32, generator=g)
    lengths = [10, 7, 3, 1]
    mask = torch.tensor([[t < n for t in range(10)] for n in lengths])
    x[~mask] = 1e6  # padding positions with values that would dominate every statistic
    v, m = rows_view(x, mask, None)
    raw, units = StatsPass(SCALAR, 1e-6, backend, units=True)(v, m)
    real = x[mask]  # (n_real, 32), the reference's boolean indexing (a host-side size; tests only)
    _check(raw, _ref(real))
    assert raw[R_N] == real.numel()
    assert units is not None and torch.equal(units, real.abs().amax(0))


def test_mask_rows_fits_token_layouts_only() -> None:
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert mask_rows((2, 3, 8), mask).tolist() == [True, False, True, True, True, False]
    heads = mask_rows((2, 3, 4, 8), mask)  # (B, T, H, D): each token's mask repeats over heads
    assert heads is not None and heads.tolist() == [b for b in mask.reshape(-1).tolist() for _ in range(4)]
    assert mask_rows((6, 8), mask) is not None  # flattened tokens (B * T, C)
    assert mask_rows((2, 8), mask) is None  # pooled (B, C)
    assert mask_rows((3, 2, 8), mask) is None  # (T, B, C): not batch-first
    assert mask_rows((2, 5, 8), mask) is None  # another sequence length (a decoder)


@pytest.mark.parametrize("backend", _backends())
def test_sample_keeps_strided_token_rows(backend: str) -> None:
    x = torch.randn(16, 64, 48, generator=torch.Generator().manual_seed(5))
    v, _ = rows_view(x, None, 100)
    step = (16 * 64) // 100
    assert v.shape == ((16 * 64 + step - 1) // step, 48)
    raw, _ = StatsPass(SCALAR, 1e-6, backend)(v, None)
    _check(raw, _ref(x.reshape(-1, 48)[::step]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_dtypes_on_the_c_pass(dtype: torch.dtype) -> None:
    x = (torch.randn(40, 200, generator=torch.Generator().manual_seed(6)) + 3).to(dtype)
    raw, _ = StatsPass(SCALAR, 1e-6, "native")(x, None)
    _check(raw, _ref(x.double()))
    eager, _ = torch_raw(x, None, SCALAR, 1e-6, False)
    assert torch.equal(raw[EXACT], eager[EXACT])


@pytest.mark.parametrize("backend", _backends())
def test_empty_and_all_nonfinite(backend: str) -> None:
    p = StatsPass(SCALAR, 1e-6, backend)
    raw, _ = p(torch.zeros(0, 8), None)
    assert raw[R_N] == 0 and raw[R_MIN] == math.inf and raw[R_MAX] == -math.inf
    raw, _ = p(torch.tensor([[math.nan, math.inf, -math.inf]]), None)
    assert raw[R_N] == 3 and raw[R_NF] == 0 and raw[R_NNAN] == 1 and raw[R_NPINF] == 1
    assert math.isnan(_stats(raw).mean[0])
    everything_masked = torch.zeros(4, dtype=torch.bool)
    raw, _ = p(torch.randn(4, 8), everything_masked)
    assert raw[R_N] == 0 and raw[R_NF] == 0


def test_only_the_requested_groups_are_computed() -> None:
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(7))
    raw, _ = StatsPass(frozenset({"moments"}), 1e-6, "native")(x, None)
    full, _ = StatsPass(SCALAR, 1e-6, "native")(x, None)
    torch.testing.assert_close(raw[7:9], full[7:9], rtol=1e-12, atol=0)  # s1, s2
    assert raw[R_NPOS] == 0 and raw[R_MIN] == math.inf  # not requested: neutral
