"""The report of a real recording of the tiny GPT with sites attn and logits: one head's queries are
scaled up 15% a step, and the report names that head as the one whose max logit grows fastest,
with the factor an independent reading of the store gives; every number is in the JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.unit.test_analysis import quoted_numbers_not_in_json

import layerscope
from layerscope.store import Store
from layerscope.testing import tiny_gpt
from layerscope.testing.corpus import Corpus

N_LAYER, N_HEAD, N_EMBD = 4, 4, 64
LAYER, HEAD = 3, 1  # the provoked head: layer 3 (h.2), head 1


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("attn") / "runs.db"
    torch.manual_seed(0)
    m = tiny_gpt(n_layer=N_LAYER, n_embd=N_EMBD, n_head=N_HEAD, block_size=32)
    corpus = Corpus(n_chars=20000)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    hs = N_EMBD // N_HEAD
    rows = slice(HEAD * hs, (HEAD + 1) * hs)  # the head's query rows of the fused [q | k | v] weight
    with layerscope.Recorder(
        m, path, run="provoked", sites=("output", "attn", "logits"), every=4, watch=True
    ) as rec:
        for step in range(1, 41):
            x, y = corpus.batch(8, 32, step)
            _, loss = m(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            with torch.no_grad():
                attn = m.h[LAYER - 1].attn.c_attn
                attn.weight[rows] *= 1.15
                attn.bias[rows] *= 1.15
            rec.step(step)
    return path


def _ends(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    k = max(1, min(3, len(v) // 10))
    return float(np.median(v[:k])), float(np.median(v[-k:]))


def test_the_provoked_head_is_named_with_its_factor(recorded: Path) -> None:
    rep = layerscope.report_run(recorded, metric="max_logit", site="attn")
    d = rep.to_dict()
    ml = d["heads"]["max_logit"]
    assert ml["n_heads"] == N_LAYER * N_HEAD
    top = ml["top"][0]
    assert (top["layer"], top["head"], top["layer_name"]) == (LAYER, HEAD, f"h.{LAYER - 1}")
    with Store(recorded, readonly=True) as st:  # the same head read independently, one head at a time
        series = st.load("provoked", "max_logit", "attn", reduce=HEAD).values[:, LAYER - 1]
        factors = []
        for h in range(N_HEAD):
            for j in range(N_LAYER):
                a, b = _ends(st.load("provoked", "max_logit", "attn", reduce=h).values[:, j])
                factors.append(b / a)
    first, last = _ends(series)
    assert top["factor"] == pytest.approx(last / first, rel=5e-3) and top["factor"] > 10
    assert ml["n_growing"] == sum(f >= 2.0 for f in factors)
    md = rep.to_markdown()
    assert f"layer {LAYER} head {HEAD} (`h.{LAYER - 1}`)" in md
    assert quoted_numbers_not_in_json(md, d) == []


def test_entropy_sink_and_logits_reports_of_the_recording(recorded: Path) -> None:
    for metric, site in [("entropy", "attn"), ("sink", "attn"), ("max_logit", "logits"), ("log_z", "logits")]:
        rep = layerscope.report_run(recorded, metric=metric, site=site)
        d = rep.to_dict()
        assert quoted_numbers_not_in_json(rep.to_markdown(), d) == [], (metric, site)
        if site == "attn":
            assert d["aggregate"]["reduce"] == "mean" and d["heads"]["entropy"]["n_heads"] == N_LAYER * N_HEAD
        else:
            assert d["n_layers"] == 1 and [s["metric"] for s in d["logits"]["series"]] == [
                "max_logit",
                "log_z",
                "entropy",
            ]
    with Store(recorded, readonly=True) as st:
        lz = st.load("provoked", "log_z", "logits").values[:, -1]
        n_alerts = sum(e.kind == "alert" for e in st.events("provoked"))
    got = {s["metric"]: s for s in d["logits"]["series"]}["log_z"]
    first, last = _ends(lz)
    assert (got["first"], got["last"]) == (pytest.approx(first, rel=5e-3), pytest.approx(last, rel=5e-3))
    assert d["alerts"]["n_total"] == n_alerts
