"""What the commands write: results are written through a temporary file and renamed (never half
a file), yet a result still gets the file mode any other program would give it, and ``-o`` naming
a pipe or a device (``-o /dev/stdout``) writes into it instead of replacing the node.
"""

from __future__ import annotations

import os
import select
import stat
import threading
from pathlib import Path

import pytest
from tests.reliability._helpers import make_store, run_cli

from layerscope.cli.main import COMMANDS

OUTPUTS = {
    # command: (arguments after the store, the file the command writes)
    "export": (["-o", "{out}/values.csv"], "values.csv"),
    "plot": (["-o", "{out}/heatmap.png"], "heatmap.png"),
    "report": (["-o", "{out}/report.md", "--json", "{out}/report.json"], "report.json"),
    "view": (["-o", "{out}/bundle"], "bundle/index.html"),
    "compare": (["--run", "a", "--run", "b", "-o", "{out}/diff.html"], "diff.html"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("out") / "runs.db", runs=("a", "b"))


def _args(cmd: str, store: Path, out: Path) -> list[str]:
    extra = ["--run", "a"] if cmd in ("plot", "report", "view") else []
    return [cmd, str(store), *extra, *(a.format(out=out) for a in OUTPUTS[cmd][0])]


@pytest.mark.parametrize("cmd", list(OUTPUTS))
def test_results_get_a_normal_file_mode(store: Path, tmp_path: Path, cmd: str) -> None:
    # mkstemp makes 0600; colleagues sharing the folder must be able to read the result.
    assert cmd in COMMANDS, f"`layerscope {cmd}` is not registered"
    old = os.umask(0o022)
    try:
        r = run_cli(*_args(cmd, store, tmp_path))
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / OUTPUTS[cmd][1]).stat().st_mode) == 0o644


class _Fifo:
    """A named pipe with a reader draining it in the background."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so a writer's open() returns
        self.data = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if chunk:
                    self.data += chunk
                else:
                    self.stop.wait(0.02)  # no writer yet, or it closed

    def close(self) -> bytes:
        self.stop.set()
        self.thread.join(timeout=5)
        os.close(self.fd)
        return bytes(self.data)


@pytest.mark.parametrize(
    "cmd,name,magic",
    [
        ("export", "values.csv", b"run,step,layer"),
        ("plot", "heatmap.png", b"\x89PNG"),
        ("report", "report.md", b"#"),
    ],
)
def test_output_into_a_named_pipe_writes_into_it(
    store: Path, tmp_path: Path, cmd: str, name: str, magic: bytes
) -> None:
    fifo = _Fifo(tmp_path / name)
    try:
        args = [cmd, str(store), "--run", "a", "-o", str(fifo.path)]
        r = run_cli(*args, timeout=120)
    finally:
        data = fifo.close()
    assert stat.S_ISFIFO(os.lstat(fifo.path).st_mode), "the pipe was replaced by a regular file"
    assert r.returncode == 0, r.stderr
    assert data.startswith(magic), data[:40]
