"""The sweep's writing side: :class:`Writer` writes each checkpoint's outcome in its own transaction
as it arrives (or, with the watch, in step order) and keeps the tally of a
:class:`~layerscope.sweep.runner.SweepResult`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import Store
from .discover import Discovery, Problem
from .watching import SweepWatch
from .worker import Outcome

if TYPE_CHECKING:
    from .runner import SweepConfig, SweepListener, SweepResult


class Writer:
    """Writes outcomes as they arrive (one transaction per step) and keeps the tally."""

    def __init__(
        self,
        store: Store,
        run: str,
        result: SweepResult,
        listener: SweepListener,
        watch: SweepWatch | None = None,
    ) -> None:
        self.store, self.run, self.result, self.listener = store, run, result, listener
        self.watch = watch
        self._by_fp: dict[str, str] = {}
        self._waiting: dict[int, Outcome] = {}

    def add(self, o: Outcome) -> None:
        failed = o.error is not None or o.record is None
        if self.watch is None:
            self._write(o)
            return
        # The watch needs steps in order: an outcome waits for the steps before it.
        self._waiting[o.step] = o
        if failed:
            self._write(self._waiting.pop(o.step))  # said at once; the watch passes over it
        self._release(self.watch.add(o.step, None if failed else o.record))

    def finish(self) -> None:
        """Write what still waits for a step that will not come; raise the watch's stop, if any."""
        if self.watch is not None:
            self._release(self.watch.flush())

    def _release(self, released: Sequence[tuple[int, Any]]) -> None:
        assert self.watch is not None
        for step, _ in released:
            o = self._waiting.pop(step, None)
            if o is not None:
                self._write(o)
        if self.watch.stopped is not None:
            for step in sorted(self._waiting):  # swept after the alert: kept, not evaluated
                self._write(self._waiting.pop(step))
            raise self.watch.stopped

    def _write(self, o: Outcome) -> None:
        if o.error is not None or o.record is None:
            p = Problem(Path(o.path), o.error or f"{o.name}: no statistics were produced")
            self.result.failed.append(p)
            self.listener.on_outcome(o)
            return
        self.store.write_steps(self.run, [o.record])
        self.result.written.append(o.step)
        for w in o.warnings:
            self.result.warnings.append(w)
            self.listener.on_warning(w)
        if o.fingerprint is not None:
            first = self._by_fp.setdefault(o.fingerprint, o.name)
            if first != o.name:
                self.result.identical.append((o.name, first))
                self.listener.on_identical(o.name, first)
        self.listener.on_outcome(o)


def make_watch(
    cfg: SweepConfig, store: Store, disc: Discovery, result: SweepResult, listener: SweepListener
) -> SweepWatch | None:
    """The sweep's watch (``cfg.watch``), over every checkpoint's step; None without one."""
    if not cfg.watch:
        return None
    say = getattr(listener, "on_alert", None)
    steps = [c.step for c in disc.checkpoints]
    return SweepWatch(store, cfg.run, steps, result.skipped, cfg.on_alert, say)


__all__ = ["Writer", "make_watch"]
