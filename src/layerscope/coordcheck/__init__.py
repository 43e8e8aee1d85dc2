"""``layerscope coord-check``: the µP coordinate check, stored as a run with a width dimension.

>>> import layerscope
>>> callable(layerscope.coord_check)
True

``run.py`` is the loop (:func:`coord_check`), ``factory.py`` the factory contract and the Hugging
Face config scaling. The verdict is :mod:`layerscope.analysis.coord`, the pictures
:mod:`layerscope.render.coord`, the data they share :mod:`layerscope.store.coord`.
"""

from __future__ import annotations

from .factory import hf_factory, load_factory, scale_hf_config
from .run import CoordCheck, builtin_batch, coord_check, lm_loss

__all__ = [
    "CoordCheck",
    "builtin_batch",
    "coord_check",
    "hf_factory",
    "lm_loss",
    "load_factory",
    "scale_hf_config",
]
