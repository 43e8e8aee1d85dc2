"""The run store (SQLite), its reader, and the Heatmap matrix every renderer reads."""

from .heatmap import Heatmap
from .sqlite import SCHEMA_VERSION, LayerInfo, RunInfo, StepRecord, Store, load

__all__ = ["SCHEMA_VERSION", "Heatmap", "LayerInfo", "RunInfo", "StepRecord", "Store", "load"]
