"""``sweep --mask``: a padded probe's real tokens only, and the same numbers as live recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from layerscope.recorder import Recorder
from layerscope.store import Store
from layerscope.sweep import sweep
from layerscope.testing import Corpus, tiny_gpt

FACTORY_PY = """
import torch.nn as nn
from layerscope.testing import tiny_gpt

class Padded(nn.Module):
    def __init__(self):
        super().__init__()
        self.gpt = tiny_gpt(n_layer=3, n_embd=32, n_head=2, block_size=16)

    def forward(self, input_ids, attention_mask=None):
        return self.gpt(input_ids)

def model():
    return Padded()
"""


class Padded(nn.Module):
    """An HF-style forward over the tiny GPT (causal: pads on the right do not touch real tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.gpt = tiny_gpt(n_layer=3, n_embd=32, n_head=2, block_size=16)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.gpt(input_ids)


def _probe() -> dict[str, torch.Tensor]:
    ids = Corpus(n_chars=20_000).probe(batch_size=4, block_size=16)
    mask = (torch.arange(16)[None] < torch.tensor([16, 12, 6, 3])[:, None]).long()
    return {"input_ids": torch.where(mask.bool(), ids, 0), "attention_mask": mask}


def test_live_masked_recording_equals_masked_sweep(tmp_path: Path) -> None:
    corpus = Corpus(n_chars=20_000)
    torch.manual_seed(0)
    model = Padded()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    db, ck = tmp_path / "runs.db", tmp_path / "ckpts"
    ck.mkdir()
    probe = _probe()
    sites = ("output", "mlp_act")
    with Recorder(
        model, db, run="live", metrics="all", sites=sites, every=2, probe=probe, mask="attention_mask"
    ) as rec:
        for step in range(1, 5):
            x, y = corpus.batch(4, 16, step)
            nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            opt.step()
            opt.zero_grad()
            if rec.step(step):
                torch.save(model.state_dict(), ck / f"step_{step}.pt")
    res = sweep(
        ck,
        store=db,
        run="swept",
        probe=probe,
        model=Padded,
        metrics="all",
        sites=sites,
        mask="attention_mask",
    )
    assert sorted(res.written) == [2, 4] and res.failed == []
    unmasked = sweep(ck, store=db, run="unmasked", probe=probe, model=Padded, metrics="all", sites=sites)
    assert unmasked.failed == []
    with Store(db, readonly=True) as st:
        for metric, site in st.metrics("live"):
            live, swept = st.load("live", metric, site), st.load("swept", metric, site)
            assert live.steps == swept.steps == [2, 4]
            np.testing.assert_allclose(
                swept.values, live.values, rtol=1e-6, atol=0, err_msg=f"{metric}/{site}"
            )
        rms = st.load("swept", "rms", "output").values
        assert not np.allclose(rms, st.load("unmasked", "rms", "output").values, rtol=1e-4)
        assert st.run_config("swept")["mask"] == "attention_mask"
    # and the values are the real tokens' (an independent float64 reference on the last checkpoint)
    m = Padded()
    m.load_state_dict(torch.load(ck / "step_4.pt"))
    m.eval()
    outs: list[torch.Tensor] = []
    hs = [b.register_forward_hook(lambda mod, a, o: outs.append(o.detach())) for b in m.gpt.h]
    with torch.no_grad():
        m(**probe)
    for h in hs:
        h.remove()
    real = probe["attention_mask"].bool()
    want = [float(o[real].double().pow(2).mean().sqrt()) for o in outs]
    np.testing.assert_allclose(rms[-1], want, rtol=1e-5)


def test_cli_mask_flag(tmp_path: Path, cli) -> None:
    (tmp_path / "factory.py").write_text(FACTORY_PY)
    ck = tmp_path / "ckpts"
    ck.mkdir()
    torch.manual_seed(0)
    torch.save(Padded().state_dict(), ck / "step_1.pt")
    torch.save(_probe(), tmp_path / "probe.pt")
    r = cli(
        "sweep",
        str(ck),
        "--model",
        f"{tmp_path / 'factory.py'}:model",
        "--probe",
        str(tmp_path / "probe.pt"),
        "--store",
        str(tmp_path / "runs.db"),
        "--run",
        "s",
        "--mask",
        "attention_mask",
    )
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "runs.db", readonly=True) as st:
        assert st.steps("s") == [1] and st.run_config("s")["mask"] == "attention_mask"
