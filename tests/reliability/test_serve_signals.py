"""Ctrl-C (and SIGTERM) always end ``layerscope serve``: right after it prints its URL, a moment
later, while a browser holds a keep-alive connection open, while the other core is busy, and when
it was started with SIGINT ignored (a background job of a script: Python then leaves SIGINT
ignored, and before the fix ``kill -INT`` never stopped it). Every trial kills its server if it
did not stop, so no process is left behind.

``LAYERSCOPE_SERVE_TRIALS=20`` repeats each case 20 times (the default, 2, keeps ``make test``
short).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TRIALS = int(os.environ.get("LAYERSCOPE_SERVE_TRIALS", "2"))


@pytest.fixture(scope="module")
def busy_core() -> Iterator[None]:
    """A process spinning on a core for the module's duration: the machine is loaded."""
    burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burn.kill()
        burn.wait()


def _serve(store: Path, ignore_sigint: bool = False) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LAYERSCOPE_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", "serve", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL in {line!r}; stderr: {proc.communicate()[1]}")
    return proc, int(m.group(1))


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    """Send ``sig``; the exit code and output once it has stopped. Killed if it has not in 10 s."""
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"serve did not stop within 10 s of signal {sig}; stderr: {err[-1500:]}"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


CASES = {
    "sigint-at-once": (signal.SIGINT, 0.0, False, False),
    "sigint-soon": (signal.SIGINT, 0.3, False, False),
    "sigint-inherited-ignored": (signal.SIGINT, 0.1, True, False),
    "sigterm": (signal.SIGTERM, 0.1, False, False),
    "sigint-with-a-keep-alive-client": (signal.SIGINT, 0.0, False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_signal_always_stops_serve(busy_core: None, tmp_path: Path, case: str) -> None:
    sig, delay, ignored, client = CASES[case]
    rng = random.Random(case)
    for trial in range(TRIALS):
        proc, port = _serve(tmp_path / f"runs{trial}.db", ignore_sigint=ignored)
        conn = None
        if client:  # a browser's idle keep-alive connection: its handler thread waits on the socket
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
            conn.recv(65536)
        time.sleep(rng.uniform(0, delay))
        try:
            code, out, err = _stop(proc, sig)
        finally:
            if conn is not None:
                conn.close()
        assert code == 0, (trial, code, err[-1500:])
        assert "stopped" in out and "Traceback" not in err, (trial, out, err[-1500:])
