"""Padded batches on Hugging Face models built from configs: only real tokens count.

Each recorded value is checked against float64 statistics of the real tokens' activations,
captured by independent hooks (BERT with right padding, Llama with left padding, T5's two
stacks with their two masks), and a real ``Trainer`` run whose collator pads: the callback masks
by default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch
import torch.nn as nn
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaModel,
    T5Config,
    T5Model,
)

import layerscope
from layerscope.capture import discover_layers, extract_tensor, resolve_sites
from layerscope.store import Store

METRICS = ["mean", "std", "rms", "max_abs", "kurtosis"]


def _ref(x: torch.Tensor) -> dict[str, float]:
    f = x.double()
    m = f.mean()
    var = ((f - m) ** 2).mean()
    return {
        "mean": float(m),
        "std": float(var.sqrt()),
        "rms": float(f.pow(2).mean().sqrt()),
        "max_abs": float(f.abs().max()),
        "kurtosis": float(((f - m) ** 4).mean() / var**2),
    }


def _capture(model: nn.Module, sites: list[str], fn) -> dict[tuple[int, str], torch.Tensor]:
    """Run fn() and return each (layer index, site)'s activation, from hooks of our own."""
    got: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for h in resolve_sites(discover_layers(model), sites):

        def grab(m, a, o=None, key=(h.layer.index, h.site), kind=h.kind):
            got[key] = extract_tensor(a if kind == "input" else o).detach().clone()

        if h.kind == "input":
            handles.append(h.module.register_forward_pre_hook(grab))
        else:
            handles.append(h.module.register_forward_hook(grab))
    try:
        with torch.no_grad():
            fn()
    finally:
        for hd in handles:
            hd.remove()
    return got


def _padded(batch: int, seq: int, lengths: list[int], left: bool, vocab: int = 100):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    pos = torch.arange(seq)[None]
    n = torch.tensor(lengths)[:, None]
    mask = (pos >= seq - n) if left else (pos < n)
    return torch.where(mask, ids, 0), mask.long()


def _check(rec: layerscope.Recorder, acts: dict, masks: dict[str, torch.Tensor], key_of) -> None:
    (record,) = rec.history
    for (index, site), x in acts.items():
        real = x[masks[key_of(index)].bool()]
        ref = _ref(real)
        full = _ref(x)
        # (LayerNorm'd outputs have mean 0 and std 1 per token, pads or not; their shape differs)
        assert max(abs(ref[k] - full[k]) / abs(ref[k]) for k in ("rms", "kurtosis", "max_abs")) > 1e-4
        for metric in METRICS:
            got = record.values[(metric, site)][index - 1]
            assert got == pytest.approx(ref[metric], rel=2e-5, abs=1e-6 * ref["rms"]), (index, site, metric)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_padded_batch_statistics_are_those_of_the_real_tokens(family: str) -> None:
    torch.manual_seed(0)
    if family == "bert":
        model: nn.Module = BertModel(
            BertConfig(
                vocab_size=100,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
            )
        )
        ids, mask = _padded(4, 12, [12, 9, 4, 1], left=False)
    else:
        model = LlamaModel(
            LlamaConfig(
                vocab_size=100,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
            )
        )
        ids, mask = _padded(4, 12, [12, 9, 4, 1], left=True)  # decoder LMs pad on the left
    model.eval()
    sites = ["output", "mlp_act"]
    acts = _capture(model, sites, lambda: model(input_ids=ids, attention_mask=mask))
    rec = layerscope.Recorder(
        model, None, metrics=METRICS, sites=sites, mask="attention_mask", train_only=False
    )
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    rec.step(1)
    rec.close()
    _check(rec, acts, {"": mask}, lambda i: "")


def test_encoder_decoder_layers_use_their_own_masks() -> None:
    torch.manual_seed(0)
    model = T5Model(
        T5Config(
            vocab_size=100, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, decoder_start_token_id=0
        )
    )
    model.eval()
    ids, mask = _padded(3, 10, [10, 6, 2], left=False)
    dec, dec_mask = _padded(3, 7, [7, 5, 3], left=False)
    kwargs = {
        "input_ids": ids,
        "attention_mask": mask,
        "decoder_input_ids": dec,
        "decoder_attention_mask": dec_mask,
    }
    acts = _capture(model, ["output"], lambda: model(**kwargs))
    rec = layerscope.Recorder(model, None, metrics=METRICS, mask="attention_mask", train_only=False)
    with torch.no_grad():
        model(**kwargs)
    rec.step(1)
    rec.close()
    decoder = {la.index for la in rec.layers if la.stack.startswith("decoder")}
    assert decoder == {3, 4}
    _check(rec, acts, {"enc": mask, "dec": dec_mask}, lambda i: "dec" if i in decoder else "enc")


def test_hf_callback_masks_padded_batches_by_default(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    from layerscope.integrations.hf import LayerscopeCallback

    seq = 12
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, seq + 1, (24,), generator=g)
    data = [{"input_ids": torch.randint(1, 64, (int(n),), generator=g)} for n in lengths]
    masks: list[torch.Tensor] = []

    def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), longest, dtype=torch.long)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = r["input_ids"]
            mask[i, : len(r["input_ids"])] = 1
        masks.append(mask)
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.where(mask.bool(), ids, -100)}

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            n_layer=2, n_embd=32, n_head=2, n_positions=32, vocab_size=64, bos_token_id=0, eos_token_id=0
        )
    )
    outs: list[list[torch.Tensor]] = []
    blocks = model.transformer.h
    hs = [b.register_forward_hook(lambda m, a, o, i=i: _keep(outs, i, o)) for i, b in enumerate(blocks)]
    db = tmp_path / "runs.db"
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=0,
    )
    cb = LayerscopeCallback(store=db, run="padded", metrics=["rms", "max_abs"])
    Trainer(model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[cb]).train()
    for h in hs:
        h.remove()
    rms = layerscope.load(db, run="padded", metric="rms")
    assert rms.steps == [1, 2, 3, 4, 5, 6] and len(masks) == 6
    for step in range(6):
        for layer in range(2):
            x = outs[step][layer][masks[step].bool()].double()
            assert rms.values[step, layer] == pytest.approx(float(x.pow(2).mean().sqrt()), rel=1e-5)
    with Store(db, readonly=True) as st:
        assert st.run_config("padded")["mask"] == "attention_mask"


def _keep(outs: list[list[torch.Tensor]], i: int, o) -> None:
    if i == 0:
        outs.append([])
    outs[-1].append(extract_tensor(o).detach().clone())
