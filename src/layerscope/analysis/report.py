"""The write-up of a heatmap, computed from its numbers: :func:`report` -> :class:`Report`.

Three steps: :mod:`.detect` computes every number (per-layer details, typed observations, bands),
:mod:`.narrative` writes the sentences from them, and :mod:`.markdown` lays the result out. The
report's dict holds every number the Markdown quotes, rounded exactly as quoted (``digits``
significant digits; percentages to 2). Levels, trends and observations are relative to the map's
range; the thresholds are in :mod:`.thresholds` and are copied into the JSON under ``thresholds``.
``report.schema.json`` beside this module is the JSON Schema of :meth:`Report.to_dict`.

Per-layer values (``first``, ``last``, ``min``, ``max``, ``peak_step``) and the range used for levels
leave out the cells reported as outliers and the non-finite cells; ``value_min``/``value_max`` are
over all finite cells (what a colour scale shows).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_percent
from .._io import write_text_atomic as _write_atomic
from ..errors import ConfigError, NotFoundError
from ..store.heatmap import Heatmap
from . import bands as B
from . import detect
from . import patterns as P
from .alerts import alert_readings, alert_section
from .extras import Extras
from .heads import head_readings, head_section
from .logits import logits_readings, logits_section
from .markdown import markdown_to_html, render_markdown
from .narrative import DESCRIBE, Context, interpretation
from .summary import band_text, summary
from .text import Fmt
from .thresholds import DEFAULT, Thresholds
from .view import MapView
from .vocabulary import phrase

SCHEMA_VERSION = 1
SECTION_DIGITS = 3  # significant digits of the per-head, logits and alert sections (at most the map's)
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "Report", "format_percent", "report", "write_text_atomic"]


@dataclass(frozen=True)
class Report:
    """The analysis of one heatmap: a JSON-ready dict (:meth:`to_dict`) and its Markdown.

    >>> import numpy as np
    >>> from layerscope.store.heatmap import Heatmap
    >>> v = np.outer(np.arange(1, 4), np.arange(1, 5)) / 12.0   # grows with depth and steps
    >>> r = report(Heatmap(v, steps=[100, 200, 300], layers=[1, 2, 3, 4], metric="rms"))
    >>> [o["kind"] for o in r.to_dict()["observations"]][:2]
    ['depth_gradient', 'step_trend']
    >>> r.to_markdown().splitlines()[0]
    '# `rms` across layers and training steps'
    """

    data: dict[str, Any] = field(repr=False)
    heatmap: Heatmap | None = field(default=None, repr=False, compare=False)  # what was analysed (notebooks)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the report as plain JSON types (NaN and inf are None)."""
        return copy.deepcopy(self.data)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as strict JSON text (no NaN)."""
        return json.dumps(self.data, indent=indent, allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the report to ``path``: JSON when it ends in ``.json``, else Markdown. The file is
        written beside its destination and renamed into place, so it is never half-written.

        >>> import tempfile, os, numpy as np
        >>> from layerscope.store.heatmap import Heatmap
        >>> rep = report(Heatmap(np.eye(3), steps=[1, 2, 3], layers=[1, 2, 3]))
        >>> rep.save(os.path.join(tempfile.mkdtemp(), "report.md")).name
        'report.md'
        """
        p = Path(path)
        text = self.to_json() + "\n" if p.suffix.lower() == ".json" else self.to_markdown()
        return write_text_atomic(p, text)

    @property
    def observations(self) -> list[dict[str, Any]]:
        """The observations as JSON dicts (a copy)."""
        return copy.deepcopy(self.data["observations"])

    @property
    def layers_detail(self) -> list[dict[str, Any]]:
        """One dict per layer (a copy)."""
        return copy.deepcopy(self.data["layers_detail"])

    def to_markdown(self) -> str:
        """The write-up: Overview, Components/Axes, Detailed analysis, Key observations,
        Interpretation. Rendered from :meth:`to_dict` only."""
        return render_markdown(self.data)

    def to_html(self, heading_offset: int = 2) -> str:
        """The Markdown as an HTML fragment (every name escaped; ``#`` becomes ``<h3>`` by default),
        as the ``view`` bundle and the dashboard show it."""
        return markdown_to_html(self.to_markdown(), heading_offset)

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:  # Jupyter
        return self.to_markdown()

    def _repr_html_(self) -> str:  # Jupyter: the heatmap, then the text
        from ..render.notebook import report_html

        return report_html(self.to_markdown(), self.heatmap)

    def _repr_png_(self) -> bytes | None:  # the heatmap the report analyses
        if self.heatmap is None:
            return None
        from ..render.notebook import heatmap_png

        return heatmap_png(self.heatmap)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, with a normal file mode; a pipe is written into.

    Raises NotFoundError when ``path`` is a folder or its folder does not exist.
    """
    p = Path(path)
    if p.is_dir():
        raise NotFoundError(f"{str(p)!r} is a folder; pass a file name such as {str(p / 'report.md')!r}.")
    if not p.parent.exists():
        raise NotFoundError(f"folder {str(p.parent)!r} for {str(p)!r} does not exist; create it first.")
    return _write_atomic(p, text)


def report(
    heatmap: Heatmap,
    *,
    scale: str = "auto",
    thresholds: Thresholds | None = None,
    extras: Extras | None = None,
) -> Report:
    """Analyse ``heatmap`` (steps x layers) and write it up.

    ``scale`` is ``"auto"`` (log10 when every value is positive and they span about three decades
    or more, else linear), ``"linear"`` or ``"log"``: levels and trends are judged on that scale.
    ``thresholds`` overrides the defaults in :mod:`layerscope.analysis.thresholds`.
    ``extras`` (:class:`~layerscope.analysis.extras.Extras`) adds the sections of a stored run: the
    per-head findings of site ``attn``, the output-logits series, the watch alerts
    (:func:`~layerscope.analysis.run.report_run` fills it from a store).

    Any shape works, including 0 or 1 steps or layers and maps without a finite value: they are
    described as such.

    >>> import numpy as np
    >>> from layerscope.store.heatmap import Heatmap
    >>> r = report(Heatmap(np.full((3, 2), 0.5), steps=[1, 2, 3], layers=[1, 2]))
    >>> [d["trend"] for d in r.to_dict()["layers_detail"]]
    ['flat', 'flat']
    """
    t = thresholds or DEFAULT
    if scale not in ("auto", "linear", "log"):
        raise ConfigError(f"scale {scale!r} is not one of auto, linear, log; pass one of those.")
    # Extreme inputs (1e308, 5e-324) overflow a ratio or two; those come out as None, not as warnings.
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return Report(_build(MapView(heatmap, scale, t), extras), heatmap)


def _build(v: MapView, extras: Extras | None = None) -> dict[str, Any]:
    """The report dict of one prepared map: header numbers, details, observations, text."""
    f, hm = v.fmt, v.hm
    fin_all = v.finite
    vmin = f.r(float(v.values[fin_all].min())) if fin_all.any() else None
    vmax = f.r(float(v.values[fin_all].max())) if fin_all.any() else None
    gaps = [b - a for a, b in zip(v.steps, v.steps[1:])]
    d: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "metric": hm.metric,
        "site": hm.site,
        "run": hm.run,
        "layers": v.layers,
        "layer_names": list(hm.layer_names),
        "steps": v.steps,
        "value_min": vmin,
        "value_max": vmax,
        "range_min": f.r(v.inv(v.lo)) if v.ok.any() else None,
        "range_max": f.r(v.inv(v.hi)) if v.ok.any() else None,
        "scale": v.scale,
        "value_factor": (
            f.r(float(v.values[fin_all].max() / v.values[fin_all].min()))
            if v.scale == "log" and fin_all.any()
            else None
        ),
        "digits": f.digits,
        "n_steps": v.S,
        "n_layers": v.L,
        "n_cells": v.S * v.L,
        "n_values": int(v.ok.sum()),
        "n_missing": int(np.isnan(v.values).sum()),
        "n_infinite": int(np.isinf(v.values).sum()),
        "n_outliers": int(v.outliers.sum()),
        "step_interval": gaps[0] if gaps and all(g == gaps[0] for g in gaps) else None,
        "step_gap_min": min(gaps) if gaps else None,
        "step_gap_max": max(gaps) if gaps else None,
        "noise": {
            "sigma": P.round_sig(v.sigma * v.unit, 3),  # recorded units (decades on a log scale)
            "share_pct": f.pct(100 * v.noise_share),
            "structured": bool(v.structured),
            "smoothing_window": v.window,
            "tail_df": P.round_sig(v.noise.df, 3),  # None: tails no heavier than the normal's
            "largest": P.round_sig(v.units(v.outlier_floor), 3),  # the largest of the map's noise draws
            "material": bool(v.noisy),  # levels and structure judged on the 3 x 3-median map
            "multiplicative": bool(v.multiplicative),  # log scale chosen for the noise, not for decades
        },
        "source": str(hm.meta.get("store") or hm.meta.get("path") or ""),  # the file it was read from
    }
    details = detect.layer_details(v)
    obs = detect.observations(v, details)
    ctx = Context(
        fmt=f,
        metric=hm.metric,
        site=hm.site,
        scale=v.scale,
        n_steps=v.S,
        n_layers=v.L,
        n_layers_with_values=int(v.ok.any(axis=0).sum()),
        has_values=bool(v.ok.any()),
        flat=v.span == 0,
        structured=bool(v.structured),
        noise_share_pct=d["noise"]["share_pct"],
        first_step=v.first_step_with_values(),
    )
    d["layers_detail"] = [x.to_dict() for x in details]
    d["observations"] = [o.to_dict(DESCRIBE[o.kind](o, ctx)) for o in obs]
    d["bands"] = [b.to_dict(band_text(b, ctx)) for b in B.bands(v, details)]
    d["summary"] = summary(obs, ctx)
    d["interpretation"] = interpretation(obs, ctx)
    d["thresholds"] = v.t.to_dict()
    try:  # what the site's values are, where the vocabulary says (attn, logits)
        d["meaning"] = phrase("meaning", site=hm.site, metric=hm.metric)
    except KeyError:
        pass
    if extras is not None:
        _add_extras(d, extras, f, hm)
    return d


def _add_extras(d: dict[str, Any], x: Extras, f: Fmt, hm: Heatmap) -> None:
    """The sections of a stored run, each with its numbers, sentences and hedged readings."""
    readings: list[str] = []
    f = Fmt(SECTION_DIGITS, f.steps)  # the sections quote 3 digits whatever the map's range needs
    if x.reduce is not None:
        d["aggregate"] = {"over": "heads", "reduce": x.reduce, "n_heads": x.n_heads}
    if x.heads:
        d["heads"] = head_section(x.heads, f, n_heads=x.n_heads)
        readings += head_readings(d["heads"])
    if x.logits:
        d["logits"] = logits_section(x.logits, x.logits_steps, f, x.logits_layer, x.logits_layer_name)
        readings += logits_readings(d["logits"])
    if x.events is not None:
        whole = hm.site == "logits"
        d["alerts"] = alert_section(
            x.events, hm.site, hm.metric, f, hm.layer_names if not whole else [], whole
        )
        readings += alert_readings(d["alerts"], hm.site, hm.metric)
    if (
        readings
        and d["interpretation"]
        and d["interpretation"][-1]["text"].startswith("No pattern stood out")
    ):
        d["interpretation"].pop()  # the sections below have something to read after all
    d["interpretation"] += [{"observation": None, "text": r} for r in readings]
