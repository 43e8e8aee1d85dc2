"""``sweep --watch``: the live watch's default rules over the swept checkpoints' values, in step order.

Checkpoints may be swept out of order (``--workers``) and some steps may already be in the run
(an interrupted sweep continued). The rules need one history per layer in step order, so the
writer hands every outcome to :class:`SweepWatch`, which releases them in step order: a step
already in the run feeds the history from the store, a failed checkpoint is passed over, a new
step is evaluated and written with its alerts as events in its own transaction (rewriting a step
with ``--force`` replaces the events stored for it). An alert at a step already in the run is
printed and stored only if the run does not hold it yet.

With ``on_alert="stop"`` the sweep ends at the first alert (:class:`~layerscope.errors.WatchAlert`
after the steps swept so far are written).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..errors import WatchAlert
from ..store import Event, StepRecord, Store
from ..watch import Alert, Watch, default_rules
from ..watch_store import run_values

# A released outcome: (step, the record to write or None: already in the run, or failed)
Released = tuple[int, StepRecord | None]


def stored_values(store: Store, run: str, steps: Collection[int]) -> dict[int, dict[tuple[str, str], Any]]:
    """``{step: {(metric, site): values}}`` of ``run`` at ``steps`` (see :func:`run_values`)."""
    want = set(steps)
    return {s: v for s, v in run_values(store, run) if s in want} if want else {}


def _key(
    step: int, rule: str, site: str, metric: str, layer: int | None, head: int | None
) -> tuple[Any, ...]:
    return (step, rule, site, metric, layer, head)


class SweepWatch:
    """Evaluates the default watch rules over a sweep's steps in step order (see the module doc).

    ``say`` prints one alert line (the CLI's progress display); ``on_alert`` is ``"warn"`` or
    ``"stop"``.
    """

    def __init__(
        self,
        store: Store,
        run: str,
        steps: Sequence[int],
        in_run: Collection[int],
        on_alert: str = "warn",
        say: Callable[[Alert], None] | None = None,
    ) -> None:
        self.store, self.run, self.on_alert, self.say = store, run, on_alert, say
        names = {la.layer: la.name for la in store.layers(run)}
        self.watch = Watch(default_rules(), names, print_to=None)
        self._order = sorted(set(steps))
        self._next = 0
        self._in_run = set(in_run)
        self._held: dict[int, StepRecord | None] = {}
        self._stored = {
            _key(e.step, e.rule, e.site, e.metric, e.layer, e.head)
            for e in store.events(run)
            if e.kind == "alert"
        }
        self._old = stored_values(store, run, self._in_run & set(self._order))
        self.stopped: WatchAlert | None = None

    def add(self, step: int, record: StepRecord | None) -> list[Released]:
        """Hand over ``step`` (its record, or None for a checkpoint that failed); returns the
        steps now released in step order, new records carrying their alerts as ``events``."""
        self._held[step] = record
        return self._release()

    def flush(self) -> list[Released]:
        """Release what is still held, in step order: the sweep ended or stopped, so a step that
        has not come by now never will."""
        rest = [s for s in self._order[self._next :] if s in self._held or s in self._in_run]
        self._order = self._order[: self._next] + rest
        return self._release()

    def _release(self) -> list[Released]:
        out: list[Released] = []
        while self._next < len(self._order):
            s = self._order[self._next]
            if s in self._held:
                rec = self._held.pop(s)
            elif s in self._in_run:
                rec = None
            else:
                break
            self._next += 1
            if self.stopped is None:  # once stopping, what was swept is written, not evaluated
                self._evaluate(s, rec)
            out.append((s, rec))
        return out

    def _evaluate(self, step: int, rec: StepRecord | None) -> None:
        if rec is not None:
            fired = self.watch.check(step, rec.values)
            rec.events = [_event(a) for a in fired]  # even []: a rewritten step drops stale alerts
        elif step in self._old:
            fired = [
                a
                for a in self.watch.check(step, self._old.pop(step))
                if _key(a.step, a.rule, a.site, a.metric, a.layer, a.head) not in self._stored
            ]
            if fired:  # the step is in the run already: its new alerts are added to it
                self.store.write_events(self.run, [_event(a) for a in fired])
        else:
            fired = []  # a checkpoint that failed: no values
        for a in fired:
            if self.say is not None:
                self.say(a)
        if fired and self.on_alert == "stop":
            self.stopped = _stop(step, fired)


def _event(a: Alert) -> Event:
    return Event(a.step, "alert", a.rule, a.message, a.site, a.metric, a.layer, a.head, a.value)


def _stop(step: int, fired: Sequence[Alert]) -> WatchAlert:
    more = f" (and {len(fired) - 1} more alerts)" if len(fired) > 1 else ""
    return WatchAlert(
        f"layerscope watch stopped the sweep at step {step}: {fired[0].message}{more}; every step swept "
        "so far is in the store. Pass --on-alert warn to sweep every checkpoint.",
        list(fired),
    )


__all__ = ["SweepWatch", "stored_values"]
