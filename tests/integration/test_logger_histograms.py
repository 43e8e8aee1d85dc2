"""Recorded histograms reach TensorBoard (add_histogram_raw) and W&B (wandb.Histogram) with the
counts the store holds, live (SinkStore) and after the fact (log_run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import layerscope
from layerscope.integrations import SinkStore, TensorBoardSink, WandbSink, log_run
from layerscope.integrations.loggers import histogram_data
from layerscope.store import Store
from layerscope.testing import Corpus, tiny_gpt

N_LAYER = 3


def _train(store, run: str = "r", steps: int = 6, every: int = 3) -> None:
    torch.manual_seed(0)
    model = tiny_gpt(n_layer=N_LAYER, n_embd=16, n_head=2, block_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    corpus = Corpus(n_chars=20_000)
    with layerscope.Recorder(
        model, store, run=run, metrics=("rms", "mean", "min", "max", "hist"), every=every
    ) as rec:
        for step in range(1, steps + 1):
            _, loss = model(*corpus.batch(4, 16, step))
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)


def _tb_histograms(log_dir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"histograms": 0})
    ea.Reload()
    return {tag: ea.Histograms(tag) for tag in ea.Tags()["histograms"]}


def _stored(db: Path, run: str = "r"):
    with Store(db, readonly=True) as st:
        counts, steps, edges = st.load_hist(run, "output")
        mean = st.load(run, "mean").values
    return counts, steps, edges, mean


def test_live_tensorboard_gets_each_layers_recorded_histogram(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    db, tb = tmp_path / "runs.db", tmp_path / "tb"
    with SinkStore(db, [TensorBoardSink(log_dir=tb)]) as st:
        _train(st)
    counts, steps, edges, mean = _stored(db)
    hists = _tb_histograms(tb)
    assert sorted(hists) == [f"layerscope/hist/output/layer_{j}" for j in range(1, N_LAYER + 1)]
    for j in range(N_LAYER):
        events = hists[f"layerscope/hist/output/layer_{j + 1}"]
        assert [e.step for e in events] == steps
        for i, e in enumerate(events):
            v = e.histogram_value
            nz = np.flatnonzero(counts[i, j])
            span = counts[i, j][nz[0] : nz[-1] + 1]  # first to last non-empty bin
            assert list(v.bucket) == span.tolist()  # the recorded counts, bin for bin
            assert v.num == counts[i, j].sum() == 4 * 16 * 16  # every activation of the batch
            assert v.sum == pytest.approx(mean[i, j] * v.num, rel=1e-9)  # from the recorded mean
            inner = [b for b in v.bucket_limit[:-1]]
            assert set(inner) <= set(edges.tolist())  # bucket edges are the run's fixed edges
            assert v.min < v.bucket_limit[0] and v.max == v.bucket_limit[-1]


class _FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def define_metric(self, *a, **k) -> None:
        pass

    def log(self, d: dict) -> None:
        self.logged.append(d)


def test_log_run_sends_histograms_to_wandb_as_np_histograms(tmp_path: Path) -> None:
    wandb = pytest.importorskip("wandb")
    db = tmp_path / "runs.db"
    _train(db)
    fake = _FakeRun()
    log_run(db, "r", to=WandbSink(fake, images=()), metrics=["rms"])
    counts, steps, edges, _ = _stored(db)
    got = [(d["layerscope/step"], k, v) for d in fake.logged for k, v in d.items() if "/hist/" in k]
    assert len(got) == len(steps) * N_LAYER
    for step, tag, h in got:
        assert isinstance(h, wandb.Histogram)
        i, j = steps.index(step), int(tag.rsplit("_", 1)[1]) - 1
        used = counts[i, j][counts[i, j] > 0]
        assert np.asarray(h.histogram, float).sum() == counts[i, j].sum()
        assert [c for c in h.histogram if c] == used.tolist() and len(h.bins) == len(h.histogram) + 1


def test_histogram_data_closes_the_open_bins_at_the_recorded_extremes() -> None:
    edges = np.array([-1.0, 0.0, 1.0])
    h = histogram_data(np.array([1.0, 0, 2.0, 3.0]), edges, {"min": -5.0, "max": 7.0})
    assert h.edges.tolist() == [-5.0, -1.0, 0.0, 1.0, 7.0] and h.counts.tolist() == [1.0, 0.0, 2.0, 3.0]
    h = histogram_data(np.array([0, 0, 0, 4.0]), edges, {})
    assert h.edges.tolist() == [1.0, 10.0] and h.num == 4.0  # no recorded max: one decade beyond
    assert histogram_data(np.zeros(4), edges, {}) is None
