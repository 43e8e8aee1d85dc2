"""The write-up of a heatmap, computed from its numbers: :func:`report` -> :class:`Report`.

:func:`report` computes every number (with :mod:`.patterns`) and every sentence into one JSON-ready
dict; :meth:`Report.to_markdown` only lays that dict out. So every number the Markdown quotes is in
the JSON, rounded exactly as quoted (``digits`` significant digits; percentages to 2). Levels, trends
and observations are relative to the map's range; the thresholds are in :mod:`.thresholds` and are
copied into the JSON under ``thresholds``.

Per-layer values (``first``, ``last``, ``min``, ``max``, ``peak_step``) and the range used for levels
leave out the cells reported as outliers and the non-finite cells; ``value_min``/``value_max`` are
over all finite cells (what a colour scale shows).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._format import format_percent, format_step, format_value
from ..errors import ConfigError, NotFoundError
from ..store.heatmap import Heatmap
from . import patterns as P
from .thresholds import DEFAULT, Thresholds

SCHEMA_VERSION = 1
PCT_DIGITS = 2  # percentages are quoted (and stored) with 2 significant digits
_LIST_CELLS = 5  # cells spelled out in an observation's sentence
_LIST_EVENTS = 3  # sudden changes spelled out per direction
_LIST_RUNS = 4  # runs of steps/layers spelled out before "..."

TREND_WORDS = {
    "flat": "flat",
    "rising": "rising",
    "falling": "falling",
    "rise_then_fall": "rise then fall",
    "fall_then_rise": "fall then rise",
    "irregular": "irregular",
    None: "no values",
}


# --------------------------------------------------------------------------------------------
# The report object
# --------------------------------------------------------------------------------------------


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
        return copy.deepcopy(self.data["observations"])

    @property
    def layers_detail(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.data["layers_detail"])

    def to_markdown(self) -> str:
        """The write-up: Overview, Components/Axes, Detailed analysis, Key observations,
        Interpretation. Rendered from :meth:`to_dict` only."""
        return _render_markdown(self.data)

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


# --------------------------------------------------------------------------------------------
# Text helpers (all take already-rounded numbers)
# --------------------------------------------------------------------------------------------


class _Fmt:
    """Formats numbers the way the report quotes them; ``digits`` is fixed per report."""

    def __init__(self, digits: int, steps: Sequence[int]):
        self.digits = digits
        self.steps = list(steps)
        self._pos = {s: i for i, s in enumerate(self.steps)}

    def r(self, x: float | None) -> float | None:
        return P.round_sig(x, self.digits)

    def v(self, x: float | None) -> str:
        return "n/a" if x is None else format_value(x, self.digits)

    def vrange(self, lo: float | None, hi: float | None) -> str:
        a, b = self.v(lo), self.v(hi)
        if a == b:
            return a
        sep = "–" if (lo is not None and lo >= 0) else " to "
        return f"{a}{sep}{b}"

    @staticmethod
    def pct(x: float) -> float:
        return float(P.round_sig(x, PCT_DIGITS) or 0.0)

    @staticmethod
    def p(x: float) -> str:
        return format_percent(x)

    def between(self, lo: float | None, hi: float | None) -> str:
        """'0.0002 and 0.00085' (for 'between ...'), or one value when they print the same."""
        a, b = self.v(lo), self.v(hi)
        return a if a == b else f"{a} and {b}"

    def steps_text(self, steps: Sequence[int]) -> str:
        """'210k–300k' for a run of consecutive recorded steps; runs joined by ', '."""
        idx = [self._pos[s] for s in steps]
        parts = []
        for a, b in P.runs(idx)[:_LIST_RUNS]:
            sa, sb = format_step(self.steps[a]), format_step(self.steps[b])
            parts.append(sa if a == b else f"{sa}–{sb}")
        if len(P.runs(idx)) > _LIST_RUNS:
            parts.append("…")
        return ", ".join(parts)

    @staticmethod
    def layers_text(layers: Sequence[int], word: bool = True) -> str:
        """'layers 1–4, 7' (or 'layer 5')."""
        rs = P.runs(layers)
        parts = [str(a) if a == b else f"{a}–{b}" for a, b in rs[:_LIST_RUNS]]
        if len(rs) > _LIST_RUNS:
            parts.append("…")
        body = ", ".join(parts)
        if not word:
            return body
        return ("layer " if len(layers) == 1 else "layers ") + body

    def step_range(self, lo: int, hi: int) -> str:
        return format_step(lo) if lo == hi else f"{format_step(lo)}–{format_step(hi)}"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, with a normal file mode; a pipe is written into.

    Raises NotFoundError when ``path`` is a folder or its folder does not exist.
    """
    from .._io import write_text_atomic as _write

    p = Path(path)
    if p.is_dir():
        raise NotFoundError(f"{str(p)!r} is a folder; pass a file name such as {str(p / 'report.md')!r}.")
    if not p.parent.exists():
        raise NotFoundError(f"folder {str(p.parent)!r} for {str(p)!r} does not exist; create it first.")
    return _write(p, text)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------


def report(heatmap: Heatmap, *, scale: str = "auto", thresholds: Thresholds | None = None) -> Report:
    """Analyse ``heatmap`` (steps x layers) and write it up.

    ``scale`` is ``"auto"`` (log10 when every value is positive and they span about three decades
    or more, else linear), ``"linear"`` or ``"log"``: levels and trends are judged on that scale.
    ``thresholds`` overrides the defaults in :mod:`layerscope.analysis.thresholds`.

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
        return Report(_Analysis(heatmap, scale, t).run(), heatmap)


class _Analysis:
    """One pass over one heatmap; builds the report dict. Private: use :func:`report`."""

    def __init__(self, hm: Heatmap, scale: str, t: Thresholds):
        self.hm, self.t = hm, t
        self.v = np.asarray(hm.values, dtype=np.float64)  # (S, L)
        self.steps = list(hm.steps)
        self.layers = list(hm.layers)
        self.S, self.L = self.v.shape
        fin = np.isfinite(self.v)
        if scale == "log" and fin.any() and float(self.v[fin].min()) <= 0:
            raise ConfigError(
                "a log scale needs positive values, but the smallest value is "
                f"{float(self.v[fin].min())!r}; use scale='linear' (--scale linear)."
            )
        self.scale = P.choose_scale(self.v, scale, t.log_ratio)
        # Linear values are analysed in units of the largest magnitude, so that nothing overflows
        # (a range of +-1e308 would); every number quoted is converted back with inv().
        big = float(np.abs(self.v[fin]).max()) if fin.any() else 0.0
        self.unit = big if self.scale == "linear" and big > 0 else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(fin, self.v, np.nan)
            self.a = np.log10(a) if self.scale == "log" else a / self.unit  # analysis scale
        self.sigma = P.noise_sigma(self.a)
        self.outliers = (
            P.find_outliers(self.a, t.outlier, t.outlier_noise_k, self.sigma)
            if self.a.size
            else np.zeros(self.v.shape, bool)
        )
        self.c = np.where(self.outliers, np.nan, self.a)
        self.cfin = np.isfinite(self.c)
        self.raw = np.where(self.cfin, self.v, np.nan)  # clean values, recorded units
        if self.cfin.any():
            self.lo, self.hi = float(self.c[self.cfin].min()), float(self.c[self.cfin].max())
        else:
            self.lo = self.hi = float("nan")
        self.R = self.hi - self.lo if self.cfin.any() else 0.0
        if self.R > 0:
            self.n = (self.c - self.lo) / self.R
        else:
            self.n = np.where(self.cfin, 0.5, np.nan)
        self.sigma_n = self.sigma / self.R if self.R > 0 else 0.0
        if self.R > 0 and self.cfin.sum() >= 3:
            var = float(np.var(self.c[self.cfin]))
            self.noise_share = min(1.0, self.sigma**2 / var) if var > 0 else 0.0
        else:
            self.noise_share = 0.0
        self.structured = self.R > 0 and self.noise_share < t.noise_share
        raw_clean = self.v[self.cfin]
        digits = P.significant_digits(float(raw_clean.min()), float(raw_clean.max())) if raw_clean.size else 3
        self.f = _Fmt(digits, self.steps)
        self.window = P.smoothing_window(self.S, t.smooth_frac)
        self.y = P.smooth_columns(self.n, self.window)
        sig_eff = self.sigma_n / math.sqrt(self.window)
        self.flat_thr = max(t.flat, t.flat_noise_k * sig_eff)
        self.leg_thr = max(t.leg, t.leg_noise_k * sig_eff)

    # -- helpers ------------------------------------------------------------------------------
    def inv(self, x: float) -> float:
        """Analysis scale -> recorded units."""
        return float(10.0**x) if self.scale == "log" else float(x) * self.unit

    def at_frac(self, frac: float) -> float:
        """The recorded value at ``frac`` of the way up the map's range."""
        return self.inv(self.lo + frac * self.R)

    def first_step_with_values(self) -> int | None:
        rows = np.flatnonzero(self.cfin.any(axis=1))
        return self.steps[rows[0]] if rows.size else None

    def cell_list(self, mask: np.ndarray) -> tuple[list[list[int]], bool]:
        ii, jj = np.nonzero(mask)  # row-major: step, then layer
        cells = [
            [self.steps[i], self.layers[j]] for i, j in zip(ii[: self.t.max_cells], jj[: self.t.max_cells])
        ]
        return cells, len(ii) > self.t.max_cells

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        f, hm = self.f, self.hm
        fin_all = np.isfinite(self.v)
        vmin = f.r(float(self.v[fin_all].min())) if fin_all.any() else None
        vmax = f.r(float(self.v[fin_all].max())) if fin_all.any() else None
        gaps = [b - a for a, b in zip(self.steps, self.steps[1:])]
        n_cells = self.S * self.L
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "metric": hm.metric,
            "site": hm.site,
            "run": hm.run,
            "layers": self.layers,
            "layer_names": list(hm.layer_names),
            "steps": self.steps,
            "value_min": vmin,
            "value_max": vmax,
            "range_min": f.r(self.inv(self.lo)) if self.cfin.any() else None,
            "range_max": f.r(self.inv(self.hi)) if self.cfin.any() else None,
            "scale": self.scale,
            "value_factor": (
                f.r(float(self.v[fin_all].max() / self.v[fin_all].min()))
                if self.scale == "log" and fin_all.any()
                else None
            ),
            "digits": f.digits,
            "n_steps": self.S,
            "n_layers": self.L,
            "n_cells": n_cells,
            "n_values": int(self.cfin.sum()),
            "n_missing": int(np.isnan(self.v).sum()),
            "n_infinite": int(np.isinf(self.v).sum()),
            "n_outliers": int(self.outliers.sum()),
            "step_interval": gaps[0] if gaps and all(g == gaps[0] for g in gaps) else None,
            "step_gap_min": min(gaps) if gaps else None,
            "step_gap_max": max(gaps) if gaps else None,
            "noise": {
                "sigma": P.round_sig(self.sigma * self.unit, 3),  # recorded units (decades on a log scale)
                "share_pct": f.pct(100 * self.noise_share),
                "structured": bool(self.structured),
                "smoothing_window": self.window,
            },
            "source": str(hm.meta.get("store") or hm.meta.get("path") or ""),  # the file it was read from
        }
        details = [self.layer_detail(j) for j in range(self.L)]
        d["layers_detail"] = [{k: v for k, v in x.items() if not k.startswith("_")} for x in details]
        obs = self.observations(details)
        d["observations"] = obs
        d["bands"] = self.bands(details)
        d["summary"] = self.summary(obs)
        d["interpretation"] = self.interpretation(obs, details, d)
        d["thresholds"] = self.t.to_dict()
        return d

    # -- per layer ----------------------------------------------------------------------------
    def layer_detail(self, j: int) -> dict[str, Any]:
        f, t = self.f, self.t
        idx = np.flatnonzero(self.cfin[:, j])
        base: dict[str, Any] = {"layer": self.layers[j], "name": self.hm.layer_names[j]}
        if idx.size == 0:
            base.update(
                trend=None,
                level=None,
                first=None,
                last=None,
                min=None,
                max=None,
                peak_step=None,
                plateau_from=None,
                first_step=None,
                last_step=None,
                min_step=None,
                n_values=0,
            )
            base["_nfirst"] = base["_nlast"] = base["_nmax"] = None
            return base
        raw = self.v[idx, j]
        med = float(np.median(self.n[idx, j]))
        if self.R > 0:
            level = "low" if med < t.level_low else "high" if med > t.level_high else "mid"
        else:
            level = "mid"
        pts = idx[P.trend_points(idx.size, t.trend_points)]  # rows the trend is judged at
        y = self.y[pts, j]
        trend = P.classify_trend(y, self.flat_thr, self.leg_thr, t.irregular_path)
        plateau = None
        if trend in ("rising", "rise_then_fall", "falling", "fall_then_rise"):
            k = P.plateau_start(
                y,
                t.plateau_tol,
                t.plateau_max_decline,
                t.plateau_min_tail,
                rising=trend in ("rising", "rise_then_fall"),
            )
            plateau = self.steps[pts[k]] if k is not None else None
        ipk, imn = int(np.argmax(raw)), int(np.argmin(raw))
        base.update(
            trend=trend,
            level=level,
            first=f.r(float(raw[0])),
            last=f.r(float(raw[-1])),
            min=f.r(float(raw[imn])),
            max=f.r(float(raw[ipk])),
            peak_step=self.steps[idx[ipk]],
            plateau_from=plateau,
            first_step=self.steps[idx[0]],
            last_step=self.steps[idx[-1]],
            min_step=self.steps[idx[imn]],
            n_values=int(idx.size),
        )
        base["_nfirst"] = float(self.n[idx[0], j])
        base["_nlast"] = float(self.n[idx[-1], j])
        base["_nmax"] = float(self.n[idx, j].max())
        return base

    # -- observations -------------------------------------------------------------------------
    def observations(self, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.structured:
            for fn in (self.obs_depth_gradient, self.obs_step_trend, self.obs_hotspot):
                o = fn(details)
                if o:
                    out.append(o)
        if self.R > 0:
            sudden = self.obs_sudden(details)
            # a layer that jumps up and then stays is described by the jump, not as saturating
            jumped = {
                (lay, e["step"])
                for o in sudden
                if o["direction"] == "increasing"
                for e in o["facts"]["events"]
                for lay in e["layers"]
            }
            for o in (
                self.obs_consistent(details, low=True),
                self.obs_consistent(details, low=False),
                self.obs_saturation(details, jumped),
            ):
                if o:
                    out.append(o)
            out.extend(sudden)
        for o in (self.obs_outliers(), self.obs_infinite(), self.obs_missing()):
            if o:
                out.append(o)
        return out

    @staticmethod
    def _obs(
        kind: str,
        layers: list[int],
        steps: list[int],
        direction: str | None,
        cells: list[list[int]],
        text: str,
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "layers": layers,
            "steps": steps,
            "direction": direction,
            "cells": cells,
            "text": text,
            "facts": facts,
        }

    def obs_depth_gradient(self, details: list[dict[str, Any]]) -> dict[str, Any] | None:
        t, f = self.t, self.f
        has = self.cfin.any(axis=0)
        if has.sum() < t.min_gradient_points:
            return None
        prof = P.nanmedian_axis(self.n[:, has], axis=0)
        direction = P.profile_direction(prof, t.gradient, t.monotone_tol)
        if direction is None:
            return None
        cols = np.flatnonzero(has)
        inc, dec = P.monotone_rows(self.n[:, has], t.gradient, t.monotone_tol)
        rows = np.flatnonzero(inc if direction == "increasing" else dec)
        steps = [self.steps[i] for i in rows]
        raw_med = P.nanmedian_axis(self.raw[:, cols[[0, -1]]], axis=0)
        a, b = self.layers[cols[0]], self.layers[cols[-1]]
        facts: dict[str, Any] = {
            "from_layer": a,
            "to_layer": b,
            "from_value": f.r(float(raw_med[0])),
            "to_value": f.r(float(raw_med[1])),
            "drawdown_pct": f.pct(100 * t.monotone_tol),
            "n_steps_holding": len(steps),
            "n_steps": int(self.cfin.any(axis=1).sum()),
        }
        verb = "increase" if direction == "increasing" else "decrease"
        move = "rises" if direction == "increasing" else "falls"
        text = (
            f"Values {verb} with depth: the median over steps {move} from {f.v(facts['from_value'])} "
            f"at layer {a} to {f.v(facts['to_value'])} at layer {b}, never moving back by more than "
            f"{f.p(facts['drawdown_pct'])} of the range between layers."
        )
        if steps:
            if len(steps) == facts["n_steps"]:
                text += f" Step by step, the profile {move} this way at every recorded step."
            else:
                text += (
                    f" Step by step, the profile {move} this way at {len(steps)} of {facts['n_steps']} "
                    f"steps ({f.steps_text(steps)})."
                )
        else:
            text += " No single step shows the whole profile this cleanly."
        return self._obs("depth_gradient", [self.layers[j] for j in cols], steps, direction, [], text, facts)

    def obs_step_trend(self, details: list[dict[str, Any]]) -> dict[str, Any] | None:
        t, f = self.t, self.f
        has = self.cfin.any(axis=1)
        if has.sum() < t.min_gradient_points:
            return None
        rows = np.flatnonzero(has)
        prof = P.nanmedian_axis(self.n[rows], axis=1)
        direction = P.profile_direction(prof, t.gradient, t.monotone_tol)
        if direction is None:
            return None
        sign = 1.0 if direction == "increasing" else -1.0
        follow = [
            x["layer"]
            for x in details
            if x["_nfirst"] is not None and sign * (x["_nlast"] - x["_nfirst"]) >= t.gradient
        ]
        raw_med = P.nanmedian_axis(self.raw[rows[[0, -1]]], axis=1)
        s0, s1 = self.steps[rows[0]], self.steps[rows[-1]]
        n_with = sum(1 for x in details if x["_nfirst"] is not None)
        facts: dict[str, Any] = {
            "from_step": s0,
            "to_step": s1,
            "from_value": f.r(float(raw_med[0])),
            "to_value": f.r(float(raw_med[1])),
            "n_layers_following": len(follow),
            "n_layers": n_with,
            "change_pct": f.pct(100 * t.gradient),
        }
        verb, word = ("increase", "higher") if direction == "increasing" else ("decrease", "lower")
        move = "rises" if direction == "increasing" else "falls"
        text = (
            f"Values {verb} over training: the median across layers {move} from "
            f"{f.v(facts['from_value'])} at {format_step(s0)} to {f.v(facts['to_value'])} at "
            f"{format_step(s1)}"
        )
        if follow and len(follow) == n_with and n_with > 1:
            text += (
                f"; all {n_with} layers end at least {f.p(facts['change_pct'])} of the range {word} "
                "than they start."
            )
        elif follow:
            text += (
                f"; {len(follow)} of {n_with} {'layer' if n_with == 1 else 'layers'} "
                f"({f.layers_text(follow, word=False)}) end at least {f.p(facts['change_pct'])} of the "
                f"range {word} than they start."
            )
        else:
            text += "; no single layer changes that much from its first to its last step."
        return self._obs("step_trend", follow, [self.steps[i] for i in rows], direction, [], text, facts)

    def obs_hotspot(self, details: list[dict[str, Any]]) -> dict[str, Any] | None:
        t, f = self.t, self.f
        with np.errstate(invalid="ignore"):
            hot = self.cfin & (self.n >= t.hotspot)
        if not hot.any():
            return None
        ii, jj = np.nonzero(hot)
        layers = sorted({self.layers[j] for j in jj})
        steps = sorted({self.steps[i] for i in ii})
        flat = np.where(self.cfin, self.c, -np.inf)
        i_max, j_max = np.unravel_index(int(np.argmax(flat)), flat.shape)
        facts: dict[str, Any] = {
            "threshold": f.r(self.at_frac(t.hotspot)),
            "top_pct": f.pct(100 * (1 - t.hotspot)),
            "n_cells": int(hot.sum()),
            "cells_pct": f.pct(100 * hot.sum() / max(1, self.cfin.sum())),
            "max": f.r(float(self.v[i_max, j_max])),
            "max_step": self.steps[i_max],
            "max_layer": self.layers[j_max],
        }
        text = (
            f"The highest values (at or above {f.v(facts['threshold'])}, the top "
            f"{f.p(facts['top_pct'])} of the range) are in {f.layers_text(layers)} at "
            f"{'step' if len(steps) == 1 else 'steps'} {f.steps_text(steps)} ({facts['n_cells']} "
            f"cells, {f.p(facts['cells_pct'])} of those with a value); the maximum, "
            f"{f.v(facts['max'])}, is at layer {facts['max_layer']}, step "
            f"{format_step(facts['max_step'])}."
        )
        return self._obs("hotspot", layers, steps, None, [], text, facts)

    def obs_consistent(self, details: list[dict[str, Any]], low: bool) -> dict[str, Any] | None:
        t, f = self.t, self.f
        has = self.cfin.any(axis=0)
        with np.errstate(invalid="ignore"):
            if low:
                ok = np.where(self.cfin, self.n <= t.consistent_low, True).all(axis=0) & has
            else:
                ok = np.where(self.cfin, self.n >= t.consistent_high, True).all(axis=0) & has
        if not ok.any() or ok.sum() == has.sum():
            return None  # nothing stands apart if every layer is in it
        cols = np.flatnonzero(ok)
        layers = [self.layers[j] for j in cols]
        vals = self.raw[:, cols]
        frac = t.consistent_low if low else t.consistent_high
        facts: dict[str, Any] = {
            "bound": f.r(self.at_frac(frac)),
            "pct": f.pct(100 * (frac if low else 1 - frac)),
            "min": f.r(float(np.nanmin(vals))),
            "max": f.r(float(np.nanmax(vals))),
        }
        # how much these layers still move on their own scale (the shared colour scale hides it)
        best = None
        for j in cols:
            col = self.raw[self.cfin[:, j], j]
            if col.min() > 0:
                fac = float(col.max() / col.min())
                if best is None or fac > best[0]:
                    best = (fac, j, float(col.min()), float(col.max()))
        if best is not None:
            facts.update(
                own_factor=f.r(best[0]),
                own_layer=self.layers[best[1]],
                own_min=f.r(best[2]),
                own_max=f.r(best[3]),
            )
        where = "bottom" if low else "top"
        cmp = "at or below" if low else "at or above"
        text = (
            f"{_cap(f.layers_text(layers))} {'stays' if len(layers) == 1 else 'stay'} in the {where} "
            f"{f.p(facts['pct'])} of the range ({cmp} {f.v(facts['bound'])}) at every recorded step, "
            f"with values between {f.between(facts['min'], facts['max'])}."
        )
        return self._obs(
            "consistently_low" if low else "consistently_high",
            layers,
            sorted({self.steps[i] for i in np.flatnonzero(self.cfin[:, cols].any(axis=1))}),
            None,
            [],
            text,
            facts,
        )

    def obs_saturation(
        self, details: list[dict[str, Any]], jumped: set[tuple[int, int]]
    ) -> dict[str, Any] | None:
        t, f = self.t, self.f
        sat = [
            x
            for x in details
            if x["plateau_from"] is not None
            and x["trend"] in ("rising", "rise_then_fall")
            and (x["layer"], x["plateau_from"]) not in jumped
        ]
        if not sat:
            return None
        layers = [x["layer"] for x in sat]
        steps = sorted({x["plateau_from"] for x in sat})
        declines = [max(0.0, x["max"] - x["last"]) for x in sat]
        facts: dict[str, Any] = {
            "tol_pct": f.pct(100 * t.plateau_tol),
            "from_min": steps[0],
            "from_max": steps[-1],
            "peak_min": min(x["max"] for x in sat),
            "peak_max": max(x["max"] for x in sat),
            "decline_max": f.r(max(declines)),
            "decline_pct_max": f.pct(100 * t.plateau_max_decline),
        }
        one = len(layers) == 1
        text = (
            f"{_cap(f.layers_text(layers))} {'levels' if one else 'level'} off: from "
            f"{f.step_range(steps[0], steps[-1])} on, {'it stays' if one else 'each stays'} within "
            f"{f.p(facts['tol_pct'])} of its rise below its peak "
            f"({f.vrange(facts['peak_min'], facts['peak_max'])})"
        )
        declining = max(x["_nmax"] - x["_nlast"] for x in sat) >= self.leg_thr
        facts["declining"] = bool(declining)
        if declining:
            drop = f.v(facts["decline_max"])
            text += f", then declines slightly: the last value is up to {drop} below the peak."
        elif facts["decline_max"]:
            text += f", ending within {f.v(facts['decline_max'])} of it."
        else:
            text += ", ending at it."
        return self._obs("saturation", layers, steps, None, [], text, facts)

    def obs_sudden(self, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t, f = self.t, self.f
        n_with = int(self.cfin.any(axis=0).sum())
        if n_with == 0:
            return []
        min_layers = min(t.jump_min_layers, n_with)
        floor = t.jump_noise_k * self.sigma_n * math.sqrt(2.0)
        events = P.jump_events(self.n, t.jump, t.jump_ratio, floor, min_layers)
        out = []
        for direction in ("increasing", "decreasing"):
            evs = [e for e in events if e[1] == direction]
            if not evs:
                continue
            facts_events: list[dict[str, Any]] = []
            all_layers: set[int] = set()
            for i, _, cols, _ in evs:
                ch = self.v[i, cols] - self.v[i - 1, cols]
                lay = [self.layers[j] for j in cols]
                all_layers.update(lay)
                facts_events.append(
                    {
                        "step_before": self.steps[i - 1],
                        "step": self.steps[i],
                        "layers": lay,
                        "n_layers": len(lay),
                        "change_min": f.r(float(np.min(np.abs(ch)))),
                        "change_max": f.r(float(np.max(np.abs(ch)))),
                    }
                )
            ranked = sorted(facts_events, key=lambda e: (-e["n_layers"], e["step"]))[:_LIST_EVENTS]
            ranked.sort(key=lambda e: e["step"])
            word = "up" if direction == "increasing" else "down"
            parts = [
                f"between {format_step(e['step_before'])} and {format_step(e['step'])} in "
                f"{f.layers_text(e['layers'])} (by {f.vrange(e['change_min'], e['change_max'])})"
                for e in ranked
            ]
            facts: dict[str, Any] = {
                "n_events": len(evs),
                "events": facts_events,
                "jump_pct": f.pct(100 * t.jump),
            }
            where = "" if n_with == 1 else " in several layers at once"
            times = "" if len(evs) == 1 else f", at {len(evs)} points"
            text = (
                f"Values jump {word} by at least {f.p(facts['jump_pct'])} of the range between "
                f"consecutive steps{where}{times}: "
                + "; ".join(parts)
                + ("; …" if len(evs) > len(ranked) else "")
                + "."
            )
            out.append(
                self._obs(
                    "sudden_change",
                    sorted(all_layers),
                    [e["step"] for e in facts_events],
                    direction,
                    [],
                    text,
                    facts,
                )
            )
        return out

    def obs_outliers(self) -> dict[str, Any] | None:
        if not self.outliers.any():
            return None
        f, t = self.f, self.t
        cells, truncated = self.cell_list(self.outliers)
        ii, jj = np.nonzero(self.outliers)
        values = [f.r(float(self.v[i, j])) for i, j in zip(ii[: t.max_cells], jj[: t.max_cells])]
        n = int(self.outliers.sum())
        facts: dict[str, Any] = {
            "n_cells": n,
            "values": values,
            "margin_pct": f.pct(100 * t.outlier),
            "truncated": truncated,
        }
        listed = ", ".join(
            f"layer {c[1]} at {format_step(c[0])} ({f.v(val)})" for c, val in zip(cells[:_LIST_CELLS], values)
        )
        text = (
            f"{n} isolated {'cell stands' if n == 1 else 'cells stand'} out from "
            f"{'its' if n == 1 else 'their'} neighbours by at least {f.p(facts['margin_pct'])} of the "
            f"range: {listed}{', …' if n > _LIST_CELLS else ''}. Levels, trends and per-layer values "
            f"leave {'it' if n == 1 else 'them'} out."
        )
        return self._obs(
            "outlier", sorted({c[1] for c in cells}), sorted({c[0] for c in cells}), None, cells, text, facts
        )

    def obs_infinite(self) -> dict[str, Any] | None:
        inf = np.isinf(self.v)
        if not inf.any():
            return None
        cells, truncated = self.cell_list(inf)
        n = int(inf.sum())
        n_pos = int(np.isposinf(self.v).sum())
        facts: dict[str, Any] = {
            "n_cells": n,
            "n_pos": n_pos,
            "n_neg": n - n_pos,
            "truncated": truncated,
            "infinite": True,
        }
        ii, jj = np.nonzero(inf)
        listed = ", ".join(
            f"layer {self.layers[j]} at {format_step(self.steps[i])} "
            f"({'+inf' if self.v[i, j] > 0 else '-inf'})"
            for i, j in list(zip(ii, jj))[:_LIST_CELLS]
        )
        text = (
            f"{n} {'cell holds an infinite value' if n == 1 else 'cells hold infinite values'}: "
            f"{listed}{', …' if n > _LIST_CELLS else ''}. They are left out of every range, level and "
            "trend."
        )
        return self._obs(
            "outlier", sorted({c[1] for c in cells}), sorted({c[0] for c in cells}), None, cells, text, facts
        )

    def obs_missing(self) -> dict[str, Any] | None:
        miss = np.isnan(self.v)
        if not miss.any():
            return None
        f = self.f
        cells, truncated = self.cell_list(miss)
        n = int(miss.sum())
        full_layers = [self.layers[j] for j in np.flatnonzero(miss.all(axis=0))] if self.S else []
        full_steps = [self.steps[i] for i in np.flatnonzero(miss.all(axis=1))] if self.L else []
        rest = miss.copy()
        if full_layers:
            rest[:, miss.all(axis=0)] = False
        if full_steps:
            rest[miss.all(axis=1), :] = False
        n_rest = int(rest.sum())
        facts: dict[str, Any] = {
            "n_cells": n,
            "n_total": self.S * self.L,
            "pct": f.pct(100 * n / (self.S * self.L)),
            "full_layers": full_layers,
            "full_steps": full_steps,
            "n_scattered": n_rest,
            "truncated": truncated,
        }
        parts = []
        if full_layers:
            parts.append(
                f"{f.layers_text(full_layers)} {'has' if len(full_layers) == 1 else 'have'} no value at all"
            )
        if full_steps:
            parts.append(
                f"{'step' if len(full_steps) == 1 else 'steps'} {f.steps_text(full_steps)} "
                f"{'has' if len(full_steps) == 1 else 'have'} no value in any layer"
            )
        if n_rest:
            ri, rj = np.nonzero(rest)
            eg = ", ".join(
                f"layer {self.layers[j]} at {format_step(self.steps[i])}" for i, j in list(zip(ri, rj))[:3]
            )
            parts.append(
                f"{'the other ' if parts else ''}{n_rest} {'is' if n_rest == 1 else 'are'} scattered "
                f"({eg}{', …' if n_rest > 3 else ''})"
            )
        text = (
            f"{n} of {facts['n_total']} cells ({f.p(facts['pct'])}) have no value: "
            + "; ".join(parts)
            + ". They are not filled in; every statement above uses recorded values only."
        )
        layers = sorted({c[1] for c in cells})
        steps = sorted({c[0] for c in cells})
        return self._obs("missing_values", layers, steps, None, cells, text, facts)

    # -- bands --------------------------------------------------------------------------------
    def bands(self, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t = self.t
        keys = [(x["trend"], x["level"], x["plateau_from"] is not None) for x in details]
        groups: list[list[int]] = []
        # on a map dominated by noise, differences between layers' series are noise too
        tols = (
            (t.band_tol, 2 * t.band_tol, 4 * t.band_tol, math.inf)
            if self.structured or self.R == 0
            else (math.inf,)
        )
        for tol in tols:
            groups = P.group_bands(keys, self.y, tol)
            if len(groups) <= t.max_bands:
                break
        if len(groups) > t.max_bands:  # still too many: equal chunks of adjacent layers, described as mixed
            size = math.ceil(self.L / t.max_bands)
            groups = [list(range(i, min(self.L, i + size))) for i in range(0, self.L, size)]
        return [self.band(details, g) for g in groups]

    def band(self, details: list[dict[str, Any]], cols: list[int]) -> dict[str, Any]:
        f = self.f
        xs = [details[j] for j in cols]
        layers = [x["layer"] for x in xs]
        trends = sorted({str(x["trend"]) for x in xs})
        levels = sorted({str(x["level"]) for x in xs})
        mixed = len(trends) > 1 or len(levels) > 1
        b: dict[str, Any] = {
            "layers": layers,
            "trend": xs[0]["trend"] if not mixed else "mixed",
            "level": xs[0]["level"] if not mixed else "mixed",
        }
        with_vals = [x for x in xs if x["n_values"]]
        if not with_vals:
            b["text"] = f"**{_cap(f.layers_text(layers))}**: no recorded values."
            return b

        def span(key: str) -> list[Any]:
            vals = [x[key] for x in with_vals]
            return [min(vals), max(vals)]

        b.update(
            min=min(x["min"] for x in with_vals),
            max=max(x["max"] for x in with_vals),
            first=span("first"),
            last=span("last"),
            first_step=span("first_step"),
            last_step=span("last_step"),
            peak=span("max"),
            peak_step=span("peak_step"),
            low=span("min"),
            low_step=span("min_step"),
        )
        plats = [x["plateau_from"] for x in with_vals if x["plateau_from"] is not None]
        b["plateau_from"] = [min(plats), max(plats)] if plats else None
        if mixed:
            counts: dict[str, int] = {}
            for x in xs:
                counts[TREND_WORDS[x["trend"]]] = counts.get(TREND_WORDS[x["trend"]], 0) + 1
            b["trend_counts"] = counts
        b["text"] = self.band_text(b, with_vals)
        return b

    def band_text(self, b: dict[str, Any], xs: list[dict[str, Any]]) -> str:
        """One bullet for a band: '**Layers 1–4** (flat, low): between a and b throughout (...)'."""
        f = self.f
        one = len(b["layers"]) == 1
        name = f"**{_cap(f.layers_text(b['layers']))}**"

        def at(rng_v: list[float], rng_s: list[int]) -> str:
            return f"{f.vrange(*rng_v)} at {f.step_range(*rng_s)}"

        if b["trend"] == "mixed":
            counts = ", ".join(
                f"{k} {w}" for w, k in sorted(b["trend_counts"].items(), key=lambda kv: -kv[1])
            )
            return (
                f"{name} (mixed: {counts}): values between {f.between(b['min'], b['max'])}; highest "
                f"{at(b['peak'], b['peak_step'])}."
            )
        tr, lvl = b["trend"], b["level"]
        head = f"{name} ({TREND_WORDS[tr]}, {lvl})"
        first, last = at(b["first"], b["first_step"]), at(b["last"], b["last_step"])
        if self.S == 1 or all(x["n_values"] == 1 for x in xs):
            return f"{name} ({lvl}): a single recorded value{'' if one else ' each'}, {first}."
        if tr == "flat" and f.v(b["min"]) == f.v(b["max"]):
            body = f"{f.v(b['min'])} throughout"
        elif tr == "flat":
            body = f"between {f.between(b['min'], b['max'])} throughout (first {first}, last {last})"
        elif tr == "rising":
            body = f"from {first} to {last}"
            if b["peak_step"][1] < b["last_step"][0]:
                body += f"; highest {at(b['peak'], b['peak_step'])}"
        elif tr == "falling":
            body = f"from {first} to {last}"
            if b["low_step"][1] < b["last_step"][0]:
                body += f"; lowest {at(b['low'], b['low_step'])}"
        elif tr == "rise_then_fall":
            body = f"from {first} up to a peak of {at(b['peak'], b['peak_step'])}, then down to {last}"
        elif tr == "fall_then_rise":
            body = f"from {first} down to a low of {at(b['low'], b['low_step'])}, then up to {last}"
        else:
            body = (
                f"between {f.between(b['min'], b['max'])}; highest {at(b['peak'], b['peak_step'])}, "
                f"lowest {at(b['low'], b['low_step'])}"
            )
        if b["plateau_from"]:
            near = "peak" if tr in ("rising", "rise_then_fall") else "low"
            who = "stays near its" if one else "stay near their"
            body += f"; {who} {near} from {f.step_range(*b['plateau_from'])} on"
        return f"{head}: {body}."

    # -- summary and interpretation -------------------------------------------------------------
    def summary(self, obs: list[dict[str, Any]]) -> str:
        f = self.f
        if self.S == 0 or self.L == 0:
            return "The heatmap is empty."
        if not self.cfin.any():
            return "No cell holds a finite value."
        if self.R == 0:
            return "The map is flat: there is no trend, gradient or hotspot to describe."
        kinds = {o["kind"]: o for o in obs}
        parts = []
        dg, st = kinds.get("depth_gradient"), kinds.get("step_trend")
        if dg and st:
            verb = "increase" if dg["direction"] == "increasing" else "decrease"
            if dg["direction"] == st["direction"]:
                parts.append(f"values {verb} with depth and over training")
            else:
                other = "increase" if st["direction"] == "increasing" else "decrease"
                parts.append(f"values {verb} with depth and {other} over training")
        elif dg:
            parts.append(f"values {'increase' if dg['direction'] == 'increasing' else 'decrease'} with depth")
        elif st:
            parts.append(
                f"values {'increase' if st['direction'] == 'increasing' else 'decrease'} over training"
            )
        if "hotspot" in kinds:
            h = kinds["hotspot"]
            parts.append(
                f"the highest values are in {f.layers_text(h['layers'])} at {f.steps_text(h['steps'])}"
            )
        if "consistently_low" in kinds:
            lays = kinds["consistently_low"]["layers"]
            parts.append(f"{f.layers_text(lays)} {'stays' if len(lays) == 1 else 'stay'} low throughout")
        if "saturation" in kinds:
            sat = kinds["saturation"]
            when = f.step_range(sat["steps"][0], sat["steps"][-1])
            verb = "levels" if len(sat["layers"]) == 1 else "level"
            parts.append(f"{f.layers_text(sat['layers'])} {verb} off from {when}")
        jumps = [o for o in obs if o["kind"] == "sudden_change"]
        if jumps:
            said = [
                f"jump {'up' if o['direction'] == 'increasing' else 'down'} at "
                + ", ".join(format_step(x) for x in o["steps"][:_LIST_EVENTS])
                for o in sorted(jumps, key=lambda o: o["steps"][0])
            ]
            parts.append("values " + " and ".join(said))
        if not self.structured:
            parts.append("most of the variation is cell-to-cell noise")
        if not parts:
            return "No pattern stands out at the thresholds used."
        return _cap("; ".join(parts)) + "."

    def interpretation(
        self, obs: list[dict[str, Any]], details: list[dict[str, Any]], d: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Hedged readings, each resting on one observation (1-based index) or on a map-wide fact."""
        f = self.f
        m = f"`{self.hm.metric}`"
        out: list[dict[str, Any]] = []

        def add(i: int | None, text: str) -> None:
            out.append({"observation": None if i is None else i + 1, "text": text})

        if self.S == 0 or self.L == 0 or not self.cfin.any():
            add(None, "There are no values to interpret.")
            return out
        if self.R == 0:
            add(
                None,
                f"A constant {m} gives nothing to interpret; it may be worth checking that it was recorded.",
            )
            return out
        if not self.structured:
            share = f.p(d["noise"]["share_pct"])
            add(
                None,
                (
                    f"Cell-to-cell noise accounts for about {share} of the variance, so the map may "
                    "not show real structure at this resolution; more steps, or a less noisy "
                    "statistic, may help."
                ),
            )
        if self.S == 1:
            add(None, "With a single recorded step, nothing can be said about change over training.")
        for i, o in enumerate(obs):
            k, fa = o["kind"], o["facts"]
            lays = f.layers_text(o["layers"])
            if k == "depth_gradient" and o["direction"] == "increasing":
                text = (
                    f"The rise of {m} with depth (median {f.v(fa['from_value'])} at layer "
                    f"{fa['from_layer']}, {f.v(fa['to_value'])} at layer {fa['to_layer']}) "
                )
                if self.hm.site == "output":
                    text += "is consistent with each block adding to a residual stream that grows with depth"
                else:
                    text += f"may indicate that deeper layers carry larger {m}"
                add(i, text + "; it does not by itself say which layers matter more for the model's output.")
            elif k == "depth_gradient":
                add(
                    i,
                    (
                        f"The fall of {m} with depth (median {f.v(fa['from_value'])} at layer "
                        f"{fa['from_layer']}, {f.v(fa['to_value'])} at layer {fa['to_layer']}) may "
                        "indicate that the shallower layers dominate this statistic; it does not by "
                        "itself say which layers matter more."
                    ),
                )
            elif k == "step_trend":
                verb = "grows" if o["direction"] == "increasing" else "shrinks"
                add(
                    i,
                    (
                        f"Since {m} {verb} over training in {fa['n_layers_following']} of "
                        f"{fa['n_layers']} layers, the network's internal scale may still be changing "
                        "as it learns; comparing with the loss and the learning-rate schedule would "
                        "show whether the change tracks learning."
                    ),
                )
            elif k == "hotspot":
                name = self.hm.metric.lower()
                text = f"The largest {m} values sit in {lays} at {f.steps_text(o['steps'])}"
                if "kurt" in name:
                    text += (
                        "; high kurtosis means heavy-tailed activations, so these layers and steps may hold "
                        "outlier features, which a max_abs statistic would confirm."
                    )
                elif "max" in name:
                    text += (
                        "; these may be outlier features or activation spikes, and kurtosis would tell "
                        "whether a few extreme units or a broad rise in scale drives them."
                    )
                else:
                    text += (
                        f"; if {m} measures activation scale, these layers and steps may be the first to "
                        "inspect for instability (overflow, outlier features), for example with a max_abs "
                        "or kurtosis statistic."
                    )
                add(i, text)
            elif k == "consistently_low":
                one = len(o["layers"]) == 1
                they, their = ("it is", "its") if one else ("they are", "their")
                text = (
                    f"{_cap(lays)} staying near the bottom of the shared colour scale need not mean {they} "
                    "inactive"
                )
                if fa.get("own_factor") is not None and fa["own_factor"] >= 2:
                    other = "a per-layer" if self.scale == "log" else "a per-layer or log"
                    varies = "it still varies" if one else "they still vary"
                    text += (
                        f": on {their} own scale {varies} by a factor of up to {f.v(fa['own_factor'])} "
                        f"(layer {fa['own_layer']}: {f.vrange(fa['own_min'], fa['own_max'])}), which {other} "
                        "colour scale would show"
                    )
                else:
                    text += f"; {their} {m} may simply be small next to the other layers'"
                add(i, text + ".")
            elif k == "consistently_high":
                one = len(o["layers"]) == 1
                add(
                    i,
                    (
                        f"{_cap(lays)} {'holds' if one else 'hold'} high {m} from the first recorded step "
                        f"on, so {'its' if one else 'their'} level may come from initialisation or from "
                        "training before the first recorded step rather than from the recorded part of "
                        "training."
                    ),
                )
            elif k == "saturation":
                when = f.step_range(fa["from_min"], fa["from_max"])
                add(
                    i,
                    (
                        f"{_cap(lays)} levelling off from {when} is consistent with their {m} having "
                        "converged, or with a learning-rate decay around then; a plateau in one "
                        "statistic is not evidence that the loss has converged."
                    ),
                )
            elif k == "sudden_change":
                ev = sorted(fa["events"], key=lambda e: (-e["n_layers"], e["step"]))[0]
                who = f" in {ev['n_layers']} layers at once" if ev["n_layers"] > 1 else ""
                span = f"between {format_step(ev['step_before'])} and {format_step(ev['step'])}"
                if ev["step_before"] == self.first_step_with_values():
                    text = (
                        f"A jump{who} {span}, right after the first recorded step, is common early in "
                        "training, when weights move fast away from their initialisation; it need not "
                        "indicate a change of setup."
                    )
                else:
                    text = (
                        f"A jump{who} {span} may reflect a change in the training setup at that point "
                        "(learning-rate schedule, data, a resumed checkpoint, precision) or a fast "
                        "transition in what these layers compute; checking the run's configuration at that "
                        "step would tell them apart."
                    )
                add(i, text)
            elif k == "outlier" and fa.get("infinite"):
                add(
                    i,
                    (
                        "Infinite values may indicate an overflow (for example in reduced precision) "
                        "at those steps; they are not part of any trend above."
                    ),
                )
            elif k == "outlier":
                add(
                    i,
                    (
                        "Isolated extreme cells may be logging or numerical glitches rather than "
                        "dynamics, since their neighbours do not share them; they were set aside "
                        "before judging levels and trends."
                    ),
                )
            elif k == "missing_values":
                add(
                    i,
                    (
                        f"With {fa['n_cells']} of {fa['n_total']} cells missing, statements about the "
                        "layers or steps with gaps rest on fewer values and are less certain."
                    ),
                )
        if not out:
            add(
                None,
                (
                    "No pattern stood out at the thresholds used, so there is nothing to interpret "
                    "beyond the per-layer description."
                ),
            )
        return out


# --------------------------------------------------------------------------------------------
# Markdown (a pure layout of the dict)
# --------------------------------------------------------------------------------------------


def _render_markdown(d: dict[str, Any]) -> str:
    f = _Fmt(d["digits"], d["steps"])
    m = f"`{d['metric']}`"
    lines: list[str] = [f"# {m} across layers and training steps", ""]
    src = f"run `{d['run']}`" if d["run"] else (f"`{d['source']}`" if d["source"] else "an unnamed run")
    lines += ["## Overview", ""]
    if d["n_steps"] == 0 or d["n_layers"] == 0:
        lines += [
            f"The heatmap of {m} (site `{d['site']}`, {src}) is empty: {d['n_steps']} steps x "
            f"{d['n_layers']} layers. There is nothing to analyse.",
            "",
        ]
        return "\n".join(lines)
    steps = d["steps"]
    step_span = f.step_range(steps[0], steps[-1])
    ov = (
        f"The heatmap plots {m} (site `{d['site']}`, {src}) for {d['n_layers']} "
        f"{'layer' if d['n_layers'] == 1 else 'layers'} (x axis) against {d['n_steps']} training "
        f"{'step' if d['n_steps'] == 1 else 'steps'} ({step_span}, y axis); colour is the value."
    )
    if d["value_min"] is None:
        ov += f" None of the {d['n_cells']} cells holds a finite value."
    elif d["value_min"] == d["value_max"]:
        ov += f" Every finite cell holds {f.v(d['value_min'])}."
    else:
        ov += f" Values range from {f.v(d['value_min'])} to {f.v(d['value_max'])}"
        ov += " (judged on a log scale)." if d["scale"] == "log" else "."
    lines += [ov, "", d["summary"], ""]

    lines += ["## Components/Axes", ""]
    layers = d["layers"]
    if d["n_layers"] == 1:
        xl = f"- **X axis, Layer:** 1 layer, number {layers[0]}"
    else:
        xl = (
            f"- **X axis, Layer:** {d['n_layers']} layers, numbered by depth "
            f"{f.layers_text(layers, word=False)} (lower numbers are nearer the input)"
        )
    names = d["layer_names"]
    if names and [str(x) for x in layers] != list(names):
        xl += f"; names `{names[0]}`" + (f" … `{names[-1]}`" if len(names) > 1 else "")
    lines.append(xl + ".")
    yl = f"- **Y axis, Steps:** {d['n_steps']} recorded {'step' if d['n_steps'] == 1 else 'steps'}"
    yl += f", {step_span}"
    if d["step_interval"] is not None:
        yl += f", every {format_step(d['step_interval'])}"
    elif d["step_gap_min"] is not None:
        gap_lo, gap_hi = format_step(d["step_gap_min"]), format_step(d["step_gap_max"])
        yl += f", at irregular intervals ({gap_lo} to {gap_hi} apart)"
    lines.append(yl + ".")
    if d["value_min"] is not None and d["value_min"] == d["value_max"]:
        lines.append(f"- **Colour, {m}:** a single value, {f.v(d['value_min'])}.")
    elif d["value_min"] is not None:
        lo_hi = f"{f.v(d['value_min'])} (lowest) to {f.v(d['value_max'])} (highest)"
        cl = f"- **Colour, {m}:** values from {lo_hi}"
        if d["scale"] == "log":
            span = (
                f"span a factor of {f.v(d['value_factor'])}"
                if d["value_factor"] is not None
                else "span decades"
            )
            cl += (
                f"; they {span}, so this report judges levels and trends on a log scale (log10 of the "
                "values; `layerscope plot --log` draws the matching heatmap)"
            )
        else:
            cl += ", judged on a linear scale"
        if d["n_outliers"]:
            cl += (
                f"; without the outliers the range is {f.vrange(d['range_min'], d['range_max'])}, and "
                "levels and trends are relative to that"
            )
        lines.append(cl + ".")
    cells = f"- **Cells:** {d['n_cells']} ({d['n_layers']} x {d['n_steps']})"
    extra = []
    if d["n_missing"]:
        extra.append(f"{d['n_missing']} without a value")
    if d["n_infinite"]:
        extra.append(f"{d['n_infinite']} infinite")
    if d["n_outliers"]:
        extra.append(f"{d['n_outliers']} isolated {'outlier' if d['n_outliers'] == 1 else 'outliers'}")
    if extra:
        cells += ", of which " + ", ".join(extra)
    lines += [cells + ".", ""]
    lines.append(
        "Levels (low, mid, high) are thirds of the map's range; trends and observations are judged "
        "relative to the same range (the thresholds are in the JSON report under `thresholds`)."
    )
    lines.append("")

    lines += ["## Detailed analysis", ""]
    if d["value_min"] is None:
        lines += ["No layer has a finite value.", ""]
    else:
        lines += [f"- {b['text']}" for b in d["bands"]]
        lines.append("")

    lines += ["## Key observations", ""]
    if d["observations"]:
        lines += [f"{i}. {o['text']}" for i, o in enumerate(d["observations"], 1)]
    else:
        lines.append("No observation passes the thresholds.")
    if d["value_min"] is not None and not d["noise"]["structured"] and d["value_min"] != d["value_max"]:
        lines += [
            "",
            f"Cell-to-cell noise accounts for about {f.p(d['noise']['share_pct'])} of the variance of "
            "the map.",
        ]
    lines.append("")

    lines += ["## Interpretation", ""]
    for it in d["interpretation"]:
        text = it["text"]
        if it["observation"]:
            text = f"{text.rstrip('.')} (observation {it['observation']})."
        lines.append(f"- {text}")
    lines += [
        "",
        "These readings are hypotheses suggested by the numbers above, not conclusions; each names "
        "the observation it rests on.",
        "",
    ]
    return "\n".join(lines)
