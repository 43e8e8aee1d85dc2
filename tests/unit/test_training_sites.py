"""The training sites (grad_output, param_grad, update, weight) equal float64 references.

References are taken independently of the Recorder: autograd (``retain_grad`` on each block's
output, ``p.grad`` after accumulation) for the gradients, a manual copy of the parameters before
``opt.step()`` for the update, the parameters themselves for the weights.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import layerscope
from layerscope.errors import ConfigError
from layerscope.store import Store
from layerscope.testing import tiny_gpt

ALL = ("grad_output", "param_grad", "update", "weight")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return tiny_gpt(n_layer=3, n_embd=32, n_head=2, block_size=16)


def _stats(ts: list[torch.Tensor]) -> dict[str, float]:
    x = torch.cat([t.detach().reshape(-1) for t in ts]).double()
    return {
        "mean": float(x.mean()),
        "std": float(x.std(correction=0)),
        "rms": float(x.pow(2).mean().sqrt()),
        "max_abs": float(x.abs().max()),
        "norm": float(x.pow(2).sum().sqrt()),
    }


class _Reference:
    """Per block: output gradients (autograd), parameter grads, the update and the weights."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.outs: list[list[torch.Tensor]] = [[] for _ in model.h]
        self._hs = [b.register_forward_hook(self._keep(i)) for i, b in enumerate(model.h)]

    def _keep(self, i: int):
        def hook(module, args, out) -> None:
            out.retain_grad()  # autograd fills out.grad: the reference for grad_output
            self.outs[i].append(out)

        return hook

    def grad_outputs(self) -> list[list[torch.Tensor]]:
        return [[o.grad for o in outs] for outs in self.outs]

    def params(self, i: int) -> list[torch.Tensor]:
        return list(self.model.h[i].parameters())

    def close(self) -> None:
        for h in self._hs:
            h.remove()


def _train_step(model, opt, batches, rec=None, scaler=None, autocast=False):
    """One optimizer step over ``batches`` (gradient accumulation), with the references."""
    ref = _Reference(model)
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, loss = model(x, y)
        loss = loss / len(batches)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    ref.close()
    grads = ref.grad_outputs()
    if scaler is not None:
        scale = float(scaler.get_scale())
        grads = [[g / scale for g in gs] for gs in grads]
        scaler.unscale_(opt)
    pgrads = [[p.grad.detach().clone() for p in ref.params(i)] for i in range(len(model.h))]
    before = [[p.detach().clone() for p in ref.params(i)] for i in range(len(model.h))]
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    after = [[p.detach().clone() for p in ref.params(i)] for i in range(len(model.h))]
    opt.zero_grad()
    return grads, pgrads, before, after


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, 256, (2, 12), generator=g), torch.randint(0, 256, (2, 12), generator=g))
        for _ in range(n)
    ]


def _check(rec_values, grads, pgrads, before, after, rel: float = 1e-6) -> None:
    n = len(grads)
    for i in range(n):
        want = {
            "grad_output": _stats(grads[i]),
            "param_grad": _stats(pgrads[i]),
            "update": _stats([a - b for a, b in zip(after[i], before[i])]),
            "weight": _stats(after[i]),
        }
        ref_norm = _stats(before[i])["norm"]
        want["update"]["ratio"] = want["update"]["norm"] / ref_norm
        want["update"]["log_ratio"] = math.log10(want["update"]["ratio"])
        for site, metrics in want.items():
            for metric, v in metrics.items():
                if (metric, site) not in rec_values:
                    continue
                got = rec_values[(metric, site)][i]
                assert got == pytest.approx(
                    v, rel=rel, abs=rel * metrics["rms"] if metric == "mean" else 0
                ), (
                    site,
                    metric,
                    i,
                )


@pytest.mark.parametrize("micro", [1, 2])
def test_training_sites_equal_float64_references(micro: int) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rec = layerscope.Recorder(
        model, None, sites=("output", *ALL), optimizer=opt, metrics="mean,std,rms,max_abs,norm"
    )
    for step in (1, 2):
        refs = _train_step(model, opt, _batches(micro, seed=step), rec)
        rec.step(step)
        rec.flush()
        _check(rec.history[-1].values, *refs)
    rec.close()
    v = rec.history[-1].values
    assert {("ratio", "update"), ("log_ratio", "update"), ("norm", "param_grad"), ("norm", "weight")} <= set(
        v
    )
    assert ("ratio", "output") not in v and ("ratio", "param_grad") not in v  # a ratio needs a reference
    # Gradients of the loss w.r.t. a block's output are of the order 1/(B*T): not the activations.
    assert v[("rms", "grad_output")][0] < v[("rms", "output")][0]


def test_bf16_autocast_values_equal_float64_of_the_same_tensors() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    rec = layerscope.Recorder(model, None, sites=ALL, optimizer=opt, metrics="mean,std,rms,max_abs,norm")
    refs = _train_step(model, opt, _batches(2), rec, autocast=True)
    rec.step(1)
    rec.close()
    grads = refs[0]
    assert grads[0][0].dtype == torch.float32  # the block output (residual stream) stays float32 here
    _check(rec.history[-1].values, *refs)


def test_grad_scaler_values_are_unscaled_and_skipped_steps_left_out() -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    rec = layerscope.Recorder(
        model, None, sites=ALL, optimizer=opt, scaler=scaler, metrics="mean,std,rms,max_abs,norm"
    )
    refs = _train_step(model, opt, _batches(2), rec, scaler=scaler)
    rec.step(1)
    rec.flush()
    _check(rec.history[-1].values, *refs, rel=1e-5)  # the scale divides out in float32

    # Step 2 overflows: the scaler skips opt.step(), so the optimizer's hooks never run.
    ((x, y),) = _batches(1, seed=9)
    _, loss = model(x, y)
    (scaler.scale(loss) * float("inf")).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad()
    rec.step(2)
    rec.close()
    v = rec.history[-1].values
    assert rec.history[-1].step == 2
    assert not any(site in ("param_grad", "update", "weight") for _, site in v)  # left out
    assert ("rms", "grad_output") in v  # the backward ran: its (non-finite) gradients are recorded


def test_only_recorded_steps_snapshot_and_feed() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = layerscope.Recorder(model, None, sites=ALL, optimizer=opt, every=3)
    src = next(s for s in rec.sources if type(s).__name__ == "ParamSource")
    for step in range(1, 7):
        ((x, y),) = _batches(1, seed=step)
        model(x, y)[1].backward()
        opt.step()
        assert src._snap is None  # the copy lives from just before the step to just after it
        opt.zero_grad()
        rec.step(step)
    rec.close()
    assert [r.step for r in rec.history] == [3, 6]


def test_explicit_calls_without_optimizer_and_warning_when_none() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = layerscope.Recorder(model, None, sites=("update", "weight"))
    ((x, y),) = _batches(1)
    model(x, y)[1].backward()
    before = [p.detach().clone() for p in model.h[0].parameters()]
    rec.before_optimizer_step()
    opt.step()
    rec.after_optimizer_step()
    rec.step(1)
    after = list(model.h[0].parameters())
    want = _stats([a - b for a, b in zip(after, before)])["norm"]
    rec.flush()
    assert rec.history[-1].values[("norm", "update")][0] == pytest.approx(want, rel=1e-6)
    rec.close()

    rec = layerscope.Recorder(_model(), None, sites=("param_grad",))
    with pytest.warns(UserWarning, match="no optimizer step was seen"):
        rec.step(1)
    rec.close()


def test_training_site_hooks_never_sync(monkeypatch) -> None:
    """Every way a tensor reaches the host raises inside the backward hooks and the optimizer-step
    calls (the optimizer's own step runs unpatched: Adam itself reads its step count)."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu")
    rec = layerscope.Recorder(model, None, sites=ALL, scaler=scaler, metrics="all", flush_every=1000)
    ((x, y),) = _batches(1)

    def boom(*a, **k):
        raise AssertionError("host sync inside a hook")

    def patched():
        m = monkeypatch.context()
        ctx = m.__enter__()
        for name in ("item", "cpu", "tolist", "__bool__", "numpy", "__float__", "__int__", "__index__"):
            ctx.setattr(torch.Tensor, name, boom)
        return m

    scaled = scaler.scale(model(x, y)[1])
    m = patched()
    scaled.backward()  # the grad_output hooks
    rec.before_optimizer_step()  # param_grad, the update snapshot
    m.__exit__(None, None, None)
    opt.step()
    m = patched()
    rec.after_optimizer_step()  # update, weight
    m.__exit__(None, None, None)
    rec.step(1)
    rec.close()
    v = rec.history[0].values
    assert all(not math.isnan(v[("rms", s)][0]) for s in ALL)


def test_store_and_reader_see_the_new_sites(store_path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with layerscope.Recorder(model, store_path, run="r", sites=("output", "update"), optimizer=opt) as rec:
        for step in range(1, 4):
            ((x, y),) = _batches(1, seed=step)
            model(x, y)[1].backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)
    hm = layerscope.load(store_path, run="r", metric="ratio", site="update")
    assert hm.values.shape == (3, 3) and (hm.values > 0).all()
    with Store(store_path) as st:
        cfg = st.run_config("r")
    assert cfg["site_metrics"]["update"] == sorted(
        ["log_ratio", "max_abs", "mean", "norm", "ratio", "rms", "std"]
    )


def test_bad_update_sample_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="update_sample=0"):
        layerscope.Recorder(_model(), None, sites=("update",), update_sample=0)


def test_update_sample_bounds_the_snapshot_and_keeps_the_ratio_close() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    full = layerscope.Recorder(model, None, run="a", sites=("update",), optimizer=opt)
    part = layerscope.Recorder(model, None, run="b", sites=("update",), optimizer=opt, update_sample=2)
    ((x, y),) = _batches(1)
    model(x, y)[1].backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
    full.step(1)
    part.step(1)
    full.close()
    part.close()
    a, b = full.history[0].values, part.history[0].values
    for i in range(3):
        assert b[("ratio", "update")][i] == pytest.approx(a[("ratio", "update")][i], rel=0.2)
        assert b[("norm", "update")][i] < a[("norm", "update")][i]  # of the kept rows only
