"""The statistics engine against a float64 numpy reference, and its exact merge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.stats import (
    SlotAccumulator,
    StatSpec,
    collect,
    default_hist_edges,
    derive_values,
    merge_states,
    raw_to_state,
    resolve_metrics,
)
from layerscope.stats.functional import GROUPS, batch_hist, batch_raw

ALL = StatSpec(resolve_metrics("all"), eps=1e-6, hist_edges=default_hist_edges())
REL = 1e-5


def reference(x: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    """What the metrics mean, computed directly in float64 with numpy."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n = x.size
    f = x[np.isfinite(x)]
    out = {
        "zero_frac": float(np.sum(np.abs(f) <= eps)) / n,
        "pos_frac": float(np.sum(f > 0)) / n,
        "nan_frac": float(np.sum(np.isnan(x))) / n,
        "inf_frac": float(np.sum(np.isinf(x))) / n,
    }
    if f.size:
        m = f.mean()
        var = ((f - m) ** 2).mean()
        rms = math.sqrt((f**2).mean())
        out.update(
            mean=m,
            std=math.sqrt(var),
            rms=rms,
            abs_mean=np.abs(f).mean(),
            min=f.min(),
            max=f.max(),
            max_abs=np.abs(f).max(),
            kurtosis=((f - m) ** 4).mean() / var**2 if var > 0 else math.nan,
            top_ratio=np.abs(f).max() / rms if rms > 0 else math.nan,
        )
    return out


def record(chunks: list[torch.Tensor], spec: StatSpec = ALL) -> dict[str, float]:
    acc = SlotAccumulator(spec)
    for c in chunks:
        acc.update(c)
    ws = collect([acc], spec, None)
    units = [None if u is None else u.numpy() for u in ws.units]
    return {k: float(v[0]) for k, v in derive_values(ws.states.numpy(), units, None, spec).items()}


def assert_matches(got: dict[str, float], ref: dict[str, float], rel: float = REL) -> None:
    for k in ("zero_frac", "pos_frac", "nan_frac", "inf_frac"):
        assert got[k] == ref[k], (k, got[k], ref[k])  # counts are exact
    for k in ("min", "max", "max_abs"):
        if k in ref:
            assert got[k] == ref[k], (k, got[k], ref[k])  # extremes are exact values of the data
    for k in ("mean", "std", "rms", "kurtosis", "top_ratio", "abs_mean"):
        if k not in ref or math.isnan(ref[k]):
            continue
        # The mean of data centred near 0 is ill-conditioned relative to itself: compare it on the
        # data's own scale (its rms), which is what a user reads it against.
        scale = max(abs(ref[k]), ref["rms"] if k == "mean" else 0.0)
        assert abs(got[k] - ref[k]) <= rel * scale, (k, got[k], ref[k])


def test_offset_data_keeps_precision() -> None:
    g = torch.Generator().manual_seed(0)
    x = (1e4 + 1e-2 * torch.randn(300_000, generator=g, dtype=torch.float64)).float()
    ref = reference(x.numpy())
    got = record(list(x.split(9_999)))
    assert_matches(got, ref)
    # Naive power sums lose everything here: E[x^2] - E[x]^2 cancels 1e8 against 1e8.
    naive_var = float((x.double() ** 2).mean() - x.double().mean() ** 2)
    assert abs(got["std"] - ref["std"]) < abs(math.sqrt(max(naive_var, 0)) - ref["std"]) or naive_var >= 0


def test_heavy_tails_zeros_and_nonfinite() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.distributions.StudentT(torch.tensor(2.2)).sample((50_000,)).float()
    x[torch.randperm(x.numel(), generator=g)[:5000]] = 0.0
    x[7] = float("nan")
    x[8] = float("inf")
    x[9] = float("-inf")
    x[10] = 1e-7  # within eps: counts as zero
    ref = reference(x.numpy())
    got = record(list(x.split(3000)))
    assert_matches(got, ref)
    assert got["nan_frac"] == 1 / x.numel()
    assert got["inf_frac"] == 2 / x.numel()


def test_gaussian_kurtosis_is_pearson() -> None:
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(2))
    got = record([x])
    assert abs(got["kurtosis"] - 3.0) < 0.05  # Pearson (3 for a Gaussian), not excess


def test_all_nonfinite_is_nan_not_a_crash() -> None:
    x = torch.tensor([float("nan"), float("inf"), float("-inf")])
    got = record([x])
    assert got["nan_frac"] == pytest.approx(1 / 3) and got["inf_frac"] == pytest.approx(2 / 3)
    for k in ("mean", "std", "rms", "min", "max", "max_abs", "kurtosis", "top_ratio"):
        assert math.isnan(got[k]), k


def test_all_zero_activations() -> None:
    got = record([torch.zeros(4, 8, 16)])
    assert got["zero_frac"] == 1.0 and got["dead_frac"] == 1.0 and got["pos_frac"] == 0.0
    assert got["mean"] == 0.0 and got["std"] == 0.0 and got["rms"] == 0.0
    assert math.isnan(got["kurtosis"]) and math.isnan(got["top_ratio"])  # undefined, not inf or 0


def test_dead_frac_counts_units_of_last_dim() -> None:
    x = torch.randn(8, 5, 10)
    x[..., 3] = 0.0
    x[..., 7] = 1e-9
    got = record([x[:4], x[4:]])
    assert got["dead_frac"] == pytest.approx(2 / 10)


# Magnitudes below ~1e-12 are left out: their float32 squares (and fourth powers) are subnormal and
# lose relative precision (documented in docs/metrics.md); exact zeros stay in via `specials`.
finite_floats = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32
).filter(lambda v: v == 0 or abs(v) >= 1e-12)
specials = st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e-7])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(finite_floats, finite_floats, finite_floats, specials), min_size=1, max_size=400
    ),
    offset=st.sampled_from([0.0, 1.0, -50.0, 1e4]),
    scale=st.sampled_from([1.0, 1e-2, 1e3]),
    n_chunks=st.integers(min_value=1, max_value=5),
)
def test_property_matches_float64_reference(
    values: list[float], offset: float, scale: float, n_chunks: int
) -> None:
    x = torch.tensor(values, dtype=torch.float64)
    x = (offset + scale * x).float()  # float32 inputs, as activations are
    ref = reference(x.numpy())
    got = record(list(torch.tensor_split(x, n_chunks)))
    f = x.numpy()[np.isfinite(x.numpy())].astype(np.float64)
    # With few points and a near-constant sample, relative error of std/kurtosis is ill-posed;
    # check them where the spread is resolvable in float32.
    rel_ok = f.size >= 2 and f.std() > 1e-3 * max(1.0, np.abs(f).max())
    if not rel_ok:
        ref = {k: v for k, v in ref.items() if k not in ("std", "kurtosis")}
    assert_matches(got, ref, rel=REL if rel_ok else 1e-4)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), min_size=2, max_size=6),
    seed=st.integers(0, 10_000),
    offset=st.sampled_from([0.0, 3.0, 1e4]),
)
def test_merge_of_chunks_equals_state_of_concatenation(sizes: list[int], seed: int, offset: float) -> None:
    g = torch.Generator().manual_seed(seed)
    chunks = [(offset + torch.randn(n, generator=g, dtype=torch.float64)).float() for n in sizes]
    groups = frozenset(GROUPS)
    parts = raw_to_state(torch.stack([batch_raw(c, groups) for c in chunks]))
    merged = merge_states(parts)
    whole = raw_to_state(batch_raw(torch.cat(chunks), groups))
    # counts and extremes: exact; moments: 1e-6 relative (their own scale)
    np.testing.assert_array_equal(
        merged[[0, 1, 6, 7, 8, 10, 11, 12, 13]].numpy(), whole[[0, 1, 6, 7, 8, 10, 11, 12, 13]].numpy()
    )
    if whole[1] > 0:
        assert abs(merged[2] - whole[2]) <= 1e-6 * max(1.0, abs(float(whole[2])))
        for i in (3, 5):  # M2, M4
            assert abs(merged[i] - whole[i]) <= 1e-6 * max(float(whole[i]), 1e-12) + 1e-9


def test_merge_is_associative_across_windows_and_ranks() -> None:
    g = torch.Generator().manual_seed(3)
    data = [torch.randn(1000, generator=g) * (i + 1) + i for i in range(6)]
    groups = frozenset(GROUPS)
    st_ = raw_to_state(torch.stack([batch_raw(d, groups) for d in data]))
    left = merge_states(torch.stack([merge_states(st_[:2]), merge_states(st_[2:])]))
    right = merge_states(torch.stack([merge_states(st_[:4]), merge_states(st_[4:])]))
    torch.testing.assert_close(left, right, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_accumulates_in_float32(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(200_000, generator=g) + 3.0).to(dtype)
    ref = reference(x.float().numpy())  # the reference on the exact low-precision values
    got = record(list(x.split(10_000)))
    assert_matches(got, ref)
    # A bf16/fp16 running sum of 200k values near 3 would be off by orders of magnitude.
    raw = batch_raw(x, frozenset(GROUPS))
    assert raw.dtype == torch.float64


def test_histogram_counts_fixed_edges() -> None:
    edges = torch.tensor([-1.0, 0.0, 1.0])
    x = torch.tensor([-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 7.0, float("nan"), float("inf")])
    h = batch_hist(x, edges)
    # bins: (-inf,-1) [-1,0) [0,1) [1,inf): non-finite values are not counted
    assert h.tolist() == [1.0, 2.0, 2.0, 2.0]


def test_default_hist_edges_are_symmetric_and_sorted() -> None:
    e = default_hist_edges()
    assert e == sorted(e) and 0.0 in e and e[0] == -e[-1]
