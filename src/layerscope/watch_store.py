"""The watch over what a store already holds: the values of a run's steps read back through the
store's reader, in step order, as the live watch would have seen them at its flushes.

``sweep --watch`` feeds the steps of a continued sweep from here; ``serve --watch``
(:class:`StoreWatcher`) evaluates the default rules over every run of a store while it is
being written, reading only the steps that arrived since its last look.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import LayerscopeError
from .store import Store
from .watch import Alert, Watch, default_rules

StepValues = dict[tuple[str, str], Any]  # (metric, site) -> (n_layers,) or (n_layers, heads)


def run_values(store: Store, run: str, since_step: int | None = None) -> list[tuple[int, StepValues]]:
    """``[(step, {(metric, site): values})]`` of the plain series of ``run`` (after ``since_step``),
    ascending: one value per layer, or ``(n_layers, heads)`` for a per-head series (read head by
    head through :meth:`Store.load`)."""
    by_step: dict[int, StepValues] = {}
    for info in store.series(run):
        if info.kind != "value" or info.variant:
            continue
        if info.inner <= 1:
            hm = store.load(run, info.metric, info.site, since_step)
            cube = hm.values[:, :, None]
        else:
            parts = [store.load(run, info.metric, info.site, since_step, reduce=h) for h in range(info.inner)]
            hm = parts[0]
            cube = np.stack([p.values for p in parts], axis=2)
        for i, step in enumerate(hm.steps):
            by_step.setdefault(step, {})[(info.metric, info.site)] = (
                cube[i, :, 0] if info.inner <= 1 else cube[i]
            )
    return sorted(by_step.items())


class StoreWatcher:
    """The default watch rules over every run of the store at ``path``, one :class:`Watch` per run.

    Each :meth:`poll` reads the steps written since the previous one (a snapshot per series: a
    step being written is all in or all out) and returns the new alerts; ``say`` is called with
    each. It only reads: the alerts are not written into the store (a Recorder with ``watch=``
    stores its own).

    >>> w = StoreWatcher("runs.db")          # doctest: +SKIP
    >>> [a.message for a in w.poll()]        # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], say: Callable[[str, Alert], None] | None = None) -> None:
        self.path = path
        self.say = say
        self.watches: dict[str, Watch] = {}
        self._seen: dict[str, int] = {}  # run -> last step evaluated

    def poll(self) -> list[Alert]:
        """Evaluate the steps that arrived since the last poll; the new alerts, in step order per run."""
        if not os.path.exists(self.path):
            return []  # the store need not exist yet: a run may start later
        new: list[Alert] = []
        with Store(self.path, readonly=True) as st:
            for run in st.run_names():
                try:
                    committed = st.steps(run)
                    # A step committed while the series are read may be in some of them only:
                    # evaluate up to the last step committed before reading, the rest next time.
                    upto = committed[-1] if committed else None
                    steps = [
                        sv
                        for sv in run_values(st, run, self._seen.get(run))
                        if upto is not None and sv[0] <= upto
                    ]
                except LayerscopeError:
                    continue  # a run being created (no layers yet) or damaged: the page says which
                if not steps:
                    continue
                w = self.watches.get(run)
                if w is None:
                    names = {la.layer: la.name for la in st.layers(run)}
                    w = self.watches[run] = Watch(default_rules(), names, print_to=None)
                for step, values in steps:
                    for a in w.check(step, values):
                        new.append(a)
                        if self.say is not None:
                            self.say(run, a)
                self._seen[run] = steps[-1][0]
        return new

    def alerts(self, run: str) -> list[Alert]:
        """Every alert found so far in ``run``."""
        w = self.watches.get(run)
        return list(w.alerts) if w is not None else []


__all__ = ["StoreWatcher", "run_values"]
