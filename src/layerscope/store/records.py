"""What goes into the store and what comes out of it besides a :class:`Heatmap`: plain dataclasses,
no SQL (the schema and its SQL are in ``schema.py``, the reader and writer in ``sqlite.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

# "width=256" or "width=256,seed=1": comma-separated name=value pairs, names like identifiers.
_VARIANT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*=[^,=\s]+(,[A-Za-z_][A-Za-z0-9_.-]*=[^,=\s]+)*")


@dataclass(frozen=True)
class LayerInfo:
    """A recorded layer: ``layer`` is its 1-based column, fixed when the layers were discovered."""

    layer: int
    name: str
    stack: str = ""
    depth: int = 0


@dataclass(frozen=True)
class Event:
    """Something that happened at a step of a run: an alert of the live watch, for instance.

    ``kind`` says what sort of event it is (``"alert"``), ``rule`` which rule produced it; where it
    is about one place, ``site``/``metric``/``layer`` (1-based) /``head`` (0-based) say which, and
    ``value`` is the value that fired it (NaN when there is none, or when the value was NaN).
    ``time`` is seconds since the epoch; ``None`` means "now" when written.

    >>> Event(120, "alert", "max_abs>10x median", "layer 7 max_abs 48.1", site="output", metric="max_abs", layer=7)
    ... # doctest: +ELLIPSIS
    Event(step=120, kind='alert', ...)
    """

    step: int
    kind: str
    rule: str
    message: str = ""
    site: str = ""
    metric: str = ""
    layer: int | None = None
    head: int | None = None
    value: float = math.nan
    time: float | None = None
    variant: str = ""


@dataclass
class StepRecord:
    """Everything recorded for one step of a run, written whole (a reader sees all of it or none).

    ``values[(metric, site)]`` is one value per layer (a sequence or a 1-D array of ``n_layers``
    floats; NaN where a layer has none), or a 2-D ``(n_layers, k)`` array for a statistic with ``k``
    values per layer, e.g. one per attention head. The shape of a (metric, site) is fixed by its
    first write to a run. ``hists[site]`` are ``(n_layers, n_bins)`` histogram counts. ``variant``
    places the step in an extra dimension of the run, e.g. ``"width=256"`` for a coord-check: one
    run holds rows per (variant, step, layer); ``""`` is the plain run. ``events`` (alerts of the
    watch) are written in the same transaction as the values; when the record has ``events`` (even
    empty), rewriting a step replaces the events stored for it before.
    """

    step: int
    values: Mapping[tuple[str, str], Sequence[float] | np.ndarray]
    hists: dict[str, np.ndarray] | None = None  # site -> (n_layers, n_bins) counts
    source: str = "live"
    variant: str = ""
    events: Sequence[Event] | None = None


@dataclass(frozen=True)
class SeriesInfo:
    """One recorded series of a run: every step's row holds ``n_layers x inner`` float64 values.

    ``kind`` is ``"value"`` (a statistic: ``inner`` is 1, or the number of heads) or ``"hist"``
    (histogram counts: ``metric`` is ``"hist"``, ``inner`` the number of bins).
    """

    metric: str
    site: str
    variant: str
    kind: str
    n_layers: int
    inner: int
    n_rows: int = 0


@dataclass(frozen=True)
class RunInfo:
    """What ``layerscope runs`` prints about one run."""

    name: str
    created: str
    model: str
    config: dict[str, Any]
    version: str
    source: str
    n_steps: int
    first_step: int | None
    last_step: int | None
    n_layers: int
    metrics: list[str]
    sites: list[str]
    variants: list[str] = field(default_factory=list)


@dataclass
class HeadMap:
    """A per-head statistic at one step: ``values[h, j]`` is head ``heads[h]`` (0-based) of
    ``layers[j]`` (1-based). NaN where a layer has fewer heads or none."""

    values: np.ndarray  # (n_heads, n_layers) float64
    heads: list[int]
    layers: list[int]
    layer_names: list[str]
    step: int
    metric: str
    site: str
    run: str
    variant: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value, unused-ignore]


@dataclass
class HeadSeries:
    """A per-head statistic over a run: ``values[i, j, h]`` is head ``h`` (0-based) of
    ``layers[j]`` (1-based) at ``steps[i]``. NaN where a layer has fewer heads or none, or a step no
    value. A series of one value per layer has one "head"."""

    values: np.ndarray  # (n_steps, n_layers, n_heads) float64
    steps: list[int]
    layers: list[int]
    layer_names: list[str]
    metric: str
    site: str
    run: str
    variant: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_heads(self) -> int:
        return int(self.values.shape[2])


def check_variant(variant: str) -> str:
    """``variant`` itself if it is ``""`` or ``name=value[,name=value...]``; else a ConfigError.

    >>> check_variant("width=256")
    'width=256'
    """
    if not isinstance(variant, str) or (variant and not _VARIANT.fullmatch(variant)):
        raise ConfigError(
            f"variant {variant!r} is not of the form name=value[,name=value] (e.g. 'width=256'); "
            "pass '' for the plain run."
        )
    return variant


def variant_dims(variant: str) -> dict[str, str]:
    """The name -> value pairs of a variant key.

    >>> variant_dims("width=256,seed=1")
    {'width': '256', 'seed': '1'}
    """
    check_variant(variant)
    return dict(p.split("=", 1) for p in variant.split(",")) if variant else {}
