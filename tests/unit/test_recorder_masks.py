"""Token masks and row sampling in the Recorder: only real tokens count, against float64."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import layerscope
from layerscope.errors import ConfigError, RunExistsError
from layerscope.store import Store
from layerscope.testing import tiny_gpt

METRICS = ["mean", "std", "rms", "max_abs", "kurtosis", "zero_frac", "dead_frac"]


class Padded(nn.Module):
    """The tiny GPT behind an HF-style forward(input_ids, attention_mask=None). Causal attention:
    with right padding the real tokens' activations do not depend on the pads at all."""

    def __init__(self) -> None:
        super().__init__()
        self.gpt = tiny_gpt(n_layer=3, n_embd=32, n_head=2, block_size=16, activation="relu")
        self.h = self.gpt.h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.gpt(input_ids)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (4, 16), generator=g)
    lengths = torch.tensor([16, 11, 5, 2])
    mask = (torch.arange(16)[None] < lengths[:, None]).long()  # HF's 0/1 int64 mask
    ids = torch.where(mask.bool(), ids, 0)  # pad id 0
    return ids, mask


def _outputs(model: Padded, fn) -> list[torch.Tensor]:
    outs: list[torch.Tensor] = []
    hs = [b.register_forward_hook(lambda m, a, o: outs.append(o.detach().clone())) for b in model.h]
    try:
        fn()
    finally:
        for h in hs:
            h.remove()
    return outs


def _ref(x: torch.Tensor, eps: float = 1e-6) -> dict[str, float]:
    f = x.double()
    m = f.mean()
    var = ((f - m) ** 2).mean()
    return {
        "mean": float(m),
        "std": float(var.sqrt()),
        "rms": float(f.pow(2).mean().sqrt()),
        "max_abs": float(f.abs().max()),
        "kurtosis": float(((f - m) ** 4).mean() / var**2),
        "zero_frac": float((f.abs() <= eps).double().mean()),
        "dead_frac": float((f.reshape(-1, f.shape[-1]).abs().amax(0) <= eps).double().mean()),
    }


def _check(values: dict, refs: list[dict[str, float]], site: str = "output") -> None:
    for metric in METRICS:
        for j, ref in enumerate(refs):
            got = values[(metric, site)][j]
            assert got == pytest.approx(ref[metric], rel=1e-5, abs=1e-7 * ref["rms"]), (metric, j)


@pytest.mark.parametrize("how", ["name", "positional", "callable", "set_mask"])
def test_only_real_tokens_count(how: str) -> None:
    model = Padded()
    ids, mask = _batch()
    outs = _outputs(model, lambda: model(ids, mask))
    real = mask.bool()
    refs = [_ref(o[real]) for o in outs]
    unmasked = [_ref(o) for o in outs]
    assert abs(refs[0]["rms"] - unmasked[0]["rms"]) > 1e-3 * refs[0]["rms"]  # the pads do matter

    opts = {
        "name": {"mask": "attention_mask"},
        "positional": {"mask": "attention_mask"},
        "callable": {"mask": lambda args, kwargs: kwargs["attention_mask"]},
        "set_mask": {},
    }[how]
    rec = layerscope.Recorder(model, None, run="r", metrics=METRICS, **opts)
    if how == "positional":
        model(ids, mask)  # found by the forward's signature
    elif how == "set_mask":
        with rec.set_mask(mask):
            model(ids)
    else:
        model(input_ids=ids, attention_mask=mask)
    rec.step(1)
    rec.close()
    _check(rec.history[0].values, refs)


def test_set_mask_scope_ends_with_the_block() -> None:
    model = Padded()
    ids, mask = _batch()
    rec = layerscope.Recorder(model, None, run="r", metrics=["rms"], every=1)
    with rec.set_mask(mask):
        pass
    model(ids)  # outside the scope: every position counts
    rec.step(1)
    rec.close()
    outs = _outputs(model, lambda: model(ids))
    assert rec.history[0].values[("rms", "output")][0] == pytest.approx(_ref(outs[0])["rms"], rel=1e-5)


def test_a_batch_without_a_mask_counts_every_position() -> None:
    model = Padded()
    ids, _ = _batch()
    outs = _outputs(model, lambda: model(ids))
    rec = layerscope.Recorder(model, None, run="r", metrics=METRICS, mask="attention_mask")
    model(ids)  # no attention_mask in this batch (packed sequences)
    rec.step(1)
    rec.close()
    _check(rec.history[0].values, [_ref(o) for o in outs])


def test_activations_that_do_not_start_with_the_tokens_are_recorded_unmasked_with_one_warning() -> None:
    class Pooling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])

        def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            x = self.layers[0](x)  # (B, T, 8): masked
            return self.layers[1](x.mean(1))  # (B, 8): pooled, no token axis

    m = Pooling()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    rec = layerscope.Recorder(m, None, run="r", metrics=["rms"], mask="attention_mask")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m(x, attention_mask=mask)
        m(x, attention_mask=mask)
    rec.step(1)
    rec.close()
    msgs = [str(x.message) for x in w if "layerscope" in str(x.message)]
    assert len(msgs) == 1 and "layers.1" in msgs[0] and "unmasked" in msgs[0]
    pooled = m.layers[1](m.layers[0](x).mean(1)).detach()
    assert rec.history[0].values[("rms", "output")][1] == pytest.approx(
        float(pooled.pow(2).mean().sqrt()), rel=1e-5
    )


def test_masked_probe_and_the_run_config(store_path) -> None:
    model = Padded()
    ids, mask = _batch()
    model.eval()
    outs = _outputs(model, lambda: model(ids, attention_mask=mask))
    model.train()
    probe = {"input_ids": ids, "attention_mask": mask}
    with layerscope.Recorder(
        model, store_path, run="r", metrics=METRICS, probe=probe, mask="attention_mask"
    ) as rec:
        model(ids)  # a training forward: not what gets recorded
        rec.step(1)
    hm = {m: layerscope.load(store_path, metric=m).values[0] for m in METRICS}
    real = mask.bool()
    for j, o in enumerate(outs):
        ref = _ref(o[real])
        for metric in METRICS:
            assert hm[metric][j] == pytest.approx(ref[metric], rel=1e-5, abs=1e-7 * ref["rms"]), metric
    with Store(store_path, readonly=True) as st:
        cfg = st.run_config("r")
    assert cfg["mask"] == "attention_mask" and cfg["sample"] is None and cfg["stats_backend"] == "auto"


def test_sample_keeps_strided_token_rows_and_is_stored(store_path) -> None:
    model = Padded()
    ids, _ = _batch()
    acts: list[torch.Tensor] = []
    hs = [b.mlp.act.register_forward_hook(lambda m, a, o: acts.append(o.detach())) for b in model.h]
    with layerscope.Recorder(
        model,
        store_path,
        run="r",
        metrics=["rms", "max_abs"],
        sites=["output", "mlp_act"],
        sample={"mlp_act": 10},
    ) as rec:
        model(ids)
        rec.step(1)
    for h in hs:
        h.remove()
    step = (4 * 16) // 10
    rms = layerscope.load(store_path, metric="rms", site="mlp_act").values[0]
    for j, a in enumerate(acts):
        kept = a.reshape(-1, a.shape[-1])[::step].double()
        assert rms[j] == pytest.approx(float(kept.pow(2).mean().sqrt()), rel=1e-5)
    with Store(store_path, readonly=True) as st:
        assert st.run_config("r")["sample"] == {"mlp_act": 10}


def test_bad_mask_and_sample_arguments() -> None:
    model = Padded()
    with pytest.raises(ConfigError, match="mask=3"):
        layerscope.Recorder(model, None, mask=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sample=0"):
        layerscope.Recorder(model, None, sample=0)
    with pytest.raises(ConfigError, match="not recorded"):
        layerscope.Recorder(model, None, sample={"mlp_act": 8})
    with pytest.raises(ConfigError, match="stats_backend"):
        layerscope.Recorder(model, None, stats_backend="triton")
    rec = layerscope.Recorder(model, None)
    with pytest.raises(ValueError, match="batch, tokens"):
        rec.set_mask(torch.ones(2, 3, 4))
    rec.close()


def test_the_mask_belongs_to_its_forward_only() -> None:
    model = Padded()
    ids, mask = _batch()
    x = model.gpt.wte(ids).detach()
    rec = layerscope.Recorder(model, None, run="r", metrics=["rms"], mask="attention_mask")
    model(ids, attention_mask=mask)
    rec.step(1)
    model.h[0](x)  # the block alone, after the masked forward: every position counts
    rec.step(2)
    rec.close()
    want = float(model.h[0](x).detach().double().pow(2).mean().sqrt())
    assert rec.history[1].values[("rms", "output")][0] == pytest.approx(want, rel=1e-5)


def test_sample_per_site_with_sites_all() -> None:
    """sites="all" is expanded before sample= is applied, so {site: k} reaches that site's slots."""
    model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8)
    rec = layerscope.Recorder(model, None, sites="all", sample={"mlp_act": 4})
    assert "mlp_act" in rec.config.sites and "all" not in rec.config.sites
    assert {s.hook.site: s.acc.sample for s in rec.slots} == {
        site: 4 if site == "mlp_act" else None for site in rec.config.sites
    }
    rec.close()
    with pytest.raises(ConfigError, match="not recorded"):
        layerscope.Recorder(model, None, sites="all", sample={"no_such_site": 4})


@pytest.mark.parametrize("change", [{"mask": "attention_mask"}, {"sample": 4}])
def test_another_mask_or_sample_is_another_recording(store_path, change: dict) -> None:
    """resume=None (the default) continues only the same recording: masked or sampled values are
    not comparable with the run's, so a restart that changes them is refused."""
    model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8)
    layerscope.Recorder(model, store_path, run="a").close()
    with pytest.raises(RunExistsError, match="holds another recording"):
        layerscope.Recorder(model, store_path, run="a", **change)
    layerscope.Recorder(model, store_path, run="a", stats_backend="eager").close()  # the same numbers
