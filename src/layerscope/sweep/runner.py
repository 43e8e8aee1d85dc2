"""The sweep: every checkpoint of a folder -> one recorded step each, in the same store as live runs.

One code path, three ways to run it:

- one process: a :class:`CheckpointWorker` in this process, the writer beside it;
- ``workers=N``: N spawned processes each run a ``CheckpointWorker`` and send their step records
  back; this process writes them;
- under ``torchrun`` (a process group is initialised): rank ``r`` sweeps ``todo[r::world]``; after
  each round every rank's result is gathered to rank 0, which writes it.

A ``CheckpointWorker`` loads a checkpoint safely (:mod:`layerscope.sweep.load`) into its model and
records the probe with a :class:`~layerscope.recorder.Recorder` that has no store: the same
eval-mode, no-grad probe forward, hooks and statistics as a live ``Recorder(probe=...)``, so a live
record at step N and the sweep of checkpoint N agree. Each step is written in its own transaction
as soon as it arrives, so a sweep killed mid-way keeps every step written, and the next sweep skips
them (``force=True`` recomputes).

A checkpoint that cannot be used (truncated, corrupt, unsafe, of another model) is one line in
``SweepResult.failed``; the sweep goes on with the rest.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, DistributedError, LayerscopeError, NotFoundError
from ..stats import DEFAULT_METRICS, resolve_metrics
from ..store import StepRecord, Store
from .discover import Checkpoint, Discovery, Problem, compile_step_regex, find_checkpoints, relative_name
from .load import ModelKeys, apply_state_dict, fingerprint, peek_step, read_checkpoint
from .probe import _check as _check_probe
from .probe import describe, load_probe

ModelSpec = Any  # "pkg.module:factory", or a picklable zero-argument callable returning an nn.Module


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
    hf: bool = False  # build the model from the config.json stored with the checkpoints instead of `model`
    metrics: str | Sequence[str] = DEFAULT_METRICS  # as Recorder(metrics=...)
    sites: str | Sequence[str] = ("output",)  # as Recorder(sites=...)
    layers: str | Sequence[str] | None = None  # as Recorder(layers=...): a glob or a list; None discovers
    step_regex: str | None = None  # replaces the name rules; the step is group 1 or (?P<step>...)
    tokenizer: str | None = None  # "bytes" to read a text probe
    seq_len: int | None = None  # rows of this many tokens for a text probe (None: one row)
    force: bool = False  # recompute steps already in the store (their rows are replaced)
    trust: bool = False  # allow arbitrary pickles (can run code from the file); off by default
    workers: int = 1  # processes on this machine, this one included; >1 spawns the others (not with torchrun)
    device: str = "cpu"  # "cpu", "cuda", "cuda:1" or "auto" (cuda:LOCAL_RANK when there is a GPU)
    threads: int | None = None  # torch threads per process (None: torch's default; cores / workers in a pool)
    mask: str | None = None  # the probe's token-mask key (e.g. "attention_mask"), as Recorder(mask=...)


@dataclass
class Outcome:
    """What a worker returns for one checkpoint: a step record, or the one-line reason it has none."""

    name: str
    path: str
    step: int
    record: StepRecord | None = None
    error: str | None = None
    fingerprint: str | None = None
    seconds: float = 0.0
    pid: int = 0  # the process that swept it


@dataclass
class SweepResult:
    store: str
    run: str
    found: int  # checkpoints found (one per step)
    written: list[int] = field(default_factory=list)  # steps recorded now
    skipped: list[int] = field(default_factory=list)  # steps already in the store
    failed: list[Problem] = field(default_factory=list)  # one line each
    identical: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint, same weights as)
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


# -- building the model ------------------------------------------------------------------------------


def build_model(model: ModelSpec, hf_config: str | None) -> nn.Module:
    """The model to load checkpoints into, from a spec string, a callable, or a Hugging Face config.json."""
    from ..capture.models import load_model_spec, model_from_hf_config

    if hf_config is not None:
        m = model_from_hf_config(hf_config)
    elif isinstance(model, str):
        m = load_model_spec(model)
    elif callable(model):
        try:
            m = model()
        except LayerscopeError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's factory: one line, not their traceback
            name = getattr(model, "__qualname__", repr(model))
            raise ConfigError(
                f"model factory {name} failed ({type(e).__name__}: {e}); fix the factory."
            ) from None
    else:
        raise ConfigError(
            "no model given; pass --model PKG.MODULE:FACTORY, or --hf to build it from the "
            "checkpoints' config.json."
        )
    if not isinstance(m, nn.Module):
        raise ConfigError(
            f"the model factory returned a {type(m).__name__}, not a torch.nn.Module; return the model."
        )
    return m


def _device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {spec!r} is not a device; pass cpu, cuda, cuda:N or auto.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec} but this torch sees no CUDA GPU; pass --device cpu.")
    return dev


# -- the worker: one model, one store-less Recorder, many checkpoints -----------------------------


@dataclass
class WorkerSpec:
    """Everything a worker process needs to rebuild the model and the recorder (picklable)."""

    model: ModelSpec
    hf_config: str | None
    probe: Any
    metrics: tuple[str, ...]
    sites: tuple[str, ...]
    layers: Any
    trust: bool
    device: str
    threads: int | None = None
    mask: str | None = None


def _debug() -> bool:
    return os.environ.get("LAYERSCOPE_DEBUG", "") not in ("", "0", "false", "no")


class CheckpointWorker:
    """Loads checkpoints into one model and records the probe for each, as a live Recorder would."""

    def __init__(self, spec: WorkerSpec, model: nn.Module | None = None, process_group: Any = None) -> None:
        from ..recorder import Recorder

        self.spec = spec
        self.model = (
            model if model is not None else build_model(spec.model, spec.hf_config).to(_device(spec.device))
        )
        # store=None and a process group of this process alone: statistics stay per checkpoint (no
        # reduction with other ranks, which hold other checkpoints) and come back as StepRecords.
        self.recorder = Recorder(
            self.model,
            None,
            run="sweep",
            metrics=spec.metrics,
            layers=spec.layers,
            sites=spec.sites,
            probe=spec.probe,
            source="sweep",
            flush_every=1,
            process_group=process_group,
            mask=spec.mask,
        )
        self.keys = ModelKeys(self.model)

    def process(self, ckpt: Checkpoint) -> Outcome:
        out = Outcome(ckpt.name, str(ckpt.path), ckpt.step, pid=os.getpid())
        t0 = time.perf_counter()
        try:
            loaded = read_checkpoint(ckpt.weights, ckpt.name, trust=self.spec.trust)
            out.fingerprint = fingerprint(loaded.state_dict)
            apply_state_dict(self.model, loaded.state_dict, ckpt.name, self.keys)
            del loaded  # unmap the file before the forward
            self.recorder.record_probe(ckpt.step)  # flush_every=1: the record is in history now
            out.record = self.recorder.history.pop()
        except LayerscopeError as e:
            out.error = str(e)
        except Exception as e:  # noqa: BLE001 - one bad checkpoint must not end the sweep
            first = (str(e).strip().splitlines() or [""])[0][:200]
            out.error = (
                f"{ckpt.name}: failed ({type(e).__name__}: {first}); rerun with LAYERSCOPE_DEBUG=1 "
                "to see the traceback."
            )
            if _debug():
                out.error += "\n" + traceback.format_exc()
        out.seconds = time.perf_counter() - t0
        return out

    def close(self) -> None:
        self.recorder.close()


def _child_main(spec: WorkerSpec, conn: Any) -> None:
    """A ``--workers`` process: build a CheckpointWorker, then sweep what the parent sends, one at a time."""
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


# -- the writer ------------------------------------------------------------------------------------


class _Writer:
    """Writes outcomes as they arrive (one transaction per step) and keeps the tally."""

    def __init__(self, store: Store, run: str, result: SweepResult, listener: SweepListener) -> None:
        self.store, self.run, self.result, self.listener = store, run, result, listener
        self._by_fp: dict[str, str] = {}

    def add(self, o: Outcome) -> None:
        if o.error is not None or o.record is None:
            p = Problem(Path(o.path), o.error or f"{o.name}: no statistics were produced")
            self.result.failed.append(p)
            self.listener.on_outcome(o)
            return
        self.store.write_steps(self.run, [o.record])
        self.result.written.append(o.step)
        if o.fingerprint is not None:
            first = self._by_fp.setdefault(o.fingerprint, o.name)
            if first != o.name:
                self.result.identical.append((o.name, first))
                self.listener.on_identical(o.name, first)
        self.listener.on_outcome(o)


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
            "previous checkpoint)."
        )
    compile_step_regex(cfg.step_regex)
    _device(cfg.device)
    store = Path(cfg.store)
    if store.is_dir() or not store.absolute().parent.is_dir():
        Store(store).close()  # raises the store's own one-line error, before any work and without a file
    if isinstance(cfg.probe, (str, os.PathLike)):
        probe = load_probe(cfg.probe, cfg.tokenizer, cfg.seq_len)
    else:
        probe = _check_probe(cfg.probe, "given")
    root = Path(cfg.ckpt_dir)
    trust = cfg.trust

    def content_step(p: Path) -> int | None:
        return peek_step(p, relative_name(p, root), trust=trust)

    disc = find_checkpoints(root, cfg.step_regex, content_step=content_step)
    if not disc.checkpoints and not disc.problems:
        raise NotFoundError(
            f"no checkpoints in {str(root)!r} (looked for *.safetensors, *.pt, *.pth, *.bin, *.ckpt "
            "and Hugging Face checkpoint folders); check the folder."
        )
    for p in disc.problems:
        listener.on_problem(p)
    hf_config = _hf_config(disc) if cfg.hf else None
    return disc, WorkerSpec(
        cfg.model, hf_config, probe, metrics, sites, cfg.layers, cfg.trust, cfg.device, cfg.threads, cfg.mask
    )


def _first_row(probe: Any) -> Any:
    if isinstance(probe, torch.Tensor):
        return probe[:1] if probe.dim() > 0 else probe
    if isinstance(probe, dict):
        return {k: _first_row(v) for k, v in probe.items()}
    if isinstance(probe, (list, tuple)):
        return type(probe)(_first_row(v) for v in probe)
    return probe


def _open_run(
    cfg: SweepConfig, spec: WorkerSpec, disc: Discovery, model: nn.Module, store: Store, group: Any
) -> tuple[list[Checkpoint], list[int]]:
    """Validate the probe on the model, create or check the run, and split checkpoints into todo/skipped."""
    from ..recorder import Recorder, _to_device, run_forward

    dev = _device(spec.device)
    model.eval()
    try:
        with torch.no_grad():  # the first row only: a shape error shows as well, at 1/batch of the cost
            run_forward(model, _to_device(_first_row(spec.probe), dev))
    except LayerscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - the probe does not fit the model: a usage error, said once
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(
            f"the probe ({describe(spec.probe)}) does not fit the model ({type(e).__name__}: {first}); "
            "pass a probe the model accepts (for text: --seq-len at most its context length)."
        ) from None
    if cfg.run in store.run_names():
        old = store.run_config(cfg.run)
        for key, new in (("metrics", spec.metrics), ("sites", spec.sites)):
            have = old.get(key)
            if have is not None and set(have) != set(new):
                raise ConfigError(
                    f"run {cfg.run!r} in {str(cfg.store)!r} holds {key} {','.join(have)}, not "
                    f"{','.join(new)}; pass --{key} {','.join(have)} to continue it, or a new --run."
                )
    notes = {
        "sweep": {
            "checkpoints": str(Path(cfg.ckpt_dir).resolve()),
            "probe": describe(spec.probe),
            "model": spec.model
            if isinstance(spec.model, str) or spec.model is None
            else getattr(spec.model, "__qualname__", repr(spec.model)),
            "hf_config": spec.hf_config,
        }
    }
    # A Recorder on the store creates (or checks) the run exactly as a live recording does: the same
    # layers, run config and probe hash (a different probe is an error naming both hashes). It records
    # nothing itself: with a probe and no start step it never attaches a hook.
    Recorder(
        model,
        store,
        run=cfg.run,
        metrics=spec.metrics,
        layers=spec.layers,
        sites=spec.sites,
        probe=spec.probe,
        source="sweep",
        notes=notes,
        process_group=group,
        mask=spec.mask,
    ).close()
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


def _run_local(cfg: SweepConfig, listener: SweepListener) -> SweepResult:
    t0 = time.perf_counter()
    disc, spec = _resolve(cfg, listener)
    result = SweepResult(str(cfg.store), cfg.run, len(disc.checkpoints), processes=cfg.workers)
    result.failed.extend(disc.problems)
    old_threads = torch.get_num_threads()
    children: _Children | None = None
    try:
        if cfg.workers > 1:
            spec.threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
            children = _Children(
                spec, cfg.workers - 1
            )  # they start (import, build the model) while we set up
            torch.set_num_threads(spec.threads)
        elif cfg.threads:
            torch.set_num_threads(cfg.threads)
        model = build_model(spec.model, spec.hf_config).to(_device(spec.device))
        with Store(cfg.store) as store:
            todo, result.skipped = _open_run(cfg, spec, disc, model, store, None)
            writer = _Writer(store, cfg.run, result, listener)
            listener.on_start(len(todo), len(result.skipped), cfg.workers)
            worker = CheckpointWorker(spec, model=model)
            try:
                if children is None:
                    for ckpt in todo:
                        writer.add(worker.process(ckpt))
                else:
                    children.sweep(todo, worker, writer)
            finally:
                worker.close()
    finally:
        if children is not None:
            children.stop()
        torch.set_num_threads(old_threads)
    result.seconds = time.perf_counter() - t0
    return result


class _Children:
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
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_child_main, args=(spec, theirs), daemon=True)
            p.start()
            theirs.close()
            assert p.pid is not None  # started
            self.procs[p.pid] = p
            self.conns[p.pid] = mine
        self.ready: set[int] = set()  # started and alive
        self.holding: dict[int, deque[Checkpoint]] = {}  # pid -> what it holds, the one it sweeps first

    def sweep(self, todo: list[Checkpoint], local: CheckpointWorker, writer: _Writer) -> None:
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

    def _poll(self, queue: deque[Checkpoint], writer: _Writer, timeout: float) -> None:
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


def _run_distributed(cfg: SweepConfig, listener: SweepListener) -> SweepResult:
    import torch.distributed as dist

    t0 = time.perf_counter()
    rank, world = dist.get_rank(), dist.get_world_size()
    # Objects travel over gloo (CPU) whatever the default backend is.
    obj_group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    # The recorders' own group: this rank alone, so no statistics are reduced across ranks.
    solo = dist.new_group(ranks=[rank], use_local_synchronization=True)

    plan: list[Any] = [None]
    model = None
    old_threads = torch.get_num_threads()
    result = SweepResult(str(cfg.store), cfg.run, 0, processes=world, rank=rank)
    store: Store | None = None
    try:
        if rank == 0:
            try:
                disc, spec = _resolve(cfg, listener)
                if cfg.threads:
                    torch.set_num_threads(cfg.threads)
                model = build_model(spec.model, spec.hf_config).to(_device(spec.device))
                store = Store(cfg.store)
                todo, skipped = _open_run(cfg, spec, disc, model, store, solo)
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
        worker: CheckpointWorker | None = None
        try:
            worker = CheckpointWorker(spec, model=model, process_group=solo)
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
            writer = _Writer(store, cfg.run, result, listener)
            listener.on_start(len(todo), len(result.skipped), world)
        try:
            # Lockstep rounds: round i, rank r takes todo[i * world + r], i.e. todo[r::world].
            for i in range(0, len(todo), world):
                j = i + rank
                out = worker.process(todo[j]) if j < len(todo) else None
                gathered: list[Any] | None = [None] * world if rank == 0 else None
                dist.gather_object(out, gathered, dst=0, group=obj_group)
                if rank == 0:
                    for o in gathered or []:
                        if o is not None:
                            writer.add(o)
        finally:
            worker.close()
        code = [result.exit_code if rank == 0 else 0]
        dist.broadcast_object_list(code, src=0, group=obj_group)
        if rank != 0:
            result.rank0_exit_code = int(code[0])
    finally:
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
