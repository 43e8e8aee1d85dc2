"""``Recorder``: hooks on a model's layers, statistics on the device, a run in the store.

::

    with layerscope.Recorder(model, "runs.db", run="baseline", every=100) as rec:
        for step in range(1, n_steps + 1):
            loss = model(x, y); loss.backward(); opt.step(); opt.zero_grad()
            rec.step(step)          # after each optimizer step

Where the host syncs (and nowhere else): once per record step under data parallel, to agree on
per-unit sizes (``reduce_across_ranks``), and once per flush, when the pending statistics are
copied to the host in one transfer (``Recorder.flush``). Hooks never sync.
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from .batch import ProbeFn, check_probe, model_device, probe_hash, run_forward, to_device
from .capture import Selection, unwrap
from .capture.headsites import HeadSource, build_head_sources
from .capture.models import callable_name, dist_info, is_compiled
from .capture.plan import plan_slots
from .capture.sources import (
    CaptureContext,
    CaptureSource,
    Gate,
    MaskScope,
    MaskSpec,
    MaskTracker,
    build_sources,
)
from .config import RecorderConfig
from .defaults import SITE_METRICS, STEP_SITES
from .errors import ConfigError
from .flushing import UnreachedLayersWarning as UnreachedLayersWarning  # re-exported
from .flushing import site_metrics, stop_error, to_records, unreached, warn_unreached, watch_records
from .recording import DEFAULT_RUN, RunSpec, agree_on_run, model_fingerprint, open_run
from .stats import (
    StatSpec,
    WindowState,
    collect,
    default_hist_edges,
    reduce_across_ranks,
    resolve_metrics,
)
from .stats.heads import reduce_heads_across_ranks
from .store import LayerInfo, StepRecord, Store
from .watch import ON_ALERT, Alert, Watch, WatchSpec, as_rules

_D = RecorderConfig  # the defaults below are RecorderConfig's, defined there once

Probe = Any  # a Tensor, a tuple/list of positional inputs, a dict of keyword inputs, or fn(model)


class Recorder:
    """Record activation statistics of every layer of ``model`` into run ``run`` of ``store``.

    Args:
        model: any ``nn.Module`` (DDP-, FSDP- or ``torch.compile``-wrapped is fine).
        store: path of the run store (created if missing), an open :class:`~layerscope.store.Store`,
            or ``None`` to keep results in memory only (``rec.history``).
        run: the run's name. Left out: ``"run"``, or ``"run-2"``, ... when that is taken (``rec.run``
            says which). An existing run is continued only if it holds the same recording (same
            model architecture, metrics, sites, probe ...); see ``resume`` and docs/recording.md.
        metrics: names, a comma-separated string, or ``"all"``; see ``layerscope.stats.available_metrics()``.
        every: record steps with ``step % every == 0``.
        layers: which modules are "layers": None (discover the block stack), a glob, a list, or a
            predicate ``(name, module) -> bool``.
        sites: per layer: ``output``, ``mlp_act``, ``attn_out``, ``mlp_out``, ``mlp_down_in``, or
            ``"all"`` the model has; of training: ``grad_output``, ``param_grad``, ``update``,
            ``weight`` (see docs/layers-and-sites.md and docs/recording.md).
        window: ``"step"`` (the recorded step's forwards) or ``"all"`` (every forward since the last record).
        probe: a fixed batch; at each record step an extra no-grad, eval-mode forward on it is recorded
            instead of the training forwards, so every step is measured on the same data.
        probe_fn: ``probe_fn(model, probe)`` runs the probe instead of ``model(probe)``, for a model
            whose ``forward`` does not run every recorded layer (an autoencoder's ``forward`` is its
            encoder). Layers that see no forward at the first recorded step get an
            :class:`UnreachedLayersWarning` naming them.
        mask: only real tokens count: the name of the model's mask argument (``"attention_mask"``)
            or ``fn(args, kwargs) -> mask``; see :meth:`set_mask` for loops that need it by hand.
        sample: keep every ``rows // k``-th token row of each activation (an int, or ``{site: k}``).
        stats_backend: the statistics pass (``"auto"``, ``"native"``, ``"compile"``, ``"eager"``).
        train_only: record forwards in training mode only (evaluation passes are not counted).
        eps: the small number that keeps ratios such as kurtosis finite for constant activations.
        flush_every: write to the store every N recorded steps (a host sync each time; 1 for a
            dashboard that moves with every step).
        flush_secs: ... or when this many seconds have passed since the last write.
        hist_edges: the fixed bin edges of the ``hist`` metric (default: 0 and +-10^(k/4), 1e-6..1e6).
        resume: ``None`` (default): continue an existing run ``run`` of the same recording, refuse
            one of another; ``True``: continue it whatever it holds; ``False``: refuse any existing run.
        notes: free-form values stored with the run (hyper-parameters, a git hash ...).
        process_group: the DDP/FSDP group whose ranks are merged (default: the world); rank 0 writes.
        source: what the run's rows are marked with (``"live"``; a sweep writes ``"sweep"``).
        start_step: the first step, when a resumed loop does not start at 1.
        hooks: ``"auto"`` attaches hooks on record steps only, except for a ``torch.compile``d model,
            whose hooks stay attached and are switched by a flag (compile ignores hooks added later).
            Pass ``"gate"`` when you compile the model *after* creating the Recorder.
        optimizer: the optimizer, for the sites ``param_grad``, ``update`` and ``weight``: its step
            pre- and post-hooks take them (or call :meth:`before_optimizer_step` and
            :meth:`after_optimizer_step` yourself).
        scaler: a ``torch.amp.GradScaler``, so that ``grad_output`` is recorded unscaled.
        update_sample: the ``update`` snapshot keeps every k-th row of each weight matrix (memory / k).
        attn_queries: site ``attn``: query positions per forward recomputed against every key (None: all).
        watch: rules checked at each flush (``True`` for the defaults; see docs/attention.md);
            ``on_alert``: ``"warn"`` (print and store alerts) or ``"stop"`` (raise ``WatchAlert``).

    Call :meth:`step` after each optimizer step, and :meth:`close` (or use ``with``) at the end.
    The defaults are those of :class:`~layerscope.config.RecorderConfig`.

    Example (the package's tiny GPT returns ``(logits, loss)``; ``store=None`` keeps the rows in
    ``rec.history`` instead of a file)::

        >>> import torch, layerscope
        >>> from layerscope.testing import tiny_gpt
        >>> model = tiny_gpt(n_layer=2, n_embd=16, n_head=2, block_size=8)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x = torch.randint(0, 256, (2, 8))
        >>> with layerscope.Recorder(model, None, run="demo", every=2, metrics="rms,max_abs") as rec:
        ...     for step in range(1, 5):
        ...         logits, loss = model(x, x)
        ...         loss.backward(); opt.step(); opt.zero_grad()
        ...         recorded = rec.step(step)  # True on the steps it records
        >>> [r.step for r in rec.history], len(rec.history[0].values[("rms", "output")])
        ([2, 4], 2)
    """

    def __init__(
        self,
        model: nn.Module,
        store: str | os.PathLike[str] | Store | None,
        run: str | None = None,
        metrics: str | Sequence[str] = _D.metrics,
        every: int = _D.every,
        layers: Selection = None,
        sites: str | Sequence[str] = _D.sites,
        *,
        window: str = _D.window,
        probe: Probe | None = None,
        probe_fn: ProbeFn | None = None,
        train_only: bool = _D.train_only,
        eps: float = _D.eps,
        flush_every: int | None = None,
        flush_secs: float = _D.flush_secs,
        hist_edges: Sequence[float] | None = _D.hist_edges,
        resume: bool | None = _D.resume,
        notes: dict[str, Any] | None = None,
        mask: MaskSpec = _D.mask,
        sample: int | Mapping[str, int] | None = _D.sample,
        stats_backend: str = _D.stats_backend,
        attn_queries: int | None = _D.attn_queries,
        process_group: Any = None,
        source: str = "live",
        start_step: int | None = None,
        hooks: str = "auto",
        optimizer: Any = None,
        scaler: Any = None,
        update_sample: int | None = _D.update_sample,
        watch: WatchSpec = None,
        on_alert: str = "warn",
    ) -> None:
        if on_alert not in ON_ALERT:
            raise ConfigError(f"on_alert={on_alert!r}; pass 'warn' (print and store alerts) or 'stop'.")
        rules = as_rules(watch)
        if flush_every is None:
            # The watch sees values at flushes: with rules, flush (one host copy) at every recorded step.
            flush_every = 1 if rules else _D.flush_every
        if isinstance(sites, str):
            sites = [s.strip() for s in sites.split(",") if s.strip()]
        self.config = RecorderConfig(
            metrics=tuple(m.name for m in resolve_metrics(metrics)),
            every=every,
            sites=tuple(sites),
            window=window,
            train_only=train_only,
            eps=eps,
            flush_every=flush_every,
            flush_secs=flush_secs,
            hist_edges=list(hist_edges) if hist_edges is not None else None,
            resume=resume,
            notes=dict(notes or {}),
            mask=mask,
            sample=sample,
            stats_backend=stats_backend,
            update_sample=update_sample,
            attn_queries=attn_queries,
        )
        self.config.validate()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Recorder needs a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.run = run if run is not None else DEFAULT_RUN  # the store's choice replaces it below
        self.source = source
        self._group = process_group
        self.rank, self.world_size, self._backend = dist_info(process_group)

        # Training sites add their own metrics (a norm, an update's ratio) to the recorder's.
        extra = [m for site in self.config.sites for m in SITE_METRICS.get(site, ())]
        metric_objs = resolve_metrics([*self.config.metrics, *extra])
        edges = list(self.config.hist_edges) if self.config.hist_edges is not None else default_hist_edges()
        self.spec = StatSpec(
            metric_objs,
            eps=eps,
            hist_edges=edges if any(m.name == "hist" for m in metric_objs) else (),
            backend=stats_backend,
        )
        self.layers, self.hooks, self.slots = plan_slots(model, layers, self.config, self.spec)
        self._accs = [s.acc for s in self.slots]
        # The capture sources (one per kind of site), the gate their hooks read, the mask tracker.
        self._gate = Gate(train_only)
        self._masks = MaskTracker(unwrap(model), mask, self._gate)
        self._ctx = CaptureContext(self._gate, self._masks if mask is not None else None)
        self._ctx.optimizer, self._ctx.scaler = optimizer, scaler
        self._ctx.rank, self._ctx.world_size = self.rank, self.world_size
        self._ctx.update_sample = update_sample
        # attn / logits: sources with per-head states of their own (capture/headsites.py).
        self.head_sources: list[HeadSource] = build_head_sources(
            unwrap(model),
            self.layers,
            self.config.sites,
            self._masks if mask is not None else None,
            attn_queries,
        )
        self.sources: list[CaptureSource | HeadSource] = [
            self._masks,
            *build_sources(self.slots),
            *self.head_sources,
        ]
        self._site_metrics = site_metrics(metric_objs, self.config.metrics, self.config.sites)
        # torch.compile ignores hooks added after a module was first compiled, so for compiled
        # models the hooks stay attached and the gate switches them on and off (dynamo guards on
        # it: one graph recording, one not, both compiled in the first `every` steps).
        # Eager models attach hooks on record steps only.
        if hooks not in ("auto", "attach", "gate"):
            raise ConfigError(
                f"hooks={hooks!r}; pass 'auto', 'attach' (add/remove per record step) or "
                "'gate' (always on, switched by a flag: for models compiled after this Recorder)."
            )
        self._gated = hooks == "gate" or (hooks == "auto" and is_compiled(model))
        self._closed = False
        self._last_step: int | None = None
        self._pending: list[tuple[int, WindowState, list[torch.Tensor]]] = []
        self._last_flush = time.monotonic()
        self.history: list[StepRecord] = []  # what was flushed, when store is None
        self.n_recorded = 0
        self.watch: Watch | None = Watch(rules, {la.index: la.name for la in self.layers}) if rules else None
        self.on_alert = on_alert
        # Integrations set this: they stop their trainer themselves instead of step() raising.
        self.stop_by_flag = False
        self.should_stop = False

        self._device = model_device(self.model)
        if self.spec.binner is not None:
            self.spec.binner.prepare(self._device)  # so the first recorded forward does not copy
        if self._gated:
            from torch import _dynamo

            # Compiled forwards fold into fixed buffers (nothing they read changes between steps).
            for a in self._accs:
                a.prepare_graph(self._device)
            # Graphs compiled before the hooks existed do not call them: compile again, once.
            _dynamo.reset()
        self._probe_fn = check_probe(probe, probe_fn)
        self._probe = to_device(probe, self._device) if probe is not None else None
        self._probe_hash = probe_hash(probe) if probe is not None else None
        self.unreached: list[str] = []  # sites that saw no forward in the last recorded step

        self.store: Store | None = None
        self._owns_store = False
        error: BaseException | None = None
        try:
            self._open_store(store, run, model, source, resume, edges)
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the other ranks know
            error = e
        if self.world_size > 1:
            self.run = agree_on_run(error, run, self.run, self._group, self._reduce_device())
        if error is not None:
            if self.store is not None and self._owns_store:
                self.store.close()
            raise error

        for src in self.sources:
            if src.always_attached:  # optimizer hooks: attached once, they read the gate
                src.attach(self._ctx)
        if start_step is None:
            self._gate.recording = True
            if self._probe is None:
                self._attach()  # the first step's number is unknown: listen, discard if not recorded
        else:
            self._schedule(int(start_step))
        _live.add(self)

    def _open_store(
        self,
        store: Any,
        run: str | None,
        model: nn.Module,
        source: str,
        resume: bool | None,
        edges: Sequence[float],
    ) -> None:
        if self.rank == 0 and store is not None:
            self.store = store if isinstance(store, Store) else Store(store)
            self._owns_store = not isinstance(store, Store)
            # A fresh name when run is None; the same recording continues; another is refused.
            self.run = open_run(self.store, run, resume, self.run_spec(), source=source)

    def run_spec(self) -> RunSpec:
        """How this recorder describes its run to the store (layers, model class, config)."""
        return RunSpec(
            layers=[LayerInfo(la.index, la.name, la.stack, la.depth) for la in self.layers],
            model=type(unwrap(self.model)).__name__,
            config=self._run_config(self.spec.hist_edges),
        )

    # -- set-up ------------------------------------------------------------------------------
    def _run_config(self, edges: Sequence[float]) -> dict[str, Any]:
        cfg = self.config.to_dict()
        cfg["hist_edges"] = list(edges) if self.spec.hist_edges else None
        cfg["world_size"] = self.world_size
        cfg["probe_hash"] = self._probe_hash
        if self._probe_fn is not None:
            cfg["probe_fn"] = callable_name(self._probe_fn)
        cfg["n_params"] = int(sum(p.numel() for p in self.model.parameters()))
        cfg["model_fingerprint"] = model_fingerprint(self.model)
        for src in self.sources:  # each source adds its own entries (site_modules merge across sources)
            for key, val in src.run_config().items():
                both = isinstance(val, dict) and isinstance(cfg.get(key), dict)
                cfg[key] = {**cfg[key], **val} if both else val
        cfg["stacks"] = sorted({la.stack for la in self.layers})
        cfg["site_metrics"] = {s: sorted(m) for s, m in self._site_metrics.items()}
        return cfg

    # -- hooks -------------------------------------------------------------------------------
    def _attach(self) -> None:
        if self._closed:
            return
        self._gate.listening = True
        for src in self.sources:
            src.attach(self._ctx)

    def _detach(self, final: bool = False) -> None:
        self._gate.listening = False
        if self._gated and not final:
            return  # compiled: the hooks stay, switched off
        for src in self.sources:
            if final or not src.always_attached:
                src.detach()

    @property
    def attached(self) -> bool:
        """Whether the hooks are listening now (only on steps that record, unless window="all")."""
        return self._gate.listening and any(
            src.attached for src in self.sources if src.slots or src in self.head_sources
        )

    def set_mask(self, mask: torch.Tensor | None) -> MaskScope:
        """Use ``mask`` (batch, tokens; non-zero = real token) for the next forwards, until
        ``set_mask(None)``; or as a context manager, for the forwards inside ``with``.

        For loops that call sub-modules directly or pass the mask in a way ``mask=`` cannot see::

            with rec.set_mask(batch["attention_mask"]):
                hidden = model.encoder(batch["input_ids"])
        """
        prev = self._masks.explicit
        self._masks.set(None if mask is None else to_device(mask, self._device))
        if self._ctx.masks is None and mask is not None:
            self._ctx.masks = self._masks
        return MaskScope(self._masks, prev)

    def _schedule(self, next_step: int) -> None:
        self._gate.recording = next_step % self.config.every == 0
        listen = self._probe is None and (self.config.window == "all" or next_step % self.config.every == 0)
        if listen:
            self._attach()
        else:
            self._detach()

    # -- the training loop's calls -------------------------------------------------------------
    def step(self, step: int | None = None) -> bool:
        """Mark the end of optimizer step ``step`` (default: the previous step + 1).

        Returns whether this step was recorded.
        """
        if self._closed:
            raise ConfigError(f"Recorder for run {self.run!r} is closed; create a new one to record more.")
        if step is None:
            step = 1 if self._last_step is None else self._last_step + 1
        step = int(step)
        if step < 0:
            raise ConfigError(f"step={step}; steps are optimizer updates counted from 0 or 1.")
        record = step % self.config.every == 0
        if record:
            if self._probe is not None:
                self._run_probe()
            self._record(step)
            if self.should_stop and not self.stop_by_flag:
                self.flush()
                assert self.watch is not None
                raise stop_error(step, self.watch.alerts)
        if record or self.config.window == "step":
            self._reset()
        self._last_step = step
        self._schedule(step + 1)
        return record

    def record_probe(self, step: int, probe: Probe | None = None) -> None:
        """Record ``step`` now from one eval-mode, no-grad forward on ``probe`` (or the recorder's probe)."""
        p = to_device(probe, self._device) if probe is not None else self._probe
        if p is None:
            raise ConfigError("record_probe needs a probe batch: pass probe= here or to Recorder(probe=...).")
        self._reset()
        self._run_probe(p)
        self._each("take_checkpoint")  # weight (and update since the last call) of the model as it is now
        self._record(int(step))
        self._reset()
        self._last_step = int(step)

    def forget_checkpoint(self) -> None:
        """Make the next :meth:`record_probe` the first of a sequence: its ``update`` (the change
        since the previous one) is left out. A sweep calls this after its preflight forward."""
        self._each("forget_checkpoint")

    def _run_probe(self, probe: Probe | None = None) -> None:
        probe = self._probe if probe is None else probe
        for s in self.slots:
            if s.hook.site not in STEP_SITES:  # the optimizer step's sites were taken already
                s.acc.reset()  # a probe step measures the probe alone
        for hsrc in self.head_sources:
            hsrc.reset()
        was_attached = self.attached
        self._attach()
        # A sweep's model stays in eval mode: toggle (and restore) only the modules in training mode,
        # as walking every module twice per probe costs ~1 ms on a 12-block GPT.
        training = [m for m in self.model.modules() if m.training]
        if training:
            self.model.eval()
        self._gate.in_probe = True
        try:
            with torch.no_grad():
                run_forward(self.model, probe, self._probe_fn)
        finally:
            self._gate.in_probe = False
            for m in training:
                m.training = True
            if not was_attached:
                self._detach()

    def _each(self, method: str, *args: Any) -> None:
        """Call ``method`` on every source that has it (the optional parts of a source's interface)."""
        for src in self.sources:
            fn = getattr(src, method, None)
            if fn is not None:
                fn(*args)

    def _reset(self) -> None:
        for a in self._accs:
            a.reset()
        for hs in self.head_sources:
            hs.reset()

    def _reduce_device(self) -> torch.device:
        if self._backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        if self.world_size > 1:
            return torch.device("cpu")
        return self._device

    def before_optimizer_step(self) -> None:
        """Take ``param_grad`` and the ``update`` snapshot now, just before ``optimizer.step()``.

        Only for loops whose optimizer was not given to the Recorder (framework callbacks call it
        for you); with ``optimizer=`` its step hooks do this. A no-op on steps that do not record.
        """
        self._each("begin")

    def after_optimizer_step(self) -> None:
        """Take ``update`` and ``weight`` now, just after ``optimizer.step()`` (see
        :meth:`before_optimizer_step`)."""
        self._each("end")

    def _record(self, step: int) -> None:
        self._check_reached(step)
        self._each("before_collect", step)  # capture sources; head sources have none
        dev = self._reduce_device()
        # A single process defers turning raw sums into states to the flush (one batched call).
        ws = collect(self._accs, self.spec, dev, defer=self.world_size == 1)
        if self.world_size > 1:
            ws = reduce_across_ranks(ws, self.spec, self._group)
        heads = [hs.snapshot(len(self.layers), dev) for hs in self.head_sources]
        if self.world_size > 1:
            heads = [reduce_heads_across_ranks(h, self._group) for h in heads]
        self._pending.append((step, ws, heads))
        self.n_recorded += 1
        if (
            len(self._pending) >= self.config.flush_every
            or time.monotonic() - self._last_flush >= self.config.flush_secs
        ):
            self.flush()

    # -- probe_fn and the layers the forwards reached -------------------------------------------
    def _check_reached(self, step: int) -> None:
        """Note the sites that saw no forward since the window began; at the first recorded step,
        warn about them: their values are NaN."""
        self.unreached = unreached(self.hooks, self._accs)
        if not self.n_recorded and self.unreached and self.rank == 0:
            warn_unreached(self.unreached, len(self.hooks), step, self._probe is not None)

    # -- host side ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Copy pending statistics to the host (one transfer) and write them, a transaction per step."""
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if not pending or self.rank != 0:
            return
        try:
            records = to_records(
                pending,
                self.hooks,
                self.head_sources,
                len(self.layers),
                self.spec,
                self._site_metrics,
                self.source,
            )
            alerts = watch_records(self.watch, records)
            if alerts and self.on_alert == "stop":
                self.should_stop = True
            if self.store is not None:
                self.store.write_steps(self.run, records)
                if alerts:
                    self._store_alerts(alerts)
            else:
                self.history.extend(records)
        except BaseException:
            # Disk full, store locked too long...: keep the steps for the next flush. A step that
            # was written before the failure is written again, which replaces it (never duplicates).
            self._pending = pending + self._pending
            raise

    def _store_alerts(self, alerts: Sequence[Alert]) -> None:
        log = getattr(self.store, "log_alerts", None)  # a SinkStore: TensorBoard / W&B / MLflow text
        if log is not None:
            log(alerts)

    def close(self) -> None:
        """Flush what is pending, remove the hooks, close the store. Safe to call twice."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._detach(final=True)
            self._masks.current, self._masks.explicit = {}, None
            if self._owns_store and self.store is not None:
                self.store.close()
            _live.discard(self)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpointing the recorder with the training state -------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a training checkpoint needs to continue this run after a restart."""
        return {"run": self.run, "last_step": self._last_step, "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("run") not in (None, self.run):
            raise ConfigError(
                f"checkpointed recorder state is for run {state.get('run')!r}, not {self.run!r}; "
                "create the Recorder with that run name to continue it."
            )
        self._last_step = state.get("last_step")
        if self._last_step is not None:
            self._schedule(int(self._last_step) + 1)

    def __repr__(self) -> str:
        return (
            f"Recorder(run={self.run!r}, layers={len(self.layers)}, sites={list(self.config.sites)}, "
            f"metrics={list(self.config.metrics)}, every={self.config.every})"
        )


# Recorders still open at interpreter exit are flushed, so a script that forgets close() keeps its data.
_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _flush_open_recorders() -> None:
    for rec in list(_live):
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - exiting anyway; never mask the real exit status
            pass
