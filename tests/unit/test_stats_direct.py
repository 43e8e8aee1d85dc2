"""The direct path of ``SlotAccumulator.update``: a plain contiguous CPU tensor goes straight to the
C pass, which writes its raw row into a pool. It must give the same raw rows, bit for bit, as the
general path (``rows_view`` + ``StatsPass``), fall back wherever that path does something else, and
never write a pool row that was already handed out.
"""

from __future__ import annotations

import math

import pytest
import torch

import layerscope
from layerscope.stats import Stats, register_metric, resolve_metrics, unregister_metric
from layerscope.stats import native as native_mod
from layerscope.stats.accumulator import _COMPACT_AT, SlotAccumulator, StatSpec, collect
from layerscope.testing import tiny_gpt

DEFAULT = ["mean", "std", "rms", "max_abs"]
PLAIN = ["mean", "std", "rms", "max_abs", "kurtosis", "zero_frac", "pos_frac", "nan_frac", "min", "max"]


def _spec(metrics: list[str], direct: bool) -> StatSpec:
    spec = StatSpec(resolve_metrics(metrics))
    if not direct:
        spec.plain = False  # the general path, for reference
    return spec


def _pair(metrics: list[str] = DEFAULT) -> tuple[SlotAccumulator, SlotAccumulator]:
    return SlotAccumulator(_spec(metrics, True)), SlotAccumulator(_spec(metrics, False))


def _raws(acc: SlotAccumulator) -> torch.Tensor:
    acc._take_pool()
    return torch.stack(acc._raws) if acc._raws else torch.zeros(0)


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, 37, generator=g, dtype=torch.float64)
    nonfinite = base.clone()
    nonfinite[0, 0, :5] = math.nan
    nonfinite[1, 2, 3] = math.inf
    nonfinite[3, 5, 0] = -math.inf
    zeros = base.clone()
    zeros[:, :, ::3] = 0.0
    out = {
        "randn": base,
        "nonfinite": nonfinite,
        "zeros": zeros,
        "offset": 1e4 + 1e-2 * base,  # the shift keeps the precision
        "vector": base[0, 0].clone(),  # 1-d: one row of 37
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "all nan": torch.full((3, 5), math.nan, dtype=torch.float64),
    }
    if dtype != torch.bfloat16:  # bfloat16's range ends at ~3e38: 1e18**4 is not representable
        out["huge"] = 1e18 * base  # the power-of-two scale keeps x**4 finite in float32
    return {k: v.to(dtype) for k, v in out.items()}


def test_the_direct_path_runs_here() -> None:
    assert native_mod.available(), native_mod.build_error()
    fast, _ = _pair()
    fast.update(torch.randn(4, 8))
    assert fast._npool == 1 and not fast._raws


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("metrics", [DEFAULT, PLAIN], ids=["default", "plain-all"])
def test_same_raw_rows_as_the_general_path(dtype: torch.dtype, metrics: list[str]) -> None:
    for name, x in _inputs(dtype).items():
        fast, general = _pair(metrics)
        fast.update(x)
        general.update(x)
        assert fast._npool == 1, name  # the direct path was taken
        _same(_raws(fast), _raws(general))
        _same(fast.state(), general.state())


def test_huge_and_offset_values_stay_exact() -> None:
    """The direct path keeps the pass's shift and scale: finite moments at |x| ~ 1e18 (float32)."""
    x = 1e18 * torch.randn(64, 96, generator=torch.Generator().manual_seed(1))
    fast, _ = _pair()
    fast.update(x)
    rec = Stats(fast.state()[None].numpy())
    ref = x.double()
    assert math.isfinite(float(rec.m4[0]))
    assert math.isclose(math.sqrt(float(rec.var[0])), float(ref.std(unbiased=False)), rel_tol=1e-5)
    assert math.isclose(float(rec.max_abs[0]), float(ref.abs().max()), rel_tol=0)


def test_tensors_that_require_grad_and_autograd_outputs() -> None:
    leaf = torch.randn(8, 16, requires_grad=True)
    out = torch.tanh(leaf @ torch.randn(16, 16))  # has a grad_fn
    for x in (leaf, out):
        fast, general = _pair()
        fast.update(x)
        general.update(x.detach())
        assert fast._npool == 1
        _same(_raws(fast), _raws(general))
    assert leaf.grad is None and out.requires_grad  # nothing of autograd was touched


@pytest.mark.parametrize(
    "case",
    ["transposed", "sliced", "empty", "empty rows", "float16", "masked", "sampled", "hist", "units", "fn"],
)
def test_what_the_direct_path_leaves_to_the_general_one(case: str) -> None:
    x = torch.randn(6, 10, 12)
    metrics, mask, sample = DEFAULT, None, None
    if case == "transposed":
        x = x.transpose(1, 2)
    elif case == "sliced":
        x = x[:, :, ::2]
    elif case == "empty":
        x = torch.zeros(0, 12)
    elif case == "empty rows":
        x = torch.zeros(3, 0, 12)
    elif case == "float16":
        x = x.half()
    elif case == "masked":
        mask = torch.ones(6, 10, dtype=torch.bool)
        mask[:, 7:] = False
    elif case == "sampled":
        sample = 4
    elif case == "hist":
        metrics = ["rms", "hist"]
    elif case == "units":
        metrics = ["rms", "dead_frac"]
    elif case == "fn":
        metrics = ["rms", "direct_test_mean"]
        register_metric("direct_test_mean", fn=lambda t: t.float().mean(), overwrite=True)
    try:
        fast = SlotAccumulator(_spec(metrics, True), sample)
        general = SlotAccumulator(_spec(metrics, False), sample)
    finally:
        unregister_metric("direct_test_mean")
    fast.update(x, mask)
    general.update(x, mask)
    assert fast._npool == 0 and fast.n_updates == 1  # the general path ran
    _same(fast.state(), general.state())


def test_several_updates_compaction_and_the_state() -> None:
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(4, 8, 24, generator=g) * (1 + i % 7) for i in range(2 * _COMPACT_AT + 5)]
    fast, general = _pair(PLAIN)
    for i, x in enumerate(xs):
        fast.update(x)
        general.update(x)
        if i == 2:  # a few forwards: raw rows still in the pool
            assert fast._npool == 3
            _same(torch.stack(fast._pool[:3].unbind(0)), torch.stack(general._raws))
    assert fast.n_updates == general.n_updates == len(xs)
    assert fast._npool == 5 and fast._state is not None  # compacted twice at _COMPACT_AT, as general
    _same(fast.state(), general.state())


def test_direct_and_general_forwards_mixed_keep_their_order() -> None:
    """A slot whose forwards take both paths (some masked) folds them in the order they came."""
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, 5, 8, generator=g) for _ in range(6)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    fast, general = _pair()
    for i, x in enumerate(xs):
        m = mask if i % 3 == 1 else None
        fast.update(x, m)
        general.update(x, m)
    _same(_raws(fast), _raws(general))
    _same(fast.state(), general.state())


def test_pool_rows_handed_out_are_never_written_again() -> None:
    fast, _ = _pair()
    for _ in range(3):
        fast.update(torch.randn(4, 8))
    fast._take_pool()
    views = list(fast._raws)
    kept = [v.clone() for v in views]
    for _ in range(_COMPACT_AT + 3):  # a fresh pool, filled and compacted
        fast.update(torch.randn(4, 8) * 100)
    fast.reset()
    for _ in range(5):
        fast.update(torch.randn(4, 8) * 1e6)
    for v, k in zip(views, kept):
        _same(v, k)


@pytest.mark.parametrize("defer", [True, False])
@pytest.mark.parametrize("forwards", [1, 3])
def test_the_batched_collect_is_the_same(defer: bool, forwards: int) -> None:
    g = torch.Generator().manual_seed(4)
    xs = [[torch.randn(3, 7, 16 + 8 * s, generator=g) for _ in range(forwards)] for s in range(4)]
    out = []
    for direct in (True, False):
        spec = _spec(DEFAULT, direct)
        accs = [SlotAccumulator(spec) for _ in xs]
        for acc, per_slot in zip(accs, xs):
            for x in per_slot:
                acc.update(x)
        ws = collect(accs, spec, torch.device("cpu"), defer=defer)
        assert ws.raw == (defer and forwards == 1)
        out.append(ws.states)
    _same(out[0], out[1])


def test_a_recorder_records_the_same_values_either_way() -> None:
    torch.manual_seed(0)
    model = tiny_gpt(n_layer=3, n_embd=32, n_head=2, block_size=16)
    x = torch.randint(0, 256, (4, 16))
    values = []
    for direct in (True, False):
        rec = layerscope.Recorder(model, None, metrics=PLAIN, sites=("output", "mlp_act"))
        rec.spec.plain = direct
        for step in range(1, 4):
            for _ in range(2):  # micro-batches
                model(x, x)
            rec.step(step)
        rec.close()
        assert all(s.acc._npool == 0 for s in rec.slots)
        values.append([r.values for r in rec.history])
    assert values[0] == values[1]


def test_the_direct_path_never_syncs(monkeypatch) -> None:
    """Every way a tensor reaches the host raises inside the hooks (as in test_recorder)."""
    model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8)
    x = torch.randint(0, 256, (2, 8))
    rec = layerscope.Recorder(model, None, flush_every=1000)  # the default metrics: the direct path

    def boom(*a, **k):
        raise AssertionError("host sync inside a hook")

    with monkeypatch.context() as m:
        for name in ("item", "cpu", "tolist", "__bool__", "numpy", "__float__", "__int__", "__index__"):
            m.setattr(torch.Tensor, name, boom)
        model(x)
    assert all(s.acc._npool == 1 for s in rec.slots)
    rec.step(1)
    rec.close()
    assert not math.isnan(rec.history[0].values[("rms", "output")][0])
