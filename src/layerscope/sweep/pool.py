"""``--workers N``: N - 1 spawned processes, each with its own :class:`~layerscope.sweep.worker.CheckpointWorker`.

Every result comes back to the parent, which writes it: only one process ever writes the store.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from typing import Any, Protocol

import torch

from ..errors import ConfigError, LayerscopeError
from .discover import Checkpoint
from .worker import CheckpointWorker, Outcome, WorkerSpec


class Sink(Protocol):
    """Where outcomes go (the sweep's writer)."""

    def add(self, o: Outcome) -> None: ...


def _child_main(spec: WorkerSpec, conn: Any) -> None:
    """A ``--workers`` process: build a CheckpointWorker, then sweep what the parent sends, one at a time."""
    # Ctrl-C reaches every process of the terminal's group: the parent stops its workers (and says
    # so once); a worker's own KeyboardInterrupt would only print a traceback per process. (It is
    # ignored from the start already: see Pool.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(max(1, spec.threads or 1))
    try:
        worker = CheckpointWorker(spec)
    except LayerscopeError as e:
        conn.send(("failed", str(e)))
        return
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                ckpt = conn.recv()
            except EOFError:  # the parent is gone
                break
            if ckpt is None:
                break
            conn.send(("done", worker.process(ckpt)))
    finally:
        worker.close()


class Pool:
    """The spawned processes of ``--workers N`` (N - 1 of them; this process is the N-th).

    Each child has its own pipe and is handed checkpoints only once it has started (imported torch,
    built the model): until then this process sweeps alone, so a short sweep is not held up by
    them. A started child holds two checkpoints, the one it sweeps and the next, so it never waits
    for this process (busy with a checkpoint of its own) to hand it work. A child that dies (out of
    memory) costs the checkpoint it was sweeping, reported as a failure; the one it held next goes
    back to the others.
    """

    DEPTH = 2  # checkpoints held by a started child

    def __init__(self, spec: WorkerSpec, n: int) -> None:
        import multiprocessing as mp

        # spawn, not fork: forking a process that has run torch ops can deadlock in its thread pools.
        ctx = mp.get_context("spawn")
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}
        # Started with Ctrl-C ignored (a spawned child inherits that through exec), so a Ctrl-C while
        # one is still importing torch does not print its traceback: this process stops them.
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for _ in range(n):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_child_main, args=(spec, theirs), daemon=True)
                p.start()
                theirs.close()
                assert p.pid is not None  # started
                self.procs[p.pid] = p
                self.conns[p.pid] = mine
        finally:
            if main and old is not None:
                signal.signal(signal.SIGINT, old)
        self.ready: set[int] = set()  # started and alive
        self.holding: dict[int, deque[Checkpoint]] = {}  # pid -> what it holds, the one it sweeps first

    def sweep(self, todo: list[Checkpoint], local: CheckpointWorker, writer: Sink) -> None:
        queue = deque(todo)
        while queue or any(self.holding.values()):
            self._poll(queue, writer, timeout=0 if queue else 0.5)
            for pid in sorted(self.ready):
                held = self.holding.setdefault(pid, deque())
                while queue and len(held) < self.DEPTH:
                    ckpt = queue.popleft()
                    try:
                        self.conns[pid].send(ckpt)
                    except (BrokenPipeError, EOFError, OSError):
                        queue.appendleft(ckpt)  # it died: _poll settles what it held
                        break
                    held.append(ckpt)
            if queue:
                writer.add(local.process(queue.popleft()))

    def _poll(self, queue: deque[Checkpoint], writer: Sink, timeout: float) -> None:
        from multiprocessing.connection import wait

        live = [pid for pid in self.conns if pid in self.ready or self.procs[pid].exitcode is None]
        waitables = [self.conns[pid] for pid in live] + [self.procs[pid].sentinel for pid in live]
        if not waitables:
            return
        wait(waitables, timeout=timeout)
        for pid in live:
            conn = self.conns[pid]
            gone = False
            try:
                while conn.poll():
                    kind, payload = conn.recv()
                    if kind == "ready":
                        self.ready.add(pid)
                    elif kind == "failed":
                        raise ConfigError(
                            f"a --workers process could not start ({payload}); run with fewer --workers."
                        )
                    else:  # done: the first it held
                        self.holding[pid].popleft()
                        writer.add(payload)
            except (EOFError, OSError):  # its end of the pipe closed: it exited
                gone = True
            if gone or self.procs[pid].exitcode is not None:
                p = self.procs[pid]
                p.join(timeout=5)
                self.ready.discard(pid)
                held = self.holding.pop(pid, deque())
                if held:
                    ckpt = held.popleft()
                    writer.add(
                        Outcome(
                            ckpt.name,
                            str(ckpt.path),
                            ckpt.step,
                            pid=pid,
                            error=(
                                f"{ckpt.name}: the worker process sweeping it died (exit code {p.exitcode}; out of "
                                "memory?); rerun to retry it, with fewer --workers."
                            ),
                        )
                    )
                    queue.extendleft(reversed(held))  # never started: someone else sweeps them
                self.conns.pop(pid).close()

    def stop(self) -> None:
        for conn in self.conns.values():
            try:
                conn.send(None)
            except (BrokenPipeError, EOFError, OSError):
                pass
        for pid, p in self.procs.items():
            if pid in self.ready:
                p.join(timeout=10)
            if p.is_alive():  # still starting up (or stuck): not needed any more
                p.terminate()
                p.join(timeout=10)
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


__all__ = ["Pool", "Sink"]
