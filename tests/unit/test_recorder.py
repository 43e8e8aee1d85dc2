"""The Recorder: values equal a float64 computation on the captured outputs; hooks never sync."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import layerscope
from layerscope.errors import ConfigError, DiscoveryError
from layerscope.store import Store
from layerscope.testing import Corpus


def _capture_outputs(model: torch.nn.Module, fn) -> list[list[torch.Tensor]]:
    """Run fn() and return, per block, the outputs it produced (an independent reference hook)."""
    outs: list[list[torch.Tensor]] = [[] for _ in model.h]
    hs = [
        b.register_forward_hook(lambda m, a, o, i=i: outs[i].append(o.detach().clone()))
        for i, b in enumerate(model.h)
    ]
    try:
        fn()
    finally:
        for h in hs:
            h.remove()
    return outs


def _ref(ts: list[torch.Tensor]) -> dict[str, float]:
    x = torch.cat([t.reshape(-1) for t in ts]).double()
    m = x.mean()
    return {
        "mean": float(m),
        "std": float(x.std(correction=0)),
        "rms": float(x.pow(2).mean().sqrt()),
        "max_abs": float(x.abs().max()),
        "kurtosis": float(((x - m) ** 4).mean() / ((x - m) ** 2).mean() ** 2),
    }


def test_recorded_values_equal_float64_on_captured_outputs(tiny_model, store_path) -> None:
    corpus = Corpus(n_chars=20_000)
    opt = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    metrics = ["mean", "std", "rms", "max_abs", "kurtosis"]
    refs: dict[int, list[dict[str, float]]] = {}
    with layerscope.Recorder(tiny_model, store_path, run="r", metrics=metrics, every=2) as rec:
        for step in range(1, 7):

            def train_step() -> None:
                for micro in range(2):  # two micro-batches fold into one step
                    x, y = corpus.batch(4, 16, step * 10 + micro)
                    _, loss = tiny_model(x, y)
                    loss.backward()

            outs = _capture_outputs(tiny_model, train_step)
            opt.step()
            opt.zero_grad()
            if step % 2 == 0:
                refs[step] = [_ref(o) for o in outs]
            rec.step(step)
    assert layerscope.load(store_path, metric="rms").steps == [2, 4, 6]
    for metric in metrics:
        hm = layerscope.load(store_path, metric=metric)
        for i, step in enumerate(hm.steps):
            for j in range(len(hm.layers)):
                want = refs[step][j][metric]
                assert hm.values[i, j] == pytest.approx(want, rel=1e-5, abs=1e-7 * refs[step][j]["rms"]), (
                    metric,
                    step,
                    j,
                )


def test_layers_named_and_indexed_at_discovery(tiny_model, store_path) -> None:
    with layerscope.Recorder(tiny_model, store_path, run="r") as rec:
        assert [(la.index, la.name) for la in rec.layers] == [(i + 1, f"h.{i}") for i in range(4)]
        tiny_model(torch.zeros(1, 4, dtype=torch.long))
        rec.step(1)
    hm = layerscope.load(store_path)
    assert hm.layer_names == ["h.0", "h.1", "h.2", "h.3"] and hm.layers == [1, 2, 3, 4]


def test_hooks_attached_only_on_recorded_steps(tiny_model) -> None:
    rec = layerscope.Recorder(tiny_model, None, run="r", every=5, start_step=1)
    x = torch.zeros(1, 4, dtype=torch.long)
    attached = []
    for step in range(1, 11):
        attached.append(rec.attached)
        tiny_model(x)
        rec.step(step)
    rec.close()
    assert attached == [s % 5 == 0 for s in range(1, 11)]
    assert [r.step for r in rec.history] == [5, 10]
    assert not rec.attached and all(not b._forward_hooks for b in tiny_model.h)


def test_unknown_first_step_discards_unrecorded_forwards(tiny_model) -> None:
    rec = layerscope.Recorder(tiny_model, None, run="r", every=3)
    x = torch.randint(0, 256, (2, 8))
    for step in range(1, 7):
        tiny_model(x)
        rec.step(step)
    rec.close()
    assert [r.step for r in rec.history] == [3, 6]


def test_window_all_folds_every_forward_since_last_record(tiny_model) -> None:
    x1 = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    x2 = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(1))
    outs = _capture_outputs(tiny_model, lambda: (tiny_model(x1), tiny_model(x2)))
    rec = layerscope.Recorder(tiny_model, None, run="r", every=2, window="all", metrics=["rms"])
    tiny_model(x1)
    rec.step(1)
    tiny_model(x2)
    rec.step(2)
    rec.close()
    (r,) = rec.history
    got = r.values[("rms", "output")]
    for j, o in enumerate(outs):
        assert got[j] == pytest.approx(_ref(o)["rms"], rel=1e-6)


def test_eval_forwards_are_ignored_by_default(tiny_model) -> None:
    x = torch.randint(0, 256, (2, 8))
    rec = layerscope.Recorder(tiny_model, None, run="r", metrics=["rms"])
    tiny_model.eval()
    tiny_model(x)  # a validation pass
    tiny_model.train()
    rec.step(1)
    rec.close()
    assert all(math.isnan(v) for v in rec.history[0].values[("rms", "output")])


def test_probe_measures_the_probe_in_eval_mode(tiny_model) -> None:
    probe = torch.randint(0, 256, (3, 8), generator=torch.Generator().manual_seed(5))
    tiny_model.eval()
    ref = _capture_outputs(tiny_model, lambda: tiny_model(probe))
    tiny_model.train()
    rec = layerscope.Recorder(tiny_model, None, run="r", metrics=["rms", "mean"], probe=probe)
    tiny_model(torch.randint(0, 256, (2, 8)))  # a training forward: not what gets recorded
    rec.step(1)
    rec.close()
    assert tiny_model.training  # mode restored
    got = rec.history[0].values[("rms", "output")]
    for j, o in enumerate(ref):
        assert got[j] == pytest.approx(_ref(o)["rms"], rel=1e-6)


def test_probe_hash_stored_and_mismatch_refused(tiny_model, store_path) -> None:
    p1 = torch.zeros(1, 4, dtype=torch.long)
    with layerscope.Recorder(tiny_model, store_path, run="r", probe=p1) as rec:
        rec.step(1)
    with Store(store_path) as st:
        assert len(st.run_config("r")["probe_hash"]) == 16
    with pytest.raises(ConfigError, match="probe"):
        layerscope.Recorder(tiny_model, store_path, run="r", probe=torch.ones(1, 4, dtype=torch.long))


def test_hooks_never_sync_with_the_host(tiny_model, monkeypatch) -> None:
    """Every way a tensor reaches the host raises inside the hooks; recording still works."""
    x = torch.randint(0, 256, (2, 8))
    rec = layerscope.Recorder(tiny_model, None, run="r", metrics="all", flush_every=1000)

    def boom(*a, **k):
        raise AssertionError("host sync inside a hook")

    with monkeypatch.context() as m:
        for name in ("item", "cpu", "tolist", "__bool__", "numpy", "__float__", "__int__", "__index__"):
            m.setattr(torch.Tensor, name, boom)
        tiny_model(x)  # all hooks run here
    rec.step(1)
    rec.close()
    assert rec.history and not math.isnan(rec.history[0].values[("rms", "output")][0])


def test_flush_is_buffered_and_close_flushes(tiny_model, store_path) -> None:
    x = torch.randint(0, 256, (2, 8))
    rec = layerscope.Recorder(tiny_model, store_path, run="r", flush_every=3, flush_secs=1e9)
    for step in range(1, 3):
        tiny_model(x)
        rec.step(step)
    with Store(store_path, readonly=True) as st:
        assert st.steps("r") == []  # pending on the device
    tiny_model(x)
    rec.step(3)
    with Store(store_path, readonly=True) as st:
        assert st.steps("r") == [1, 2, 3]
    tiny_model(x)
    rec.step(4)
    rec.close()
    rec.close()  # safe twice
    assert layerscope.load(store_path).steps == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="closed"):
        rec.step(5)


def test_sites_mlp_act_and_relu_zero_frac(store_path) -> None:
    from layerscope.testing import tiny_gpt

    model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8, activation="relu")
    x = torch.randint(0, 256, (4, 8))
    acts: list[torch.Tensor] = []
    hs = [b.mlp.act.register_forward_hook(lambda m, a, o: acts.append(o.detach())) for b in model.h]
    with layerscope.Recorder(
        model, store_path, run="r", metrics=["zero_frac"], sites=["output", "mlp_act"]
    ) as rec:
        model(x)
        rec.step(1)
    for h in hs:
        h.remove()
    zf = layerscope.load(store_path, metric="zero_frac", site="mlp_act").values[0]
    for j, a in enumerate(acts):
        assert zf[j] == float((a == 0).sum()) / a.numel()


def test_bad_arguments_are_config_errors(tiny_model) -> None:
    with pytest.raises(ConfigError, match="every=0"):
        layerscope.Recorder(tiny_model, None, every=0)
    with pytest.raises(ConfigError, match="window"):
        layerscope.Recorder(tiny_model, None, window="epoch")
    with pytest.raises(ConfigError, match="unknown site"):
        layerscope.Recorder(tiny_model, None, sites=["resid"])
    with pytest.raises(ConfigError, match="unknown metric"):
        layerscope.Recorder(tiny_model, None, metrics=["rsm"])
    with pytest.raises(DiscoveryError, match="layers="):
        layerscope.Recorder(torch.nn.Linear(2, 2), None)


def test_state_dict_round_trip(tiny_model) -> None:
    rec = layerscope.Recorder(tiny_model, None, run="r", every=2)
    rec.step(1)
    state = rec.state_dict()
    rec.close()
    rec2 = layerscope.Recorder(tiny_model, None, run="r", every=2)
    rec2.load_state_dict(state)
    assert rec2.attached  # step 2 is next and is recorded
    rec2.close()
    with pytest.raises(ConfigError, match="run 'r'"):
        layerscope.Recorder(tiny_model, None, run="other").load_state_dict(state)


def test_nan_activations_recorded_as_such(store_path) -> None:
    class Block(torch.nn.Module):
        def __init__(self, poison: bool) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.poison = poison

        def forward(self, x):
            x = self.lin(x)
            if self.poison:
                x = x.clone()
                x[0, 0] = float("nan")
                x[0, 1] = float("inf")
            return x

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([Block(i == 1) for i in range(3)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    m = Net()
    with layerscope.Recorder(m, store_path, run="r", metrics=["rms", "nan_frac", "inf_frac"]) as rec:
        m(torch.randn(2, 4))
        rec.step(1)
    nan_frac = layerscope.load(store_path, metric="nan_frac").values[0]
    inf_frac = layerscope.load(store_path, metric="inf_frac").values[0]
    rms = layerscope.load(store_path, metric="rms").values[0]
    assert nan_frac.tolist() == [0.0, 1 / 8, 4 / 8]  # row 0 of layer 3 is NaN after the matmul
    assert inf_frac.tolist() == [0.0, 1 / 8, 0.0]
    assert np.isfinite(rms).all()  # over finite values only: never poisoned


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_counts_each_forward_once(reentrant: bool) -> None:
    from torch.utils.checkpoint import checkpoint

    from layerscope.stats import register_metric, unregister_metric
    from layerscope.testing import tiny_gpt

    class Ckpt(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8)
            self.h = self.inner.h

        def forward(self, idx):
            x = self.inner.wte(idx) + self.inner.wpe(torch.arange(idx.shape[1]))
            for b in self.h:
                x = checkpoint(b, x, use_reentrant=reentrant)
            return x.sum()

    register_metric(
        "elements",
        fn=lambda x: torch.ones((), dtype=torch.float64, device=x.device) * x.numel(),
        reduce="sum",
        overwrite=True,
    )
    try:
        m = Ckpt()
        rec = layerscope.Recorder(m, None, run="r", metrics=["elements", "rms"], sites=["output", "mlp_act"])
        x = torch.randint(0, 256, (3, 8))
        m(x).backward()  # backward re-runs each block's forward
        rec.step(1)
        rec.close()
        vals = rec.history[0].values
        assert vals[("elements", "output")] == [3 * 8 * 16] * 2
        assert vals[("elements", "mlp_act")] == [3 * 8 * 64] * 2
    finally:
        unregister_metric("elements")
