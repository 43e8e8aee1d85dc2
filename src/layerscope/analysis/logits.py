"""The output-logits section of a report on site ``logits``: one series per step for the whole model
(the LM head's output), so no layer axis; how its max logit, log Z and entropy move over training.

Per metric: the first and last values (medians of the first and last ``k`` recorded values, as
for heads, :func:`.heads.ends_count`), their change and factor (last / first, where both are
positive), the lowest and highest value and their steps, and a trend word: ``rising`` or
``falling`` when last and first differ by more than :data:`TREND_TOL` of the larger of the two
in size, else ``flat``.

>>> import numpy as np
>>> from layerscope.analysis.text import Fmt
>>> steps = list(range(10, 110, 10))
>>> d = logits_section({"log_z": np.linspace(5.0, 9.0, 10)}, steps, Fmt(3, steps), 4, "lm_head")
>>> s = d["series"][0]
>>> (s["metric"], s["trend"], s["first"], s["last"])
('log_z', 'rising', 5.44, 8.56)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._format import format_step
from .heads import ends_count
from .text import Fmt, code
from .vocabulary import phrase

LOGITS_METRICS = ("max_logit", "log_z", "entropy")
TREND_TOL = 0.1  # a change of more than a tenth of the values' size is a trend
WHAT = {
    "max_logit": "the largest output logit",
    "log_z": "the mean log-partition function, logsumexp of the logits, which z-loss penalises",
    "entropy": "the mean entropy of the output distribution, in nats",
}


def _one(metric: str, values: np.ndarray, steps: Sequence[int], f: Fmt) -> dict[str, Any] | None:
    ok = np.isfinite(values)
    if not ok.any():
        return None
    v = values[ok]
    at = [s for s, good in zip(steps, ok) if good]
    k = ends_count(len(v))
    first, last = float(np.median(v[:k])), float(np.median(v[-k:]))
    size = max(abs(first), abs(last))
    change = last - first
    trend = (
        "flat" if size == 0 or abs(change) <= TREND_TOL * size else ("rising" if change > 0 else "falling")
    )
    lo, hi = int(np.argmin(v)), int(np.argmax(v))
    return {
        "metric": metric,
        "n_values": int(ok.sum()),
        "n_nonfinite": int((~ok & ~np.isnan(values)).sum()),
        "k": k,
        "first": f.r(first),
        "last": f.r(last),
        "change": f.r(change),
        "factor": f.r(last / first) if first > 0 and last > 0 else None,
        "trend": trend,
        "min": f.r(float(v[lo])),
        "min_step": at[lo],
        "max": f.r(float(v[hi])),
        "max_step": at[hi],
    }


def logits_section(
    series: Mapping[str, np.ndarray],
    steps: Sequence[int],
    f: Fmt,
    layer: int | None,
    layer_name: str,
) -> dict[str, Any]:
    """The ``logits`` dict of a report: one entry per metric of ``series`` (``max_logit``, ``log_z``,
    ``entropy`` first, then any other), and the sentences in ``text``."""
    order = [m for m in LOGITS_METRICS if m in series] + sorted(m for m in series if m not in LOGITS_METRICS)
    items = [x for x in (_one(m, np.asarray(series[m], dtype=np.float64), steps, f) for m in order) if x]
    d: dict[str, Any] = {
        "layer": layer,
        "layer_name": layer_name,
        "n_steps": len(steps),
        "trend_tol_pct": f.pct(100 * TREND_TOL),
        "series": items,
    }
    d["text"] = logits_text(d, f)
    return d


def logits_text(d: dict[str, Any], f: Fmt) -> list[str]:
    """One sentence per metric, from ``d`` only."""
    lines = []
    for s in d["series"]:
        what = WHAT.get(s["metric"], "a statistic of the output logits")
        text = (
            f"**{code(s['metric'])}** ({what}): {s['trend']}, from {f.v(s['first'])} to {f.v(s['last'])} "
            f"(a change of {f.v(s['change'])}"
        )
        text += f", a factor of {f.v(s['factor'])})" if s["factor"] is not None else ")"
        text += (
            f"; lowest {f.v(s['min'])} at step {format_step(s['min_step'])}, highest {f.v(s['max'])} at step "
            f"{format_step(s['max_step'])}, over {s['n_values']} recorded steps"
        )
        if s["n_nonfinite"]:
            text += f" ({s['n_nonfinite']} more steps hold an infinite value)"
        lines.append(text + ".")
    if d["series"]:
        k = d["series"][0]["k"]
        ends = (
            "the first and last recorded values"
            if k == 1
            else f"the medians of the first and last {k} recorded values"
        )
        lines.append(
            f"First and last are {ends}; a trend is a change of more than {f.p(d['trend_tol_pct'])} of the "
            "larger of the two in size."
        )
    return lines


def logits_readings(d: dict[str, Any]) -> list[str]:
    """Hedged readings of the logits' trends (Interpretation bullets), from ``d`` only."""
    out = []
    for s in d["series"]:
        key = f"logits_{s['metric']}_{s['trend']}"
        try:
            reading = phrase(key, site="logits", metric=s["metric"])
        except KeyError:
            continue
        out.append(f"{code(s['metric'])} is {s['trend']}: {reading}.")
    return out
