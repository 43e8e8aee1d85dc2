"""torch.distributed.checkpoint folders written by a 2-process gloo run (FSDP2-sharded model), swept
on one process without a process group: the layouts of ``dcp.save({"model": ..., "optim": ...})``,
torchtitan (the model's keys at the top, ``train_state.step``), Lightning's FSDP strategy
(``epoch=E-step=N.ckpt/`` with ``meta.pt``) and Accelerate (``checkpoint-N/pytorch_model_fsdp_0/``
beside ``optimizer_0/``)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from layerscope.store import Store
from layerscope.sweep import find_checkpoints, read_checkpoint, sweep
from layerscope.testing import Corpus, tiny_gpt

WORLD = 2
KW = dict(n_layer=4, n_embd=32, n_head=2, block_size=16)
METRICS = ("mean", "std", "rms", "max_abs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _writer(rank: int, root: str, port: int) -> None:
    """Train an FSDP2-sharded tiny GPT on 2 ranks and save it with dcp.save in four layouts."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        model = tiny_gpt(seed=0, **KW)
        for block in model.h:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        corpus = Corpus(n_chars=20_000)
        out = Path(root)
        for step in range(1, 41):
            x, y = corpus.batch(4, 16, step * WORLD + rank)
            model(x, y)[1].backward()
            opt.step()
            opt.zero_grad()
            if step % 10:
                continue
            msd, osd = get_state_dict(model, opt)  # DTensors: each rank holds its shard
            if step == 10:  # dcp.save of an app-state dict
                dcp.save({"model": msd, "optim": osd}, checkpoint_id=out / "ck" / "step-10")
            elif step == 20:  # torchtitan: the model's keys at the top, train_state beside
                state = {**msd, "optimizer": osd, "train_state": {"step": torch.tensor(20)}}
                dcp.save(state, checkpoint_id=out / "ck" / "titan" / "checkpoint" / "ckpt")
            elif step == 30:  # Lightning's FSDP strategy: the LightningModule's keys, meta.pt with the step
                folder = out / "ck" / "lightning" / "last.ckpt"
                dcp.save(
                    {"model": {f"net.{k}": v for k, v in msd.items()}, "optimizer_0": osd},
                    checkpoint_id=folder,
                )
                if rank == 0:
                    torch.save(
                        {"global_step": 30, "epoch": 0, "pytorch-lightning_version": "2.6.6"},
                        folder / "meta.pt",
                    )
            else:  # Accelerate / HF Trainer with SHARDED_STATE_DICT: model and optimizer in separate DCP folders
                dcp.save({"model": msd}, checkpoint_id=out / "ck" / "checkpoint-40" / "pytorch_model_fsdp_0")
                dcp.save({"optimizer": osd}, checkpoint_id=out / "ck" / "checkpoint-40" / "optimizer_0")
            full = {k: v.full_tensor() for k, v in msd.items()}  # a collective: every rank calls it
            if rank == 0:
                torch.save(full, out / f"ref_{step}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dcp")
    mp.start_processes(_writer, args=(str(root), _free_port()), nprocs=WORLD, start_method="spawn")
    assert (root / "ck" / "step-10" / ".metadata").is_file()
    assert len(list((root / "ck" / "step-10").glob("__*_*.distcp"))) == WORLD  # one shard file per rank
    return root


def _direct_rms(sd: dict[str, torch.Tensor], probe: torch.Tensor) -> np.ndarray:
    model = tiny_gpt(**KW)
    model.load_state_dict(sd)
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o.double())) for b in model.h]
    model.eval()
    with torch.no_grad():
        model(probe)
    for h in hooks:
        h.remove()
    return np.array([float(o.pow(2).mean().sqrt()) for o in outs])


def test_every_layout_is_found_with_its_step(written: Path) -> None:
    disc = find_checkpoints(written / "ck", content_step=None)
    found = {c.step: (c.name, c.step_from) for c in disc.checkpoints}
    assert found.get(10) == ("step-10", "name")
    assert found.get(40) == (
        "checkpoint-40/pytorch_model_fsdp_0",
        "name",
    )  # the folder above; optimizer_0 ignored
    assert disc.problems and all("titan" in str(p.path) or "lightning" in str(p.path) for p in disc.problems)


def test_a_sharded_checkpoint_loads_whole_on_one_process(written: Path) -> None:
    assert not dist.is_initialized()
    for step, rel in ((10, "step-10"), (20, "titan/checkpoint/ckpt")):
        loaded = read_checkpoint(written / "ck" / rel / ".metadata", rel)
        ref = torch.load(written / f"ref_{step}.pt")
        assert set(loaded.state_dict) == set(ref)  # the model only: no optimizer state, no train_state
        for k, v in ref.items():
            assert torch.equal(loaded.state_dict[k], v), k


def test_sweep_of_the_dcp_folders_equals_the_saved_models(written: Path, tmp_path: Path) -> None:
    probe = Corpus(n_chars=20_000).probe(batch_size=4, block_size=16)
    db = tmp_path / "runs.db"
    res = sweep(
        written / "ck", store=db, run="dcp", probe=probe, model=lambda: tiny_gpt(**KW), metrics=METRICS
    )
    assert res.failed == [], [p.message for p in res.failed]
    # torchtitan's step from its train_state.step tensor, Lightning's from meta.pt's global_step
    assert sorted(res.written) == [10, 20, 30, 40]
    with Store(db, readonly=True) as st:
        hm = st.load("dcp", "rms")
    for step in (10, 20, 30, 40):
        want = _direct_rms(torch.load(written / f"ref_{step}.pt"), probe)
        np.testing.assert_allclose(hm.values[hm.steps.index(step)], want, rtol=1e-5, err_msg=f"step {step}")
