"""Pattern detection over a (steps x layers) heatmap, written up as JSON and Markdown.

>>> import numpy as np
>>> import layerscope
>>> hm = layerscope.Heatmap(np.linspace(0, 1, 12).reshape(3, 4), steps=[1, 2, 3], layers=[1, 2, 3, 4])
>>> rep = layerscope.report(hm)
>>> rep.to_dict()["layers_detail"][0]["trend"]
'rising'

``report.py`` builds the report (numbers and sentences) and lays out the Markdown, ``run.py``
(``report_run``) reports a map of a stored run with its per-head, output-logits and watch-alert
sections, ``patterns.py``
holds the pure numpy detectors, ``thresholds.py`` every threshold with what it means.
"""

from __future__ import annotations

from .extras import Extras
from .report import Report, report
from .thresholds import DEFAULT, Thresholds

__all__ = ["DEFAULT", "Extras", "Report", "Thresholds", "report"]
