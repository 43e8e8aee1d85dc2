"""Sufficient statistics on the device, the metric registry, and their exact merge across ranks."""

from .accumulator import (
    SlotAccumulator,
    StatSpec,
    collect,
    derive_values,
    finish_states,
    reduce_across_ranks,
)
from .codec import WindowState, pack_many, unpack_many
from .functional import (
    GROUPS,
    N_STATE,
    Stats,
    batch_raw,
    default_hist_edges,
    empty_state,
    merge_states,
    raw_to_state,
    state_of,
)
from .kernels import BACKENDS, StatsPass, get_pass
from .registry import (
    BUILTIN_METRICS,
    DEFAULT_METRICS,
    Metric,
    available_metrics,
    get_metric,
    register_metric,
    resolve_metrics,
    unregister_metric,
)

__all__ = [
    "BACKENDS",
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "GROUPS",
    "N_STATE",
    "Metric",
    "SlotAccumulator",
    "StatSpec",
    "Stats",
    "StatsPass",
    "WindowState",
    "available_metrics",
    "batch_raw",
    "collect",
    "default_hist_edges",
    "derive_values",
    "empty_state",
    "finish_states",
    "get_metric",
    "get_pass",
    "merge_states",
    "pack_many",
    "raw_to_state",
    "reduce_across_ranks",
    "register_metric",
    "resolve_metrics",
    "state_of",
    "unpack_many",
    "unregister_metric",
]
