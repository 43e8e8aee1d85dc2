"""The one data type renderers and the analysis read: a (steps x layers) matrix with its labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .records import Event


@dataclass
class Heatmap:
    """One metric at one site of one run: ``values[i, j]`` is the value at ``steps[i]``, ``layers[j]``.

    ``values`` is float64, NaN where nothing was recorded (``+-inf`` stays as recorded).
    ``events`` are the run's watch alerts (of this variant, at any site and metric) when the map was
    read from a store: the renderers draw those of this site as markers on their cells.

    >>> import numpy as np
    >>> h = Heatmap(np.zeros((2, 3)), steps=[10, 20], layers=[1, 2, 3])
    >>> h.shape
    (2, 3)
    """

    values: np.ndarray  # (S, L) float64
    steps: Sequence[int]  # ascending, one per row
    layers: Sequence[int]  # 1-based depth index, one per column
    layer_names: list[str] = field(default_factory=list)
    metric: str = "value"
    site: str = "output"
    run: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: store path, source, config
    events: list[Event] = field(default_factory=list)  # the run's alerts (Store.events), by step

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2:
            raise DataError(
                f"a heatmap needs a 2-D (steps x layers) matrix, got shape {self.values.shape}; "
                "reshape it to (len(steps), len(layers))."
            )
        self.steps = [int(s) for s in self.steps]
        self.layers = [int(x) for x in self.layers]
        if self.values.shape != (len(self.steps), len(self.layers)):
            raise DataError(
                f"heatmap values have shape {self.values.shape} but there are {len(self.steps)} steps "
                f"and {len(self.layers)} layers; pass one step per row and one layer per column."
            )
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise DataError("heatmap steps must be strictly ascending; sort the rows by step first.")
        if not self.layer_names:
            self.layer_names = [str(x) for x in self.layers]
        if len(self.layer_names) != len(self.layers):
            raise DataError(
                f"{len(self.layer_names)} layer names for {len(self.layers)} layers; give one name per layer."
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value, unused-ignore]

    def row(self, step: int) -> np.ndarray:
        """Values of all layers at ``step``."""
        return self.values[list(self.steps).index(step)]

    def column(self, layer: int) -> np.ndarray:
        """Values of ``layer`` (1-based) at every step."""
        return self.values[:, list(self.layers).index(layer)]

    # -- notebooks (Jupyter asks for these; drawing is the renderers' job, imported on first use) --
    def _repr_markdown_(self) -> str:
        from ..render.notebook import heatmap_markdown

        return heatmap_markdown(self)

    def _repr_png_(self) -> bytes:
        from ..render.notebook import heatmap_png

        return heatmap_png(self)

    def _repr_html_(self) -> str:
        from ..render.notebook import heatmap_html

        return heatmap_html(self)

    def to_frame_rows(self) -> list[tuple[int, int, str, float]]:
        """Tidy rows ``(step, layer, layer_name, value)`` in step-major order."""
        out = []
        for i, s in enumerate(self.steps):
            for j, layer in enumerate(self.layers):
                out.append((s, layer, self.layer_names[j], float(self.values[i, j])))
        return out
