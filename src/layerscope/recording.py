"""Which run a new recording writes into. A recording continues a run of the same recording and
never mixes its steps into, or replaces the steps of, another one.

"The same recording" is what a restarted job looks like: the same model architecture (the
*fingerprint*: the model's class and every parameter's name and shape, wrapper prefixes removed,
so a DDP- or ``torch.compile``-wrapped restart matches; the weights are not part of it), the same
layers, metrics, sites, window, ``train_only``, ``eps``, histogram edges, token mask and row
sampling, the same probe, the same kind of recording (live or sweep: a sweep on the probe of a live run may fill it in, as their
numbers agree) and, for a sweep, the same checkpoint folder. What may change on a restart:
``every``, the flush settings, the number of ranks, ``notes``.

``Recorder(..., run=..., resume=...)``:

==================  =============================  ===============================================
``run``             ``resume``                     when the run exists in the store
==================  =============================  ===============================================
left out            (any)                          a fresh name is used: ``run``, ``run-2``, ...
                                                   (logged on the ``layerscope`` logger)
given               ``None`` (default, "auto")     continued if it is the same recording, else
                                                   refused with a one-line :class:`RunExistsError`
given               ``True``                       continued (the layers and probe must match)
given               ``False``                      refused
==================  =============================  ===============================================

A run that does not exist yet is created in every case. Steps recorded again in a continued run
replace their rows (a job restarted from an older checkpoint re-records a few steps).

A run is described by :class:`RunSpec` (its layers, the model's class name and the recording's
config, probe hash included). ``Recorder.run_spec()`` gives the spec of a recorder, so a sweep
creates its run from the spec of the (store-less) recorder its workers use, without building
another recorder.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from .capture import normalize_name, unwrap
from .errors import ConfigError, DistributedError, RunExistsError, quote
from .store import LayerInfo, Store

DEFAULT_RUN = "run"


@dataclass
class RunSpec:
    """What the store keeps about a recording when the run is created."""

    layers: Sequence[LayerInfo]  # 1-based index, normalised name, stack, depth
    model: str  # the model's class name
    config: dict[str, Any] = field(default_factory=dict)  # the recorder's config (+ probe_hash, notes ...)

    @property
    def probe_hash(self) -> str | None:
        return self.config.get("probe_hash")


log = logging.getLogger("layerscope")

# Run-config keys that must match for a run to be continued without resume=True.
_SAME = ("window", "train_only", "eps", "hist_edges", "mask", "sample")
_SAME_AS_SETS = ("metrics", "sites")


def model_fingerprint(model: nn.Module) -> str | None:
    """A short hash of ``model``'s architecture: its class and every parameter's name and shape
    (wrapper prefixes stripped; shared parameters once). Two models of one architecture match
    whatever their weights. ``None`` for a model whose parameters are flattened into shards
    (FSDP1), whose shapes say nothing about the architecture.

    >>> import torch.nn as nn
    >>> model_fingerprint(nn.Linear(4, 8)) == model_fingerprint(nn.Linear(4, 8))
    True
    >>> model_fingerprint(nn.Linear(4, 8)) == model_fingerprint(nn.Linear(4, 16))
    False
    """
    target = unwrap(model)
    if any(type(m).__name__ == "FullyShardedDataParallel" for m in target.modules()):
        return None
    h = hashlib.sha256(type(target).__name__.encode())
    for name, p in sorted((normalize_name(n), tuple(p.shape)) for n, p in target.named_parameters()):
        h.update(f"|{name}:{p}".encode())  # a DTensor (FSDP2) reports its global shape
    return h.hexdigest()[:16]


def _differences(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_source: str,
    source: str,
    layers: tuple[int, int] = (0, 0),
) -> list[str]:
    """What makes the run's recording another one than the new recording (empty: the same).
    ``layers``: the run's layer count and the new recording's."""
    out: list[str] = []
    same_probe = old.get("probe_hash") is not None and old.get("probe_hash") == new.get("probe_hash")
    if old_source and old_source != source and not same_probe:
        # On one probe a sweep of checkpoint N gives a live record's numbers, so it may fill in a
        # live run; without one, training batches and a probe are not comparable.
        out.append(f"it is a {old_source} recording, this is a {source} one")
    fo, fn = old.get("model_fingerprint"), new.get("model_fingerprint")
    if fo is not None and fn is not None and fo != fn:
        no, nn_ = old.get("n_params"), new.get("n_params")
        lo, ln = layers
        if lo and ln and lo != ln:
            out.append(f"another model ({lo} layers, this one has {ln})")
        elif no is not None and nn_ is not None and no != nn_:
            out.append(f"another model ({no:,} parameters, this one has {nn_:,})")
        else:
            out.append(f"another model architecture (fingerprint {fo}, this one {fn})")
    for key in _SAME_AS_SETS:
        if key in old and key in new and set(old[key] or ()) != set(new[key] or ()):
            out.append(f"{key} {','.join(old[key] or ())} (this one: {','.join(new[key] or ())})")
    for key in _SAME:
        if key in old and key in new and old[key] != new[key]:
            out.append(f"{key}={old[key]!r} (this one: {new[key]!r})")
    if source == "sweep":
        co = (old.get("notes") or {}).get("sweep", {}).get("checkpoints")
        cn = (new.get("notes") or {}).get("sweep", {}).get("checkpoints")
        if co and cn and co != cn:
            out.append(f"checkpoints of {quote(co)} (this one: {quote(cn)})")
    return out


def open_run(store: Store, run: str | None, resume: bool | None, spec: RunSpec, *, source: str) -> str:
    """Create, or continue, the run a new recording described by ``spec`` writes into, by the table
    in this module's docstring; returns its name.

    A continued run recorded with another probe is refused, naming both probe hashes; a run
    created without a probe gets this spec's probe hash.

    Raises:
        RunExistsError: ``run`` exists and holds another recording (``resume=None``), or exists at
            all (``resume=False``). Nothing in the store is changed.
    """
    name = _open(store, run, resume, layers=spec.layers, model=spec.model, config=spec.config, source=source)
    old = store.run_config(name)
    new = spec.probe_hash
    if new and old.get("probe_hash") not in (None, new):
        raise ConfigError(
            f"run {quote(name)} was recorded with probe {old.get('probe_hash')}, not {new}; "
            "use the same probe or record into a new run name."
        )
    if new and old.get("probe_hash") is None:
        store.update_run_config(name, probe_hash=new)
    return name


def _open(
    store: Store,
    run: str | None,
    resume: bool | None,
    *,
    layers: Sequence[LayerInfo],
    model: str,
    config: dict[str, Any],
    source: str,
) -> str:
    if resume not in (None, True, False):
        raise ConfigError(f"resume={resume!r}; pass True, False or None (continue the same recording only).")
    if run is None:
        return _fresh(store, layers=layers, model=model, config=config, source=source)
    if resume is None and run in store.run_names():
        info = store.run_info(run)
        diffs = _differences(info.config, config, info.source, source, (info.n_layers, len(layers)))
        if diffs:
            raise RunExistsError(
                f"run {quote(run)} in {quote(store.path)} holds another recording: {'; '.join(diffs)}",
                what="run",
                value=run,
                param="resume",
                example=True,
                fix="choose another run name, or pass {example} to record into it anyway",
            )
        log.info("layerscope: continuing run %s (%d steps recorded so far)", quote(run), info.n_steps)
    store.create_run(
        run, layers=layers, model=model, config=config, source=source, resume=resume is not False
    )
    return run


def _fresh(
    store: Store, *, layers: Sequence[LayerInfo], model: str, config: dict[str, Any], source: str
) -> str:
    """``run``, else the first free ``run-N``; created with resume=False, so two processes that
    start together never share one (the loser of the race takes the next name)."""
    taken = set(store.run_names())
    n = 1
    while True:
        name = DEFAULT_RUN if n == 1 else f"{DEFAULT_RUN}-{n}"
        n += 1
        if name in taken:
            continue
        try:
            store.create_run(name, layers=layers, model=model, config=config, source=source, resume=False)
        except RunExistsError:
            taken.add(name)
            continue
        if name == DEFAULT_RUN:
            log.info("layerscope: recording into run %s of %s", quote(name), quote(store.path))
        else:
            log.warning(
                "layerscope: run %s is taken in %s; recording into run %s (pass run= to name it)",
                quote(DEFAULT_RUN),
                quote(store.path),
                quote(name),
            )
        return name


__all__ = ["DEFAULT_RUN", "RunSpec", "model_fingerprint", "open_run"]


def agree_on_run(error: BaseException | None, run: str | None, name: str, group: Any, device: Any) -> str:
    """Under DDP: tell every rank whether rank 0 opened the store, and the run name it chose.

    Rank 0 alone opens the store; if it fails, the other ranks must not go on to wait forever at
    the first record step's collective. One host sync, once. Returns the run's name.
    """
    import torch
    import torch.distributed as dist

    flag = torch.tensor([0 if error is None else 1], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    failed = int(flag.item())  # host sync: once, at set-up
    if error is None and failed:
        raise DistributedError(
            f"rank 0 could not open run {name!r} in the store; see rank 0's error. Nothing was recorded."
        )
    if run is None and error is None:
        named = [name]  # the name rank 0's store chose (run, run-2, ...), for every rank
        dist.broadcast_object_list(named, group=group, group_src=0)
        return str(named[0])
    return name
