"""The sweep: every checkpoint of a folder -> one recorded step each, in the same store as live runs.

One code path, three ways to run it:

- one process: a :class:`~layerscope.sweep.worker.CheckpointWorker` in this process, the writer beside it;
- ``workers=N``: N spawned processes each run a ``CheckpointWorker`` and send their step records
  back; this process writes them;
- under ``torchrun`` (a process group is initialised): rank ``r`` sweeps ``todo[r::world]``; after
  each round every rank's result is gathered to rank 0, which writes it.

The worker (:mod:`layerscope.sweep.worker`) records each checkpoint exactly as a live
``Recorder(probe=...)`` would record that step; the pool of ``--workers`` processes is
:mod:`layerscope.sweep.pool`. Each step is written in its own transaction
as soon as it arrives, so a sweep killed mid-way keeps every step written, and the next sweep skips
them (``force=True`` recomputes).

A checkpoint that cannot be used (truncated, corrupt, unsafe, of another model) is one line in
``SweepResult.failed``; the sweep goes on with the rest.
"""

from __future__ import annotations

import inspect
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import check_outputs_are_not_inputs
from ..batch import ProbeFn
from ..errors import ConfigError, DistributedError, LayerscopeError, NotFoundError, WatchAlert
from ..recorder import Recorder
from ..recording import open_run
from ..stats import DEFAULT_METRICS, resolve_metrics
from ..store import Store
from ..watch import ON_ALERT, Alert
from .dcp import LIGHTNING_META, stored_step
from .discover import (
    Checkpoint,
    Discovery,
    Problem,
    check_store_is_not_a_checkpoint,
    compile_step_regex,
    find_checkpoints,
    relative_name,
)
from .load import peek_step
from .pool import Pool
from .probe import check_probe, describe, load_probe
from .worker import (
    CheckpointWorker,
    ModelSpec,
    Outcome,
    WorkerSpec,
    build_model,
    resolve_device,
    resolve_probe_fn,
    spec_name,
)
from .writer import Writer, make_watch


@dataclass
class SweepConfig:
    """What ``layerscope sweep`` does; the CLI's options map one to one onto these fields."""

    ckpt_dir: (
        str | os.PathLike[str]
    )  # a folder of checkpoints (any depth), one HF checkpoint folder, or one file
    store: str | os.PathLike[str]  # the run store (created if missing); the same file live runs use
    run: str  # run name; an existing run is continued (same layers, metrics, sites and probe)
    probe: (
        Any  # a probe file (see layerscope.sweep.probe) or the batch itself: tensor, list or dict of tensors
    )
    model: ModelSpec = None  # how to build the model: "pkg.module:factory" or a callable
    # How the probe runs: "pkg.module:fn" or a callable fn(model, batch) (picklable for workers > 1);
    # None calls model(batch). For models whose forward runs only part of the stack.
    probe_fn: str | ProbeFn | None = None
    hf: bool = False  # build the model from the config.json stored with the checkpoints instead of `model`
    metrics: str | Sequence[str] = DEFAULT_METRICS  # as Recorder(metrics=...)
    sites: str | Sequence[str] = ("output",)  # as Recorder(sites=...)
    layers: str | Sequence[str] | None = None  # as Recorder(layers=...): a glob or a list; None discovers
    step_regex: str | None = None  # replaces the name rules; the step is group 1 or (?P<step>...)
    tokenizer: str | None = None  # "bytes" to read a text probe
    seq_len: int | None = None  # rows of this many tokens for a text probe (None: one row)
    force: bool = False  # recompute steps already in the store (their rows are replaced)
    # An existing run: None continues it only if it holds this sweep (same model architecture,
    # checkpoint folder, metrics...), True whatever it holds, False never (layerscope.recording).
    resume: bool | None = None
    trust: bool = False  # allow arbitrary pickles (can run code from the file); off by default
    workers: int = 1  # processes on this machine, this one included; >1 spawns the others (not with torchrun)
    device: str = "cpu"  # "cpu", "cuda", "cuda:1" or "auto" (cuda:LOCAL_RANK when there is a GPU)
    threads: int | None = None  # torch threads per process (None: torch's default; cores / workers in a pool)
    mask: str | None = None  # the probe's token-mask key (e.g. "attention_mask"), as Recorder(mask=...)
    # More keyword arguments for the recorder that computes the statistics (eps, hist_edges,
    # train_only ...): a live run recorded with such options is matched by passing the same here.
    recorder_options: dict[str, Any] = field(default_factory=dict)
    # The live watch's default rules over the checkpoints' values in step order (alerts printed
    # once and stored as events; steps are then written in step order); on_alert="stop" ends the
    # sweep at the first alert. See layerscope.sweep.watching.
    watch: bool = False
    on_alert: str = "warn"


# Recorder arguments the sweep sets itself, so recorder_options cannot.
_OWN_RECORDER_ARGS = frozenset(
    {"model", "store", "run", "metrics", "sites", "layers", "probe", "probe_fn", "source", "notes"}
    | {"flush_every", "process_group", "start_step", "every", "window", "resume"}
)


@dataclass
class SweepResult:
    store: str
    run: str
    found: int  # checkpoints found (one per step)
    written: list[int] = field(default_factory=list)  # steps recorded now
    skipped: list[int] = field(default_factory=list)  # steps already in the store
    failed: list[Problem] = field(default_factory=list)  # one line each
    identical: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint, same weights as)
    warnings: list[str] = field(default_factory=list)  # checkpoints used, with a doubt (one line each)
    seconds: float = 0.0
    processes: int = 1
    rank: int = 0  # only rank 0's result holds the lists
    rank0_exit_code: int = 0  # on the other ranks: rank 0's exit code, so that every rank exits alike

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else self.rank0_exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "run": self.run,
            "found": self.found,
            "written": sorted(self.written),
            "skipped": sorted(self.skipped),
            "failed": [{"path": str(p.path), "message": p.message} for p in self.failed],
            "identical": [{"checkpoint": a, "same_as": b} for a, b in self.identical],
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            "processes": self.processes,
            "exit_code": self.exit_code,
        }


class SweepListener:
    """Hooks for a progress display (the CLI's bar). Called on the writing process only."""

    def on_start(self, todo: int, skipped: int, processes: int) -> None:
        """``todo`` checkpoints will be swept, ``skipped`` were already in the store."""

    def on_problem(self, problem: Problem) -> None:
        """A checkpoint could not be used (found while discovering, or while sweeping)."""

    def on_outcome(self, outcome: Outcome) -> None:
        """One checkpoint is done (written, or failed: ``outcome.error``)."""

    def on_identical(self, name: str, same_as: str) -> None:
        """Checkpoint ``name`` holds the same weights as ``same_as``."""

    def on_warning(self, message: str) -> None:
        """A checkpoint was used, with a doubt worth one line (integer weights converted ...)."""

    def on_alert(self, alert: Alert) -> None:
        """The watch (``watch=True``) fired: one alert, printed once."""


# -- setting up (the writing process) ------------------------------------------------------------


def _hf_config(d: Discovery) -> str:
    root = d.root if d.root.is_dir() else d.root.parent
    if (root / "config.json").is_file():
        return str(root / "config.json")
    for c in d.checkpoints:
        if c.config_json is not None:
            return str(c.config_json)
    raise NotFoundError(
        f"--hf: no config.json in {str(d.root)!r} or next to any of its checkpoints; "
        "pass --model PKG.MODULE:FACTORY instead, or copy the model's config.json into the folder."
    )


def _resolve(cfg: SweepConfig, listener: SweepListener) -> tuple[Discovery, WorkerSpec]:
    """Checks, discovery and the probe: everything before the model is built."""
    if not isinstance(cfg.run, str) or not cfg.run.strip():
        raise ConfigError(f"--run {cfg.run!r} is empty; name the run, e.g. --run pythia-70m.")
    if cfg.hf and cfg.model is not None:
        raise ConfigError("pass either --model or --hf, not both.")
    if not cfg.hf and cfg.model is None:
        raise ConfigError(
            "no model given; pass --model PKG.MODULE:FACTORY, or --hf to build it from the "
            "checkpoints' config.json."
        )
    if cfg.on_alert not in ON_ALERT:
        raise ConfigError(f"on_alert={cfg.on_alert!r}; pass 'warn' or 'stop'.")
    if cfg.on_alert == "stop" and not cfg.watch:
        raise ConfigError("--on-alert stop acts on the watch's alerts; add --watch (or drop --on-alert).")
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise ConfigError(f"--workers {cfg.workers!r}; pass a whole number >= 1.")
    metrics = tuple(m.name for m in resolve_metrics(cfg.metrics))
    sites = (
        tuple(s.strip() for s in cfg.sites.split(",") if s.strip())
        if isinstance(cfg.sites, str)
        else tuple(cfg.sites)
    )
    grads = [s for s in sites if s in ("grad_output", "param_grad")]
    if grads:
        raise ConfigError(
            f"--sites {','.join(grads)}: a checkpoint sweep runs no backward pass; record gradients "
            "live (Recorder(sites=...)), or sweep output, weight and update (the change since the "
            "previous checkpoint).",
            what="site",
            value=",".join(grads),
            param="sites",
        )
    compile_step_regex(cfg.step_regex)
    resolve_device(cfg.device)
    probe_file = cfg.probe if isinstance(cfg.probe, (str, os.PathLike)) else None
    check_outputs_are_not_inputs(
        [("--store", cfg.store)], [("CKPT_DIR", cfg.ckpt_dir), ("--probe", probe_file)]
    )
    check_store_is_not_a_checkpoint(cfg.store, cfg.ckpt_dir)
    store = Path(cfg.store)
    if store.is_dir() or not store.absolute().parent.is_dir():
        Store(store).close()  # raises the store's own one-line error, before any work and without a file
    if isinstance(cfg.probe, (str, os.PathLike)):
        probe = load_probe(cfg.probe, cfg.tokenizer, cfg.seq_len)
    else:
        probe = check_probe(cfg.probe, "given")
    resolve_probe_fn(cfg.probe_fn)  # a bad --probe-fn is one line now, not one per worker
    if not isinstance(cfg.recorder_options, dict):
        raise ConfigError(
            f"recorder_options is a {type(cfg.recorder_options).__name__}; pass a dict of Recorder "
            "arguments such as {'eps': 1e-3, 'hist_edges': [...]}."
        )
    known = set(inspect.signature(Recorder.__init__).parameters) - {"self"} - _OWN_RECORDER_ARGS
    unknown = sorted(set(cfg.recorder_options) - known - _OWN_RECORDER_ARGS)
    if unknown:
        raise ConfigError(
            f"recorder_options has {', '.join(map(repr, unknown))}, which Recorder does not take; "
            f"pass some of {', '.join(sorted(known))}."
        )
    own = sorted(set(cfg.recorder_options) & _OWN_RECORDER_ARGS)
    if own:
        raise ConfigError(
            f"recorder_options sets {', '.join(own)}, which the sweep sets itself; pass "
            f"{'it' if len(own) == 1 else 'them'} as sweep options, and only other Recorder arguments "
            "(eps, hist_edges, train_only ...) in recorder_options."
        )
    options = dict(cfg.recorder_options)
    if cfg.mask is not None:
        if options.get("mask", cfg.mask) != cfg.mask:
            raise ConfigError(
                f"mask={cfg.mask!r} and recorder_options mask={options['mask']!r} disagree; pass the "
                "probe's token-mask key once."
            )
        options["mask"] = cfg.mask
    root = Path(cfg.ckpt_dir)
    trust = cfg.trust

    def content_step(p: Path) -> int | None:
        name = relative_name(p, root)
        if p.is_dir():  # a DCP folder: Lightning's meta.pt beside the shards, else a saved step entry
            meta = p / LIGHTNING_META
            step = peek_step(meta, f"{name}/{LIGHTNING_META}", trust=trust) if meta.is_file() else None
            return step if step is not None else stored_step(p, name, trust)
        return peek_step(p, name, trust=trust)

    disc = find_checkpoints(root, cfg.step_regex, content_step=content_step)
    if not disc.checkpoints and not disc.problems:
        raise NotFoundError(
            f"no checkpoints in {str(root)!r} (looked for *.safetensors, *.pt, *.pth, *.bin, *.ckpt, "
            "Hugging Face checkpoint folders and torch.distributed.checkpoint folders); check the folder."
        )
    for p in disc.problems:
        listener.on_problem(p)
    hf_config = _hf_config(disc) if cfg.hf else None
    notes = {
        "sweep": {
            "checkpoints": str(root.resolve()),
            "probe": describe(probe),
            "probe_fn": spec_name(cfg.probe_fn),
            "model": spec_name(cfg.model),
            "hf_config": hf_config,
        }
    }
    return disc, WorkerSpec(
        cfg.model,
        hf_config,
        probe,
        metrics,
        sites,
        cfg.layers,
        cfg.trust,
        cfg.device,
        cfg.threads,
        probe_fn=cfg.probe_fn,
        recorder_options=options,
        notes=notes,
    )


def _open_run(
    cfg: SweepConfig, worker: CheckpointWorker, disc: Discovery, store: Store
) -> tuple[list[Checkpoint], list[int]]:
    """Create or check the run (from the worker's recorder), and split checkpoints into todo/skipped."""
    spec = worker.spec
    if cfg.run in store.run_names():
        old = store.run_config(cfg.run)
        for key, new in (("metrics", spec.metrics), ("sites", spec.sites)):
            have = old.get(key)
            if have is not None and "all" not in new and set(have) != set(new):
                raise ConfigError(
                    f"run {cfg.run!r} in {str(cfg.store)!r} holds {key} {','.join(have)}, not "
                    f"{','.join(new)}; pass --{key} {','.join(have)} to continue it, or a new --run."
                )
    # The run is created (or checked) from the recorder that computes the statistics: the same
    # layers, run config and probe hash as a live recording (another probe is refused, naming both).
    open_run(store, cfg.run, cfg.resume, worker.recorder.run_spec(), source="sweep")
    done = set(store.steps(cfg.run))
    todo = [c for c in disc.checkpoints if cfg.force or c.step not in done]
    skipped = [c.step for c in disc.checkpoints if not cfg.force and c.step in done]
    return todo, skipped


# -- running ---------------------------------------------------------------------------------------


def run_sweep(cfg: SweepConfig, listener: SweepListener | None = None) -> SweepResult:
    """Sweep ``cfg.ckpt_dir`` into ``cfg.store``/``cfg.run``; see :class:`SweepConfig`.

    Under ``torchrun`` (an initialised process group of more than one rank) every rank must call
    this; rank 0 writes and its result holds the tallies.

    >>> from layerscope.sweep import SweepConfig, run_sweep     # doctest: +SKIP
    >>> res = run_sweep(SweepConfig("ckpts/", "runs.db", "sweep", probe="probe.pt",
    ...                             model="layerscope.testing.model:tiny_gpt"))  # doctest: +SKIP
    >>> res.exit_code, res.written[:3]                           # doctest: +SKIP
    (0, [100, 200, 300])
    """
    listener = listener or SweepListener()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if cfg.workers > 1:
            raise ConfigError(
                "--workers with torchrun: torchrun already runs one sweep process per rank; "
                "drop --workers, or run without torchrun."
            )
        return _run_distributed(cfg, listener)
    return _run_local(cfg, listener)


def _check_picklable(spec: WorkerSpec, workers: int) -> None:
    """What a spawned worker is sent must pickle: a lambda or a function defined in ``__main__`` does not."""
    for what, obj in (
        ("model", spec.model),
        ("probe_fn", spec.probe_fn),
        ("recorder_options", spec.recorder_options),
    ):
        try:
            pickle.dumps(obj)
        except Exception as e:  # noqa: BLE001 - PicklingError, AttributeError, TypeError: all one cause
            raise ConfigError(
                f"workers={workers}: {what}={spec_name(obj) if callable(obj) else obj!r} cannot be sent to a "
                f"worker process ({type(e).__name__}); pass it as a 'pkg.module:fn' spec or a module-level "
                "function (not a lambda or a local function), or use workers=1."
            ) from None


def _run_local(cfg: SweepConfig, listener: SweepListener) -> SweepResult:
    t0 = time.perf_counter()
    disc, spec = _resolve(cfg, listener)
    result = SweepResult(str(cfg.store), cfg.run, len(disc.checkpoints), processes=cfg.workers)
    result.failed.extend(disc.problems)
    old_threads = torch.get_num_threads()
    children: Pool | None = None
    try:
        if cfg.workers > 1:
            _check_picklable(spec, cfg.workers)
            spec.threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
            children = Pool(spec, cfg.workers - 1)  # they start (import, build the model) while we set up
            torch.set_num_threads(spec.threads)
        elif cfg.threads:
            torch.set_num_threads(cfg.threads)
        worker = CheckpointWorker(spec)
        try:
            worker.preflight()  # before the store is opened: a usage error leaves no file behind
            with Store(cfg.store) as store:
                todo, result.skipped = _open_run(cfg, worker, disc, store)
                writer = Writer(
                    store, cfg.run, result, listener, make_watch(cfg, store, disc, result, listener)
                )
                listener.on_start(len(todo), len(result.skipped), cfg.workers)
                if children is None:
                    for ckpt in todo:
                        writer.add(worker.process(ckpt))
                else:
                    children.sweep(todo, worker, writer)
                writer.finish()
        finally:
            worker.close()
    finally:
        if children is not None:
            children.stop()
        torch.set_num_threads(old_threads)
    result.seconds = time.perf_counter() - t0
    return result


def _run_distributed(cfg: SweepConfig, listener: SweepListener) -> SweepResult:
    import torch.distributed as dist

    t0 = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    # Objects travel over gloo (CPU) whatever the default backend is.
    obj_group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    # The recorders' own group: this rank alone, so no statistics are reduced across ranks.
    solo = dist.new_group(ranks=[rank], use_local_synchronization=True)

    plan: list[Any] = [None]
    worker: CheckpointWorker | None = None
    old_threads = torch.get_num_threads()
    result = SweepResult(str(cfg.store), cfg.run, 0, processes=world, rank=rank)
    store: Store | None = None
    try:
        if rank == 0:
            try:
                disc, spec = _resolve(cfg, listener)
                if cfg.threads:
                    torch.set_num_threads(cfg.threads)
                worker = CheckpointWorker(spec, process_group=solo)
                worker.preflight()  # before the store is opened: a usage error leaves no file behind
                store = Store(cfg.store)
                todo, skipped = _open_run(cfg, worker, disc, store)
                result.found = len(disc.checkpoints)
                result.failed.extend(disc.problems)
                result.skipped = skipped
                plan[0] = {"spec": spec, "todo": todo}
            except BaseException as e:  # tell the other ranks before leaving, or they wait for the plan
                plan[0] = {"error": str(e), "exit_code": getattr(e, "exit_code", 1)}
                dist.broadcast_object_list(plan, src=0, group=obj_group)
                raise
        dist.broadcast_object_list(plan, src=0, group=obj_group)
        p = plan[0]
        if "error" in p:
            raise _PeerFailure(p["error"], p["exit_code"])
        spec, todo = p["spec"], p["todo"]
        if rank != 0 and cfg.threads:
            torch.set_num_threads(cfg.threads)

        status: str | None = None
        try:
            if worker is None:
                worker = CheckpointWorker(spec, process_group=solo)
        except LayerscopeError as e:
            status = str(e)
        except Exception as e:  # noqa: BLE001
            status = f"{type(e).__name__}: {e}"
        statuses: list[Any] = [None] * world
        dist.all_gather_object(statuses, status, group=obj_group)
        bad = [(r, s) for r, s in enumerate(statuses) if s is not None]
        if bad:
            r, s = bad[0]
            raise DistributedError(
                f"rank {r} could not start its sweep worker: {s}; make the model importable "
                "on every machine (same code, same --model)."
            )
        assert worker is not None
        if rank == 0:
            assert store is not None
            writer = Writer(store, cfg.run, result, listener, make_watch(cfg, store, disc, result, listener))
            listener.on_start(len(todo), len(result.skipped), world)
        stopped: WatchAlert | None = None
        # Lockstep rounds: round i, rank r takes todo[i * world + r], i.e. todo[r::world].
        for i in range(0, len(todo), world):
            j = i + rank
            out = worker.process(todo[j]) if j < len(todo) else None
            gathered: list[Any] | None = [None] * world if rank == 0 else None
            dist.gather_object(out, gathered, dst=0, group=obj_group)
            if rank == 0:
                try:
                    for o in gathered or []:
                        if o is not None:
                            writer.add(o)
                except WatchAlert as e:  # every rank must leave the rounds together
                    stopped = e
            if cfg.watch and cfg.on_alert == "stop":
                flag = [stopped is not None]
                dist.broadcast_object_list(flag, src=0, group=obj_group)
                if flag[0]:
                    if rank != 0:  # rank 0 says why, once
                        raise _PeerFailure("the watch stopped the sweep", WatchAlert.exit_code)
                    break
        if rank == 0 and stopped is None:
            try:
                writer.finish()  # the outcomes still waiting for their turn
            except WatchAlert as e:
                stopped = e
        if cfg.watch and cfg.on_alert == "stop":
            final = [stopped is not None]
            dist.broadcast_object_list(final, src=0, group=obj_group)
            if final[0] and rank != 0:
                raise _PeerFailure("the watch stopped the sweep", WatchAlert.exit_code)
        if stopped is not None:
            raise stopped
        code = [result.exit_code if rank == 0 else 0]
        dist.broadcast_object_list(code, src=0, group=obj_group)
        if rank != 0:
            result.rank0_exit_code = int(code[0])
    finally:
        if worker is not None:
            worker.close()
        if store is not None:
            store.close()
        torch.set_num_threads(old_threads)
        dist.destroy_process_group(solo)
        if obj_group is not None:
            dist.destroy_process_group(obj_group)
    result.seconds = time.perf_counter() - t0
    return result


class _PeerFailure(LayerscopeError):
    """Rank 0 failed to set up; the other ranks stop with its exit code (rank 0 prints the message)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def sweep(
    ckpt_dir: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    run: str,
    probe: Any,
    model: ModelSpec = None,
    listener: SweepListener | None = None,
    **options: Any,
) -> SweepResult:
    """Sweep a folder of checkpoints into a run store (the Python form of ``layerscope sweep``).

    ``options`` are the other fields of :class:`SweepConfig` (``hf``, ``metrics``, ``sites``,
    ``layers``, ``step_regex``, ``force``, ``trust``, ``workers``, ...).

    >>> import layerscope.sweep as ls                                   # doctest: +SKIP
    >>> res = ls.sweep("ckpts/", store="runs.db", run="sweep", probe="probe.pt",
    ...                model="layerscope.testing.model:tiny_gpt")        # doctest: +SKIP
    """
    unknown = set(options) - {f for f in SweepConfig.__dataclass_fields__}
    if unknown:
        raise ConfigError(f"sweep() got unknown options {sorted(unknown)}; see layerscope.sweep.SweepConfig.")
    return run_sweep(SweepConfig(ckpt_dir, store, run, probe, model=model, **options), listener)


__all__ = [
    "CheckpointWorker",
    "Outcome",
    "SweepConfig",
    "SweepListener",
    "SweepResult",
    "WorkerSpec",
    "build_model",
    "run_sweep",
    "sweep",
]
