"""The one atomic writer every output goes through (plots, HTML, reports, CSV exports)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from layerscope._io import is_stream, write_atomic, write_text_atomic
from layerscope.errors import StoreError


def test_regular_file_replaced_whole_with_a_normal_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    write_text_atomic(out, "one\n")
    assert out.read_text() == "one\n" and stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    with pytest.raises(ZeroDivisionError):
        write_atomic(out, lambda name: (Path(name).write_text("half"), 1 / 0))
    assert out.read_text() == "one\n"  # a failed write keeps the old file
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]  # and leaves no temporary file


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert is_stream(fifo)
    write_text_atomic(fifo, "through the pipe\n")
    reader.join(10)
    assert got == [b"through the pipe\n"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_dev_and_proc_paths_are_streams_never_renamed_over() -> None:
    assert is_stream("/dev/null") and not is_stream("/dev/no-such-node")
    write_text_atomic("/dev/null", "discarded\n")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_failure_is_one_store_error_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot write .*choose another output path"):
        write_text_atomic(tmp_path / "missing-folder" / "x.md", "x")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
