"""The metric registry: names users pass to ``Recorder(metrics=...)`` and find in the store.

A metric is either derived from the sufficient statistics (``from_stats``), or computed by a
function of the activation tensor inside the hook (``fn``) and folded across forwards and ranks
by ``reduce``. Add one of your own with :func:`register_metric`::

    import numpy as np, layerscope.stats as ls
    # from the same statistics: the coefficient of variation
    ls.register_metric("cv", from_stats=lambda s: np.sqrt(s.var) / np.abs(s.mean), needs={"moments"})
    # as a function of the tensor: mean L2 norm of the last dimension (token vectors)
    ls.register_metric("token_norm", fn=lambda x: x.float().norm(dim=-1).mean(), reduce="mean")

Population statistics (ddof=0). Moments are over finite values; NaN/Inf are counted apart.
Fractions are over all elements, non-finite ones included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..defaults import DEFAULT_METRICS
from ..errors import ConfigError
from .functional import GROUPS, Stats


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    needs: frozenset[str] = field(default_factory=frozenset)  # stat groups (functional.GROUPS)
    from_stats: Callable[[Stats], np.ndarray] | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # 0-d tensor per forward, no sync
    reduce: str = "mean"  # for fn metrics: mean (weighted by element count) | sum | max | min
    scalar: bool = True  # False for 'hist' (a vector per cell, stored apart)


def _rms(s: Stats) -> np.ndarray:
    return np.sqrt(s.var + s.mean**2)


def _kurtosis(s: Stats) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(s.m2 > 0, s.n_finite * s.m4 / s.m2**2, np.nan)


def _top_ratio(s: Stats) -> np.ndarray:
    r = _rms(s)
    with np.errstate(all="ignore"):
        return np.where(r > 0, s.max_abs / r, np.nan)


def _abs_mean(s: Stats) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(s.n_finite > 0, s.sum_abs / s.n_finite, np.nan)


def _dead_frac(s: Stats) -> np.ndarray:
    out = np.full(np.shape(s.n), np.nan)
    if s.units is None:
        return out
    flat = out.reshape(-1)
    seen = np.asarray(s.n).reshape(-1) > 0  # a slot that saw no element has no dead units
    for i, u in enumerate(s.units):
        if u is not None and len(u) and seen[i]:
            flat[i] = float(np.mean(np.asarray(u) <= s.eps))
    return out


def _norm(s: Stats) -> np.ndarray:
    return np.where(s.n_finite > 0, np.sqrt(s.sum_sq), np.nan)


def _ratio(s: Stats) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where((s.ref_sq > 0) & (s.n_finite > 0), np.sqrt(s.sum_sq / s.ref_sq), np.nan)


def _log_ratio(s: Stats) -> np.ndarray:
    r = _ratio(s)
    with np.errstate(all="ignore"):
        return np.where(r > 0, np.log10(r), np.nan)


_REGISTRY: dict[str, Metric] = {}


def _builtin(
    name: str,
    description: str,
    needs: Iterable[str],
    f: Callable[[Stats], np.ndarray] | None,
    scalar: bool = True,
) -> None:
    _REGISTRY[name] = Metric(name, description, frozenset(needs), f, None, "mean", scalar)


_builtin("mean", "mean of finite values", {"moments"}, lambda s: s.mean)
_builtin(
    "std", "population standard deviation (ddof=0) of finite values", {"moments"}, lambda s: np.sqrt(s.var)
)
_builtin("rms", "root mean square of finite values", {"moments"}, _rms)
_builtin("abs_mean", "mean |x| of finite values", {"abs"}, _abs_mean)
_builtin("min", "smallest finite value", {"minmax"}, lambda s: s.min)
_builtin("max", "largest finite value", {"minmax"}, lambda s: s.max)
_builtin("max_abs", "largest finite |x|", {"abs"}, lambda s: s.max_abs)
_builtin("kurtosis", "Pearson kurtosis m4/m2^2 (3 for a Gaussian)", {"moments", "moments4"}, _kurtosis)
_builtin("top_ratio", "max|x| / rms: massive activations stand out", {"moments", "abs"}, _top_ratio)
_builtin("zero_frac", "fraction of elements with |x| <= eps", {"zero"}, lambda s: s.frac(s.n_zero))
_builtin("pos_frac", "fraction of elements > 0", {"pos"}, lambda s: s.frac(s.n_pos))
_builtin(
    "dead_frac",
    "fraction of units (last dim) whose |x| never exceeded eps in the window",
    {"units"},
    _dead_frac,
)
_builtin("nan_frac", "fraction of elements that are NaN", {"nonfinite"}, lambda s: s.frac(s.n_nan))
_builtin(
    "inf_frac",
    "fraction of elements that are +-Inf",
    {"nonfinite"},
    lambda s: s.frac(s.n_posinf + s.n_neginf),
)
_builtin(
    "norm", "L2 norm of the finite values, sqrt(sum x^2) (a norm of the whole tensor)", {"moments"}, _norm
)
_builtin(
    "ratio",
    "||x|| / ||reference||: an update's norm over the norm of the weights it changed (update site)",
    {"moments"},
    _ratio,
)
_builtin("log_ratio", "log10 of ratio (update site)", {"moments"}, _log_ratio)
_builtin(
    "hist", "fixed-edge histogram counts (stored apart; see Store.load_hist)", {"hist"}, None, scalar=False
)

BUILTIN_METRICS = tuple(_REGISTRY)


def register_metric(
    name: str,
    *,
    from_stats: Callable[[Stats], np.ndarray] | None = None,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reduce: str = "mean",
    needs: Iterable[str] = ("moments", "moments4", "abs", "minmax", "zero", "pos", "nonfinite"),
    description: str = "",
    overwrite: bool = False,
) -> Metric:
    """Add a metric. Give exactly one of ``from_stats`` (numpy, at flush) or ``fn`` (torch, in the hook).

    ``fn`` must return a 0-d tensor and must not sync the host (no ``.item()``). ``reduce`` says how
    its per-forward values fold together across micro-batches, the window and ranks.
    """
    if (from_stats is None) == (fn is None):
        raise ConfigError(f"register_metric({name!r}): give exactly one of from_stats= or fn=.")
    if reduce not in ("mean", "sum", "max", "min"):
        raise ConfigError(f"register_metric({name!r}): reduce={reduce!r}; use 'mean', 'sum', 'max' or 'min'.")
    bad = set(needs) - set(GROUPS)
    if bad:
        raise ConfigError(
            f"register_metric({name!r}): unknown stat groups {sorted(bad)}; known: {list(GROUPS)}."
        )
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"metric {name!r} already exists; pick another name or pass overwrite=True.")
    m = Metric(
        name, description or name, frozenset(needs) if from_stats else frozenset(), from_stats, fn, reduce
    )
    _REGISTRY[name] = m
    return m


def unregister_metric(name: str) -> None:
    """Remove a metric added with :func:`register_metric` (built-ins cannot be removed)."""
    if name in BUILTIN_METRICS:
        raise ConfigError(f"{name!r} is a built-in metric and cannot be removed.")
    _REGISTRY.pop(name, None)


def get_metric(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown metric {name!r}; known metrics: {', '.join(_REGISTRY)}. "
            "Add your own with layerscope.stats.register_metric."
        ) from None


def resolve_metrics(metrics: str | Iterable[str] | None) -> list[Metric]:
    """Accept 'all', a comma-separated string, or a list of names; validate each."""
    if metrics is None:
        names: list[str] = list(DEFAULT_METRICS)
    elif isinstance(metrics, str):
        names = (
            list(BUILTIN_METRICS)
            if metrics.strip() == "all"
            else [m.strip() for m in metrics.split(",") if m.strip()]
        )
    else:
        names = list(metrics)
    if not names:
        raise ConfigError("no metrics given; pass e.g. metrics=('rms', 'kurtosis') or 'all'.")
    seen: dict[str, Metric] = {}
    for n in names:
        seen.setdefault(n, get_metric(n))
    return list(seen.values())


def available_metrics() -> dict[str, str]:
    """Name -> description of every registered metric."""
    return {k: v.description for k, v in _REGISTRY.items()}
