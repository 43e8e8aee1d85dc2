"""Logging to where people already look: TensorBoard event files, W&B offline runs, MLflow file stores."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests._require import require

import layerscope
from layerscope.errors import ConfigError
from layerscope.integrations import (
    MLflowSink,
    Sink,
    SinkStore,
    TensorBoardSink,
    WandbSink,
    log_heatmap,
    log_run,
)
from layerscope.testing import Corpus, tiny_gpt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_LAYER = 3


def _train(store, run: str = "r", steps: int = 12, every: int = 3, **kw) -> None:
    model = tiny_gpt(n_layer=N_LAYER, n_embd=16, n_head=2, block_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(model, store, run=run, metrics=("rms", "max_abs"), every=every, **kw) as rec:
        for step in range(1, steps + 1):
            _, loss = model(*corpus.batch(4, 16, step))
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    return ea


@pytest.fixture
def recorded(tmp_path) -> Path:
    db = tmp_path / "runs.db"
    _train(db)
    return db


def test_live_tensorboard_event_file_holds_scalars_and_the_heatmap_image(tmp_path):
    require("tensorboard")
    tb = tmp_path / "tb"
    # flush_every=2: the sink sees the steps at each of the recorder's flushes, not one by one.
    with SinkStore(tmp_path / "runs.db", [TensorBoardSink(log_dir=tb)]) as st:
        _train(st, flush_every=2)
        st.log_images("r")

    ea = _events(tb)
    hm = layerscope.load(tmp_path / "runs.db", run="r", metric="rms")
    for layer in hm.layers:
        pts = ea.Scalars(f"layerscope/rms/output/layer_{layer}")
        assert [p.step for p in pts] == [3, 6, 9, 12]
        np.testing.assert_allclose([p.value for p in pts], hm.column(layer), rtol=1e-6)
    assert set(ea.Tags()["images"]) == {"layerscope/heatmap/rms/output", "layerscope/heatmap/max_abs/output"}
    (img,) = ea.Images("layerscope/heatmap/rms/output")
    assert img.step == 12
    assert img.encoded_image_string[:8] == PNG_MAGIC
    from PIL import Image

    pic = Image.open(io.BytesIO(img.encoded_image_string))
    pic.load()  # a whole, decodable PNG
    assert (pic.width, pic.height) == (img.width, img.height) and img.width > 200 and img.height > 150


def test_log_run_sends_a_finished_run_to_a_users_summary_writer(tmp_path, recorded):
    require("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    log_run(recorded, "r", to=writer, metrics=["max_abs"])
    writer.add_scalar("still/open", 1.0, 0)  # the user's writer is flushed, not closed
    writer.close()
    ea = _events(tmp_path / "tb")
    assert ea.Tags()["images"] == ["layerscope/heatmap/max_abs/output"]
    assert "layerscope/rms/output/layer_1" not in ea.Tags()["scalars"]
    assert [p.step for p in ea.Scalars("layerscope/max_abs/output/layer_3")] == [3, 6, 9, 12]


def test_log_heatmap_for_one_picture(tmp_path, recorded):
    require("tensorboard")
    hm = layerscope.load(recorded, run="r", metric="rms")
    png = log_heatmap(hm, TensorBoardSink(log_dir=tmp_path / "tb"), step=100)
    assert png.read_bytes()[:8] == PNG_MAGIC
    (img,) = _events(tmp_path / "tb").Images("layerscope/heatmap/rms/output")
    assert img.step == 100


class _Broken(Sink):
    kind = "broken"

    def add_scalars(self, values, step):
        raise OSError("dashboard unreachable")


def test_a_failing_sink_warns_once_and_the_store_keeps_every_step(tmp_path):
    with pytest.warns(RuntimeWarning, match="logging to broken failed") as warned:
        with SinkStore(tmp_path / "runs.db", [_Broken()]) as st:
            _train(st, flush_every=1)
    assert len([w for w in warned if "broken" in str(w.message)]) == 1
    assert layerscope.load(tmp_path / "runs.db", run="r").steps == [3, 6, 9, 12]


@pytest.mark.parametrize(
    "cls, module, extra",
    [
        (TensorBoardSink, "tensorboard", "tensorboard"),
        (WandbSink, "wandb", "wandb"),
        (MLflowSink, "mlflow", "mlflow"),
    ],
)
def test_a_missing_package_names_the_extra_to_install(monkeypatch, cls, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=rf"pip install 'layerscope\[{extra}\]'"):
        cls()


def test_unknown_target_is_one_clear_error():
    with pytest.raises(ConfigError, match="log_to='tensorbored' is not a sink"):
        log_run("nowhere.db", to="tensorbored")


def test_wandb_offline_run_gets_scalars_and_the_heatmap(tmp_path, recorded, monkeypatch):
    wandb = require("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="layerscope-test", dir=str(tmp_path), mode="offline")
    try:
        run.log({"loss": 1.0})  # the trainer's own logging moves W&B's step; ours uses layerscope/step
        log_run(recorded, "r", to=run, metrics=["rms"])
        hm = layerscope.load(recorded, run="r", metric="rms")
        assert run.summary["layerscope/step"] == 12
        assert run.summary["layerscope/rms/output/layer_2"] == pytest.approx(hm.row(12)[1], rel=1e-6)
        media = Path(run.dir) / "media" / "images" / "layerscope" / "heatmap" / "rms"
    finally:
        run.finish()
    (png,) = media.glob("output_*.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_mlflow_file_store_gets_scalars_and_the_heatmap(tmp_path, recorded, monkeypatch):
    require("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.x keeps file stores behind a flag
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("layerscope-test")).info.run_id
    log_run(recorded, "r", to=MLflowSink(run_id, tracking_uri=uri), metrics=["rms"])
    hist = client.get_metric_history(run_id, "layerscope/rms/output/layer_1")
    hm = layerscope.load(recorded, run="r", metric="rms")
    assert sorted(m.step for m in hist) == [3, 6, 9, 12]
    np.testing.assert_allclose([m.value for m in sorted(hist, key=lambda m: m.step)], hm.column(1), rtol=1e-9)
    pngs = list((tmp_path / "mlruns").rglob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
