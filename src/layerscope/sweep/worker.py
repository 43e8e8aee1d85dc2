"""The sweep's worker: one model and one store-less Recorder that load checkpoints one by one.

A :class:`CheckpointWorker` loads a checkpoint safely (:mod:`layerscope.sweep.load`) into its model
and records the probe with a :class:`~layerscope.recorder.Recorder` that has no store: the same
eval-mode, no-grad probe forward (through ``probe_fn`` when given), hooks and statistics as a live
``Recorder(probe=...)``, so a live record at step N and the sweep of checkpoint N agree. It runs in
the sweeping process, in each ``--workers`` process (:mod:`layerscope.sweep.pool`) and on each
``torchrun`` rank.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..batch import ProbeFn, first_rows
from ..errors import CheckpointWarning, ConfigError, LayerscopeError
from ..recorder import Recorder, UnreachedLayersWarning
from ..store import StepRecord
from .discover import Checkpoint
from .load import ModelKeys, apply_state_dict, fingerprint, read_checkpoint
from .probe import describe

ModelSpec = Any  # "pkg.module:factory", or a picklable zero-argument callable returning an nn.Module


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
    warnings: list[str] = field(default_factory=list)  # one line each (e.g. integer weights converted)


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


def resolve_device(spec: str) -> torch.device:
    """``--device``: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (``cuda:LOCAL_RANK`` when there is a GPU)."""
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
    probe_fn: str | ProbeFn | None = None  # imported again in each worker when a spec string
    recorder_options: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # stored with the run


def _debug() -> bool:
    return os.environ.get("LAYERSCOPE_DEBUG", "") not in ("", "0", "false", "no")


def resolve_probe_fn(probe_fn: str | ProbeFn | None) -> ProbeFn | None:
    """The probe function a ``--probe-fn`` spec (``pkg.module:fn``, ``file.py:fn``) names, or the callable."""
    if probe_fn is None or callable(probe_fn):
        return probe_fn
    from ..capture.models import load_function

    if not isinstance(probe_fn, str):
        raise ConfigError(
            f"probe_fn={probe_fn!r}; pass 'pkg.module:fn' or a function fn(model, batch) that runs the model."
        )
    return load_function(probe_fn, "--probe-fn")


def _unreached_message(ckpt: str | None, names: list[str], total: int, probe_fn: Any) -> str:
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    fix = (
        "make --probe-fn run them too"
        if probe_fn is not None
        else "pass --probe-fn PKG.MODULE:FN, a function (model, batch) that runs them "
        "(e.g. model.decoder(model.encoder(batch)))"
    )
    where = f"{ckpt}: with these weights the probe's forward" if ckpt else "the probe's forward"
    return (
        f"{where} reaches no activation of {len(names)} of the {total} recorded sites ({shown}), "
        f"which would be all-NaN; {fix}, or leave them out with --layers."
    )


class CheckpointWorker:
    """Loads checkpoints into one model and records the probe for each, as a live Recorder would."""

    def __init__(self, spec: WorkerSpec, model: nn.Module | None = None, process_group: Any = None) -> None:
        self.spec = spec
        self.model = (
            model
            if model is not None
            else build_model(spec.model, spec.hf_config).to(resolve_device(spec.device))
        )
        # A sweep only runs probes, which run in eval mode: set it once, not around every probe.
        self.model.eval()
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
            probe_fn=resolve_probe_fn(spec.probe_fn),
            source="sweep",
            notes=spec.notes,
            flush_every=1,
            process_group=process_group,
            **spec.recorder_options,
        )
        self.keys = ModelKeys(self.model)

    def _record(self, step: int, probe: Any = None) -> StepRecord:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreachedLayersWarning)  # the sweep says it itself, as an error
            self.recorder.record_probe(step, probe)  # flush_every=1: the record is in history now
        return self.recorder.history.pop()

    def preflight(self) -> None:
        """Run the probe's first row through the model as built, before any checkpoint: a probe that
        does not fit the model, or leaves recorded layers without an activation, is a usage error."""
        try:
            self._record(0, first_rows(self.spec.probe, 1))
            self.recorder.forget_checkpoint()  # the model as built is no checkpoint: no update from it
        except LayerscopeError:
            raise
        except Exception as e:  # noqa: BLE001 - the probe does not fit the model: a usage error, said once
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            via = (
                f" through --probe-fn {spec_name(self.spec.probe_fn)}"
                if self.spec.probe_fn is not None
                else ""
            )
            raise ConfigError(
                f"the probe ({describe(self.spec.probe)}){via} does not fit the model ({type(e).__name__}: "
                f"{first}); pass a probe the model accepts (for text: --seq-len at most its context length)"
                + (", or --probe-fn PKG.MODULE:FN if it is not run as model(batch)." if not via else ".")
            ) from None
        if self.recorder.unreached:
            raise ConfigError(
                _unreached_message(
                    None, self.recorder.unreached, len(self.recorder.hooks), self.spec.probe_fn
                )
            )

    def process(self, ckpt: Checkpoint) -> Outcome:
        out = Outcome(ckpt.name, str(ckpt.path), ckpt.step, pid=os.getpid())
        t0 = time.perf_counter()
        try:
            loaded = read_checkpoint(ckpt.weights, ckpt.name, trust=self.spec.trust)
            out.fingerprint = fingerprint(loaded.state_dict)
            with warnings.catch_warnings(record=True) as caught:  # sent back as lines, not printed here
                warnings.simplefilter("always", CheckpointWarning)
                apply_state_dict(self.model, loaded.state_dict, ckpt.name, self.keys)
            out.warnings = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
            for w in caught:  # anything else is shown as it would have been
                if not issubclass(w.category, CheckpointWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            del loaded  # unmap the file before the forward
            record = self._record(ckpt.step)
            if self.recorder.unreached:  # data-dependent control flow skipped them with these weights
                out.error = _unreached_message(
                    ckpt.name, self.recorder.unreached, len(self.recorder.hooks), self.spec.probe_fn
                )
            else:
                out.record = record
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


def spec_name(spec: Any) -> str | None:
    return spec if isinstance(spec, str) or spec is None else getattr(spec, "__qualname__", repr(spec))


__all__ = [
    "CheckpointWorker",
    "ModelSpec",
    "Outcome",
    "WorkerSpec",
    "build_model",
    "resolve_probe_fn",
    "spec_name",
]
