"""sweep.compat on plain torch models: the model's own ignore lists, non-persistent buffers, old mask
buffers, legacy names and ties are accepted; everything else stays a mismatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import weight_norm

from layerscope.errors import CheckpointError
from layerscope.sweep.load import apply_state_dict, fit_state_dict


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("position_ids", torch.arange(4), persistent=False)


class Net(nn.Module):
    _keys_to_ignore_on_load_unexpected = [r"\.old_scale$"]  # noqa: RUF012 - as transformers declares them
    _keys_to_ignore_on_load_missing = [r"^head\.bias$"]  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(4, 3)


def _sd(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_the_models_ignore_lists_and_buffers_are_honoured() -> None:
    src, dst = Net(), Net()
    sd = _sd(src)
    sd["blocks.0.old_scale"] = torch.ones(1)  # the model's unexpected list
    del sd["head.bias"]  # the model's missing list: kept at its initial value
    sd["blocks.1.position_ids"] = torch.arange(4)  # a non-persistent buffer an older version saved
    sd["blocks.0.attn_mask.bias"] = torch.tril(torch.ones(8, 8)).view(1, 1, 8, 8)  # an old causal mask
    sd["blocks.0.masked_bias"] = torch.tensor(-1e4)
    before = dst.head.bias.clone()
    apply_state_dict(dst, sd, "ck")
    assert torch.equal(dst.blocks[1].proj.weight, src.blocks[1].proj.weight)
    assert torch.equal(dst.head.bias, before)


@pytest.mark.parametrize(
    "extra",
    [
        {"blocks.0.masked_bias": torch.ones(3)},  # not a scalar fill value
        {"blocks.0.proj.bias2": torch.ones(4)},
        {"blocks.0.x.bias": torch.ones(1, 1, 4, 5)},  # not square: no causal mask
        {"blocks.2.proj.weight": torch.ones(4, 4)},  # a deeper model's block
    ],
)
def test_other_extra_tensors_are_mismatches(extra: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CheckpointError, match=r"ck: does not fit the model: 1 not in the model"):
        fit_state_dict(Net(), {**_sd(Net()), **extra}, "ck")


def test_a_missing_weight_outside_the_ignore_list_is_refused() -> None:
    sd = _sd(Net())
    del sd["blocks.1.proj.bias"]
    with pytest.raises(CheckpointError, match=r"1 weights of Net missing \(first: 'blocks.1.proj.bias'\)"):
        fit_state_dict(Net(), sd, "ck")


def test_legacy_names() -> None:
    class Old(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.LayerNorm = nn.LayerNorm(4)
            self.conv = weight_norm(nn.Conv1d(2, 2, 3))

    src, dst = Old(), Old()
    with torch.no_grad():
        src.LayerNorm.weight.uniform_()
    sd = _sd(src)
    sd["LayerNorm.gamma"] = sd.pop("LayerNorm.weight")  # TF-era BERT
    sd["LayerNorm.beta"] = sd.pop("LayerNorm.bias")
    sd["conv.weight_g"] = sd.pop("conv.parametrizations.weight.original0")  # torch.nn.utils.weight_norm
    sd["conv.weight_v"] = sd.pop("conv.parametrizations.weight.original1")
    apply_state_dict(dst, sd, "ck")
    assert torch.equal(dst.LayerNorm.weight, src.LayerNorm.weight)
    assert torch.equal(dst.conv.parametrizations.weight.original1, src.conv.parametrizations.weight.original1)
    # a legacy name whose new name is in the file as well is not renamed: both are there, one is extra
    with pytest.raises(CheckpointError, match="not in the model"):
        fit_state_dict(Old(), {**_sd(src), "LayerNorm.gamma": torch.ones(4)}, "ck")


def test_tied_weights() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 4)
            self.out = nn.Linear(4, 5, bias=False)
            self.out.weight = self.emb.weight

    src = Tied()
    only_one = {"emb.weight": src.emb.weight.detach().clone()}
    dst = Tied()
    apply_state_dict(dst, only_one, "ck")  # saved once (safetensors.save_model, HF)
    assert torch.equal(dst.out.weight, src.emb.weight)
    both = src.state_dict()  # torch.save writes both names, one storage
    apply_state_dict(Tied(), both, "ck")
    differ = {"emb.weight": torch.zeros(5, 4), "out.weight": torch.ones(5, 4)}
    with pytest.raises(
        CheckpointError, match=r"'emb.weight' and 'out.weight' are one tensor in the model \(tied\)"
    ):
        fit_state_dict(Tied(), differ, "ck")
