"""The coord-check loop: for each width and seed, a few training steps on one fixed batch, with
every layer recorded before each update (microsoft/mup's ``coord_check``), stored as one run.

Step ``t`` holds the statistics of the forward that computes the ``t``-th update, so step 1 is the
model at initialisation and step ``t`` the model after ``t - 1`` updates. The run has a variant
``width=W,seed=S`` per (width, seed) and rows per (variant, step, layer); a (width, seed) whose
steps are all stored is skipped when the check runs again (``force=True`` re-runs it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..analysis.coord import CoordVerdict, coord_verdict
from ..batch import probe_hash, to_device
from ..errors import ConfigError, DataError, RunExistsError, quote
from ..recorder import Recorder
from ..stats import resolve_metrics
from ..store import StepRecord, Store
from ..store.coord import CoordData, coord_variant, load_coord
from .factory import Factory, build, load_factory

LossFn = Callable[[nn.Module, Any], torch.Tensor]
OPTIMIZERS = ("adam", "adamw", "sgd")
# Config keys that must match to add widths, seeds or steps to an existing coord-check run.
_RECIPE = ("model", "lr", "optimizer", "batch_hash", "loss", "metrics", "sites")


@dataclass
class CoordCheck:
    """What :func:`coord_check` recorded: where, and the verdict of each (metric, site).

    >>> # cc = layerscope.coord_check(tiny_gpt_sp, [32, 64, 128]); print(cc.verdict().to_markdown())
    """

    store: str
    run: str
    metrics: list[str]
    sites: list[str]
    ran: list[tuple[int, int]] = field(default_factory=list)  # (width, seed) trained now
    skipped: list[tuple[int, int]] = field(default_factory=list)  # ... found in the store

    def data(self, metric: str | None = None, site: str | None = None) -> CoordData:
        """The (seed, width, step, layer) values of one metric at one site (default: the first ones)."""
        return load_coord(self.store, self.run, metric or self.metrics[0], site or self.sites[0])

    def verdict(self, metric: str | None = None, site: str | None = None) -> CoordVerdict:
        """The fitted slopes and the verdict of one metric at one site."""
        return coord_verdict(self.data(metric, site))


def builtin_batch(batch_size: int = 8, seq_len: int = 64, seed: int = 0) -> torch.Tensor:
    """A fixed (batch_size, seq_len + 1) batch of byte tokens from the generated corpus."""
    from ..testing.corpus import Corpus

    x, y = Corpus(seed=seed).batch(batch_size, seq_len, 0)
    return torch.cat([x, y[:, -1:]], dim=1)


def split_batch(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) of a batch: a (B, T+1) token tensor is shifted by one (next-token
    prediction); a ``(x, y)`` pair or a ``{"input": x, "target": y}`` dict is taken as it is."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim != 2 or batch.shape[1] < 2 or batch.dtype not in (torch.int64, torch.int32):
            raise DataError(
                f"a coord-check batch tensor must hold token ids of shape (batch, seq_len + 1), got "
                f"{batch.dtype} {tuple(batch.shape)}; pass (inputs, targets) or a loss_fn for other data."
            )
        return batch[:, :-1].long(), batch[:, 1:].long()
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict) and {"input", "target"} <= set(batch):
        return batch["input"], batch["target"]
    raise DataError(
        f"cannot read a coord-check batch from a {type(batch).__name__}; pass a (batch, seq_len + 1) "
        "tensor of token ids, (inputs, targets), {'input': ..., 'target': ...}, or a loss_fn."
    )


def lm_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Next-token cross-entropy of ``model(inputs)`` against the targets; the logits may be the
    output itself, its first item (nanoGPT's ``(logits, loss)``) or its ``.logits`` (HF)."""
    x, y = split_batch(batch)
    out = model(x)
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(logits, torch.Tensor) or logits.shape[:-1] != y.shape:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DataError(
            f"the model's output {got} is not logits of shape {tuple(y.shape)} + (vocab,); pass a loss_fn "
            "(Python) for a model that is not a language model."
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def _optimizer(
    name: str, model: nn.Module, groups: list[dict[str, Any]] | None, lr: float
) -> torch.optim.Optimizer:
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    ready = []
    for g in groups:
        g = dict(g)
        scale = float(g.pop("lr_scale", 1.0))
        g["lr"] = float(g["lr"]) if "lr" in g else lr * scale
        g.pop("name", None)
        ready.append(g)
    if name == "sgd":
        return torch.optim.SGD(ready, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(ready, lr=lr)
    return torch.optim.Adam(ready, lr=lr)


def _check_args(
    widths: Sequence[int], steps: int, seeds: Sequence[int], lr: float, optimizer: str
) -> list[int]:
    ws = [int(w) for w in widths]
    if len(ws) < 2 or any(w <= 0 for w in ws) or len(set(ws)) != len(ws):
        raise ConfigError(
            f"widths={list(widths)!r}: a coord-check needs at least 2 distinct positive widths, e.g. 64,128,256.",
            what="widths",
            value=",".join(str(w) for w in widths),
            param="widths",
            example="64,128,256,512",
        )
    if steps < 1:
        raise ConfigError(f"steps={steps!r}: record at least 1 step (3 is mup's default).")
    if not seeds:
        raise ConfigError("seeds: pass at least one seed (a count such as 3, or a list of seeds).")
    if not lr > 0:
        raise ConfigError(f"lr={lr!r}: the learning rate must be positive.")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"optimizer={optimizer!r} is not one of {', '.join(OPTIMIZERS)}.",
            what="optimizer",
            value=optimizer,
            choices=list(OPTIMIZERS),
            param="optimizer",
        )
    return sorted(ws)


def _name(obj: Any) -> str:
    mod = getattr(obj, "__module__", "") or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{mod}:{name}" if mod else str(name)


def _open(st: Store, run: str, recipe: dict[str, Any], force: bool) -> bool:
    """Whether run ``run`` exists; refuse to add to one of another recipe unless ``force``."""
    if run not in st.run_names():
        return False
    old = st.run_config(run).get("coord_check")
    if old is None:
        raise RunExistsError(
            f"run {quote(run)} in {quote(st.path)} is not a coord-check",
            what="run",
            value=run,
            param="run",
            example=run + "-coord",
            fix="choose another run name, e.g. {example}",
        )
    diff = [k for k in _RECIPE if _norm(old.get(k)) != _norm(recipe.get(k))]
    if diff and not force:
        k = diff[0]
        raise ConfigError(
            f"coord-check run {quote(run)} was recorded with {k}={old.get(k)!r}, not {recipe.get(k)!r}; pass "
            "force=True (--force) to re-run every width with the new settings, or another run name."
        )
    return True


def _norm(v: Any) -> Any:
    return sorted(v) if isinstance(v, list) else v


def coord_check(
    factory: Factory | str,
    widths: Sequence[int],
    store: str | os.PathLike[str] = "coord-check.db",
    run: str = "coord-check",
    *,
    steps: int = 3,
    seeds: int | Sequence[int] = 3,
    lr: float = 1e-2,
    optimizer: str = "adam",
    batch: Any = None,
    loss_fn: LossFn | None = None,
    metrics: str | Sequence[str] = ("abs_mean", "rms"),
    sites: str | Sequence[str] = ("output",),
    device: str | torch.device | None = None,
    force: bool = False,
    on_progress: Callable[[int, int, bool, float], None] | None = None,
) -> CoordCheck:
    """Run a µP coordinate check of ``factory`` over ``widths`` and store it as run ``run``.

    For each width and seed: ``torch.manual_seed(seed)``, build the model (the factory contract is
    in :mod:`layerscope.coordcheck.factory`), then ``steps`` optimizer steps of ``optimizer`` at
    ``lr`` (times each group's ``lr_scale``) on the same ``batch``, recording ``metrics`` at
    ``sites`` of every layer before each update. ``batch`` is a ``(B, T+1)`` tensor of token ids
    (``None``: 8 x 64 bytes of the generated corpus), ``(inputs, targets)``, or anything your
    ``loss_fn(model, batch) -> loss`` takes. ``seeds`` is a count (``0..n-1``) or a list.
    ``on_progress(width, seed, skipped, seconds)`` is called after each (width, seed).

    >>> from layerscope.testing import tiny_gpt_sp
    >>> import tempfile, os
    >>> db = os.path.join(tempfile.mkdtemp(), "cc.db")
    >>> cc = coord_check(lambda width: tiny_gpt_sp(width, n_layer=2, block_size=8), [16, 32], db,
    ...                  steps=2, seeds=1, batch=torch.randint(0, 256, (2, 9)))
    >>> cc.verdict().data.values.shape     # (seeds, widths, steps, layers)
    (1, 2, 2, 2)
    """
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    ws = _check_args(widths, steps, seed_list, lr, optimizer)
    if isinstance(factory, str):
        model_name = factory
        factory = load_factory(factory)
    else:
        model_name = _name(factory)
    metric_names = [m.name for m in resolve_metrics(metrics)]
    site_names = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    if batch is None:
        batch = builtin_batch()
    loss = loss_fn or lm_loss
    recipe = {
        "model": model_name,
        "lr": float(lr),
        "optimizer": optimizer,
        "batch_hash": probe_hash(batch),
        "loss": _name(loss),
        "metrics": metric_names,
        "sites": site_names,
    }
    dev = torch.device(device) if device is not None else None
    result = CoordCheck(os.fspath(store), run, metric_names, site_names)
    with Store(store) as st:
        exists = _open(st, run, recipe, force)
        for w in ws:
            for s in seed_list:
                variant = coord_variant(w, s)
                t0 = time.monotonic()
                if exists and not force and set(range(1, steps + 1)) <= set(st.steps(run, variant)):
                    result.skipped.append((w, s))
                    if on_progress:
                        on_progress(w, s, True, 0.0)
                    continue
                records, layers = _train_one(
                    factory, w, s, optimizer, lr, steps, batch, loss, metric_names, site_names, dev
                )
                # create_run also checks that this width has the layers of the others
                st.create_run(run, layers=layers, model=model_name, config={}, source="coord-check")
                exists = True
                st.write_steps(
                    run, [StepRecord(r.step, r.values, r.hists, "coord-check", variant) for r in records]
                )
                done = {
                    "widths": sorted({*_stored(st, run, "widths"), w}),
                    "seeds": sorted({*_stored(st, run, "seeds"), s}),
                    "steps": max(steps, *_stored(st, run, "steps_n")),
                }
                st.update_run_config(
                    run, coord_check={**recipe, **done}, metrics=metric_names, sites=site_names
                )
                result.ran.append((w, s))
                if on_progress:
                    on_progress(w, s, False, time.monotonic() - t0)
    return result


def _stored(st: Store, run: str, key: str) -> list[int]:
    cfg = st.run_config(run).get("coord_check") or {}
    if key == "steps_n":
        return [int(cfg.get("steps", 0))]
    return [int(x) for x in cfg.get(key, [])]


def _train_one(
    factory: Factory,
    width: int,
    seed: int,
    optimizer: str,
    lr: float,
    steps: int,
    batch: Any,
    loss_fn: LossFn,
    metrics: list[str],
    sites: list[str],
    device: torch.device | None,
) -> tuple[list[StepRecord], list[Any]]:
    torch.manual_seed(seed)
    model, groups = build(factory, width, seed, optimizer)
    if device is not None:
        model.to(device)
    model.train()
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    b = to_device(batch, dev)
    opt = _optimizer(optimizer, model, groups, lr)
    with Recorder(model, None, run="coord-check", metrics=metrics, sites=sites, every=1, start_step=1) as rec:
        for t in range(1, steps + 1):
            try:
                loss = loss_fn(model, b)
            except (ConfigError, DataError):
                raise
            except Exception as e:
                raise DataError(
                    f"width {width}: the model failed on the coord-check batch: {type(e).__name__}: {e}; check "
                    "that the batch fits the model (vocabulary, sequence length)."
                ) from e
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec.step(t)
        layers = rec.run_spec().layers
    return rec.history, list(layers)
