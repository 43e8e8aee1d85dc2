"""Pipes, sockets and devices are never opened for reading: opening a FIFO nobody writes blocks
forever, and reading /dev/zero never ends. Among checkpoints each is one line and the sweep goes
on; as any other input (store, CSV, probe, Hugging Face config) it is a one-line usage error.
(Every command's inputs are also in test_cli_input.py's matrix.)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from tests.reliability._helpers import assert_whole, error_line, make_store, run_cli

import layerscope
from layerscope.errors import ConfigError
from layerscope.store import Store
from layerscope.store.csvio import read_csv
from layerscope.testing import tiny_gpt

pytestmark = pytest.mark.timeout(300)  # a regression blocks on a pipe: fail instead of hanging


def _socket_at(path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(path.parent)  # AF_UNIX paths are short: bind the name from inside its folder
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(path.name)
        s.close()
    finally:
        os.chdir(cwd)


def test_a_sweep_reports_pipes_sockets_and_devices_and_records_the_rest(tmp_path: Path) -> None:
    ck = tmp_path / "ckpts"
    (ck / "checkpoint-600").mkdir(parents=True)
    good = tiny_gpt().state_dict()
    torch.save(good, ck / "step_100.pt")
    torch.save(good, ck / "step_900.pt")
    os.mkfifo(ck / "step_200.pt")  # nobody writes it: opening it would block the sweep forever
    os.mkfifo(ck / "last.ckpt")  # no step in its name: the sweep would open it to read the step
    _socket_at(ck / "step_300.safetensors")
    (ck / "step_400.bin").symlink_to("/dev/zero")  # reading never ends
    (ck / "step_500.pt").symlink_to(ck / "step_200.pt")  # a link to the pipe
    os.mkfifo(ck / "checkpoint-600" / "model.safetensors")  # an HF folder whose weights are a pipe
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    db = tmp_path / "runs.db"
    r = run_cli(
        "sweep", ck, "--model", "layerscope.testing.model:tiny_gpt", "--probe", tmp_path / "probe.pt",
        "--store", db, "--run", "s", timeout=240,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr[-3000:]  # some checkpoints could not be used: said, exit 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    expect = {
        "step_200.pt": "named pipe",
        "last.ckpt": "named pipe",
        "step_300.safetensors": "socket",
        "step_400.bin": "character device",
        "step_500.pt": "named pipe",
        "checkpoint-600/model.safetensors": "named pipe",
    }
    for name, kind in expect.items():
        mine = [e for e in errors if e.startswith(f"error: {name}: ")]
        assert len(mine) == 1 and kind in mine[0] and "not opened" in mine[0], (name, errors)
    assert len(errors) == len(expect), errors
    with Store(db, readonly=True) as st:
        assert st.steps("s") == [100, 900]
    assert_whole(db)
    assert f"{len(expect)} checkpoints failed" in r.stdout


def test_a_pipe_as_the_checkpoint_folder_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ckpts")
    torch.save(torch.randint(0, 256, (2, 16)), tmp_path / "probe.pt")
    r = run_cli(
        "sweep", tmp_path / "ckpts", "--model", "layerscope.testing.model:tiny_gpt", "--probe",
        tmp_path / "probe.pt", "--store", tmp_path / "runs.db", "--run", "s", timeout=120,
    )  # fmt: skip
    error_line(r, 2, "checkpoint folder", "named pipe")
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_the_python_api_refuses_them_too(tmp_path: Path, kind: str) -> None:
    for name in ("runs.db", "values.csv"):
        p = tmp_path / name
        if kind == "fifo":
            os.mkfifo(p)
        else:
            p.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="store .* not a regular file"):
        layerscope.load(tmp_path / "runs.db")
    with pytest.raises(ConfigError, match="store .* not a regular file"):
        layerscope.Recorder(tiny_gpt(n_layer=1, n_embd=16, n_head=2), tmp_path / "runs.db")
    with pytest.raises(ConfigError, match="CSV .* not a regular file"):
        read_csv(tmp_path / "values.csv")


def test_regular_files_behind_links_still_work(tmp_path: Path) -> None:
    # Not a blanket refusal of links: a link to a regular file is that file.
    make_store(tmp_path / "real.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "real.db")
    assert layerscope.load(tmp_path / "link.db", run="a").values.shape == (3, 3)
    r = run_cli("report", tmp_path / "link.db", "--run", "a")
    assert r.returncode == 0, r.stderr
