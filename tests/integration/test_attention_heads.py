"""Site ``attn``: per-head max logit, entropy and sink against a float64 reference.

The reference is the model's own attention: its ``eager_attention_forward`` is wrapped so that
the pre-softmax logits it computes (rotary applied by the model, GQA keys repeated by the model,
T5's position bias, the model's causal + padding mask) are taken in float64 and the softmax
probabilities materialised from them (and checked against the probabilities the model returns).
The recorder recomputes everything from q/k projections; the SDPA model (same weights, no
probabilities anywhere) must agree on the subsampled query rows.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import layerscope
from layerscope.capture.attention import query_index

transformers = pytest.importorskip("transformers")


class Reference:
    """Wraps a modeling module's eager_attention_forward; keeps float64 logits per call."""

    def __init__(self, modname: str) -> None:
        self.mod = sys.modules[modname]
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.orig = self.mod.eager_attention_forward

    def __enter__(self) -> Reference:
        orig = self.orig

        def wrapped(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):  # type: ignore[no-untyped-def]
            q, k = query.double(), key.double()
            if k.shape[1] != q.shape[1]:  # GQA: the model repeats each key head
                k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            s = scaling if scaling is not None else q.shape[-1] ** -0.5
            logits = q @ k.transpose(-1, -2) * s
            if kw.get("position_bias") is not None:
                logits = logits + kw["position_bias"].double()
            allowed = torch.ones_like(logits, dtype=torch.bool)
            if attention_mask is not None:
                m = attention_mask
                allowed = allowed & (m > torch.finfo(m.dtype).min / 2 if m.is_floating_point() else m.bool())
            out, weights = orig(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kw
            )
            p = torch.softmax(logits.masked_fill(~allowed, -torch.inf), -1)
            rows = allowed.expand_as(p).any(
                -1
            )  # rows with no allowed key (left padding): the model's are arbitrary
            assert torch.allclose(p[rows], weights.double().expand_as(p)[rows], atol=1e-5), (
                "not the model's probs"
            )
            self.calls.append((logits, allowed))
            return out, weights

        self.mod.eager_attention_forward = wrapped
        return self

    def __exit__(self, *exc: object) -> None:
        self.mod.eager_attention_forward = self.orig

    def per_head(self, pad: torch.Tensor | None, queries: int | None = None) -> dict[str, np.ndarray]:
        """(layers, heads) max_logit / entropy / sink over the valid (sampled) query rows."""
        out: dict[str, list[np.ndarray]] = {"max_logit": [], "entropy": [], "sink": []}
        for logits, allowed in self.calls:
            B, H, T, K = logits.shape
            allowed = allowed.expand(B, H, T, K).clone()
            valid = torch.ones(B, T, dtype=torch.bool) if pad is None else pad.bool()
            idx = query_index(T, B, H, K, queries)
            rows = torch.arange(T) if idx is None else idx
            lg, al, va = logits[:, :, rows], allowed[:, :, rows], valid[:, rows]
            al = al & va[:, None, :, None]
            p = torch.softmax(lg.masked_fill(~al, -torch.inf), -1).nan_to_num(0.0)
            ent = -(torch.special.xlogy(p, p)).sum(-1)  # (B, H, Q)
            first = al.int().argmax(-1, keepdim=True)
            sink = p.gather(-1, first).squeeze(-1)
            w = va[:, None, :].expand(B, H, len(rows)).double()
            out["max_logit"].append(lg.masked_fill(~al, -torch.inf).amax((0, 2, 3)).numpy())
            out["entropy"].append(((ent * w).sum((0, 2)) / w.sum((0, 2))).numpy())
            out["sink"].append(((sink * w).sum((0, 2)) / w.sum((0, 2))).numpy())
        return {k: np.stack(v) for k, v in out.items()}


def _recorded(model, inputs, mask: str | None, queries: int | None) -> dict[str, np.ndarray]:
    rec = layerscope.Recorder(
        model, None, sites=("attn",), every=1, train_only=False, mask=mask, attn_queries=queries
    )
    with torch.no_grad():
        model(**inputs)
    rec.step(1)
    rec.close()
    vals = rec.history[-1].values
    return {m: np.asarray(vals[(m, "attn")]) for m in ("max_logit", "entropy", "sink")}


def _check(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    for m in ("max_logit", "entropy", "sink"):
        assert got[m].shape == ref[m].shape, m
        np.testing.assert_allclose(got[m], ref[m], rtol=2e-5, atol=2e-5, err_msg=m)


def _padded_ids(vocab: int, B: int = 3, T: int = 12, left: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for b, n in enumerate((T, T - 4, T - 7)[:B]):
        if left:
            mask[b, : T - n] = 0
        else:
            mask[b, n:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _pair(cfg_cls, auto, **cfg):  # type: ignore[no-untyped-def]
    """The same weights with eager and with SDPA attention (scaled up so that heads differ)."""
    torch.manual_seed(0)
    eager = auto.from_config(cfg_cls(**cfg), attn_implementation="eager").eval()
    with torch.no_grad():
        for n, p in eager.named_parameters():
            if any(s in n for s in ("q_proj", "k_proj", "query", "key", ".q.", ".k.", "c_attn")):
                p.mul_(4.0)
    sdpa = auto.from_config(cfg_cls(**cfg), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    return eager, sdpa


LLAMA = dict(
    num_hidden_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,  # GQA: two query heads per key head
    intermediate_size=96,
    vocab_size=101,
    max_position_embeddings=64,
)


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_llama_gqa_rotary_causal_padding_equal_the_float64_reference(left: bool) -> None:
    eager, sdpa = _pair(transformers.LlamaConfig, transformers.AutoModelForCausalLM, **LLAMA)
    inputs = _padded_ids(101, left=left)
    with Reference("transformers.models.llama.modeling_llama") as ref:
        got = _recorded(eager, inputs, "attention_mask", None)
    want = ref.per_head(inputs["attention_mask"])
    assert want["max_logit"].shape == (2, 4)
    _check(got, want)
    # SDPA never materialises probabilities: recomputed on 5 sampled query rows, equal there.
    got_sdpa = _recorded(sdpa, inputs, "attention_mask", 5)
    _check(got_sdpa, ref.per_head(inputs["attention_mask"], queries=5))


def test_qwen3_q_norm_and_mistral_reach_the_reference() -> None:
    for cfg_cls, modname, extra in (
        (transformers.Qwen3Config, "transformers.models.qwen3.modeling_qwen3", {"head_dim": 16}),
        (transformers.MistralConfig, "transformers.models.mistral.modeling_mistral", {}),
    ):
        eager, sdpa = _pair(cfg_cls, transformers.AutoModelForCausalLM, **LLAMA, **extra)
        inputs = _padded_ids(101)
        with Reference(modname) as ref:
            got = _recorded(eager, inputs, "attention_mask", None)
        _check(got, ref.per_head(inputs["attention_mask"]))
        _check(_recorded(sdpa, inputs, "attention_mask", 4), ref.per_head(inputs["attention_mask"], 4))


def test_gpt2_fused_qkv_causal_padding() -> None:
    eager, sdpa = _pair(
        transformers.GPT2Config,
        transformers.AutoModelForCausalLM,
        n_layer=2,
        n_embd=48,
        n_head=3,
        vocab_size=97,
    )
    inputs = _padded_ids(97)
    with Reference("transformers.models.gpt2.modeling_gpt2") as ref:
        got = _recorded(eager, inputs, "attention_mask", None)
    _check(got, ref.per_head(inputs["attention_mask"]))
    _check(_recorded(sdpa, inputs, "attention_mask", 3), ref.per_head(inputs["attention_mask"], 3))


def test_bert_bidirectional_padding() -> None:
    eager, sdpa = _pair(
        transformers.BertConfig,
        transformers.AutoModel,
        num_hidden_layers=2,
        hidden_size=48,
        num_attention_heads=3,
        intermediate_size=64,
        vocab_size=97,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    inputs = _padded_ids(97)
    with Reference("transformers.models.bert.modeling_bert") as ref:
        got = _recorded(eager, inputs, "attention_mask", None)
    _check(got, ref.per_head(inputs["attention_mask"]))
    _check(_recorded(sdpa, inputs, "attention_mask", 5), ref.per_head(inputs["attention_mask"], 5))


def test_t5_encoder_position_bias_unscaled() -> None:
    torch.manual_seed(0)
    cfg = transformers.T5Config(
        num_layers=2, d_model=32, num_heads=4, d_kv=8, d_ff=64, vocab_size=97, dropout_rate=0.0
    )
    model = transformers.T5EncoderModel._from_config(cfg, attn_implementation="eager").eval()
    inputs = _padded_ids(97)
    with Reference("transformers.models.t5.modeling_t5") as ref:
        got = _recorded(model, inputs, "attention_mask", None)
    _check(got, ref.per_head(inputs["attention_mask"]))


def test_vit_and_tiny_gpt() -> None:
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=48,
        image_size=16,
        patch_size=4,
    )
    vit = transformers.ViTModel._from_config(cfg, attn_implementation="eager").eval()
    with Reference("transformers.models.vit.modeling_vit") as ref:
        got = _recorded(vit, {"pixel_values": torch.randn(2, 3, 16, 16)}, None, None)
    _check(got, ref.per_head(None))

    from layerscope.testing import tiny_gpt

    m = tiny_gpt(n_layer=2, n_embd=32, n_head=4, block_size=16).eval()
    x = torch.randint(0, 60, (2, 16))
    got = _recorded(m, {"idx": x}, None, None)
    # The tiny GPT's own arithmetic, in float64: causal, 1/sqrt(d).
    for li, block in enumerate(m.h):
        h = block.ln_1(m.wte(x) + m.wpe(torch.arange(16))) if li == 0 else None
        if h is None:
            break
        q, k, _ = block.attn.c_attn(h).double().split(32, dim=2)
        q = q.view(2, 16, 4, 8).transpose(1, 2)
        k = k.view(2, 16, 4, 8).transpose(1, 2)
        lg = (q @ k.transpose(-1, -2)) / 8**0.5
        causal = torch.ones(16, 16, dtype=torch.bool).tril()
        np.testing.assert_allclose(
            got["max_logit"][0], lg.masked_fill(~causal, -torch.inf).amax((0, 2, 3)).detach(), rtol=1e-5
        )
        p = torch.softmax(lg.masked_fill(~causal, -torch.inf), -1)
        ent = -(torch.special.xlogy(p, p)).sum(-1).mean((0, 2))
        np.testing.assert_allclose(got["entropy"][0], ent.detach(), rtol=1e-5)
        np.testing.assert_allclose(got["sink"][0], p[..., 0].mean((0, 2)).detach(), rtol=1e-5)


def test_micro_batches_merge_exactly() -> None:
    """Two forwards in one step: max of maxima, means over all rows (the sufficient statistics)."""
    eager, _ = _pair(transformers.LlamaConfig, transformers.AutoModelForCausalLM, **LLAMA)
    a, b = _padded_ids(101), _padded_ids(101, left=True)
    with Reference("transformers.models.llama.modeling_llama") as ref:
        rec = layerscope.Recorder(
            eager, None, sites=("attn",), every=1, train_only=False, mask="attention_mask"
        )
        with torch.no_grad():
            eager(**a)
            eager(**b)
        rec.step(1)
        rec.close()
    calls = ref.calls
    ref.calls = calls[:2]
    ra = ref.per_head(a["attention_mask"])
    ref.calls = calls[2:]
    rb = ref.per_head(b["attention_mask"])
    got = {m: np.asarray(rec.history[-1].values[(m, "attn")]) for m in ("max_logit", "entropy", "sink")}
    na = a["attention_mask"].sum().item()
    nb = b["attention_mask"].sum().item()
    np.testing.assert_allclose(got["max_logit"], np.maximum(ra["max_logit"], rb["max_logit"]), rtol=2e-5)
    np.testing.assert_allclose(
        got["entropy"], (ra["entropy"] * na + rb["entropy"] * nb) / (na + nb), rtol=2e-5
    )


def test_unsupported_attention_is_refused_in_one_line() -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.mlp(self.attn(x, x, x)[0])

    model = torch.nn.Sequential(Odd(), Odd())
    with pytest.raises(layerscope.errors.ConfigError) as e:
        layerscope.Recorder(model, None, sites=("attn",))
    assert "\n" not in str(e.value) and "docs/attention.md" in str(e.value)
