"""Layer discovery, names, selections, sites and model specs on plain PyTorch models (no transformers)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import layerscope
from layerscope.capture import (
    SITES,
    discover_layers,
    extract_tensor,
    find_stacks,
    load_model_spec,
    matches,
    normalize_name,
    resolve_site,
    resolve_sites,
    site_map,
    unwrap,
)
from layerscope.errors import ConfigError, DiscoveryError, NotFoundError
from layerscope.testing import tiny_gpt


def _sites(layer) -> dict[str, tuple[str, str] | None]:
    return {s: (h.module_name, h.kind) if h else None for s, h in site_map(layer).items()}


# -- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "wrapped,plain",
    [
        ("module.h.3.mlp", "h.3.mlp"),  # DDP / DataParallel
        ("_orig_mod.h.3", "h.3"),  # torch.compile
        ("module._orig_mod.transformer.h.0", "transformer.h.0"),  # compile inside DDP
        ("_orig_mod.module.h.0", "h.0"),  # DDP inside compile
        ("_fsdp_wrapped_module.layers.0._fsdp_wrapped_module.mlp", "layers.0.mlp"),  # FSDP1, nested wraps
        ("layers.0._checkpoint_wrapped_module.mlp.act", "layers.0.mlp.act"),  # activation checkpointing
        ("h.0._orig_mod.attn", "h.0.attn"),  # a compiled sub-module
        ("_forward_module.module.h.1", "h.1"),  # Lightning Fabric around DDP
        ("encoder.module.proj", "encoder.module.proj"),  # a user's own sub-module called "module" stays
        ("", ""),
    ],
)
def test_normalize_name_strips_wrappers_only(wrapped: str, plain: str) -> None:
    assert normalize_name(wrapped) == plain


_component = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"module", "_orig_mod"}
)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(_component, min_size=1, max_size=6), data=st.data())
def test_any_wrapping_normalises_to_the_plain_name(parts: list[str], data: st.DataObject) -> None:
    plain = ".".join(parts)
    outer = data.draw(
        st.lists(
            st.sampled_from(["module", "_orig_mod", "_forward_module", "_fsdp_wrapped_module"]), max_size=3
        )
    )
    wrapped: list[str] = list(outer)
    for p in parts:  # inner wrappers can sit before any component
        wrapped += data.draw(
            st.lists(
                st.sampled_from(["_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"]),
                max_size=2,
            )
        )
        wrapped.append(p)
    assert normalize_name(".".join(wrapped)) == plain
    assert normalize_name(plain) == plain  # idempotent


def test_unwrap_sees_through_wrappers() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    net = tiny_gpt(n_layer=2, n_embd=16, n_head=2)
    assert unwrap(nn.DataParallel(net)) is net
    assert unwrap(torch.compile(net, backend="eager")) is net
    assert unwrap(checkpoint_wrapper(net)) is net
    assert unwrap(torch.compile(nn.DataParallel(net), backend="eager")) is net
    assert unwrap(net) is net


# -- stacks -----------------------------------------------------------------------------------------
def test_tiny_gpt_stack_indices_and_depths_are_stored(tiny_model) -> None:
    layers = discover_layers(tiny_model)
    assert [(la.index, la.name, la.stack, la.depth) for la in layers] == [
        (i + 1, f"h.{i}", "h", i + 1) for i in range(4)
    ]
    assert all(la.module is tiny_model.h[i] for i, la in enumerate(layers))


def test_mlp_sequential_each_child_with_parameters_is_a_layer() -> None:
    mlp = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU(), nn.Dropout(0.1), nn.Linear(16, 2)
    )
    layers = discover_layers(mlp)
    assert [(la.index, la.name, la.depth) for la in layers] == [(1, "0", 1), (2, "2", 2), (3, "5", 3)]
    assert [la.module for la in layers] == [mlp[0], mlp[2], mlp[5]]


def test_small_cnn_sequential() -> None:
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    assert [la.name for la in discover_layers(cnn)] == ["0", "3", "4", "7"]


def test_features_and_classifier_sequentials_are_two_stacks() -> None:
    class AlexNetLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
            self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

    layers = discover_layers(AlexNetLike())
    assert [(la.index, la.stack, la.depth, la.name) for la in layers] == [
        (1, "features", 1, "features.0"),
        (2, "features", 2, "features.2"),
        (3, "classifier", 1, "classifier.1"),
        (4, "classifier", 2, "classifier.3"),
    ]


class _Block(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x + self.attn(x))


def test_encoder_and_decoder_of_different_depths_are_both_stacks() -> None:
    class EncDec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.encoder = nn.ModuleList(_Block() for _ in range(2))
            self.decoder = nn.ModuleList(_Block() for _ in range(3))

    layers = discover_layers(EncDec())
    assert [(la.index, la.stack, la.depth) for la in layers] == [
        (1, "encoder", 1),
        (2, "encoder", 2),
        (3, "decoder", 1),
        (4, "decoder", 2),
        (5, "decoder", 3),
    ]


def test_nested_lists_longer_than_the_stack_do_not_win() -> None:
    """An MoE layer's 8 experts or a per-head list inside attention outnumber 2 layers; the layers win."""

    class Expert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1, self.w2 = nn.Linear(8, 16), nn.Linear(16, 8)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.key, self.query, self.value = nn.Linear(8, 4), nn.Linear(8, 4), nn.Linear(8, 4)

    class MoEBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList(Head() for _ in range(6))
            self.experts = nn.ModuleList(Expert() for _ in range(8))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(MoEBlock() for _ in range(2))

    assert [(name, len(ch)) for name, ch in find_stacks(Model())] == [("layers", 2)]


def test_longest_leaf_list_wins_and_ties_go_to_the_outermost() -> None:
    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norms = nn.ModuleList(nn.LayerNorm(8) for _ in range(2))
            self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

    assert [la.name for la in discover_layers(MLP())] == ["layers.0", "layers.1", "layers.2"]

    class Tie(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(
                nn.Identity(), nn.ModuleDict({"x": nn.ModuleList(nn.Linear(2, 2) for _ in range(2))})
            )
            self.blocks = nn.ModuleList(nn.Linear(2, 2) for _ in range(2))

    assert [name for name, _ in find_stacks(Tie())] == ["blocks"]  # depth 1 beats inner.1.x (depth 3)


def test_resnet_like_stages_are_stacks_in_order() -> None:
    class Basic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()

    class ResNetLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.layer1 = nn.Sequential(Basic(), Basic())
            self.layer2 = nn.Sequential(Basic(), Basic(), Basic())
            self.fc = nn.Linear(4, 10)

    layers = discover_layers(ResNetLike())
    assert [(la.index, la.name, la.depth) for la in layers] == [
        (1, "layer1.0", 1),
        (2, "layer1.1", 2),
        (3, "layer2.0", 1),
        (4, "layer2.1", 2),
        (5, "layer2.2", 3),
    ]
    assert site_map(layers[0])["mlp_act"] is None  # a conv block has no MLP: no false positive


def test_a_one_layer_model_is_its_block() -> None:
    model = tiny_gpt(n_layer=1, n_embd=16, n_head=2)
    (layer,) = discover_layers(model)
    assert (layer.index, layer.name, layer.stack, layer.depth) == (1, "h.0", "h", 1)
    assert resolve_site(layer, "mlp_act").module is model.h[0].mlp.act


@pytest.mark.parametrize("model", [nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Identity())])
def test_no_stack_is_a_clear_error_that_suggests_layers(model: nn.Module) -> None:
    with pytest.raises(DiscoveryError, match=r"layers=.*--layers GLOB"):
        discover_layers(model)


def test_a_small_head_is_not_mistaken_for_the_layers() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(64, 64)  # most parameters, no stack
            self.head = nn.Sequential(nn.Linear(64, 2), nn.Tanh())

    with pytest.raises(DiscoveryError, match="body, head"):
        discover_layers(Odd())


# -- wrappers give identical names ------------------------------------------------------------------
def _names_and_sites(model: nn.Module) -> list[tuple]:
    return [
        (la.index, la.name, la.stack, la.depth, tuple(sorted((_sites(la) or {}).items())))
        for la in discover_layers(model)
    ]


def test_wrapped_models_give_identical_layer_and_site_names() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    plain = _names_and_sites(tiny_gpt(n_layer=3, n_embd=16, n_head=2))
    assert _names_and_sites(torch.compile(tiny_gpt(n_layer=3, n_embd=16, n_head=2), backend="eager")) == plain
    assert _names_and_sites(nn.DataParallel(tiny_gpt(n_layer=3, n_embd=16, n_head=2))) == plain

    per_block = tiny_gpt(n_layer=3, n_embd=16, n_head=2)
    for i, blk in enumerate(per_block.h):  # checkpoint one block, compile another
        per_block.h[i] = checkpoint_wrapper(blk) if i % 2 == 0 else torch.compile(blk, backend="eager")
    assert _names_and_sites(per_block) == plain
    layer = discover_layers(per_block)[0]
    assert layer.module is per_block.h[0]  # the wrapper is hooked: one call per forward
    assert resolve_site(layer, "mlp_act").module is unwrap(per_block.h[0]).mlp.act


# -- selections ---------------------------------------------------------------------------------------
def test_glob_star_is_one_path_component(tiny_model) -> None:
    assert [la.name for la in discover_layers(tiny_model, "h.*")] == ["h.0", "h.1", "h.2", "h.3"]
    assert [la.name for la in discover_layers(tiny_model, "h.*.mlp.act")] == [
        f"h.{i}.mlp.act" for i in range(4)
    ]
    assert [la.name for la in discover_layers(tiny_model, "**.c_fc")] == [f"h.{i}.mlp.c_fc" for i in range(4)]
    assert [la.name for la in discover_layers(tiny_model, "h.[02]")] == ["h.0", "h.2"]
    assert matches("h.?", "h.1", tiny_model) and not matches("h.?", "h.10", tiny_model)


def test_one_selection_type_list_and_predicate(tiny_model) -> None:
    by_list = discover_layers(tiny_model, ["h.3", "h.1.attn", "ln_f"])
    assert [(la.index, la.name, la.depth) for la in by_list] == [
        (1, "h.1.attn", 1),
        (2, "h.3", 2),
        (3, "ln_f", 3),
    ]
    by_pred = discover_layers(
        tiny_model, lambda name, m: isinstance(m, nn.LayerNorm) and name.startswith("h.")
    )
    assert [la.name for la in by_pred] == [f"h.{i}.ln_{j}" for i in range(4) for j in (1, 2)]
    # the selection applies to the names a wrapped model shares with the plain one
    assert [la.name for la in discover_layers(nn.DataParallel(tiny_model), "h.*.mlp")] == [
        f"h.{i}.mlp" for i in range(4)
    ]


def test_bad_selections(tiny_model) -> None:
    with pytest.raises(
        DiscoveryError, match=r"layers='blocks\.\*' matched no module of TinyGPT.*wte, wpe, h"
    ):
        discover_layers(tiny_model, "blocks.*")
    with pytest.raises(ConfigError, match="selects nothing"):
        discover_layers(tiny_model, " ")
    with pytest.raises(ConfigError, match="layers=3 is a int"):
        discover_layers(tiny_model, 3)  # type: ignore[arg-type]


# -- sites ------------------------------------------------------------------------------------------
def test_tiny_gpt_sites_are_the_expected_modules() -> None:
    model = tiny_gpt(n_layer=2, n_embd=16, n_head=2)
    layer = discover_layers(model)[1]
    blk = model.h[1]
    expect = {
        "output": (blk, "output"),
        "mlp_act": (blk.mlp.act, "output"),
        "attn_out": (blk.attn, "output"),
        "mlp_out": (blk.mlp, "output"),
        "mlp_down_in": (blk.mlp.c_proj, "input"),
    }
    for site, (module, kind) in expect.items():
        h = resolve_site(layer, site)
        assert (h.module, h.kind) == (module, kind), site
    assert site_map(layer)["mlp_act"].module_name == "h.1.mlp.act"
    assert set(SITES) == set(expect)  # the forward sites; the training sites are apart
    for site in ("grad_output", "param_grad", "update", "weight"):  # taken at the layer itself
        assert resolve_site(layer, site).module is blk


class _FunctionalMLP(nn.Module):
    """nanoGPT-style: the nonlinearity is a function, so mlp_act is the down projection's input."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)))


class _GatedMLP(nn.Module):
    """A Llama fork's SwiGLU with functional silu: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.w1, self.w3, self.w2 = (
            nn.Linear(d, 2 * d, bias=False),
            nn.Linear(d, 2 * d, bias=False),
            nn.Linear(2 * d, d),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class _Attn(nn.Module):
    """An attention whose gate uses an activation module: it must never be taken for mlp_act."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.qkv, self.proj, self.gate_act = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(F.scaled_dot_product_attention(q, k, self.gate_act(v)))


class _AnyBlock(nn.Module):
    def __init__(self, mlp: nn.Module | None, mlp_name: str = "mlp") -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.attn = _Attn()
        self.mlp_name = mlp_name
        if mlp is not None:
            self.add_module(mlp_name, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln(x))
        mlp = getattr(self, self.mlp_name, None)
        return x + mlp(x) if mlp is not None else x


class _Stack(nn.Module):
    def __init__(self, make) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(make() for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


def test_functional_nonlinearity_records_the_down_projection_input() -> None:
    model = _Stack(lambda: _AnyBlock(_FunctionalMLP()))
    s = _sites(discover_layers(model)[0])
    assert s["mlp_act"] == ("blocks.0.mlp.c_proj", "input") == s["mlp_down_in"]
    assert s["mlp_out"] == ("blocks.0.mlp", "output") and s["attn_out"] == ("blocks.0.attn", "output")


def test_gated_mlp_with_functional_silu() -> None:
    model = _Stack(lambda: _AnyBlock(_GatedMLP(), mlp_name="feed_forward"))
    s = _sites(discover_layers(model)[1])
    assert s["mlp_act"] == ("blocks.1.feed_forward.w2", "input") == s["mlp_down_in"]
    assert s["mlp_out"] == ("blocks.1.feed_forward", "output")


def test_an_activation_inside_attention_is_not_mlp_act() -> None:
    no_mlp = _Stack(lambda: _AnyBlock(None))
    s = _sites(discover_layers(no_mlp)[0])
    assert s["mlp_act"] is None and s["mlp_out"] is None and s["mlp_down_in"] is None
    assert s["attn_out"] == ("blocks.0.attn", "output")
    # An MLP under a name we do not know is found by its structure, and its own activation is used.
    odd = _Stack(
        lambda: _AnyBlock(nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8)), mlp_name="transition")
    )
    s = _sites(discover_layers(odd)[0])
    assert s["mlp_act"] == ("blocks.0.transition.1", "output")
    assert s["mlp_down_in"] == ("blocks.0.transition.2", "input") and s["mlp_out"] == (
        "blocks.0.transition",
        "output",
    )
    with pytest.raises(ConfigError, match=r"site 'mlp_act' exists in none of the 2 layers.*layers="):
        resolve_sites(discover_layers(no_mlp), ["output", "mlp_act"])


def test_karpathy_style_block() -> None:
    """gpt.py from "Let's build GPT": heads in a ModuleList inside `sa`, the MLP as `ffwd.net`."""

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.key, self.query, self.value = (nn.Linear(8, 4, bias=False) for _ in range(3))

    class MultiHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList(Head() for _ in range(4))
            self.proj = nn.Linear(16, 8)

    class FeedForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8), nn.Dropout(0.0))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sa, self.ffwd = MultiHead(), FeedForward()
            self.ln1, self.ln2 = nn.LayerNorm(8), nn.LayerNorm(8)

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(*(Block() for _ in range(3)))

    layers = discover_layers(GPT())
    assert [la.name for la in layers] == ["blocks.0", "blocks.1", "blocks.2"]
    assert _sites(layers[2]) == {
        "output": ("blocks.2", "output"),
        "mlp_act": ("blocks.2.ffwd.net.1", "output"),
        "attn_out": ("blocks.2.sa", "output"),
        "mlp_out": ("blocks.2.ffwd", "output"),
        "mlp_down_in": ("blocks.2.ffwd.net.2", "input"),
    }


def test_torch_transformer_encoder_layer() -> None:
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), num_layers=3, enable_nested_tensor=False
    )
    layers = discover_layers(enc)
    assert [la.name for la in layers] == ["layers.0", "layers.1", "layers.2"]
    s = _sites(layers[0])  # its activation is a function: relu between linear1 and linear2
    assert s["mlp_act"] == ("layers.0.linear2", "input") and s["mlp_out"] == ("layers.0.linear2", "output")
    assert s["attn_out"] == ("layers.0.self_attn", "output")


def test_unknown_site_is_a_config_error(tiny_model) -> None:
    with pytest.raises(ConfigError, match="unknown site 'resid'.*mlp_act"):
        resolve_sites(discover_layers(tiny_model), "output,resid")


# -- outputs that are not a tensor --------------------------------------------------------------------
def test_extract_tensor_finds_the_hidden_state() -> None:
    from collections import OrderedDict

    h = torch.randn(2, 3)
    assert extract_tensor(h) is h
    assert extract_tensor((h, None, torch.zeros(1))) is h
    assert extract_tensor((None, (h,), torch.zeros(1))) is h  # nested, depth first
    assert extract_tensor({"attentions": None, "logits": torch.zeros(1), "last_hidden_state": h}) is h

    class ModelOutputLike(OrderedDict):  # transformers' ModelOutput is an OrderedDict
        pass

    assert extract_tensor(ModelOutputLike(past_key_values=None, hidden_states=h)) is h
    assert extract_tensor((None, "text")) is None and extract_tensor(None) is None


# -- recording through the sites ------------------------------------------------------------------------
def test_mlp_act_zero_frac_on_a_relu_model_is_the_true_fraction_of_zeros() -> None:
    for model in (
        tiny_gpt(n_layer=3, n_embd=16, n_head=2, activation="relu", seed=3),
        _Stack(lambda: _AnyBlock(_FunctionalMLP())),
    ):  # act module / down-projection input
        layers = discover_layers(model)
        acts: list[torch.Tensor] = []
        refs = []
        for h in resolve_sites(layers, ["mlp_act"]):
            if h.kind == "input":
                refs.append(
                    h.module.register_forward_pre_hook(lambda m, a: acts.append(a[0].detach().clone()))
                )
            else:
                refs.append(h.module.register_forward_hook(lambda m, a, o: acts.append(o.detach().clone())))
        x = (
            torch.randint(0, 256, (4, 8))
            if isinstance(model, layerscope.testing.TinyGPT)
            else torch.randn(4, 5, 8)
        )
        with layerscope.Recorder(model, None, metrics=["zero_frac"], sites=["mlp_act"]) as rec:
            model(x)
            rec.step(1)
        for r in refs:
            r.remove()
        zf = rec.history[0].values[("zero_frac", "mlp_act")]
        truth = [float((a == 0).double().mean()) for a in acts]
        assert min(truth) > 0.2 and max(truth) < 0.8  # a ReLU zeroes about half: the check has teeth
        assert zf == pytest.approx(truth, abs=1e-12)


class _InplaceBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


def test_inplace_activation_does_not_corrupt_the_statistics_of_its_input() -> None:
    """fc1's output is overwritten by ReLU(inplace=True) right after the hook: statistics taken in
    the hook (not later) see the negative values."""
    model = nn.Sequential(*(_InplaceBlock() for _ in range(2)))
    x = torch.randn(16, 8)
    with torch.no_grad():
        pre = [model[0].fc1(x)]
        pre.append(model[1].fc1(model[0](x)))
    with layerscope.Recorder(model, None, metrics=["min", "zero_frac", "mean"], layers="*.fc1") as rec:
        model(x)
        rec.step(1)
    vals = rec.history[0].values
    assert vals[("min", "output")] == pytest.approx([float(p.min()) for p in pre], rel=1e-6)
    assert max(vals[("zero_frac", "output")]) == 0.0 and max(vals[("min", "output")]) < 0


def test_a_module_called_twice_in_a_step_accumulates() -> None:
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(_Block() for _ in range(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(2):  # weight-tied depth: every block runs twice
                for b in self.blocks:
                    x = b(x)
            return x

    model = Looped()
    outs: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    hs = [
        b.register_forward_hook(lambda m, a, o, i=i: outs[i].append(o.detach()))
        for i, b in enumerate(model.blocks)
    ]
    with layerscope.Recorder(model, None, metrics=["mean", "rms"]) as rec:
        model(torch.randn(3, 8))
        rec.step(1)
    for h in hs:
        h.remove()
    vals = rec.history[0].values
    for i in (0, 1):
        both = torch.cat([o.double().reshape(-1) for o in outs[i]])
        assert len(outs[i]) == 2
        assert vals[("mean", "output")][i] == pytest.approx(float(both.mean()), rel=1e-6)
        assert vals[("rms", "output")][i] == pytest.approx(float(both.pow(2).mean().sqrt()), rel=1e-6)
        last_only = float(outs[i][-1].double().pow(2).mean().sqrt())
        assert vals[("rms", "output")][i] != pytest.approx(last_only, rel=1e-3)  # both calls count


# -- model specs -------------------------------------------------------------------------------------
def test_load_model_spec_module_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = load_model_spec("layerscope.testing:tiny_gpt", {"n_layer": 3, "n_embd": 16, "n_head": 2})
    assert len(discover_layers(m)) == 3
    assert isinstance(load_model_spec("layerscope.testing.model:TinyGPT"), layerscope.testing.TinyGPT)

    (tmp_path / "helper.py").write_text("WIDTH = 4\n")
    (tmp_path / "mymodel.py").write_text(
        textwrap.dedent("""
        import torch.nn as nn
        from helper import WIDTH  # a sibling module: the file's folder is importable

        def build(depth=2):
            return nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(depth)])

        class Factory:
            @staticmethod
            def make():
                return build(3)

        INSTANCE = build(1)
        NOT_CALLABLE = 3
    """)
    )
    assert len(load_model_spec(f"{tmp_path}/mymodel.py:build")) == 2
    assert len(load_model_spec(f"{tmp_path}/mymodel.py:Factory.make")) == 3
    assert len(load_model_spec(f"{tmp_path}/mymodel.py:INSTANCE")) == 1
    monkeypatch.chdir(
        tmp_path
    )  # the current folder is searched, as for `layerscope layers --model mymodel:build`
    monkeypatch.delitem(sys.modules, "mymodel", raising=False)
    assert len(load_model_spec("mymodel:build", {"depth": 4})) == 4
    assert str(tmp_path) not in sys.path  # the folder is only on sys.path for the import and the call


@pytest.mark.parametrize(
    "spec,kwargs,error,match",
    [
        ("layerscope.testing", None, ConfigError, r"'layerscope.testing' has no ':'"),
        (":tiny_gpt", None, ConfigError, r"not of the form MODULE:FACTORY"),
        ("layerscope.testing:", None, ConfigError, r"not of the form MODULE:FACTORY"),
        ("no_such_pkg_xyz.models:build", None, NotFoundError, r"no module named 'no_such_pkg_xyz'"),
        (
            "layerscope.testing:tiny_gtp",
            None,
            NotFoundError,
            r"has no attribute 'tiny_gtp'; did you mean layerscope.testing:tiny_gpt\? callables defined there: ",
        ),
        ("{d}/mymodel.py:needs_args", None, ConfigError, r"the factory needs width"),
        ("{d}/mymodel.py:build", {"depht": 2}, ConfigError, r"takes no argument depht"),
        (
            "{d}/mymodel.py:raises",
            None,
            ConfigError,
            r"calling raises\(\) raised RuntimeError: out of memory",
        ),
        ("{d}/mymodel.py:returns_tuple", None, ConfigError, r"returned a tuple, not a torch.nn.Module"),
        ("{d}/mymodel.py:NOT_CALLABLE", None, ConfigError, r"names a int, not a callable"),
        ("{d}/broken.py:build", None, ConfigError, r"importing .*broken.py' raised ZeroDivisionError"),
        (
            "{d}/missing_dep.py:build",
            None,
            ConfigError,
            r"raised ModuleNotFoundError: No module named 'not_installed_xyz'",
        ),
        ("{d}/nope.py:build", None, NotFoundError, r"file '.*nope.py' does not exist"),
    ],
)
def test_load_model_spec_errors_name_the_value(
    tmp_path: Path, spec: str, kwargs, error: type, match: str
) -> None:
    (tmp_path / "mymodel.py").write_text(
        textwrap.dedent("""
        import torch.nn as nn
        NOT_CALLABLE = 3
        def needs_args(width):
            return nn.Linear(width, width)
        def build(depth=2):
            return nn.Sequential(*[nn.Linear(2, 2) for _ in range(depth)])
        def raises():
            raise RuntimeError("out of memory")
        def returns_tuple():
            return nn.Linear(2, 2), {}
    """)
    )
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    (tmp_path / "missing_dep.py").write_text("import not_installed_xyz\n")
    with pytest.raises(error, match=match):
        load_model_spec(spec.format(d=tmp_path), kwargs)


def test_missing_dependency_of_an_installed_module_is_not_reported_as_a_missing_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "uses_missing.py").write_text("import not_installed_xyz\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"imports 'not_installed_xyz', which is not installed"):
        load_model_spec("uses_missing:build")
