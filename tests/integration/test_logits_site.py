"""Site ``logits``: max logit, mean log Z and mean entropy of the LM head's output, against float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope
from layerscope.capture import logits as logits_mod

transformers = pytest.importorskip("transformers")


def _reference(logits: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    x = logits.double().reshape(-1, logits.shape[-1])[valid.reshape(-1).bool()]
    lse = torch.logsumexp(x, -1)
    p = torch.softmax(x, -1)
    ent = -(torch.special.xlogy(p, p)).sum(-1)
    return {"max_logit": x.max().item(), "log_z": lse.mean().item(), "entropy": ent.mean().item()}


def test_llama_logits_equal_reference_with_padding() -> None:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48, vocab_size=103
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    ids = torch.randint(0, 103, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    rec = layerscope.Recorder(
        model, None, sites=("output", "logits"), every=1, train_only=False, mask="attention_mask"
    )
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    rec.step(1)
    rec.close()
    vals = rec.history[-1].values
    want = _reference(out.logits, mask)
    for m, v in want.items():
        col = np.asarray(vals[(m, "logits")])
        assert np.isnan(col[:-1]).all()  # stored in the last layer's column only
        assert col[-1] == pytest.approx(v, rel=1e-5), m


def test_tiny_gpt_logits_row_subsample(monkeypatch: pytest.MonkeyPatch) -> None:
    from layerscope.testing import tiny_gpt

    monkeypatch.setattr(logits_mod, "MAX_ROWS", 7)
    model = tiny_gpt(n_layer=2, n_embd=32, n_head=4, block_size=16)
    x = torch.randint(0, 60, (2, 16))
    rec = layerscope.Recorder(model, None, sites=("logits",), every=1)
    logits, loss = model(x, x)
    loss.backward()
    rec.step(1)
    rec.close()
    idx = logits_mod.row_index(32)
    assert idx is not None and len(idx) == 7 and int(idx[-1]) == 31
    valid = torch.zeros(32, dtype=torch.bool)
    valid[idx] = True
    want = _reference(logits.detach(), valid)
    vals = rec.history[-1].values
    for m, v in want.items():
        assert np.asarray(vals[(m, "logits")])[-1] == pytest.approx(v, rel=1e-5), m
