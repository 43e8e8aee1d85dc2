"""The training sites go through the tools that read a store with no special case: the dashboard's
JSON API, ``compare`` (library and CLI) and the TensorBoard / W&B / MLflow sinks.

Two short real runs of the tiny GPT (AdamW at two learning rates) record ``output`` and all four
training sites through ``Recorder(optimizer=opt)``; every tool's answer is checked against the
matrix :func:`layerscope.load` reads from the same store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests._require import require

import layerscope
from layerscope.integrations import MLflowSink, SinkStore, TensorBoardSink, log_run
from layerscope.render.diff import difference, summarize
from layerscope.store import Store
from layerscope.testing import Corpus, tiny_gpt

SITES = ("output", "grad_output", "param_grad", "update", "weight")
N_LAYER = 3
STEPS = [2, 4, 6, 8]
# One (metric, site) per training site, as a user would plot them.
PAIRS = [("ratio", "update"), ("norm", "param_grad"), ("rms", "grad_output"), ("rms", "weight")]


def _train(store, run: str, lr: float, **kw) -> None:
    torch.manual_seed(0)
    model = tiny_gpt(n_layer=N_LAYER, n_embd=16, n_head=2, block_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(model, store, run=run, sites=SITES, optimizer=opt, every=2, **kw) as rec:
        for step in range(1, STEPS[-1] + 1):
            _, loss = model(*corpus.batch(4, 16, step))
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("tsites") / "runs.db"
    _train(db, "slow", 1e-3)
    _train(db, "fast", 1e-2)
    return db


def _finite_or_none(a: np.ndarray) -> list[list[float | None]]:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in a]


def test_every_training_site_is_stored_with_finite_values(store: Path) -> None:
    with Store(store, readonly=True) as st:
        pairs = set(st.metrics("slow"))
    for metric, site in [*PAIRS, ("log_ratio", "update"), ("norm", "update"), ("max_abs", "weight")]:
        assert (metric, site) in pairs
        hm = layerscope.load(store, run="slow", metric=metric, site=site)
        assert hm.steps == STEPS and hm.layers == [1, 2, 3]
        assert np.isfinite(hm.values).all(), (metric, site)
    ratio = layerscope.load(store, run="slow", metric="ratio", site="update").values
    assert (ratio > 0).all() and (ratio < 1).all()  # one AdamW step moves W by a small fraction of it


# -- the dashboard --------------------------------------------------------------------------------


def _get(client, url: str) -> dict:
    r = client.get(url)
    assert r.status_code == 200, r.data[:500]
    return json.loads(r.data)


def test_dashboard_lists_and_serves_the_training_sites(store: Path) -> None:
    from layerscope.serve import create_app

    client = create_app(store).test_client()
    d = _get(client, "/api/run?run=slow")
    with Store(store, readonly=True) as st:
        assert [tuple(p) for p in d["pairs"]] == st.metrics("slow")
    assert set(SITES) <= set(d["sites"]) and {"ratio", "norm", "log_ratio"} <= set(d["metrics"])
    for metric, site in PAIRS:
        hm = layerscope.load(store, run="slow", metric=metric, site=site)
        got = _get(client, f"/api/heatmap?run=slow&metric={metric}&site={site}")
        assert got["steps"] == hm.steps and got["layers"] == hm.layers
        assert got["layer_names"] == hm.layer_names
        assert got["values"] == _finite_or_none(hm.values), (metric, site)
    later = _get(client, "/api/heatmap?run=slow&metric=ratio&site=update&since_step=4")
    assert later["steps"] == [6, 8]
    rep = _get(client, "/api/report?run=slow&metric=ratio&site=update")
    want = layerscope.report_run(
        store, run="slow", metric="ratio", site="update"
    )  # as `report STORE` writes it
    assert rep["report"] == want.to_dict() and rep["markdown"] == want.to_markdown()
    cmp = _get(client, "/api/compare?run_a=slow&run_b=fast&metric=ratio&site=update")
    a = layerscope.load(store, run="slow", metric="ratio", site="update")
    b = layerscope.load(store, run="fast", metric="ratio", site="update")
    assert cmp["steps"] == STEPS and cmp["diff"] == _finite_or_none(difference(a, b).values)


# -- compare --------------------------------------------------------------------------------------


def test_compare_of_two_runs_at_the_update_site(store: Path, cli) -> None:
    a = layerscope.load(store, run="slow", metric="ratio", site="update")
    b = layerscope.load(store, run="fast", metric="ratio", site="update")
    d = difference(a, b)
    np.testing.assert_array_equal(d.values, b.values - a.values)
    assert (d.values > 0).all()  # ten times the learning rate: larger updates in every cell
    s = summarize(a, b)
    assert s.sentences[0].startswith("Compared ratio (site update)")

    r = cli(
        "compare", str(store), "--run", "slow", "--run", "fast", "--site", "update", "--metric", "ratio",
        "--format", "json", "-o", str(store.parent / "diff.png"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (facts,) = json.loads(r.stdout)
    assert (facts["metric"], facts["site"], facts["a"], facts["b"]) == ("ratio", "update", "slow", "fast")
    i, j = np.unravel_index(np.argmax(np.abs(d.values)), d.values.shape)
    assert facts["max"]["layer"] == a.layers[j] and facts["max"]["step"] == a.steps[i]
    assert facts["max"]["diff"] == pytest.approx(d.values[i, j], rel=1e-9)
    assert facts["max"]["a"] == pytest.approx(a.values[i, j], rel=1e-9)
    assert (store.parent / "diff.png").read_bytes()[:4] == b"\x89PNG"


# -- the sinks ------------------------------------------------------------------------------------


def test_tensorboard_live_sink_gets_every_training_site(tmp_path: Path) -> None:
    require("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    with SinkStore(tmp_path / "runs.db", [TensorBoardSink(log_dir=tb)]) as st:
        _train(st, "r", 1e-3, flush_every=2)
        st.log_images("r")
    ea = EventAccumulator(str(tb), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    for metric, site in PAIRS:
        hm = layerscope.load(tmp_path / "runs.db", run="r", metric=metric, site=site)
        for layer in hm.layers:
            pts = ea.Scalars(f"layerscope/{metric}/{site}/layer_{layer}")
            assert [p.step for p in pts] == STEPS
            np.testing.assert_allclose([p.value for p in pts], hm.column(layer), rtol=1e-6)
    assert "layerscope/heatmap/ratio/update" in ea.Tags()["images"]


def test_wandb_offline_run_gets_the_update_ratio(store: Path, tmp_path: Path, monkeypatch) -> None:
    wandb = require("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="layerscope-test", dir=str(tmp_path), mode="offline")
    try:
        log_run(store, "slow", to=run, metrics=["ratio", "norm"], sites=["update", "param_grad"])
        ratio = layerscope.load(store, run="slow", metric="ratio", site="update")
        norm = layerscope.load(store, run="slow", metric="norm", site="param_grad")
        assert run.summary["layerscope/step"] == STEPS[-1]
        for layer in ratio.layers:
            assert run.summary[f"layerscope/ratio/update/layer_{layer}"] == pytest.approx(
                ratio.row(STEPS[-1])[layer - 1], rel=1e-6
            )
            assert run.summary[f"layerscope/norm/param_grad/layer_{layer}"] == pytest.approx(
                norm.row(STEPS[-1])[layer - 1], rel=1e-6
            )
        media = Path(run.dir) / "media" / "images" / "layerscope" / "heatmap" / "ratio"
    finally:
        run.finish()
    assert list(media.glob("update_*.png"))


def test_mlflow_file_store_gets_every_training_site(store: Path, tmp_path: Path, monkeypatch) -> None:
    require("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("layerscope-test")).info.run_id
    log_run(store, "slow", to=MLflowSink(run_id, tracking_uri=uri), metrics=["ratio", "norm", "rms"])
    for metric, site in PAIRS:
        hm = layerscope.load(store, run="slow", metric=metric, site=site)
        for layer in hm.layers:
            hist = sorted(
                client.get_metric_history(run_id, f"layerscope/{metric}/{site}/layer_{layer}"),
                key=lambda m: m.step,
            )
            assert [m.step for m in hist] == STEPS
            np.testing.assert_allclose([m.value for m in hist], hm.column(layer), rtol=1e-9)
