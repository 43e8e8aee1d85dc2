"""CUDA paths: hooks never sync (sync debug mode "error"), bf16 activations. Skipped without CUDA."""

from __future__ import annotations

import math

import pytest
import torch

import layerscope

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _model():
    from layerscope.testing import tiny_gpt

    return tiny_gpt(n_layer=4, n_embd=64, n_head=4, block_size=32).cuda()


def test_no_host_sync_inside_hooks_on_cuda(tmp_path) -> None:
    model = _model()
    x = torch.randint(0, 256, (8, 32), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rec = layerscope.Recorder(model, tmp_path / "r.db", run="cuda", metrics="all", flush_every=1000)
    model(x)  # warm-up outside the check (first-call allocations, edge tensors)
    rec.step(0)
    for step in range(1, 4):
        torch.cuda.set_sync_debug_mode("error")
        try:
            logits = model(x)  # every hook runs in here
        finally:
            torch.cuda.set_sync_debug_mode("default")
        logits.float().mean().backward()
        opt.step()
        opt.zero_grad()
        rec.step(step)
    rec.close()
    hm = layerscope.load(tmp_path / "r.db", metric="rms")
    assert hm.steps == [0, 1, 2, 3] and not math.isnan(hm.values[-1, 0])


def test_bf16_autocast_statistics_in_float32_or_better(tmp_path) -> None:
    model = _model()
    x = torch.randint(0, 256, (8, 32), device="cuda")
    outs = []
    hs = [b.register_forward_hook(lambda m, a, o: outs.append(o.detach())) for b in model.h]
    with layerscope.Recorder(model, tmp_path / "r.db", run="bf16", metrics=["mean", "rms"]) as rec:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x)
        rec.step(1)
    for h in hs:
        h.remove()
    rms = layerscope.load(tmp_path / "r.db", metric="rms").values[0]
    for j, o in enumerate(outs):
        want = float(o.double().pow(2).mean().sqrt())
        assert rms[j] == pytest.approx(want, rel=1e-5)
