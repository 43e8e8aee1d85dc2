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
import hashlib
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .capture import Layer, Selection, SiteHook, discover_layers, resolve_sites, unwrap
from .capture.headsites import HEAD_SITES, HeadSource, build_head_sources
from .capture.sources import (
    CaptureContext,
    CaptureSource,
    Gate,
    MaskSpec,
    MaskTracker,
    Slot,
    build_sources,
    mask_key,
)
from .config import RecorderConfig
from .errors import ConfigError, DistributedError, WatchAlert
from .stats import (
    SlotAccumulator,
    StatSpec,
    WindowState,
    collect,
    default_hist_edges,
    derive_values,
    finish_states,
    pack_many,
    reduce_across_ranks,
    resolve_metrics,
    unpack_many,
)
from .stats.heads import head_values, reduce_heads_across_ranks
from .store import LayerInfo, StepRecord, Store
from .watch import ON_ALERT, Alert, Watch, WatchSpec, as_rules

_D = RecorderConfig  # the defaults below are RecorderConfig's, defined there once

Probe = Any  # a Tensor, a tuple/list of positional inputs, a dict of keyword inputs, or fn(model)


def _dist_info(group: Any = None) -> tuple[int, int, str | None]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        import torch.distributed as dist

        return dist.get_rank(group), dist.get_world_size(group), str(dist.get_backend(group))
    return 0, 1, None


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` or any sub-module went through ``torch.compile`` (whole or per block)."""
    for m in model.modules():
        if type(m).__name__ == "OptimizedModule" or getattr(m, "_compiled_call_impl", None) is not None:
            return True
    return False


def probe_hash(probe: Probe) -> str:
    """A short content hash of a probe batch, stored with the run so probes are never mixed."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, np.ndarray):
            feed(torch.from_numpy(np.ascontiguousarray(obj)))
        elif isinstance(obj, dict):
            for k in sorted(obj):
                h.update(str(k).encode())
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                feed(o)
        else:
            h.update(repr(obj).encode())

    feed(probe)
    return h.hexdigest()[:16]


def run_forward(model: nn.Module, inputs: Probe) -> Any:
    """Call ``model`` on a probe: a tensor, positional inputs (tuple/list), keyword inputs (dict), or a
    callable taking the model."""
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        return inputs(model)
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


class Recorder:
    """Record activation statistics of every layer of ``model`` into run ``run`` of ``store``.

    Args:
        model: any ``nn.Module`` (DDP-, FSDP- or ``torch.compile``-wrapped is fine).
        store: path of the run store (created if missing), an open :class:`~layerscope.store.Store`,
            or ``None`` to keep results in memory only (``rec.history``).
        run: the run's name; an existing run of that name is continued (``resume=True``).
        metrics: names, a comma-separated string, or ``"all"``; see ``layerscope.stats.available_metrics()``.
        every: record steps with ``step % every == 0``.
        layers: which modules are "layers": None (discover the block stack), a glob, a list, or a
            predicate ``(name, module) -> bool``.
        sites: per layer: ``output``, ``mlp_act``, ``attn_out``, ``mlp_out``, ``mlp_down_in`` (see docs/layers-and-sites.md).
        window: ``"step"`` (the recorded step's forwards) or ``"all"`` (every forward since the last record).
        probe: a fixed batch; at each record step an extra no-grad, eval-mode forward on it is recorded
            instead of the training forwards, so every step is measured on the same data.
        mask: only real tokens count: the name of the model's mask argument (``"attention_mask"``)
            or ``fn(args, kwargs) -> mask``; see :meth:`set_mask` for loops that need it by hand.
        sample: keep every ``rows // k``-th token row of each activation (an int, or ``{site: k}``).
        stats_backend: the statistics pass (``"auto"``, ``"native"``, ``"compile"``, ``"eager"``).
        hooks: ``"auto"`` attaches hooks on record steps only, except for a ``torch.compile``d model,
            whose hooks stay attached and are switched by a flag (compile ignores hooks added later).
            Pass ``"gate"`` when you compile the model *after* creating the Recorder.
        **options: the remaining fields of :class:`~layerscope.config.RecorderConfig`.

    Call :meth:`step` after each optimizer step, and :meth:`close` (or use ``with``) at the end.
    """

    def __init__(
        self,
        model: nn.Module,
        store: str | os.PathLike[str] | Store | None,
        run: str = "run",
        metrics: str | Sequence[str] = _D.metrics,
        every: int = _D.every,
        layers: Selection = None,
        sites: str | Sequence[str] = _D.sites,
        *,
        window: str = _D.window,
        probe: Probe | None = None,
        train_only: bool = _D.train_only,
        eps: float = _D.eps,
        flush_every: int | None = None,
        flush_secs: float = _D.flush_secs,
        hist_edges: Sequence[float] | None = _D.hist_edges,
        resume: bool = _D.resume,
        notes: dict[str, Any] | None = None,
        mask: MaskSpec = _D.mask,
        sample: int | Mapping[str, int] | None = _D.sample,
        stats_backend: str = _D.stats_backend,
        attn_queries: int | None = _D.attn_queries,
        process_group: Any = None,
        source: str = "live",
        start_step: int | None = None,
        hooks: str = "auto",
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
            attn_queries=attn_queries,
        )
        self.config.validate()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Recorder needs a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.run = run
        self.source = source
        self._group = process_group
        self.rank, self.world_size, self._backend = _dist_info(process_group)

        metric_objs = resolve_metrics(self.config.metrics)
        edges = list(self.config.hist_edges) if self.config.hist_edges is not None else default_hist_edges()
        self.spec = StatSpec(
            metric_objs,
            eps=eps,
            hist_edges=edges if any(m.name == "hist" for m in metric_objs) else (),
            backend=stats_backend,
        )
        self.layers: list[Layer] = discover_layers(model, layers)
        act_sites = [s for s in self.config.sites if s not in HEAD_SITES]
        self.hooks: list[SiteHook] = resolve_sites(self.layers, act_sites) if act_sites else []
        per_site = self.config.sample_per_site()
        stacks = sorted({la.stack for la in self.layers})
        self.slots = [
            Slot(h, SlotAccumulator(self.spec, per_site.get(h.site)), mask_key(h.layer.stack, stacks))
            for h in self.hooks
        ]
        self._accs = [s.acc for s in self.slots]
        # The capture sources (one per kind of site), the gate their hooks read, the mask tracker.
        self._gate = Gate(train_only)
        self._masks = MaskTracker(unwrap(model), mask, self._gate)
        self._ctx = CaptureContext(self._gate, self._masks if mask is not None else None)
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

        self._device = self._model_device()
        if self.spec.binner is not None:
            self.spec.binner.prepare(self._device)  # so the first recorded forward does not copy
        if self._gated:
            from torch import _dynamo

            # Compiled forwards fold into fixed buffers (nothing they read changes between steps).
            for a in self._accs:
                a.prepare_graph(self._device)
            # Graphs compiled before the hooks existed do not call them: compile again, once.
            _dynamo.reset()
        self._probe = _to_device(probe, self._device) if probe is not None else None
        self._probe_hash = probe_hash(probe) if probe is not None else None

        self.store: Store | None = None
        self._owns_store = False
        error: BaseException | None = None
        try:
            self._open_store(store, run, model, source, resume, edges)
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the other ranks know
            error = e
        if self.world_size > 1:
            # Rank 0 alone opens the store; if it fails, the other ranks must not go on to wait
            # forever at the first record step's collective. One host sync, once.
            import torch.distributed as dist

            flag = torch.tensor([0 if error is None else 1], device=self._reduce_device())
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
            if error is None and int(flag.item()):
                raise DistributedError(
                    f"rank 0 could not open run {run!r} in the store; see rank 0's error. Nothing was recorded."
                )
        if error is not None:
            if self.store is not None and self._owns_store:
                self.store.close()
            raise error

        if start_step is None:
            if self._probe is None:
                self._attach()  # the first step's number is unknown: listen, discard if not recorded
        else:
            self._schedule(int(start_step))
        _live.add(self)

    def _open_store(
        self, store: Any, run: str, model: nn.Module, source: str, resume: bool, edges: Sequence[float]
    ) -> None:
        if self.rank == 0 and store is not None:
            self.store = store if isinstance(store, Store) else Store(store)
            self._owns_store = not isinstance(store, Store)
            run_cfg = self._run_config(edges)
            self.store.create_run(
                run,
                layers=[LayerInfo(la.index, la.name, la.stack, la.depth) for la in self.layers],
                model=type(unwrap(model)).__name__,
                config=run_cfg,
                source=source,
                resume=resume,
            )
            old = self.store.run_config(run)
            if self._probe_hash and old.get("probe_hash") not in (None, self._probe_hash):
                raise ConfigError(
                    f"run {run!r} was recorded with probe {old.get('probe_hash')}, not {self._probe_hash}; "
                    "use the same probe or record into a new run name."
                )
            if self._probe_hash and old.get("probe_hash") is None:
                self.store.update_run_config(run, probe_hash=self._probe_hash)

    # -- set-up ------------------------------------------------------------------------------
    def _model_device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def _run_config(self, edges: Sequence[float]) -> dict[str, Any]:
        cfg = self.config.to_dict()
        cfg["hist_edges"] = list(edges) if self.spec.hist_edges else None
        cfg["world_size"] = self.world_size
        cfg["probe_hash"] = self._probe_hash
        cfg["n_params"] = int(sum(p.numel() for p in self.model.parameters()))
        for src in self.sources:
            cfg.update(src.run_config())
        cfg["stacks"] = sorted({la.stack for la in self.layers})
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

    def set_mask(self, mask: torch.Tensor | None) -> _MaskScope:
        """Use ``mask`` (batch, tokens; non-zero = real token) for the next forwards, until
        ``set_mask(None)``; or as a context manager, for the forwards inside ``with``.

        For loops that call sub-modules directly or pass the mask in a way ``mask=`` cannot see::

            with rec.set_mask(batch["attention_mask"]):
                hidden = model.encoder(batch["input_ids"])
        """
        prev = self._masks.explicit
        self._masks.set(None if mask is None else _to_device(mask, self._device))
        if self._ctx.masks is None and mask is not None:
            self._ctx.masks = self._masks
        return _MaskScope(self._masks, prev)

    def _schedule(self, next_step: int) -> None:
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
                fired = [a for a in self.watch.alerts]
                raise WatchAlert(
                    f"layerscope watch stopped training at step {step}: {fired[0].message}"
                    + (f" (and {len(fired) - 1} more alerts)" if len(fired) > 1 else "")
                    + "; everything recorded is in the store. Pass on_alert='warn' to keep training.",
                    fired,
                )
        if record or self.config.window == "step":
            self._reset()
        self._last_step = step
        self._schedule(step + 1)
        return record

    def record_probe(self, step: int, probe: Probe | None = None) -> None:
        """Record ``step`` now from one eval-mode, no-grad forward on ``probe`` (or the recorder's probe)."""
        p = _to_device(probe, self._device) if probe is not None else self._probe
        if p is None:
            raise ConfigError("record_probe needs a probe batch: pass probe= here or to Recorder(probe=...).")
        self._reset()
        self._run_probe(p)
        self._record(int(step))
        self._reset()
        self._last_step = int(step)

    def _run_probe(self, probe: Probe | None = None) -> None:
        probe = self._probe if probe is None else probe
        self._reset()  # a probe step measures the probe alone
        was_attached = self.attached
        self._attach()
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        self._gate.in_probe = True
        try:
            with torch.no_grad():
                run_forward(self.model, probe)
        finally:
            self._gate.in_probe = False
            for m, mode in modes:
                m.training = mode
            if not was_attached:
                self._detach()

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

    def _record(self, step: int) -> None:
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

    # -- host side ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Copy pending statistics to the host (one transfer) and write them, a transaction per step."""
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if not pending or self.rank != 0:
            return
        try:
            records = self._to_records(pending)
            alerts = self._watch(records)
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

    def _watch(self, records: Sequence[StepRecord]) -> list[Alert]:
        """Evaluate the watch on flushed records (host values only: no sync)."""
        if self.watch is None:
            return []
        new: list[Alert] = []
        for r in records:
            new.extend(self.watch.check(r.step, r.values))
        if new and self.on_alert == "stop":
            self.should_stop = True
        return new

    def _store_alerts(self, alerts: Sequence[Alert]) -> None:
        assert self.store is not None
        log = getattr(self.store, "log_alerts", None)  # a SinkStore: TensorBoard / W&B / MLflow text
        if log is not None:
            log(alerts)
        write = getattr(self.store, "write_events", None)
        if write is None:
            return
        try:
            from .store import Event  # type: ignore[attr-defined, unused-ignore]  # the events table: store schema 2
        except ImportError:
            return

        write(
            self.run,
            [
                Event(a.step, "alert", a.rule, a.message, a.site, a.metric, a.layer, a.head, a.value)
                for a in alerts
            ],
        )

    def _to_records(self, pending: list[tuple[int, WindowState, list[torch.Tensor]]]) -> list[StepRecord]:
        finish_states([ws for _, ws, _ in pending])
        flat, layouts = pack_many([ws for _, ws, _ in pending])  # one device -> host copy for the flush
        heads = [h for _, _, hs in pending for h in hs]
        n_flat = flat.numel()
        if heads:
            flat = torch.cat([flat.reshape(-1), *(h.reshape(-1).to(flat) for h in heads)])
        host_all = flat.cpu().numpy()  # host sync here, once per flush
        host, off = host_all[:n_flat], n_flat
        records = []
        n_layers = len(self.layers)
        for (step, _, hs), parts in zip(pending, unpack_many(host, layouts)):
            derived = derive_values(parts.states, parts.units, parts.fn, self.spec)
            values: dict[tuple[str, str], Any] = {}
            hists: dict[str, np.ndarray] = {}
            for i, h in enumerate(self.hooks):
                for name, arr in derived.items():
                    values.setdefault((name, h.site), [float("nan")] * n_layers)[h.layer.index - 1] = float(
                        arr[i]
                    )
                if parts.hist is not None:
                    nb = parts.hist.shape[1]
                    hists.setdefault(h.site, np.zeros((n_layers, nb)))[h.layer.index - 1] = parts.hist[i]
            for src, snap in zip(self.head_sources, hs):
                state = host_all[off : off + snap.numel()].reshape(snap.shape)
                off += snap.numel()
                for name, arr in head_values(state, src.site).items():
                    v = np.asarray(arr, dtype=np.float64)
                    values[(name, src.site)] = v[:, 0] if src.site == "logits" else v
            records.append(StepRecord(step, values, hists or None, source=self.source))
        return records

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


class _MaskScope:
    """What :meth:`Recorder.set_mask` returns: as a context manager, restores the previous mask."""

    def __init__(self, tracker: MaskTracker, prev: torch.Tensor | None) -> None:
        self._tracker, self._prev = tracker, prev

    def __enter__(self) -> _MaskScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tracker.explicit = self._prev


# Recorders still open at interpreter exit are flushed, so a script that forgets close() keeps its data.
_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _flush_open_recorders() -> None:
    for rec in list(_live):
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - exiting anyway; never mask the real exit status
            pass
