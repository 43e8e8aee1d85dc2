"""coord-check: slopes against a direct fit of the stored values, the SP/muP verdicts, resuming,
HF config scaling and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import layerscope
from layerscope.analysis.coord import coord_verdict, fit_loglog, judge
from layerscope.coordcheck import builtin_batch, scale_hf_config
from layerscope.errors import ConfigError, DataError, NotFoundError
from layerscope.store import Store
from layerscope.store.coord import load_coord
from layerscope.testing import tiny_gpt_mup, tiny_gpt_sp

WIDTHS = [32, 64, 128, 256]
BATCH = builtin_batch(4, 32)


def _sp(width: int) -> torch.nn.Module:
    return tiny_gpt_sp(width, n_layer=3, block_size=32)


def _mup(width: int, optimizer: str = "adam"):  # type: ignore[no-untyped-def]
    return tiny_gpt_mup(width, n_layer=3, block_size=32, optimizer=optimizer)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("cc") / "cc.db")
    for run, f in (("sp", _sp), ("mup", _mup)):
        layerscope.coord_check(f, WIDTHS, db, run, steps=3, seeds=2, batch=BATCH, sites="output,mlp_act")
    return db


def test_slopes_equal_polyfit_of_the_stored_values(checked: str) -> None:
    with Store(checked, readonly=True) as st:
        for site in ("output", "mlp_act"):
            v = coord_verdict(load_coord(st, "sp", "abs_mean", site))
            for t, step in enumerate(v.data.steps):
                for j, layer in enumerate(v.data.layers):
                    # the mean over seeds of the stored rows, read one variant at a time
                    ys = [
                        np.mean(
                            [
                                st.load("sp", "abs_mean", site, variant=f"width={w},seed={s}").values[t, j]
                                for s in (0, 1)
                            ]
                        )
                        for w in WIDTHS
                    ]
                    slope, icpt = np.polyfit(np.log2(WIDTHS), np.log2(ys), 1)
                    f = v.fits[t][j]
                    assert f.slope == pytest.approx(slope, abs=1e-9), (site, step, layer)
                    assert f.intercept == pytest.approx(icpt, abs=1e-9)
                    res = np.log2(ys) - (slope * np.log2(WIDTHS) + icpt)
                    assert f.resid == pytest.approx(np.sqrt(np.mean(res**2)), abs=1e-9)
                    assert f.r2 == pytest.approx(
                        1 - np.sum(res**2) / np.sum((np.log2(ys) - np.mean(np.log2(ys))) ** 2)
                    )


def test_sp_grows_and_mup_is_stable_where_theory_says(checked: str) -> None:
    sp = coord_verdict(load_coord(checked, "sp", "abs_mean", "output"))
    mup = coord_verdict(load_coord(checked, "mup", "abs_mean", "output"))
    # theory: at init both are O(1) (1/fan_in init); after Adam steps SP's residual stream grows ~width
    assert [judge(f.slope) for f in sp.fits[0]] == ["stable"] * 3
    assert sp.layer_verdict == ["grows"] * 3 and sp.verdict == "grows"
    assert all(f.slope > 0.4 for f in sp.fits[2]), [f.slope for f in sp.fits[2]]
    assert mup.layer_verdict == ["stable"] * 3 and mup.verdict == "stable"
    assert "Grows with width: layers 1-3" in " ".join(sp.sentences())
    assert "Width-stable" in mup.sentences()[0]


def test_json_holds_every_slope_and_its_fit_quality(checked: str) -> None:
    d = coord_verdict(load_coord(checked, "sp", "rms", "output")).to_dict()
    json.dumps(d, allow_nan=False)
    assert len(d["fits"]) == 3 * 3
    assert {"slope", "r2", "resid", "stderr", "seed_sd", "values"} <= set(d["fits"][0])
    assert d["widths"] == WIDTHS and d["seeds"] == [0, 1] and d["steps"] == [1, 2, 3]


def test_rerun_skips_what_is_stored_and_adds_new_widths(checked: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cc = layerscope.coord_check(
        _sp, WIDTHS, checked, "sp", steps=3, seeds=2, batch=BATCH, sites="output,mlp_act"
    )
    assert cc.ran == [] and len(cc.skipped) == len(WIDTHS) * 2
    db = str(tmp_path / "r.db")
    layerscope.coord_check(_sp, [16, 32], db, "r", steps=2, seeds=1, batch=BATCH)
    cc = layerscope.coord_check(_sp, [16, 32, 64], db, "r", steps=2, seeds=1, batch=BATCH)
    assert cc.ran == [(64, 0)] and cc.skipped == [(16, 0), (32, 0)]
    assert load_coord(db, "r").widths == [16, 32, 64]
    with pytest.raises(ConfigError, match="lr=0.01, not 0.1"):
        layerscope.coord_check(_sp, [16, 32], db, "r", steps=2, seeds=1, lr=0.1, batch=BATCH)
    cc = layerscope.coord_check(_sp, [16, 32], db, "r", steps=2, seeds=1, lr=0.1, batch=BATCH, force=True)
    assert cc.ran == [(16, 0), (32, 0)]


def test_mup_groups_follow_the_table() -> None:
    model, groups = tiny_gpt_mup(256, base_width=32)
    hidden, vector = groups
    assert hidden["lr_scale"] == pytest.approx(32 / 256) and vector["lr_scale"] == 1.0
    n_hidden = sum(p.numel() for p in hidden["params"])  # type: ignore[attr-defined]
    assert n_hidden == 4 * 12 * 256 * 256  # c_attn 3n^2, attn c_proj n^2, c_fc 4n^2, mlp c_proj 4n^2
    assert model.config.readout_mult == pytest.approx(32 / 256)
    assert model.config.attn_scale == pytest.approx(np.sqrt(8) / 64)
    _, sgd = tiny_gpt_mup(256, base_width=32, optimizer="sgd")
    assert [g["lr_scale"] for g in sgd] == [1.0, 8.0]
    # at the base width muP is SP: 1/sqrt(head dim) attention, no readout multiplier
    assert tiny_gpt_mup(32)[0].config.attn_scale == pytest.approx(8**-0.5)
    assert tiny_gpt_mup(32)[0].config.readout_mult == 1.0


def test_fit_and_judge_by_hand() -> None:
    f = fit_loglog([64, 128, 256, 512], [1.0, 1.41421356, 2.0, 2.82842712])
    assert (
        f.slope == pytest.approx(0.5) and f.r2 == pytest.approx(1.0) and f.resid == pytest.approx(0, abs=1e-8)
    )
    assert np.isnan(fit_loglog([64, 128], [1.0, float("nan")]).slope)
    assert (judge(0.2), judge(0.21), judge(-0.21)) == ("stable", "grows", "shrinks")


def test_hf_config_scaling_builds_the_widths_it_says() -> None:
    pytest.importorskip("transformers")  # the hf extra; installed in the test environment
    from layerscope.coordcheck import hf_factory

    raw = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "vocab_size": 256,
        "architectures": ["LlamaForCausalLM"],
    }
    c = scale_hf_config(raw, 256)
    assert (c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]) == (
        256,
        704,
        16,
        8,
    )
    c = scale_hf_config(raw, 256, keep="heads")
    assert (c["num_attention_heads"], c["num_key_value_heads"]) == (4, 2)
    import pathlib
    import tempfile

    d = pathlib.Path(tempfile.mkdtemp())
    (d / "config.json").write_text(json.dumps(raw))
    for keep, heads in (("head_dim", 8), ("heads", 4)):
        m = hf_factory(d, keep=keep)(128)
        assert m.config.hidden_size == 128 and m.config.num_attention_heads == heads
        assert m.model.layers[0].mlp.up_proj.weight.shape == (352, 128)
        assert m.model.layers[0].self_attn.q_proj.weight.shape == (128, 128)
    gpt2 = {"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_layer": 2, "n_inner": None, "vocab_size": 256}
    assert scale_hf_config(gpt2, 64, width_key="n_embd", scale_keys=("n_inner",))["n_head"] == 4
    with pytest.raises(ConfigError, match="no width key 'hidden'"):
        scale_hf_config(raw, 128, width_key="hidden")
    with pytest.raises(ConfigError, match="not a multiple of the head dimension 16"):
        scale_hf_config(raw, 72)


def test_bad_input_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "b.db")
    with pytest.raises(ConfigError, match="at least 2 distinct"):
        layerscope.coord_check(_sp, [64], db)
    with pytest.raises(ConfigError, match="optimizer='lion'"):
        layerscope.coord_check(_sp, [32, 64], db, optimizer="lion")
    with pytest.raises(ConfigError, match="returned a int"):
        layerscope.coord_check(lambda width: 3, [32, 64], db, steps=1, seeds=1, batch=BATCH)
    with pytest.raises(DataError, match="token ids of shape"):
        layerscope.coord_check(_sp, [32, 64], db, steps=1, seeds=1, batch=torch.zeros(3))
    with pytest.raises(ConfigError, match="not a positive multiple of n_head=4"):
        layerscope.coord_check(_sp, [30, 64], db, steps=1, seeds=1, batch=BATCH)
    with pytest.raises(NotFoundError, match="no coord-check widths"):
        with Store(db) as st:
            from layerscope.store import LayerInfo

            st.create_run("plain", layers=[LayerInfo(1, "h.0")])
        load_coord(db, "plain")
