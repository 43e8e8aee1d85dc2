"""torch.compile: the compiled statistics pass equals the others; a compiled model records quietly.

Two things compile here. (1) The statistics pass itself (``stats_backend="compile"``, the CUDA
default): inductor on CPU needs a C++ compiler, as on CI; it must give the numbers the C pass and
the eager path give, and must not recompile for new batch shapes. (2) A user's compiled model
with a Recorder on it: no warning from layerscope, no graph break, and no recompile after the
first record cycle (one graph recording and one not, with ``every=10``), whatever the number of
micro-batches. Whether hooks are traced, guarded or lost is decided by dynamo before any
backend, so (2) uses ``backend="eager"``, plus one run through inductor.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator

import pytest
import torch
from torch._dynamo.utils import counters

import layerscope
from layerscope.stats import GROUPS
from layerscope.stats.kernels import StatsPass, rows_view
from layerscope.testing import tiny_gpt

SCALAR = frozenset(GROUPS) - {"hist", "units"}
EXACT = [0, 1, 2, 3, 4, 5, 6, 11, 12, 13]  # counts, the shift, extremes


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_compiled_pass_equals_native_and_eager_and_keeps_one_graph_per_kind(fresh_dynamo: None) -> None:
    g = torch.Generator().manual_seed(0)
    p = StatsPass(SCALAR, 1e-6, "compile", units=True)
    t0 = time.perf_counter()
    p(*rows_view(torch.randn(2, 8, 16, generator=g), None, None))
    first = time.perf_counter() - t0  # compile latency (printed with -s; ~20-40 s on 2 busy cores)
    print(f"\ncompile of the statistics pass: {first:.1f} s")
    graphs = counters["stats"]["unique_graphs"]
    for shape, lens in [((4, 12, 48), [12, 7, 3, 1]), ((3, 20, 96), [20, 20, 2]), ((5, 9, 48), [9] * 5)]:
        x = torch.randn(*shape, generator=g) * 3 + 100
        x[0, 0, 0], x[1, 1, 1] = math.nan, math.inf
        mask = torch.arange(shape[1])[None] < torch.tensor(lens)[:, None]
        for m in (None, mask):
            v, rows = rows_view(x, m, None)
            got, gu = p(v, rows)
            for backend in ("native", "eager"):
                want, wu = StatsPass(SCALAR, 1e-6, backend, units=True)(v, rows)
                assert torch.equal(got[EXACT], want[EXACT]), backend
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
                assert gu is not None and wu is not None and torch.equal(gu, wu)
    assert p.used == {"compile"}
    # One more graph for masked inputs, then none: new batch and sequence lengths reuse them.
    assert counters["stats"]["unique_graphs"] - graphs <= 1


def _train(model: torch.nn.Module, call: torch.nn.Module, rec: layerscope.Recorder, steps: int, micro: int):
    graphs = []
    for step in range(1, steps + 1):
        for k in range(micro):
            x = torch.randint(0, 256, (2 + k, 16), generator=torch.Generator().manual_seed(step * 10 + k))
            call(x).float().mean().backward()
        rec.step(step)
        graphs.append(counters["stats"]["unique_graphs"])
    return graphs


@pytest.mark.parametrize(("every", "micro"), [(1, 1), (10, 1), (1, 3), (10, 3)])
def test_compiled_model_records_without_warnings_breaks_or_recompiles(
    fresh_dynamo: None, every: int, micro: int
) -> None:
    model = tiny_gpt(n_layer=2, n_embd=32, n_head=2, block_size=16, activation="relu")
    compiled = torch.compile(model, backend="eager")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rec = layerscope.Recorder(compiled, None, every=every, metrics="all", sites=["output", "mlp_act"])
        graphs = _train(model, compiled, rec, 30, micro)
        rec.close()
    ours = [x for x in w if "layerscope" in x.filename or "layerscope" in str(x.message)]
    assert not ours, [str(x.message) for x in ours]
    assert not counters["graph_break"], dict(counters["graph_break"])
    warm = 2 * every  # a record cycle and a bit: the recording and non-recording graphs exist
    assert graphs[-1] == graphs[warm - 1], graphs  # no recompile after warm-up
    assert graphs[-1] <= (2 if every > 1 else 1) + 1  # + one when the unit buffers are first sized
    assert [r.step for r in rec.history] == [s for s in range(1, 31) if s % every == 0]


def test_compiled_model_values_equal_the_eager_model(fresh_dynamo: None) -> None:
    def run(compile_backend: str | None) -> list:
        model = tiny_gpt(n_layer=2, n_embd=32, n_head=2, block_size=16, activation="relu")
        call = torch.compile(model, backend=compile_backend) if compile_backend else model
        rec = layerscope.Recorder(call, None, every=2, metrics="all", sites=["output", "mlp_act"])
        _train(model, call, rec, 6, 2)
        rec.close()
        return rec.history

    want = run(None)
    for backend, rel in (("eager", 1e-6), ("inductor", 1e-4)):  # inductor computes the model itself anew
        got = run(backend)
        assert [r.step for r in got] == [r.step for r in want] == [2, 4, 6]
        for a, b in zip(got, want):
            for key, vals in b.values.items():
                for va, vb in zip(a.values[key], vals):
                    assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(
                        vb, rel=rel, abs=1e-7
                    ), (
                        backend,
                        key,
                    )


def test_masks_under_a_compiled_model(fresh_dynamo: None) -> None:
    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = tiny_gpt(n_layer=2, n_embd=32, n_head=2, block_size=16)
            self.h = self.gpt.h

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.gpt(input_ids)

    model = Padded()
    compiled = torch.compile(model, backend="eager")
    ids = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    mask = (torch.arange(16)[None] < torch.tensor([16, 9, 4])[:, None]).long()
    outs: list[torch.Tensor] = []
    hs = [b.register_forward_hook(lambda m, a, o: outs.append(o.detach().clone())) for b in model.h]
    model(ids, mask)
    for h in hs:
        h.remove()
    rec = layerscope.Recorder(compiled, None, metrics=["rms", "kurtosis"], mask="attention_mask")
    for step in (1, 2, 3):
        compiled(ids, attention_mask=mask)
        assert all(a.n_updates >= 1 for a in rec._accs)  # compiled forwards are seen on the host too
        rec.step(step)
    rec.close()
    assert not counters["graph_break"]
    for j, o in enumerate(outs):
        real = o[mask.bool()].double()
        assert rec.history[-1].values[("rms", "output")][j] == pytest.approx(
            float(real.pow(2).mean().sqrt()), rel=1e-5
        )
