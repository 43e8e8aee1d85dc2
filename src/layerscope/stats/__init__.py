"""Sufficient statistics on the device, the metric registry, and their exact merge across ranks."""

from .accumulator import (
    SlotAccumulator,
    StatSpec,
    WindowState,
    collect,
    derive_values,
    finish_states,
    reduce_across_ranks,
)
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
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "GROUPS",
    "N_STATE",
    "Metric",
    "SlotAccumulator",
    "StatSpec",
    "Stats",
    "WindowState",
    "available_metrics",
    "batch_raw",
    "collect",
    "default_hist_edges",
    "derive_values",
    "empty_state",
    "finish_states",
    "get_metric",
    "merge_states",
    "raw_to_state",
    "reduce_across_ranks",
    "register_metric",
    "resolve_metrics",
    "state_of",
    "unregister_metric",
]
