"""The ``layerscope`` shim of the docs test: runs ``python -m layerscope ARGS``, except that a
``layerscope demo`` with the same arguments as one already run in this test session (by any
pytest-xdist worker) gives its folder instead of training again.

README.md and docs/recording.md both tell the reader to run ``layerscope demo``; each page starts
from the same folder, so the command ends in the same folder on both: the first page to get there
runs the demo for real (a minute of CPU), the other waits for it and copies what it wrote. Any
other command, or a demo whose run failed, is never served from the cache. ``--threads 1`` is left
out of the key: the docs test runs every block with OMP_NUM_THREADS=1, which is torch's default.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _key_and_out(args: list[str]) -> tuple[str, str] | None:
    if args[:1] != ["demo"] or any(a in ("-h", "--help") for a in args):
        return None
    rest, out, i = [], "layerscope-demo", 1
    while i < len(args):
        a = args[i]
        if a == "--threads" and i + 1 < len(args) and args[i + 1] == "1":
            i += 2
            continue
        if a == "--out" and i + 1 < len(args):
            out = args[i + 1]
        rest.append(a)
        i += 1
    return hashlib.sha1("\0".join(rest).encode()).hexdigest()[:16], out


def main(argv: list[str]) -> int:
    run = [sys.executable, "-m", "layerscope", *argv]
    cache_root = os.environ.get("LAYERSCOPE_DOCS_DEMO_CACHE")
    ko = _key_and_out(argv) if cache_root else None
    if ko is None:
        return subprocess.call(run)
    key, out = ko
    entry = Path(cache_root) / key
    entry.parent.mkdir(parents=True, exist_ok=True)
    target = Path(out)
    with open(f"{entry}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second page waits for the first page's demo
        if (entry / "done").exists():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(entry / "out", target)
            sys.stdout.write((entry / "stdout").read_text(encoding="utf-8"))
            return 0
        r = subprocess.run(run, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode == 0 and target.is_dir():
            if entry.exists():
                shutil.rmtree(entry)
            shutil.copytree(target, entry / "out")
            (entry / "stdout").write_text(r.stdout, encoding="utf-8")
            (entry / "done").touch()
        return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
