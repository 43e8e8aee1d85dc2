"""The probe reaches every recorded layer, or says so: ``probe_fn`` / ``--probe-fn`` for models whose
``forward`` runs only part of the stack, the no-activation check (sweep: exit 2, nothing written;
live: a warning), empty probes, and live == sweep with a probe_fn."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from layerscope.capture import load_function
from layerscope.errors import ConfigError, DataError, NotFoundError
from layerscope.recorder import Recorder, UnreachedLayersWarning
from layerscope.store import Store
from layerscope.sweep import sweep

# The Lightning README's LitAutoEncoder, as plain torch: forward() is the encoder only (it "defines
# the prediction/inference actions"); the training step runs encoder then decoder. And a model with no
# forward at all, whose training step calls its submodules one by one.
MODELS_PY = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class LitAutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))

    def forward(self, x):
        return self.encoder(x)

    def training_step(self, x):
        return F.mse_loss(self.decoder(self.encoder(x)), x)


class Stack(nn.Module):
    """No forward(): the loop calls embed, every block and head itself."""

    def __init__(self, width=16, depth=4):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU()) for _ in range(depth)
        )
        self.head = nn.Linear(width, 8)


def stack_forward(model, x):
    h = model.embed(x)
    for b in model.blocks:
        h = h + b(h)
    return model.head(h)


def autoencoder():
    torch.manual_seed(0)
    return LitAutoEncoder()


def stack():
    torch.manual_seed(0)
    return Stack()


def reconstruct(model, x):
    return model.decoder(model.encoder(x))


def encode_only(model, x):
    return model.encoder(x)
'''

METRICS = ("mean", "std", "rms", "max_abs", "kurtosis", "zero_frac")


@pytest.fixture
def models_py(tmp_path: Path) -> Path:
    p = tmp_path / "models.py"
    p.write_text(MODELS_PY)
    return p


def _fn(models_py: Path, name: str):
    return load_function(f"{models_py}:{name}", "test", n_args=0 if name in ("autoencoder", "stack") else 2)


def _train_autoencoder(models_py: Path, ck: Path, probe: torch.Tensor, db: Path | None = None) -> None:
    """A few SGD steps, a checkpoint at each; with ``db``, a live Recorder(probe, probe_fn) beside it."""
    model = _fn(models_py, "autoencoder")()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ck.mkdir()
    rec = (
        Recorder(model, db, run="live", metrics=METRICS, probe=probe, probe_fn=_fn(models_py, "reconstruct"))
        if db is not None
        else None
    )
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 5):
        x = torch.rand(16, 784, generator=gen)
        model.training_step(x).backward()
        opt.step()
        opt.zero_grad()
        if rec is not None:
            rec.step(step)
        torch.save(model.state_dict(), ck / f"step_{step}.pt")
    if rec is not None:
        rec.close()


def test_autoencoder_without_probe_fn_stops_naming_the_decoder_and_writes_nothing(
    tmp_path: Path, models_py: Path, cli
) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    _train_autoencoder(models_py, ck, torch.rand(4, 784))
    torch.save(torch.rand(4, 784), tmp_path / "x.pt")
    r = cli(
        "sweep", str(ck), "--model", f"{models_py}:autoencoder", "--probe", str(tmp_path / "x.pt"),
        "--store", str(db), "--run", "ae",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the probe's forward reaches no activation")
    assert "2 of the 4 recorded sites (decoder.0, decoder.2)" in lines[0] and "--probe-fn" in lines[0]
    assert not db.exists()  # no store file left behind, not even an empty one
    # A --probe-fn that still misses the decoder is refused too, and says so.
    r = cli(
        "sweep", str(ck), "--model", f"{models_py}:autoencoder", "--probe", str(tmp_path / "x.pt"),
        "--probe-fn", f"{models_py}:encode_only", "--store", str(db), "--run", "ae",
    )  # fmt: skip
    assert r.returncode == 2 and "make --probe-fn run them too" in r.stderr and not db.exists()


def test_autoencoder_with_probe_fn_equals_live_recording(tmp_path: Path, models_py: Path, cli) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    probe = torch.rand(4, 784, generator=torch.Generator().manual_seed(7))
    _train_autoencoder(models_py, ck, probe, db)
    torch.save(probe, tmp_path / "x.pt")
    r = cli(
        "sweep", str(ck), "--model", f"{models_py}:autoencoder", "--probe", str(tmp_path / "x.pt"),
        "--probe-fn", f"{models_py}:reconstruct", "--store", str(db), "--run", "swept",
        "--metrics", ",".join(METRICS),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with Store(db, readonly=True) as st:
        assert [la.name for la in st.layers("swept")] == ["encoder.0", "encoder.2", "decoder.0", "decoder.2"]
        assert st.run_config("swept")["probe_fn"] == f"{models_py}:reconstruct"
        for metric in METRICS:
            live, swept = st.load("live", metric), st.load("swept", metric)
            assert live.steps == swept.steps == [1, 2, 3, 4]
            assert np.isfinite(swept.values).all(), metric  # the decoder is measured, not NaN
            np.testing.assert_allclose(swept.values, live.values, rtol=1e-6, atol=1e-12, err_msg=metric)


def test_live_run_warns_once_about_layers_the_probe_does_not_reach(tmp_path: Path, models_py: Path) -> None:
    model = _fn(models_py, "autoencoder")()
    with pytest.warns(UnreachedLayersWarning, match=r"2 of 4 recorded sites saw no forward at step 1") as w:
        with Recorder(model, tmp_path / "r.db", run="r", probe=torch.rand(2, 784)) as rec:
            rec.step(1)
            assert rec.unreached == ["decoder.0", "decoder.2"]
            with warnings.catch_warnings():
                warnings.simplefilter("error", UnreachedLayersWarning)
                rec.step(2)  # said once, at the first recorded step
    assert "probe_fn=" in str(w[0].message) and "decoder.0, decoder.2" in str(w[0].message)
    with Store(tmp_path / "r.db", readonly=True) as st:
        assert np.isnan(st.load("r", "rms").values[:, 2:]).all()  # what the warning was about


def test_training_loop_that_calls_submodules_directly(tmp_path: Path, models_py: Path) -> None:
    """No forward(): live recording of the training loop sees every block (hooks sit on the blocks);
    a sweep needs the probe_fn, and then equals a live probe recording."""
    build, run = _fn(models_py, "stack"), _fn(models_py, "stack_forward")
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    probe = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    ck.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreachedLayersWarning)
        train = Recorder(model, db, run="train", metrics=METRICS)
        live = Recorder(model, db, run="live", metrics=METRICS, probe=probe, probe_fn=run)
        for step in range(1, 4):
            x = torch.randn(32, 8)
            (run(model, x) - x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            train.step(step)
            live.step(step)
            torch.save(model.state_dict(), ck / f"step_{step}.pt")
        train.close()
        live.close()
    with pytest.raises(ConfigError, match=r"NotImplementedError.*or --probe-fn PKG.MODULE:FN") as e:
        sweep(ck, store=db, run="no-fn", probe=probe, model=build, metrics=METRICS)
    assert "\n" not in str(e.value)
    res = sweep(ck, store=db, run="swept", probe=probe, model=build, probe_fn=run, metrics=METRICS)
    assert res.exit_code == 0 and res.written == [1, 2, 3]
    with Store(db, readonly=True) as st:
        assert "no-fn" not in st.run_names()
        assert np.isfinite(st.load("train", "rms").values).all()
        for metric in METRICS:
            np.testing.assert_allclose(
                st.load("swept", metric).values, st.load("live", metric).values, rtol=1e-6, atol=1e-12
            )


def test_probe_fn_spec_with_two_workers(tmp_path: Path, models_py: Path) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    probe = torch.rand(4, 784)
    _train_autoencoder(models_py, ck, probe)
    one = sweep(
        ck, store=db, run="one", probe=probe, model=f"{models_py}:autoencoder",
        probe_fn=f"{models_py}:reconstruct", metrics=METRICS,
    )  # fmt: skip
    two = sweep(
        ck, store=db, run="two", probe=probe, model=f"{models_py}:autoencoder",
        probe_fn=f"{models_py}:reconstruct", metrics=METRICS, workers=2,
    )  # fmt: skip
    assert one.exit_code == two.exit_code == 0 and sorted(two.written) == [1, 2, 3, 4]
    with Store(db, readonly=True) as st:
        np.testing.assert_allclose(st.load("two", "rms").values, st.load("one", "rms").values, rtol=1e-6)


def test_lightning_autoencoder_checkpoint(tmp_path: Path, models_py: Path) -> None:
    """The real LitAutoEncoder, trained by Lightning and saved by its Trainer, swept with a probe_fn."""
    import lightning.pytorch as L
    import torch.nn.functional as F
    from torch import nn

    class LitAutoEncoder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))
            self.decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))

        def forward(self, x):
            return self.encoder(x)

        def training_step(self, batch, batch_idx):
            x = batch[0].view(batch[0].size(0), -1)
            return F.mse_loss(self.decoder(self.encoder(x)), x)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    data = torch.utils.data.TensorDataset(torch.rand(32, 1, 28, 28))
    trainer = L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    module = LitAutoEncoder()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    (tmp_path / "ck").mkdir()
    trainer.save_checkpoint(tmp_path / "ck" / "last.ckpt")
    probe = torch.rand(4, 784)
    res = sweep(
        tmp_path / "ck", store=tmp_path / "runs.db", run="lit", probe=probe,
        model=f"{models_py}:autoencoder", probe_fn=f"{models_py}:reconstruct", metrics=METRICS,
    )  # fmt: skip
    assert res.failed == [] and res.written == [3]
    with Store(tmp_path / "runs.db", readonly=True) as st:
        got = st.load("lit", "rms").values[0]
    module.eval()
    with torch.no_grad():
        z1 = module.encoder[0](probe)
        z = module.encoder(probe)
        d1 = module.decoder[0](z)
        out = module.decoder(z)
    want = [t.double().pow(2).mean().sqrt().item() for t in (z1, z, d1, out)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize(
    "probe",
    [
        torch.zeros(0, 784),
        {"x": torch.zeros(0, 784)},
        (torch.zeros(4, 0),),
    ],
    ids=["batch-of-0", "dict-of-0-rows", "no-values"],
)
def test_an_empty_probe_is_refused_in_one_line(tmp_path: Path, models_py: Path, probe, cli) -> None:
    ck = tmp_path / "ck"
    _train_autoencoder(models_py, ck, torch.rand(4, 784))
    db = tmp_path / "runs.db"
    with pytest.raises(DataError, match=r"would be NaN; pass a batch with at least one row") as e:
        sweep(ck, store=db, run="e", probe=probe, model=f"{models_py}:autoencoder")
    assert "\n" not in str(e.value) and not db.exists()
    with pytest.raises(DataError, match=r"probe probe=: .* has (0 rows|no values)"):
        Recorder(_fn(models_py, "autoencoder")(), None, probe=probe)
    torch.save(probe, tmp_path / "empty.pt")
    r = cli(
        "sweep", str(ck), "--model", f"{models_py}:autoencoder", "--probe", str(tmp_path / "empty.pt"),
        "--store", str(db), "--run", "e",
    )  # fmt: skip
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "empty.pt" in r.stderr and not db.exists()


def test_bad_probe_fn_specs_are_one_line_usage_errors(tmp_path: Path, models_py: Path) -> None:
    ck = tmp_path / "ck"
    _train_autoencoder(models_py, ck, torch.rand(4, 784))
    kw = dict(store=tmp_path / "runs.db", run="x", probe=torch.rand(2, 784), model=f"{models_py}:autoencoder")
    for spec, err, text in [
        ("no_colon", ConfigError, "has no ':'"),
        (f"{models_py}:reconstuct", NotFoundError, "did you mean"),
        (f"{models_py}:autoencoder", ConfigError, "cannot be called with 2 arguments"),
        ("no_such_pkg.mod:fn", NotFoundError, "no module named 'no_such_pkg'"),
    ]:
        with pytest.raises(err, match=text) as e:
            sweep(ck, probe_fn=spec, **kw)
        assert "\n" not in str(e.value) and e.value.exit_code == 2
    with pytest.raises(
        ConfigError, match=r"workers=2: probe_fn='.*<lambda>' cannot be sent to a worker process"
    ):
        sweep(ck, probe_fn=lambda m, x: m.decoder(m.encoder(x)), workers=2, **kw)
    with pytest.raises(ConfigError, match="needs probe="):
        Recorder(_fn(models_py, "autoencoder")(), None, probe_fn=_fn(models_py, "reconstruct"))
    assert not (tmp_path / "runs.db").exists()
