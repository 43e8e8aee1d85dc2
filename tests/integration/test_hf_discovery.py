"""Real Hugging Face models built from tiny configs (nothing downloaded): the right stacks, depths,
names and site modules per family; hooks that fire on a forward; configs -> models; torch.compile."""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests._require import require

import layerscope
from layerscope.capture import discover_layers, model_from_hf_config, site_map
from layerscope.errors import ConfigError, NotFoundError

transformers = require("transformers")
T = transformers

SMALL = dict(vocab_size=96)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building from a config must never touch the network: any connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _ids(n: int = 6) -> torch.Tensor:
    return torch.randint(3, SMALL["vocab_size"], (2, n), generator=torch.Generator().manual_seed(0))


# family -> (config, Auto class, forward inputs, expected). Expected site paths are relative to
# the layer; "<in>" marks a site recorded at the module's input.
def _gpt2() -> tuple[Any, Any, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg = T.GPT2Config(n_layer=3, n_embd=32, n_head=2, n_positions=16, **SMALL)
    exp = {
        "stacks": [("transformer.h", 3)],
        "class": "GPT2Block",
        "sites": {
            "mlp_act": "mlp.act",
            "attn_out": "attn",
            "mlp_out": "mlp",
            "mlp_down_in": "mlp.c_proj<in>",
        },
    }
    return cfg, T.AutoModelForCausalLM, lambda: {"input_ids": _ids()}, exp


def _llama() -> tuple[Any, Any, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg = T.LlamaConfig(
        num_hidden_layers=3,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        **SMALL,
    )
    exp = {
        "stacks": [("model.layers", 3)],
        "class": "LlamaDecoderLayer",
        "sites": {
            "mlp_act": "mlp.act_fn",
            "attn_out": "self_attn",
            "mlp_out": "mlp",
            "mlp_down_in": "mlp.down_proj<in>",
        },
    }
    return cfg, T.AutoModelForCausalLM, lambda: {"input_ids": _ids()}, exp


def _bert() -> tuple[Any, Any, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg = T.BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        max_position_embeddings=32,
        **SMALL,
    )
    # Post-norm: `attention` and `output` add the residual and normalise inside, so the
    # contributions are their projections.
    exp = {
        "stacks": [("encoder.layer", 2)],
        "class": "BertLayer",
        "sites": {
            "mlp_act": "intermediate.intermediate_act_fn",
            "attn_out": "attention.output.dense",
            "mlp_out": "output.dense",
            "mlp_down_in": "output.dense<in>",
        },
    }
    return cfg, T.AutoModel, lambda: {"input_ids": _ids()}, exp


def _t5() -> tuple[Any, Any, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg = T.T5Config(
        num_layers=2,
        num_decoder_layers=3,
        d_model=32,
        d_ff=64,
        num_heads=2,
        d_kv=16,
        decoder_start_token_id=0,
        **SMALL,
    )
    exp = {
        "stacks": [("encoder.block", 2), ("decoder.block", 3)],
        "class": "T5Block",
        "sites": {
            "encoder.block": {
                "mlp_act": "layer.1.DenseReluDense.act",
                "attn_out": "layer.0.SelfAttention",
                "mlp_out": "layer.1.DenseReluDense",
                "mlp_down_in": "layer.1.DenseReluDense.wo<in>",
            },
            # the decoder's layer.1 is cross-attention; its MLP is layer.2
            "decoder.block": {
                "mlp_act": "layer.2.DenseReluDense.act",
                "attn_out": "layer.0.SelfAttention",
                "mlp_out": "layer.2.DenseReluDense",
                "mlp_down_in": "layer.2.DenseReluDense.wo<in>",
            },
        },
    }
    return cfg, T.AutoModelForSeq2SeqLM, lambda: {"input_ids": _ids(), "decoder_input_ids": _ids(4)}, exp


def _vit() -> tuple[Any, Any, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg = T.ViTConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    pixels = {"pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))}
    # transformers 5 flattened ViT (layers.N with attention/mlp); 4.x has encoder.layer.N with
    # BERT's split intermediate/output (whose `output` adds the residual).
    exp = {
        "class": "ViTLayer",
        "layouts": {
            "layers": {
                "mlp_act": "mlp.activation_fn",
                "attn_out": "attention",
                "mlp_out": "mlp",
                "mlp_down_in": "mlp.fc2<in>",
            },
            "encoder.layer": {
                "mlp_act": "intermediate.intermediate_act_fn",
                "attn_out": "attention.output.dense",
                "mlp_out": "output.dense",
                "mlp_down_in": "output.dense<in>",
            },
        },
    }
    return cfg, T.AutoModel, lambda: pixels, exp


FAMILIES = {"gpt2": _gpt2, "llama": _llama, "bert": _bert, "t5": _t5, "vit": _vit}


def _build(family: str) -> tuple[torch.nn.Module, Callable[[], dict[str, Any]], dict[str, Any]]:
    cfg, auto, inputs, exp = FAMILIES[family]()
    torch.manual_seed(0)
    model = auto.from_config(cfg)
    if family == "vit":
        stack = (
            "layers" if isinstance(getattr(model, "layers", None), torch.nn.ModuleList) else "encoder.layer"
        )
        exp = {**exp, "stacks": [(stack, 2)], "sites": exp["layouts"][stack]}
    return model, inputs, exp


def _relative(layer_name: str, hook: Any) -> str:
    rel = hook.module_name[len(layer_name) + 1 :]
    return rel + ("<in>" if hook.kind == "input" else "")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_stacks_names_and_sites(family: str) -> None:
    model, _, exp = _build(family)
    layers = discover_layers(model)
    want: list[tuple[int, str, str, int]] = []
    for stack, n in exp["stacks"]:
        want += [(len(want) + k + 1, f"{stack}.{k}", stack, k + 1) for k in range(n)]
    assert [(la.index, la.name, la.stack, la.depth) for la in layers] == want
    for la in layers:
        assert la.module is model.get_submodule(la.name)
        assert type(la.module).__name__ == exp["class"]
        sites = site_map(la)
        want_sites = exp["sites"].get(la.stack, exp["sites"])
        got = {s: _relative(la.name, h) for s, h in sites.items() if s != "output" and h is not None}
        assert got == want_sites, la.name
        assert sites["output"].module is la.module
        for h in sites.values():
            assert h.module is model.get_submodule(h.module_name)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_resolved_site_is_on_the_forward_path(family: str) -> None:
    """Recording all sites through a real forward: each resolved hook fires and sees finite values."""
    model, inputs, _ = _build(family)
    model.train()
    with layerscope.Recorder(
        model, None, metrics=["rms", "zero_frac"], sites=list(layerscope.capture.SITES)
    ) as rec:
        model(**inputs())
        rec.step(1)
    values = rec.history[0].values
    for site in layerscope.capture.SITES:
        rms = values[("rms", site)]
        assert len(rms) == len(rec.layers) and all(math.isfinite(v) and v > 0 for v in rms), (site, rms)


def test_relu_mlp_act_zero_frac_on_t5_is_the_true_fraction() -> None:
    model, inputs, _ = _build("t5")
    acts: dict[str, torch.Tensor] = {}
    layers = discover_layers(model)
    handles = [
        site_map(la)["mlp_act"].module.register_forward_hook(
            lambda m, a, o, n=la.name: acts.__setitem__(n, o.detach().clone())
        )
        for la in layers
    ]
    with layerscope.Recorder(model, None, metrics=["zero_frac"], sites=["mlp_act"]) as rec:
        model(**inputs())
        rec.step(1)
    for h in handles:
        h.remove()
    truth = [float((acts[la.name] == 0).double().mean()) for la in layers]
    assert all(0.1 < t < 0.9 for t in truth)
    assert rec.history[0].values[("zero_frac", "mlp_act")] == pytest.approx(truth, abs=1e-12)


def test_compiled_and_checkpointed_hf_models_keep_their_names() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    def snapshot(m: torch.nn.Module) -> list[tuple]:
        return [
            (
                la.index,
                la.name,
                la.stack,
                la.depth,
                tuple((s, h.module_name, h.kind) for s, h in site_map(la).items() if h),
            )
            for la in discover_layers(m)
        ]

    plain = snapshot(_build("llama")[0])
    assert snapshot(torch.compile(_build("llama")[0], backend="eager")) == plain
    ckpt = _build("llama")[0]
    apply_activation_checkpointing(ckpt, check_fn=lambda m: type(m).__name__ == "LlamaDecoderLayer")
    assert "model.layers.0._checkpoint_wrapped_module.mlp" in dict(ckpt.named_modules())
    assert snapshot(ckpt) == plain


# -- config.json -> model ------------------------------------------------------------------------------
def _save(tmp_path: Path, cfg: Any, architectures: list[str] | None) -> Path:
    cfg.architectures = architectures
    folder = tmp_path / (architectures[0] if architectures else type(cfg).__name__)
    cfg.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "family,architectures,cls",
    [
        ("gpt2", ["GPT2LMHeadModel"], "GPT2LMHeadModel"),
        ("gpt2", None, "GPT2Model"),  # no architectures: the bare model
        (
            "gpt2",
            ["MyForkGPT2ForCausalLM"],
            "GPT2LMHeadModel",
        ),  # a fork's name: AutoModelForCausalLM by suffix
        ("llama", ["LlamaForCausalLM"], "LlamaForCausalLM"),
        ("bert", ["BertForMaskedLM"], "BertForMaskedLM"),
        ("t5", ["T5ForConditionalGeneration"], "T5ForConditionalGeneration"),
        ("t5", None, "T5ForConditionalGeneration"),  # an encoder-decoder without architectures: seq2seq
        ("vit", ["ViTForImageClassification"], "ViTForImageClassification"),
    ],
)
def test_model_from_hf_config_picks_the_class(
    tmp_path: Path, family: str, architectures: list[str] | None, cls: str
) -> None:
    cfg = FAMILIES[family]()[0]
    folder = _save(tmp_path, cfg, architectures)
    model = model_from_hf_config(folder, device="meta")
    assert type(model).__name__ == cls
    assert next(model.parameters()).device.type == "meta"
    real = model_from_hf_config(folder / "config.json")  # the file works as well as its folder
    assert type(real).__name__ == cls and next(real.parameters()).device.type == "cpu"
    assert [la.name for la in discover_layers(real)] == [la.name for la in discover_layers(model)]


def test_model_from_hf_config_dtype(tmp_path: Path) -> None:
    folder = _save(tmp_path, FAMILIES["gpt2"]()[0], ["GPT2LMHeadModel"])
    model = model_from_hf_config(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_model_from_hf_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFoundError, match=r"'.*nope' does not exist"):
        model_from_hf_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no config.json in folder '.*empty'"):
        model_from_hf_config(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "gpt2",\n "n_layer": }')
    with pytest.raises(ConfigError, match=r"bad.json' is not valid JSON \(line 2, column"):
        model_from_hf_config(bad)
    bad.write_text('{"n_layer": 2}')
    with pytest.raises(ConfigError, match=r'has no "model_type"'):
        model_from_hf_config(bad)
    bad.write_text('{"model_type": "gpt9000"}')
    with pytest.raises(ConfigError, match=r"does not know model_type 'gpt9000'.*--model"):
        model_from_hf_config(bad)
    bad.write_text('{"model_type": "my_custom", "auto_map": {"AutoModel": "modeling_custom.MyModel"}}')
    with pytest.raises(ConfigError, match=r"custom code .*never runs"):
        model_from_hf_config(bad)
    bad.write_text('{"model_type": "gpt2", "n_embd": 30, "n_head": 4}')  # 30 is not divisible by 4
    with pytest.raises(
        ConfigError,
        match=r"building AutoModel from '.*bad.json' failed: ValueError: .*divisible.*\(got `embed_dim`: 30 and `num_heads`: 4\); check",
    ):
        model_from_hf_config(bad)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    bad.write_text('{"model_type": "gpt2"}')
    with pytest.raises(ConfigError, match=r"needs transformers.*pip install 'layerscope\[hf\]'"):
        model_from_hf_config(bad)


# -- torch.compile: hooks registered before compiling keep working ------------------------------------
# Compiling an HF model takes ~17 s on a 2-core box; the tiny GPT's blocks are enough to show it.
# Whether a hook is traced, guarded or lost is decided by dynamo, before any backend: the checks of
# that use backend="eager"; the value check runs through AOTAutograd (aot_eager). Inductor gives
# the same values (checked by hand; ~45 s to compile here).
def _tiny() -> torch.nn.Module:
    from layerscope.testing import tiny_gpt

    return tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8, activation="relu", seed=1)


def _record(model: torch.nn.Module, call: torch.nn.Module, steps: int, **kw: Any) -> dict[int, dict]:
    x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(5))
    rec = layerscope.Recorder(
        model, None, metrics=["mean", "rms", "zero_frac"], sites=["output", "mlp_act", "mlp_down_in"], **kw
    )
    with rec:
        for s in range(1, steps + 1):
            call(x)
            rec.step(s)
    return {r.step: r.values for r in rec.history}


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_hooks_registered_before_torch_compile_record_the_same_values(fresh_dynamo: None) -> None:
    model = _tiny()
    eager = _record(model, model, 2)
    model = _tiny()
    compiled = torch.compile(model, backend="aot_eager")
    got = _record(model, compiled, 2)  # the Recorder hooks `model`; training calls the compiled one
    assert sorted(got) == [1, 2]
    for step in (1, 2):
        for key, vals in eager[step].items():
            assert got[step][key] == pytest.approx(vals, rel=1e-5, abs=1e-7), (step, key)


def test_compiled_wrapper_can_be_passed_to_the_recorder(fresh_dynamo: None) -> None:
    model = _tiny()
    compiled = torch.compile(model, backend="eager")  # dynamo's hook handling; no AOT/inductor cost
    got = _record(compiled, compiled, 1)  # discovery sees through the OptimizedModule
    eager_model = _tiny()
    eager = _record(eager_model, eager_model, 1)
    assert got[1][("rms", "mlp_act")] == pytest.approx(eager[1][("rms", "mlp_act")], rel=1e-5)


def test_compile_with_every_2_records_every_recorded_step(fresh_dynamo: None) -> None:
    """A compiled model: hooks stay attached and are switched by a flag, so every>1 works."""
    eager_model = _tiny()
    eager = _record(eager_model, eager_model, 4, every=2)
    compiled = torch.compile(_tiny(), backend="eager")
    compiled(torch.randint(0, 256, (2, 8)))  # compiled before the Recorder exists
    got = _record(compiled, compiled, 4, every=2)
    assert sorted(got) == [2, 4]
    assert got[4][("rms", "output")] == pytest.approx(eager[4][("rms", "output")], rel=1e-5)


def test_compile_after_the_recorder_needs_hooks_gate(fresh_dynamo: None) -> None:
    model = _tiny()
    eager_model = _tiny()
    eager = _record(eager_model, eager_model, 4, every=2)
    got = _record(model, torch.compile(model, backend="eager"), 4, every=2, hooks="gate")
    assert sorted(got) == [2, 4]
    assert got[4][("rms", "output")] == pytest.approx(eager[4][("rms", "output")], rel=1e-5)


def test_compile_with_every_2_works_with_hook_guards_on(fresh_dynamo: None) -> None:
    """The documented workaround: guard on hooks, so attaching them recompiles (two graphs)."""
    model = _tiny()
    eager_model = _tiny()
    eager = _record(eager_model, eager_model, 4, every=2)
    with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
        got = _record(model, torch.compile(model, backend="eager"), 4, every=2)
    assert sorted(got) == [2, 4]
    assert got[4][("rms", "output")] == pytest.approx(eager[4][("rms", "output")], rel=1e-5)
