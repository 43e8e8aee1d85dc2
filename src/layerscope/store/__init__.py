"""The run store (SQLite), its reader, and the Heatmap matrix every renderer reads."""

from .heatmap import Heatmap
from .records import Event, HeadMap, HeadSeries, LayerInfo, RunInfo, SeriesInfo, StepRecord, variant_dims
from .schema import SCHEMA_VERSION
from .sqlite import Store, load

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "HeadMap",
    "HeadSeries",
    "Heatmap",
    "LayerInfo",
    "RunInfo",
    "SeriesInfo",
    "StepRecord",
    "Store",
    "load",
    "variant_dims",
]
