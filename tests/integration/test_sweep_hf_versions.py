"""``sweep --hf`` on Hugging Face checkpoints as other transformers versions wrote them.

Each checkpoint is written by the test in an older layout (buffers older versions persisted, a
tied head dropped, TF-era names, a base model's keys without the head's prefix), in safetensors,
sharded safetensors with ``model.safetensors.index.json``, and ``pytorch_model.bin`` (read with
``weights_only=True``), for GPT-2, BERT and Llama built from configs. The sweep's numbers must equal
those of the same checkpoint loaded by ``transformers.from_pretrained`` itself; real mismatches
are still refused with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from layerscope.errors import CheckpointError
from layerscope.store import Store
from layerscope.sweep import sweep
from layerscope.sweep.load import apply_state_dict

tf = pytest.importorskip("transformers")
tf.utils.logging.set_verbosity_error()

N_LAYER, WIDTH, VOCAB, CTX = 2, 32, 64, 16


def build(family: str, seed: int = 0, **cfg_kw):
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = tf.GPT2Config(
            n_layer=N_LAYER, n_embd=WIDTH, n_head=2, n_positions=CTX, vocab_size=VOCAB,
            bos_token_id=0, eos_token_id=0, architectures=["GPT2LMHeadModel"], **cfg_kw,
        )  # fmt: skip
        return tf.GPT2LMHeadModel(cfg)
    if family == "bert":
        cfg = tf.BertConfig(
            num_hidden_layers=N_LAYER, hidden_size=WIDTH, num_attention_heads=2, intermediate_size=64,
            vocab_size=VOCAB, max_position_embeddings=CTX, architectures=["BertForMaskedLM"], **cfg_kw,
        )  # fmt: skip
        return tf.BertForMaskedLM(cfg)
    if family == "gpt_neox":  # Pythia's architecture
        cfg = tf.GPTNeoXConfig(
            num_hidden_layers=N_LAYER, hidden_size=WIDTH, num_attention_heads=2, intermediate_size=64,
            vocab_size=VOCAB, max_position_embeddings=CTX, architectures=["GPTNeoXForCausalLM"], **cfg_kw,
        )  # fmt: skip
        return tf.GPTNeoXForCausalLM(cfg)
    if family == "t5":
        cfg = tf.T5Config(
            num_layers=N_LAYER, num_decoder_layers=N_LAYER, d_model=WIDTH, d_ff=64, num_heads=2, d_kv=16,
            vocab_size=VOCAB, decoder_start_token_id=0, architectures=["T5ForConditionalGeneration"], **cfg_kw,
        )  # fmt: skip
        return tf.T5ForConditionalGeneration(cfg)
    cfg = tf.LlamaConfig(
        num_hidden_layers=N_LAYER, hidden_size=WIDTH, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=CTX, architectures=["LlamaForCausalLM"],
        **{"tie_word_embeddings": True, **cfg_kw},
    )  # fmt: skip
    return tf.LlamaForCausalLM(cfg)


def blocks(model):
    if hasattr(model, "encoder") and hasattr(model, "decoder"):  # T5: both stacks, encoder first
        return list(model.encoder.block) + list(model.decoder.block)
    for path in ("transformer.h", "bert.encoder.layer", "gpt_neox.layers", "model.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise AssertionError(type(model).__name__)


def old_layout(family: str, model) -> dict[str, torch.Tensor]:
    """The state dict as an older transformers version saved it."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if family == "gpt2":
        # GPT2Model's keys (the hub's gpt2 files: no 'transformer.' prefix, no lm_head), with the
        # causal-mask buffers transformers < 4.27 persisted: float (1, 1, n, n) and a scalar.
        sd = {k.removeprefix("transformer."): v for k, v in sd.items() if k.startswith("transformer.")}
        for i in range(N_LAYER):
            sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(CTX, CTX)).view(1, 1, CTX, CTX)
            sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    elif family == "bert":
        # position_ids persisted (before it became non-persistent), TF-era LayerNorm gamma/beta, the
        # tied decoder weight left out.
        sd["bert.embeddings.position_ids"] = torch.arange(CTX).view(1, -1)
        sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in sd.items()}  # fmt: skip
        sd.pop("cls.predictions.decoder.weight")
    elif family == "gpt_neox":
        # Pythia's files (transformers 4.2x): per layer a bool causal mask, the masked_bias fill value
        # and the rotary inv_freq, all persisted.
        for i in range(N_LAYER):
            sd[f"gpt_neox.layers.{i}.attention.bias"] = torch.tril(torch.ones(CTX, CTX, dtype=torch.bool))[
                None, None
            ]
            sd[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
            sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.rand(8)
    elif family == "t5":
        # transformers 4 wrote the tied copies too: shared, encoder/decoder.embed_tokens, lm_head.
        assert {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"} <= set(sd)
        sd.pop("lm_head.weight")
    else:
        # rotary inv_freq persisted per layer (transformers < 4.31), tied lm_head dropped.
        inv = model.model.rotary_emb.inv_freq.detach().clone()
        for i in range(N_LAYER):
            sd[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv.clone()
        sd.pop("lm_head.weight")
    return sd


def write(folder: Path, sd: dict[str, torch.Tensor], fmt: str, config) -> None:
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    sd = {k: v.contiguous() for k, v in sd.items()}
    if fmt == "safetensors":
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    elif fmt == "sharded":
        keys = sorted(sd)
        parts = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
        wmap = {}
        for i, part in enumerate(parts, start=1):
            name = f"model-{i:05d}-of-00002.safetensors"
            save_file({k: sd[k] for k in part}, str(folder / name), metadata={"format": "pt"})
            wmap.update(dict.fromkeys(part, name))
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    else:  # the legacy (pre-zip) torch pickle old versions wrote
        torch.save(sd, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)


def block_rms(model, probe) -> np.ndarray:
    """rms of each block's output, from plain hooks in float64: no layerscope code."""
    outs = []
    hooks = [
        b.register_forward_hook(lambda m, a, o: outs.append((o[0] if isinstance(o, tuple) else o).double()))
        for b in blocks(model)
    ]
    model.eval()
    with torch.no_grad():
        model(**probe) if isinstance(probe, dict) else model(probe)
    for h in hooks:
        h.remove()
    return np.array([float(o.pow(2).mean().sqrt()) for o in outs])


PROBE = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(5))
FORMATS = ("safetensors", "sharded", "bin")
FAMILIES = ["gpt2", "bert", "llama", "gpt_neox", "t5"]


def probe_for(family: str):
    if family == "t5":
        return {"input_ids": PROBE, "decoder_input_ids": PROBE[:, :7]}
    return PROBE


@pytest.mark.parametrize("family", FAMILIES)
def test_old_version_checkpoints_load_as_transformers_loads_them(tmp_path: Path, family: str) -> None:
    run = tmp_path / "run"
    steps, saved = {}, {}
    for i, fmt in enumerate(FORMATS, start=1):
        m = build(family, seed=i)
        folder = run / f"checkpoint-{100 * i}"
        write(folder, old_layout(family, m), fmt, m.config)
        steps[100 * i], saved[100 * i] = folder, m
    probe = probe_for(family)
    res = sweep(run, store=tmp_path / "runs.db", run="old", probe=probe, hf=True, metrics="rms")
    assert res.failed == [], [p.message for p in res.failed]
    assert sorted(res.written) == sorted(steps)
    with Store(tmp_path / "runs.db", readonly=True) as st:
        hm = st.load("old", "rms")
    for step, folder in steps.items():
        # transformers' own loading of the very same folder is the reference
        ref = type(build(family)).from_pretrained(folder)
        got = hm.values[hm.steps.index(step)]
        np.testing.assert_allclose(got, block_rms(ref, probe), rtol=1e-5, err_msg=f"{family} {step}")
        # ... and both equal the model that was saved: nothing was left at its initial value
        np.testing.assert_allclose(got, block_rms(saved[step], probe), rtol=1e-5, err_msg=f"{family} {step}")


@pytest.mark.parametrize("family", FAMILIES)
def test_real_mismatches_are_still_refused(tmp_path: Path, family: str) -> None:
    src = build(family, seed=1)
    model = build(family)
    sd = old_layout(family, src)
    layer_w = next(k for k in sd if ".1." in k and k.endswith("weight") and sd[k].dim() == 2)
    missing = {k: v for k, v in sd.items() if k != layer_w}
    with pytest.raises(
        CheckpointError, match=r"ck: does not fit the model: 1 weights of \w+ missing \(first: '"
    ) as e:
        apply_state_dict(model, missing, "ck")
    assert layer_w.split(".")[-4] in str(e.value) and "check that --model/--hf builds" in str(e.value)
    wrong = {**sd, layer_w: torch.zeros(3, 3)}
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(first: '.*' is \(3, 3\) in the file"):
        apply_state_dict(model, wrong, "ck")
    extra = {**sd, layer_w.replace(".1.", ".7."): sd[layer_w]}  # a deeper model's layer
    with pytest.raises(CheckpointError, match=r"1 not in the model \(first: '.*\.7\."):
        apply_state_dict(model, extra, "ck")
    # a weight that happens to be called 'bias' but is no causal mask stays unexpected
    with pytest.raises(CheckpointError, match=r"not in the model"):
        apply_state_dict(model, {**sd, "some.module.bias": torch.zeros(4)}, "ck")


def test_an_untied_head_that_is_missing_is_refused_and_a_tied_head_that_differs_too(tmp_path: Path) -> None:
    untied = build("llama", tie_word_embeddings=False)
    sd = old_layout("llama", build("llama", seed=1, tie_word_embeddings=False))
    with pytest.raises(CheckpointError, match=r"missing \(first: 'lm_head.weight'\)"):
        apply_state_dict(untied, sd, "ck")
    tied = build("llama")
    sd = {**old_layout("llama", build("llama", seed=1)), "lm_head.weight": torch.randn(VOCAB, WIDTH)}
    with pytest.raises(CheckpointError, match=r"are one tensor in the model \(tied\) but differ in the file"):
        apply_state_dict(tied, sd, "ck")
    same = {**sd, "lm_head.weight": sd["model.embed_tokens.weight"].clone()}  # old versions saved both
    apply_state_dict(tied, same, "ck")
    assert torch.equal(tied.lm_head.weight, same["model.embed_tokens.weight"])


def test_a_layout_transformers_converts_mixture_of_experts(tmp_path: Path) -> None:
    """transformers 5 fuses the experts' weights in the model but saves (and reads) them per expert,
    as transformers 4 did: the sweep lets transformers convert them."""
    cfg = tf.MixtralConfig(
        num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, num_local_experts=4, max_position_embeddings=CTX, architectures=["MixtralForCausalLM"],
    )  # fmt: skip
    torch.manual_seed(3)
    m = tf.MixtralForCausalLM(cfg)
    m.save_pretrained(tmp_path / "run" / "checkpoint-5")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "checkpoint-5" / "model.safetensors"), "pt") as f:
        names = f.keys()
    assert any(".experts.0." in k for k in names)  # the per-expert layout on disk
    res = sweep(tmp_path / "run", store=tmp_path / "runs.db", run="moe", probe=PROBE, hf=True, metrics="rms")
    assert res.failed == [] and res.written == [5]
    with Store(tmp_path / "runs.db", readonly=True) as st:
        got = st.load("moe", "rms").values[0]
    np.testing.assert_allclose(got, block_rms(m, PROBE), rtol=1e-5)
