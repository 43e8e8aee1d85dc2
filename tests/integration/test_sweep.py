"""``layerscope sweep``: every checkpoint format, equality with a direct forward and with live recording,
unsafe and broken files, resuming."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file, save_model
from tests._require import require

from layerscope.errors import CheckpointError, ConfigError, DataError, NotFoundError
from layerscope.recorder import Recorder, probe_hash
from layerscope.store import Store
from layerscope.sweep import SweepListener, load_probe, read_checkpoint, sweep
from layerscope.testing import Corpus, tiny_gpt

KW = dict(n_layer=4, n_embd=32, n_head=2, block_size=16)
FACTORY = functools.partial(tiny_gpt, **KW)  # picklable, as --workers needs
METRICS = ("mean", "std", "rms", "max_abs")

FACTORY_PY = """
import time
from layerscope.testing import tiny_gpt

def model():
    return tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16)

def slow_model():  # 0.4 s per forward: a sweep that can be killed half-way
    m = model()
    m.register_forward_pre_hook(lambda *a: time.sleep(0.4))
    return m
"""


def _model(seed: int) -> torch.nn.Module:
    return tiny_gpt(seed=seed, **KW)


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    return Corpus(n_chars=20_000).probe(batch_size=4, block_size=16)


@pytest.fixture
def probe_file(tmp_path: Path, probe: torch.Tensor) -> Path:
    p = tmp_path / "probe.pt"
    torch.save(probe, p)
    return p


@pytest.fixture
def factory_py(tmp_path: Path) -> Path:
    p = tmp_path / "factory.py"
    p.write_text(FACTORY_PY)
    return p


def direct_stats(model: torch.nn.Module, probe: torch.Tensor) -> dict[str, np.ndarray]:
    """mean/std/rms/max_abs of each block's output from plain hooks and numpy (float64): no layerscope code."""
    outs: list[np.ndarray] = []

    def grab(m, args, out):
        t = out[0] if isinstance(out, tuple) else out
        outs.append(t.detach().to(torch.float64).numpy().ravel())

    blocks = model.transformer.h if hasattr(model, "transformer") else model.h
    hs = [b.register_forward_hook(grab) for b in blocks]
    model.eval()
    with torch.no_grad():
        model(probe)
    for h in hs:
        h.remove()
    return {
        "mean": np.array([x.mean() for x in outs]),
        "std": np.array([x.std() for x in outs]),
        "rms": np.array([np.sqrt((x * x).mean()) for x in outs]),
        "max_abs": np.array([np.abs(x).max() for x in outs]),
    }


def stored(store: Path, run: str, metric: str, site: str = "output") -> dict[int, np.ndarray]:
    with Store(store, readonly=True) as st:
        hm = st.load(run, metric, site)
    return {s: hm.values[i] for i, s in enumerate(hm.steps)}


# -- every format ------------------------------------------------------------------------------------


def _hf_shards(sd: dict[str, torch.Tensor], folder: Path) -> None:
    """Sharded safetensors as Hugging Face writes them: shards plus model.safetensors.index.json, tied
    lm_head dropped."""
    folder.mkdir(parents=True)
    keys = [k for k in sd if k != "lm_head.weight"]
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    wmap = {}
    for i, part in enumerate(halves, start=1):
        fname = f"model-{i:05d}-of-00002.safetensors"
        save_file({k: sd[k].contiguous() for k in part}, str(folder / fname), metadata={"format": "pt"})
        wmap.update({k: fname for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))


def write_every_format(root: Path) -> dict[int, int]:
    """One checkpoint per format; returns step -> the seed of the weights saved there."""
    seeds = {}

    def sd(step: int) -> dict[str, torch.Tensor]:
        seeds[step] = step // 100
        return _model(step // 100).state_dict()

    root.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{k}": v for k, v in sd(100).items()}, root / "step_100.pt")  # DDP keys
    save_model(_model(2), str(root / "ckpt-200.safetensors"))  # tied weights stored once
    seeds[200] = 2
    torch.save(sd(300), root / "model_300.bin", _use_new_zipfile_serialization=False)  # legacy pickle
    hf = root / "checkpoint-400"
    hf.mkdir()
    save_model(_model(4), str(hf / "model.safetensors"))
    seeds[400] = 4
    torch.save({"state": {}, "param_groups": []}, hf / "optimizer.pt")
    (hf / "trainer_state.json").write_text(json.dumps({"global_step": 400}))
    _hf_shards(sd(500), root / "checkpoint-500")
    (root / "checkpoint-600").mkdir()
    torch.save(
        {k: v for k, v in sd(600).items() if k != "lm_head.weight"},
        root / "checkpoint-600" / "pytorch_model.bin",
    )
    # Lightning's layout (as lightning 2.6 writes it): the net under the module's attribute name,
    # the step in global_step; named last.ckpt so the step can only come from the file.
    m7 = _model(7)
    opt = torch.optim.AdamW(m7.parameters())
    torch.save(
        {
            "epoch": 0,
            "global_step": 700,
            "pytorch-lightning_version": "2.6.6",
            "state_dict": {f"model.{k}": v for k, v in m7.state_dict().items()},
            "loops": {},
            "callbacks": {},
            "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {"lr": 1e-3},
        },
        root / "last.ckpt",
    )
    seeds[700] = 7
    # nanoGPT's ckpt.pt: a compiled model's keys, the step in iter_num.
    m8 = _model(8)
    (root / "out").mkdir()
    torch.save(
        {
            "model": {f"_orig_mod.{k}": v for k, v in m8.state_dict().items()},
            "optimizer": torch.optim.AdamW(m8.parameters()).state_dict(),
            "model_args": dict(KW),
            "iter_num": 800,
            "best_val_loss": torch.tensor(1.5),
            "config": {"dataset": "x"},
        },
        root / "out" / "ckpt.pt",
    )
    seeds[800] = 8
    return seeds


def test_every_format_equals_a_direct_forward(tmp_path: Path, probe: torch.Tensor) -> None:
    seeds = write_every_format(tmp_path / "ckpts")
    db = tmp_path / "runs.db"
    res = sweep(tmp_path / "ckpts", store=db, run="sweep", probe=probe, model=FACTORY, metrics=METRICS)
    assert res.failed == [] and res.exit_code == 0
    assert sorted(res.written) == sorted(seeds) == [100, 200, 300, 400, 500, 600, 700, 800]
    for metric in METRICS:
        rows = stored(db, "sweep", metric)
        for step, seed in seeds.items():
            want = direct_stats(_model(seed), probe)[metric]
            np.testing.assert_allclose(
                rows[step], want, rtol=1e-5, atol=1e-7, err_msg=f"{metric} at step {step}"
            )
    with Store(db, readonly=True) as st:
        assert st.run_info("sweep").source == "sweep"
        assert st.run_config("sweep")["probe_hash"] == probe_hash(probe)
        sources = {r[0] for r in st.conn.execute("SELECT source FROM steps")}
    assert sources == {"sweep"}


def test_real_lightning_checkpoint(tmp_path: Path, probe: torch.Tensor) -> None:
    L = require("lightning.pytorch")

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = _model(3)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0], batch[0])[1]

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    x = torch.randint(0, 256, (4, 16))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    module = Module()
    trainer.fit(module, loader)
    (tmp_path / "ck").mkdir()
    trainer.save_checkpoint(tmp_path / "ck" / "last.ckpt")
    res = sweep(
        tmp_path / "ck", store=tmp_path / "runs.db", run="l", probe=probe, model=FACTORY, metrics=METRICS
    )
    assert res.failed == [] and res.written == [2]  # global_step read from the file (weights_only)
    np.testing.assert_allclose(
        stored(tmp_path / "runs.db", "l", "rms")[2], direct_stats(module.net, probe)["rms"], rtol=1e-5
    )


def test_hf_checkpoint_folders_with_hf_flag(tmp_path: Path, probe: torch.Tensor) -> None:
    transformers = require("transformers")
    cfg = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=2, n_positions=16, vocab_size=256)
    models = {}
    for step in (10, 20, 30):
        torch.manual_seed(step)
        m = transformers.GPT2LMHeadModel(cfg)
        models[step] = m
        folder = tmp_path / "run" / f"checkpoint-{step}"
        if step == 10:
            m.save_pretrained(folder)
        elif step == 20:
            m.save_pretrained(folder, max_shard_size="50KB")  # sharded, with its index
            assert (folder / "model.safetensors.index.json").is_file()
        else:
            folder.mkdir(parents=True)
            cfg.save_pretrained(folder)
            torch.save(
                {k: v for k, v in m.state_dict().items() if k != "lm_head.weight"},
                folder / "pytorch_model.bin",
            )
    res = sweep(tmp_path / "run", store=tmp_path / "runs.db", run="hf", probe=probe, hf=True, metrics=METRICS)
    assert res.failed == [] and sorted(res.written) == [10, 20, 30]
    rows = stored(tmp_path / "runs.db", "hf", "std")
    for step, m in models.items():
        np.testing.assert_allclose(
            rows[step], direct_stats(m, probe)["std"], rtol=1e-5, err_msg=f"step {step}"
        )
    with Store(tmp_path / "runs.db", readonly=True) as st:
        assert st.layers("hf")[0].name == "transformer.h.0"


# -- live recording at step N == sweep of checkpoint N -------------------------------------------------


def test_live_recording_equals_sweep_of_the_checkpoint(tmp_path: Path, probe: torch.Tensor) -> None:
    corpus = Corpus(n_chars=20_000)
    model = _model(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    db, ck = tmp_path / "runs.db", tmp_path / "ckpts"
    ck.mkdir()
    sites = ("output", "mlp_act", "attn_out", "mlp_out")
    with Recorder(model, db, run="live", metrics="all", sites=sites, every=3, probe=probe) as rec:
        for step in range(1, 7):
            x, y = corpus.batch(4, 16, step)
            model(x, y)[1].backward()
            opt.step()
            opt.zero_grad()
            if rec.step(step):
                torch.save(model.state_dict(), ck / f"step_{step}.pt")
    res = sweep(ck, store=db, run="swept", probe=probe, model=FACTORY, metrics="all", sites=sites)
    assert sorted(res.written) == [3, 6] and res.failed == []
    with Store(db, readonly=True) as st:
        pairs = st.metrics("live")
        assert pairs and set(pairs) == set(st.metrics("swept"))
        for metric, site in pairs:
            live, swept = st.load("live", metric, site), st.load("swept", metric, site)
            assert live.steps == swept.steps == [3, 6]
            np.testing.assert_allclose(
                swept.values, live.values, rtol=1e-6, atol=0, err_msg=f"{metric}/{site}"
            )
        for site in sites:
            np.testing.assert_allclose(
                st.load_hist("swept", site)[0], st.load_hist("live", site)[0], rtol=1e-6
            )


def test_sweep_continues_a_live_run(tmp_path: Path, probe: torch.Tensor) -> None:
    """Sweep rows can fill in a live run (same probe): they are marked as coming from the sweep."""
    db, ck = tmp_path / "runs.db", tmp_path / "ck"
    ck.mkdir()
    m = _model(1)
    with Recorder(m, db, run="r", metrics=METRICS, every=1, probe=probe) as rec:
        rec.record_probe(1)
    torch.save(_model(2).state_dict(), ck / "step_2.pt")
    torch.save(m.state_dict(), ck / "step_1.pt")
    res = sweep(ck, store=db, run="r", probe=probe, model=FACTORY, metrics=METRICS)
    assert res.written == [2] and res.skipped == [1]
    with Store(db, readonly=True) as st:
        assert dict(st.conn.execute("SELECT step, source FROM steps")) == {1: "live", 2: "sweep"}


# -- unsafe, broken and mismatched files ------------------------------------------------------------


class Payload:
    """Unpickling this runs ``touch MARKER`` (pickling it runs nothing)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_evil(path: Path, marker: Path) -> None:
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "extra": Payload(marker)}, path)
    assert not marker.exists()


def test_unsafe_and_truncated_files_are_reported_the_rest_recorded(
    tmp_path: Path, factory_py: Path, probe_file: Path, cli
) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(_model(1).state_dict(), ck / "step_100.pt")
    marker = tmp_path / "PWNED"
    write_evil(ck / "step_200.pt", marker)
    full = ck / "step_100.pt"
    (ck / "step_300.pt").write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # a save cut short
    save_model(_model(4), str(ck / "ckpt-400.safetensors"))
    st_bytes = (ck / "ckpt-400.safetensors").read_bytes()
    (ck / "ckpt-500.safetensors").write_bytes(st_bytes[: len(st_bytes) - 100])
    save_model(_model(6), str(ck / "ckpt-600.safetensors"))
    db = tmp_path / "runs.db"

    r = cli(
        "sweep",
        str(ck),
        "--model",
        f"{factory_py}:model",
        "--probe",
        str(probe_file),
        "--store",
        str(db),
        "--run",
        "s",
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stderr
    assert not marker.exists()  # the payload never ran
    err = r.stderr.splitlines()
    for name, problem in [
        ("step_200.pt", "refused to load"),
        ("step_300.pt", "truncated"),
        ("ckpt-500.safetensors", "truncated"),
    ]:
        lines = [ln for ln in err if ln.startswith(f"error: {name}:")]
        assert len(lines) == 1 and problem in lines[0], r.stderr
    assert "posix.system" in next(ln for ln in err if "step_200.pt" in ln)  # names what it refused
    assert "Traceback" not in r.stderr
    assert "3 checkpoints failed" in r.stdout and "swept 3 checkpoints" in r.stdout
    with Store(db, readonly=True) as st:
        assert st.steps("s") == [100, 400, 600]


def test_malicious_pickle_runs_nothing_in_process(tmp_path: Path, probe: torch.Tensor) -> None:
    marker = tmp_path / "PWNED"
    write_evil(tmp_path / "ckpt.pt", marker)
    with pytest.raises(CheckpointError, match=r"^ckpt\.pt: refused to load.*--trust-checkpoints"):
        read_checkpoint(tmp_path / "ckpt.pt", "ckpt.pt")
    # The step of ckpt.pt would come from inside the file: discovery refuses it the same way.
    res = sweep(tmp_path / "ckpt.pt", store=tmp_path / "runs.db", run="s", probe=probe, model=FACTORY)
    assert res.written == [] and len(res.failed) == 1 and "refused to load" in res.failed[0].message
    assert not marker.exists()


def test_mismatched_checkpoint_and_identical_weights(tmp_path: Path, probe: torch.Tensor) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(_model(1).state_dict(), ck / "step_1.pt")
    torch.save(_model(1).state_dict(), ck / "step_2.pt")  # a save that did not change anything
    torch.save(tiny_gpt(n_layer=6, n_embd=32, n_head=2, block_size=16).state_dict(), ck / "step_3.pt")
    torch.save(tiny_gpt(n_layer=4, n_embd=48, n_head=2, block_size=16).state_dict(), ck / "step_4.pt")
    seen: list[tuple[str, str]] = []

    class Listen(SweepListener):
        def on_identical(self, name: str, same_as: str) -> None:
            seen.append((name, same_as))

    res = sweep(ck, store=tmp_path / "runs.db", run="s", probe=probe, model=FACTORY, listener=Listen())
    assert sorted(res.written) == [1, 2]
    assert res.identical == seen == [("step_2.pt", "step_1.pt")]
    msgs = {Path(p.path).name: p.message for p in res.failed}
    assert msgs["step_3.pt"].startswith("step_3.pt: does not fit the model") and "'h.4." in msgs["step_3.pt"]
    assert msgs["step_4.pt"].startswith("step_4.pt: does not fit the model") and "shape" in msgs["step_4.pt"]


# -- resuming ------------------------------------------------------------------------------------------


def _step_times(db: Path) -> dict[int, float]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT step, time FROM steps"))


def test_resume_skips_done_steps_and_force_recomputes(tmp_path: Path, probe: torch.Tensor) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    ck.mkdir()
    for s in (1, 2):
        torch.save(_model(s).state_dict(), ck / f"step_{s}.pt")
    first = sweep(ck, store=db, run="s", probe=probe, model=FACTORY)
    assert sorted(first.written) == [1, 2]
    t1 = _step_times(db)
    torch.save(_model(3).state_dict(), ck / "step_3.pt")
    again = sweep(ck, store=db, run="s", probe=probe, model=FACTORY)
    assert again.written == [3] and sorted(again.skipped) == [1, 2]
    t2 = _step_times(db)
    assert {s: t2[s] for s in (1, 2)} == t1  # untouched
    before = stored(db, "s", "rms")
    forced = sweep(ck, store=db, run="s", probe=probe, model=FACTORY, force=True)
    assert sorted(forced.written) == [1, 2, 3] and forced.skipped == []
    t3 = _step_times(db)
    assert all(t3[s] > t2[s] for s in (1, 2, 3))
    after = stored(db, "s", "rms")
    assert all(np.array_equal(before[s], after[s]) for s in (1, 2, 3))


def test_a_different_probe_or_metric_set_is_refused(tmp_path: Path, probe: torch.Tensor) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    ck.mkdir()
    torch.save(_model(1).state_dict(), ck / "step_1.pt")
    sweep(ck, store=db, run="s", probe=probe, model=FACTORY)
    other = probe.flip(0)
    with pytest.raises(ConfigError) as e:
        sweep(ck, store=db, run="s", probe=other, model=FACTORY, force=True)
    assert probe_hash(probe) in str(e.value) and probe_hash(other) in str(e.value)
    with pytest.raises(ConfigError, match="--metrics"):
        sweep(ck, store=db, run="s", probe=probe, model=FACTORY, metrics="kurtosis")
    assert stored(db, "s", "rms").keys() == {1}


def test_killed_mid_way_keeps_what_was_written(tmp_path: Path, factory_py: Path, probe_file: Path) -> None:
    ck, db = tmp_path / "ck", tmp_path / "runs.db"
    ck.mkdir()
    for s in range(1, 9):
        torch.save(_model(s).state_dict(), ck / f"step_{s}.pt")
    args = [
        sys.executable,
        "-m",
        "layerscope",
        "sweep",
        str(ck),
        "--model",
        f"{factory_py}:slow_model",
        "--probe",
        str(probe_file),
        "--store",
        str(db),
        "--run",
        "s",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        n = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                        n = c.execute("SELECT count(*) FROM steps").fetchone()[0]
                except sqlite3.Error:
                    n = 0
            if n >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None and n >= 2, "the sweep ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with Store(db, readonly=True) as st:
        kept = st.steps("s")
    assert 2 <= len(kept) < 8
    res = sweep(ck, store=db, run="s", probe=probe_file, model=FACTORY)
    assert sorted(res.skipped) == kept and sorted(res.written + res.skipped) == list(range(1, 9))


# -- probes --------------------------------------------------------------------------------------------


def test_probe_files(tmp_path: Path, probe: torch.Tensor) -> None:
    np.save(tmp_path / "p.npy", probe.numpy())
    save_file({"idx": probe}, str(tmp_path / "p.safetensors"))
    save_file({"idx": probe, "targets": probe.clone()}, str(tmp_path / "kw.safetensors"))
    torch.save({"idx": probe}, tmp_path / "kw.pt")
    assert probe_hash(load_probe(tmp_path / "p.npy")) == probe_hash(probe)  # same data, same hash
    assert torch.equal(load_probe(tmp_path / "p.safetensors"), probe)
    assert set(load_probe(tmp_path / "kw.safetensors")) == {"idx", "targets"}
    (tmp_path / "p.txt").write_text("the cat sees the dog\n" * 4)
    ids = load_probe(tmp_path / "p.txt", tokenizer="bytes", seq_len=16)
    assert ids.shape == (5, 16) and bytes(ids[0].tolist()) == b"the cat sees the"
    with pytest.raises(ConfigError, match="--tokenizer bytes"):
        load_probe(tmp_path / "p.txt")
    torch.save({"x": [1, 2]}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="bad.pt"):
        load_probe(tmp_path / "bad.pt")


def test_keyword_probe_and_text_probe(tmp_path: Path, probe: torch.Tensor) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(_model(1).state_dict(), ck / "step_1.pt")
    torch.save({"idx": probe}, tmp_path / "kw.pt")  # keyword inputs: model(idx=...)
    sweep(ck, store=tmp_path / "a.db", run="s", probe=tmp_path / "kw.pt", model=FACTORY)
    np.testing.assert_allclose(
        stored(tmp_path / "a.db", "s", "rms")[1], direct_stats(_model(1), probe)["rms"], rtol=1e-5
    )
    (tmp_path / "p.txt").write_text("abcdefghijklmnopqrstuvwxyz" * 3)
    with pytest.raises(ConfigError, match="does not fit the model"):  # 78 tokens > block_size 16
        sweep(
            ck, store=tmp_path / "b.db", run="s", probe=tmp_path / "p.txt", tokenizer="bytes", model=FACTORY
        )
    res = sweep(
        ck,
        store=tmp_path / "b.db",
        run="s",
        probe=tmp_path / "p.txt",
        tokenizer="bytes",
        seq_len=16,
        model=FACTORY,
    )
    assert res.written == [1]


def test_sharded_index_problems(tmp_path: Path) -> None:
    sd = _model(1).state_dict()
    folder = tmp_path / "checkpoint-5"
    _hf_shards(sd, folder)
    index = folder / "model.safetensors.index.json"
    assert read_checkpoint(index, "checkpoint-5").state_dict.keys() == sd.keys() - {"lm_head.weight"}
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"^checkpoint-5: shard 'model-00002-of-00002.safetensors' .* is missing"
    ):
        read_checkpoint(index, "checkpoint-5")
    data = json.loads(index.read_text())
    data["weight_map"] = {k: "../../elsewhere.safetensors" for k in data["weight_map"]}
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="outside its folder"):
        read_checkpoint(index, "checkpoint-5")


def test_cli_json_summary(tmp_path: Path, probe_file: Path, factory_py: Path) -> None:
    from click.testing import CliRunner

    from layerscope.cli.main import cli

    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(_model(1).state_dict(), ck / "step_1.pt")
    (ck / "step_2.pt").write_bytes(b"")
    r = CliRunner().invoke(
        cli,
        [
            "sweep",
            str(ck),
            "--model",
            f"{factory_py}:model",
            "--probe",
            str(probe_file),
            "--store",
            str(tmp_path / "r.db"),
            "--run",
            "s",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 1, r.output
    out = json.loads(r.stdout)
    assert out["written"] == [1] and out["exit_code"] == 1
    assert out["failed"][0]["message"].startswith("step_2.pt: the file is empty")
    assert "error: step_2.pt: the file is empty" in r.stderr


def test_cli_help_and_usage_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from layerscope.cli.main import cli

    out = CliRunner().invoke(cli, ["sweep", "--help"], terminal_width=100).output
    assert "torchrun --nproc-per-node 2 -m -- layerscope sweep" in out and "--trust-checkpoints" in out
    r = CliRunner().invoke(
        cli,
        [
            "sweep",
            str(tmp_path),
            "--model",
            "x:y",
            "--probe",
            str(tmp_path / "p.pt"),
            "--store",
            str(tmp_path / "r.db"),
            "--run",
            "s",
        ],
    )
    assert isinstance(r.exception, NotFoundError) and "probe file" in str(r.exception)
    r = CliRunner().invoke(
        cli,
        [
            "sweep",
            str(tmp_path),
            "--model",
            "x:y",
            "--hf",
            "--probe",
            "p.pt",
            "--store",
            "r.db",
            "--run",
            "s",
        ],
    )
    assert isinstance(r.exception, ConfigError) and "either --model or --hf" in str(r.exception)
    assert not (tmp_path / "r.db").exists()  # nothing written on a usage error


def test_recorder_options_match_a_live_run_recorded_with_them(tmp_path: Path, probe: torch.Tensor) -> None:
    """A live run with its own eps and histogram edges; the sweep passes the same through
    recorder_options, and the numbers agree (the histograms bin by the same edges)."""
    db, ck = tmp_path / "runs.db", tmp_path / "ck"
    ck.mkdir()
    opts = {"eps": 1e-2, "hist_edges": [-1.0, -0.1, 0.0, 0.1, 1.0]}
    model = _model(4)
    with Recorder(model, db, run="live", metrics="rms,zero_frac,hist", probe=probe, **opts) as rec:
        rec.record_probe(5)
    torch.save(model.state_dict(), ck / "step_5.pt")
    res = sweep(
        ck,
        store=db,
        run="swept",
        probe=probe,
        model=FACTORY,
        metrics="rms,zero_frac,hist",
        recorder_options=opts,
    )
    assert res.exit_code == 0
    with Store(db, readonly=True) as st:
        assert st.run_config("swept")["hist_edges"] == opts["hist_edges"]
        for metric in ("rms", "zero_frac"):
            np.testing.assert_allclose(
                st.load("swept", metric).values, st.load("live", metric).values, rtol=1e-6
            )
        np.testing.assert_array_equal(st.load_hist("swept")[0], st.load_hist("live")[0])
    with pytest.raises(ConfigError, match=r"recorder_options sets probe, which the sweep sets itself"):
        sweep(ck, store=db, run="x", probe=probe, model=FACTORY, recorder_options={"probe": probe})
    with pytest.raises(
        ConfigError, match=r"recorder_options has 'epss', which Recorder does not take; pass some of .*eps"
    ):
        sweep(ck, store=db, run="x", probe=probe, model=FACTORY, recorder_options={"epss": 1e-3})
