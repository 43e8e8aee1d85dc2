"""torch.distributed.checkpoint folders on one process: what is trusted (a .metadata pickle built to run
code is refused before it runs), broken folders (one line each), a DCP folder as CKPT_DIR, and a DCP
folder inside a Hugging Face checkpoint folder swept with --hf. The 2-rank FSDP2 run that writes
sharded ones is tests/distributed/test_dcp_two_ranks.py."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

from layerscope.errors import CheckpointError
from layerscope.store import Store
from layerscope.sweep import read_checkpoint, sweep
from layerscope.testing import tiny_gpt

KW = dict(n_layer=2, n_embd=16, n_head=2, block_size=16)
PROBE = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))


def _save(folder: Path, state: dict) -> None:
    dcp.save(state, checkpoint_id=folder, no_dist=True)


def _app_state(seed: int) -> tuple[dict, dict[str, torch.Tensor]]:
    model = tiny_gpt(seed=seed, **KW)
    opt = torch.optim.AdamW(model.parameters())
    model(PROBE, PROBE)[1].backward()
    opt.step()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"model": sd, "optim": opt.state_dict()}, sd


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_metadata_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    state, sd = _app_state(1)
    _save(ck / "step-1", state)
    _save(ck / "step-2", _app_state(2)[0])
    marker = tmp_path / "pwned"
    with open(ck / "step-2" / ".metadata", "wb") as f:
        pickle.dump(Payload(marker), f)
    with pytest.raises(
        CheckpointError, match=r"step-2: refused to load: its .metadata pickle asks for the global"
    ):
        read_checkpoint(ck / "step-2" / ".metadata", "step-2")
    res = sweep(ck, store=tmp_path / "runs.db", run="r", probe=PROBE, model=lambda: tiny_gpt(**KW))
    assert not marker.exists()
    assert res.written == [1] and len(res.failed) == 1 and "refused to load" in res.failed[0].message
    loaded = read_checkpoint(ck / "step-1" / ".metadata", "step-1", trust=True)  # torch's own reader
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in sd.items())


def test_broken_dcp_folders_are_one_line_each(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    for step in (1, 2, 3, 4):
        _save(ck / f"step-{step}", _app_state(step)[0])
    (ck / "step-2" / "__0_0.distcp").unlink()
    (ck / "step-2" / "__1_0.distcp").write_bytes(b"")  # keeps it a DCP folder, with the shard it needs gone
    meta = (ck / "step-3" / ".metadata").read_bytes()
    (ck / "step-3" / ".metadata").write_bytes(meta[: len(meta) // 2])
    shard = ck / "step-4" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    _save(ck / "step-5", {"optimizer": _app_state(5)[0]["optim"]})  # no model in it
    res = sweep(ck, store=tmp_path / "runs.db", run="r", probe=PROBE, model=lambda: tiny_gpt(**KW))
    assert res.written == [1]
    msgs = {Path(p.path).name: p.message for p in res.failed}
    assert "shard '__0_0.distcp' listed in .metadata is missing" in msgs["step-2"]
    assert "truncated or corrupt" in msgs["step-3"]
    assert "cannot be read" in msgs["step-4"] and "copy the checkpoint folder again" in msgs["step-4"]
    assert "no model tensors" in msgs["step-5"]
    assert all("\n" not in m for m in msgs.values())


def test_ckpt_dir_can_be_one_dcp_folder_with_lightnings_meta_pt(tmp_path: Path) -> None:
    folder = tmp_path / "last.ckpt"
    state, sd = _app_state(3)
    _save(folder, {"model": {f"net.{k}": v for k, v in sd.items()}, "optimizer_0": state["optim"]})
    torch.save({"global_step": 1234, "epoch": 2}, folder / "meta.pt")
    res = sweep(folder, store=tmp_path / "runs.db", run="r", probe=PROBE, model=lambda: tiny_gpt(**KW))
    assert res.failed == [] and res.written == [1234]  # meta.pt is the step, not a checkpoint


def test_hf_checkpoint_folder_holding_a_dcp_folder(tmp_path: Path) -> None:
    tf = pytest.importorskip("transformers")
    tf.utils.logging.set_verbosity_error()
    cfg = tf.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=256, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    m = tf.GPT2LMHeadModel(cfg)
    folder = tmp_path / "out" / "checkpoint-7"
    _save(folder / "pytorch_model_fsdp_0", {"model": dict(m.state_dict())})
    _save(folder / "optimizer_0", {"optimizer": torch.optim.SGD(m.parameters(), lr=0.1).state_dict()})
    cfg.save_pretrained(folder)
    res = sweep(tmp_path / "out", store=tmp_path / "runs.db", run="hf", probe=PROBE, hf=True, metrics="rms")
    assert res.failed == [] and res.written == [7]
    outs = []
    hooks = [
        b.register_forward_hook(lambda mod, a, o: outs.append((o[0] if isinstance(o, tuple) else o).double()))
        for b in m.transformer.h
    ]
    m.eval()
    with torch.no_grad():
        m(PROBE)
    for h in hooks:
        h.remove()
    with Store(tmp_path / "runs.db", readonly=True) as st:
        got = st.load("hf", "rms").values[0]
    np.testing.assert_allclose(got, [float(o.pow(2).mean().sqrt()) for o in outs], rtol=1e-5)
