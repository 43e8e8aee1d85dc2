"""What a report of a stored run reads besides its map: the per-head series of site ``attn``, the
one-per-step series of site ``logits``, and the run's watch alerts (:class:`Extras`).

:func:`layerscope.analysis.report_run` fills it from a store; :func:`layerscope.analysis.report`
takes one as ``extras=`` (the tests build them directly). Pure data: nothing here reads a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..store.records import Event, HeadSeries


@dataclass(frozen=True)
class Extras:
    """The inputs of a report's per-head, output-logits and alert sections.

    ``heads``: metric -> :class:`HeadSeries` of site ``attn`` (``max_logit``, ``entropy``, ``sink``:
    whichever were recorded). ``logits``: metric -> one value per recorded step (``logits_steps``),
    the LM head's series of site ``logits``; ``logits_layer`` / ``logits_layer_name`` say which
    layer's column the store holds it in. ``reduce`` is how the map was aggregated over the heads
    (``"max"``, ``"mean"``, ``"min"``, a head index, or None for a map of one value per layer).
    ``events``: the run's events (:meth:`Store.events`), None when they are not known (a map
    without a store), an empty list when the run has none.
    """

    heads: Mapping[str, HeadSeries] = field(default_factory=dict)
    n_heads: int | None = None
    reduce: str | int | None = None
    logits: Mapping[str, np.ndarray] = field(default_factory=dict)
    logits_steps: Sequence[int] = ()
    logits_layer: int | None = None
    logits_layer_name: str = ""
    events: Sequence[Event] | None = None
