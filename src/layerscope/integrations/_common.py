"""What the framework callbacks share: one Recorder, its store, and the sinks, from start to finish.

A callback only translates its framework's events into three calls: :meth:`RecorderSession.start`
(the model, the first step, whether this is rank 0), :meth:`~RecorderSession.step` (after each
optimizer step) and :meth:`~RecorderSession.finish`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..capture import Selection
from ..defaults import DEFAULT_METRICS
from ..errors import ConfigError
from ..store import Store
from .loggers import Sink, SinkStore, as_sinks

STORE_NAME = "layerscope.db"


class RecorderSession:
    """The arguments a callback was given, and the Recorder they become once training starts."""

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None,
        run: str | None,
        every: int,
        metrics: str | Sequence[str],
        sites: str | Sequence[str],
        probe: Any,
        layers: Selection,
        log_to: Any,
        recorder_options: dict[str, Any],
    ) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(
                f"every={every!r}; pass a whole number >= 1 (record every N-th optimizer step)."
            )
        for bad in ("model", "store", "run", "start_step", "resume"):
            if bad in recorder_options:
                raise ConfigError(
                    f"{bad}= is set by the callback (the trainer's model and global step; a run is always "
                    "continued on resume); remove it from the callback's arguments."
                )
        self.store = store
        self.run = run
        self.every = every
        self.metrics = metrics
        self.sites = sites
        self.probe = probe
        self.layers = layers
        self.log_to = log_to
        self.recorder_options = dict(recorder_options)
        self.recorder: Any = None  # layerscope.Recorder once training started
        self.sink_store: SinkStore | None = None
        self.last_step: int | None = None

    def start(
        self,
        model: nn.Module,
        *,
        start_step: int,
        is_rank0: bool,
        default_store: str | os.PathLike[str],
        default_run: str,
        resolve_sinks: Callable[[Any], list[Sink] | None] = lambda target: None,
        notes: dict[str, Any] | None = None,
    ) -> Any:
        """Create the Recorder on ``model``; every rank calls this (the reduction is a collective)."""
        from ..recorder import Recorder

        if self.recorder is not None:
            self.finish()  # a second fit()/train() on the same callback: a fresh recorder, same run
        if model is None:
            raise ConfigError("the trainer passed no model to the layerscope callback; is training running?")
        store = self.store if self.store is not None else default_store
        run = self.run or default_run
        self.run = run
        if is_rank0 and not isinstance(store, Store):
            Path(store).parent.mkdir(parents=True, exist_ok=True)
        sinks: list[Sink] = []
        if is_rank0 and self.log_to:
            targets = self.log_to if isinstance(self.log_to, (list, tuple)) else [self.log_to]
            for t in targets:
                # A name may mean the framework's own writer/run ("tensorboard" -> its SummaryWriter);
                # "auto" means every logger the framework has that layerscope can write to.
                got = resolve_sinks(t)
                if got is None:
                    if isinstance(t, str) and t.strip().lower() == "auto":
                        got = []
                    else:
                        got = as_sinks(t)
                sinks.extend(got)
        if sinks:
            self.sink_store = SinkStore(store, sinks)
            store = self.sink_store
        opts = {**self.recorder_options}
        opts["notes"] = {**(notes or {}), **opts.get("notes", {})}
        try:
            self.recorder = Recorder(
                model,
                store if is_rank0 else None,
                run=run,
                metrics=self.metrics,
                every=self.every,
                layers=self.layers,
                sites=self.sites,
                probe=self.probe,
                start_step=start_step,
                **opts,
            )
        except BaseException:
            if self.sink_store is not None:
                self.sink_store.close()
                self.sink_store = None
            raise
        # The trainer stops itself on a watch alert (on_alert="stop"): step() does not raise.
        self.recorder.stop_by_flag = True
        self.last_step = start_step - 1
        return self.recorder

    def before_optimizer_step(self) -> None:
        """The trainer is about to call ``optimizer.step()`` (gradients final: param_grad, update)."""
        if self.recorder is not None:
            self.recorder.before_optimizer_step()

    def after_optimizer_step(self) -> None:
        """The trainer called ``optimizer.step()`` (update, weight); a no-op when nothing began."""
        if self.recorder is not None:
            self.recorder.after_optimizer_step()

    def step(self, step: int) -> bool:
        """The trainer finished optimizer step ``step``; returns whether it was recorded."""
        if self.recorder is None:
            return False
        self.last_step = int(step)
        return bool(self.recorder.step(int(step)))

    @property
    def should_stop(self) -> bool:
        """Whether the watch fired with ``on_alert="stop"`` (the callback then stops its trainer)."""
        return bool(self.recorder is not None and self.recorder.should_stop)

    def finish(self) -> None:
        """Flush and close the recorder, draw the heatmaps into the sinks, close what we opened."""
        rec, self.recorder = self.recorder, None
        sink_store, self.sink_store = self.sink_store, None
        try:
            if rec is not None:
                rec.close()
            if sink_store is not None and rec is not None:
                sink_store.log_images(rec.run)
        finally:
            if sink_store is not None:
                sink_store.close()

    def state_dict(self) -> dict[str, Any]:
        if self.recorder is not None:
            return dict(self.recorder.state_dict())
        return {"run": self.run, "last_step": self.last_step}


__all__ = ["DEFAULT_METRICS", "STORE_NAME", "RecorderSession"]
