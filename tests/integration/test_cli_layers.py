"""``layerscope layers``, run as a user runs it (subprocesses), plus its error lines in-process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from tests._require import require

from layerscope.cli.main import main

SITES = ["output", "mlp_act", "attn_out", "mlp_out", "mlp_down_in"]


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = require("transformers")
    folder = tmp_path_factory.mktemp("t5-tiny")
    transformers.T5Config(
        num_layers=2,
        num_decoder_layers=3,
        d_model=32,
        d_ff=64,
        num_heads=2,
        d_kv=16,
        vocab_size=96,
        architectures=["T5ForConditionalGeneration"],
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text(
        textwrap.dedent("""
        import torch.nn as nn

        def mlp():
            return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        def linear():
            return nn.Linear(4, 4)

        def not_a_model():
            return {"weights": 1}
    """)
    )
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in-process (same code path as the console script, minus the interpreter start)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def test_json_for_the_demo_model(cli) -> None:
    r = cli("layers", "--model", "layerscope.testing:tiny_gpt", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["stack"], x["index"], x["depth"], x["name"], x["class"]) for x in rows] == [
        ("h", i + 1, i + 1, f"h.{i}", "Block") for i in range(12)
    ]
    assert rows[4]["sites"] == {
        "output": "h.4",
        "mlp_act": "h.4.mlp.act",
        "attn_out": "h.4.attn",
        "mlp_out": "h.4.mlp",
        "mlp_down_in": "h.4.mlp.c_proj",
    }
    assert rows[4]["inputs"] == ["mlp_down_in"]


def test_hf_config_two_stacks_table_and_json(cli, capsys, t5_folder: Path) -> None:
    r = cli("layers", "--hf-config", str(t5_folder / "config.json"), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["stack"], x["index"], x["depth"]) for x in rows] == [
        ("encoder.block", 1, 1),
        ("encoder.block", 2, 2),
        ("decoder.block", 3, 1),
        ("decoder.block", 4, 2),
        ("decoder.block", 5, 3),
    ]
    assert rows[0]["sites"]["mlp_act"] == "encoder.block.0.layer.1.DenseReluDense.act"
    assert rows[2]["sites"]["mlp_act"] == "decoder.block.0.layer.2.DenseReluDense.act"
    assert rows[4]["sites"]["attn_out"] == "decoder.block.2.layer.0.SelfAttention"
    assert all(set(x["sites"]) == set(SITES) and x["class"] == "T5Block" for x in rows)

    code, out, err = _run(["layers", "--hf-config", str(t5_folder)], capsys)  # a folder; table by default
    assert code == 0, err
    assert "T5ForConditionalGeneration: 5 layers in 2 stacks: encoder.block (2), decoder.block (3)" in out
    table = "".join(out.split())  # cells may fold on a narrow terminal
    assert "layer.2.DenseReluDense.act" in table and "DenseReluDense.wo(input)" in table


def test_missing_sites_are_null_and_dashes(capsys, model_file: Path) -> None:
    code, out, err = _run(["layers", "--model", f"{model_file}:mlp", "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [(x["index"], x["name"], x["stack"]) for x in rows] == [(1, "0", ""), (2, "2", "")]
    assert rows[0]["sites"] == {
        "output": "0",
        "mlp_act": None,
        "attn_out": None,
        "mlp_out": None,
        "mlp_down_in": None,
    }
    code, out, err = _run(["layers", "--model", f"{model_file}:mlp"], capsys)
    assert code == 0 and "Sequential: 2 layers in 1 stack: (model) (2)" in out and " - " in out


def test_layers_glob_selects_modules(capsys) -> None:
    code, out, err = _run(
        [
            "layers",
            "--model",
            "layerscope.testing:tiny_gpt",
            "--layers",
            "h.1?.mlp",
            "--layers",
            "ln_f",
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 0, err
    assert [(x["index"], x["name"]) for x in json.loads(out)] == [
        (1, "h.10.mlp"),
        (2, "h.11.mlp"),
        (3, "ln_f"),
    ]
    code, out, err = _run(
        ["layers", "--model", "layerscope.testing:tiny_gpt", "--layers", "h.*.attn,h.0"], capsys
    )
    assert code == 0 and "13 layers selected by --layers" in out


def test_error_lines(cli, capsys, tmp_path: Path, model_file: Path) -> None:
    r = cli("layers", "--model", "layerscope.testing:no_such_factory")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.startswith("error: model spec 'layerscope.testing:no_such_factory'")
        and r.stderr.count("\n") == 1
    )

    cases = [
        (["layers"], "exactly one of --model"),
        (["layers", "--model", "x:y", "--hf-config", "c.json"], "exactly one of --model"),
        (["layers", "--model", "layerscope.testing"], "has no ':'"),
        (["layers", "--model", f"{model_file}:not_a_model"], "returned a dict, not a torch.nn.Module"),
        (["layers", "--model", f"{model_file}:linear"], "no repeated layer stack found in Linear"),
        (["layers", "--hf-config", str(tmp_path / "missing")], "does not exist"),
        (["layers", "--model", "layerscope.testing:tiny_gpt", "--layers", "blocks.*"], "matched no module"),
    ]
    for argv, needle in cases:
        code, out, err = _run(argv, capsys)
        assert code == 2, (argv, err)
        assert needle in err and err.startswith("error: ") and err.count("\n") == 1, (argv, err)
    _, _, err = _run(["layers", "--model", f"{model_file}:linear"], capsys)
    assert "--layers GLOB" in err  # the no-stack error says what to do


def test_attn_and_logits_sites_for_the_demo_model(capsys) -> None:
    code, out, err = _run(["layers", "--model", "layerscope.testing:tiny_gpt", "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert all(r["attn"]["module"] == f"{r['name']}.attn" and r["attn"]["heads"] == 4 for r in rows)
    assert [r["logits"] for r in rows] == [None] * 11 + ["lm_head"]  # stored in the last layer's column
    code, out, err = _run(["layers", "--model", "layerscope.testing:tiny_gpt"], capsys)
    assert code == 0, err
    assert "attn (4 heads)" in out
    assert "site attn: per-head max_logit, entropy and sink in 12 of 12 layers" in out
    assert "site logits: the LM head lm_head (one series per step, in layer 12's column)" in out


def test_attn_sites_of_hf_models_gqa_rotary_t5_and_unsupported(
    capsys, tmp_path: Path, t5_folder: Path
) -> None:
    transformers = require("transformers")
    llama, neox = tmp_path / "llama", tmp_path / "neox"
    small = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=96
    )
    transformers.LlamaConfig(
        **small, num_key_value_heads=2, architectures=["LlamaForCausalLM"]
    ).save_pretrained(llama)
    transformers.GPTNeoXConfig(**small, architectures=["GPTNeoXForCausalLM"]).save_pretrained(neox)

    code, out, err = _run(["layers", "--hf-config", str(llama), "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["attn"]["heads"], r["attn"]["kv_heads"], r["attn"]["rotary"]) for r in rows] == [
        (4, 2, True)
    ] * 2
    assert rows[-1]["logits"] == "lm_head"
    code, out, err = _run(["layers", "--hf-config", str(llama)], capsys)
    assert code == 0 and "self_attn (4 q / 2 kv heads, rotary)" in out, err

    code, out, err = _run(["layers", "--hf-config", str(t5_folder), "--format", "json"], capsys)
    rows = json.loads(out)
    assert [r["attn"]["family"] for r in rows] == ["t5"] * 5 and rows[-1]["logits"] == "lm_head"
    assert rows[3]["attn"]["module"] == "decoder.block.1.layer.0.SelfAttention"  # self-, not cross-attention

    code, out, err = _run(["layers", "--hf-config", str(neox)], capsys)
    assert code == 0, err  # listing is not recording: the page says why attn cannot be recorded
    assert "unsupported" in out and "site attn: not recordable here" in out and "docs/attention.md" in out
    assert "site logits: the LM head lm_head" in out or "site logits: the LM head embed_out" in out
