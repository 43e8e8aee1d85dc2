"""The per-head section of a report on site ``attn``: which heads' max logit grows fastest, which
heads' entropy collapses, and how much attention goes to the first position (the sink).

Each head is summarised by its *first* and *last* value: the median of its first and last ``k``
recorded values (``k`` = :attr:`HeadThresholds.ends`, at most a tenth of its values, at least one),
so that one noisy step does not decide. Growth is the factor last / first (only where both are
positive); an entropy's fall is the factor first / last. The thresholds are in the JSON under
``heads.thresholds``; every number a sentence quotes is in ``heads``, rounded as quoted.

>>> import numpy as np
>>> from layerscope.store.records import HeadSeries
>>> from layerscope.analysis.text import Fmt
>>> v = np.ones((10, 2, 3)); v[:, 1, 2] = np.linspace(1, 10, 10)   # layer 2, head 2 grows 10x
>>> hs = HeadSeries(v, list(range(10, 110, 10)), [1, 2], ["h.0", "h.1"], "max_logit", "attn", "r")
>>> d = head_section({"max_logit": hs}, Fmt(3, hs.steps))
>>> top = d["max_logit"]["top"][0]
>>> (top["layer"], top["head"], top["factor"])
(2, 2, 6.67)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._format import format_step
from ..store.records import HeadSeries
from .text import Fmt, cap, code
from .vocabulary import phrase

SECTION_METRICS = ("max_logit", "entropy", "sink")


@dataclass(frozen=True)
class HeadThresholds:
    """What the per-head section counts; copied into the JSON under ``heads.thresholds``."""

    growth_factor: float = 2.0  # a head's max logit grows when last / first is at least this
    collapse_factor: float = 2.0  # a head's entropy collapses when first / last is at least this
    entropy_floor: float = 0.3  # nats: a head below it attends almost to one key (ln 2 = 0.69 is two keys)
    sink_high: float = 0.5  # a head whose last sink share is at least this puts most attention on position 1
    ends: int = 3  # first/last: the median of up to this many values (at most a tenth of them)
    top: int = 5  # heads spelled out per finding

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as a plain dict."""
        return asdict(self)


HEAD_DEFAULT = HeadThresholds()


def ends_count(n_values: int, t: HeadThresholds = HEAD_DEFAULT) -> int:
    """How many values the first and last values are medians of.

    >>> ends_count(12), ends_count(25), ends_count(400)
    (1, 2, 3)
    """
    return max(1, min(t.ends, n_values // 10))


def _head_ends(series: np.ndarray, steps: list[int], t: HeadThresholds) -> dict[str, Any] | None:
    """First, last, peak of one head's finite values (None when it has none)."""
    ok = np.isfinite(series)
    if not ok.any():
        return None
    vals = series[ok]
    at = [s for s, good in zip(steps, ok) if good]
    k = ends_count(len(vals), t)
    peak = int(np.argmax(vals))
    return {
        "first": float(np.median(vals[:k])),
        "last": float(np.median(vals[-k:])),
        "peak": float(vals[peak]),
        "peak_step": at[peak],
        "k": k,
    }


def _records(hs: HeadSeries, t: HeadThresholds) -> list[dict[str, Any]]:
    """One raw (unrounded) record per head that has values, in (layer, head) order."""
    out = []
    S, L, H = hs.values.shape
    for j in range(L):
        for h in range(H):
            e = _head_ends(hs.values[:, j, h], list(hs.steps), t)
            if e is not None:
                out.append({"layer": hs.layers[j], "layer_name": hs.layer_names[j], "head": h, **e})
    return out


def _ratio(a: float, b: float) -> float | None:
    """a / b where both are positive and the ratio finite, else None."""
    if a > 0 and b > 0:
        r = a / b
        return r if np.isfinite(r) else None
    return None


def _head_json(r: dict[str, Any], f: Fmt, factor: float | None) -> dict[str, Any]:
    return {
        "layer": r["layer"],
        "layer_name": r["layer_name"],
        "head": r["head"],
        "first": f.r(r["first"]),
        "last": f.r(r["last"]),
        "peak": f.r(r["peak"]),
        "peak_step": r["peak_step"],
        "factor": f.r(factor) if factor is not None else None,
    }


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _max_logit(recs: list[dict[str, Any]], f: Fmt, t: HeadThresholds) -> dict[str, Any]:
    grow = [(r, _ratio(r["last"], r["first"])) for r in recs]
    ranked = sorted(
        ((r, g) for r, g in grow if g is not None), key=lambda x: (-x[1], x[0]["layer"], x[0]["head"])
    )
    growing = [(r, g) for r, g in ranked if g >= t.growth_factor]
    top = max(recs, key=lambda r: r["peak"])
    return {
        "n_heads": len(recs),
        "n_growing": len(growing),
        "growing_layers": sorted({r["layer"] for r, _ in growing}),
        "n_undefined": sum(g is None for _, g in grow),  # a first or last value <= 0: no factor
        "top": [_head_json(r, f, g) for r, g in ranked[: t.top]],
        "max": f.r(top["peak"]),
        "max_layer": top["layer"],
        "max_layer_name": top["layer_name"],
        "max_head": top["head"],
        "max_step": top["peak_step"],
    }


def _entropy(recs: list[dict[str, Any]], f: Fmt, t: HeadThresholds) -> dict[str, Any]:
    falls = [(r, _ratio(r["first"], r["last"])) for r in recs]
    # A head whose last entropy is 0 (one key) from a positive first one fell by "infinitely" much.
    collapsed = [
        (r, g)
        for r, g in falls
        if r["first"] > 0 and (r["last"] <= 0 or (g is not None and g >= t.collapse_factor))
    ]
    collapsed.sort(key=lambda x: (x[0]["last"] / x[0]["first"], x[0]["layer"], x[0]["head"]))
    low = sorted(
        (r for r in recs if r["last"] < t.entropy_floor), key=lambda r: (r["last"], r["layer"], r["head"])
    )
    return {
        "n_heads": len(recs),
        "first_mean": f.r(_mean([r["first"] for r in recs])),
        "last_mean": f.r(_mean([r["last"] for r in recs])),
        "n_collapsed": len(collapsed),
        "collapsed_layers": sorted({r["layer"] for r, _ in collapsed}),
        "collapsed": [_head_json(r, f, g) for r, g in collapsed[: t.top]],
        "n_low": len(low),
        "low": [_head_json(r, f, _ratio(r["first"], r["last"])) for r in low[: t.top]],
    }


def _sink(recs: list[dict[str, Any]], f: Fmt, t: HeadThresholds) -> dict[str, Any]:
    high = sorted(
        (r for r in recs if r["last"] >= t.sink_high), key=lambda r: (-r["last"], r["layer"], r["head"])
    )
    ranked = sorted(recs, key=lambda r: (-r["last"], r["layer"], r["head"]))
    return {
        "n_heads": len(recs),
        "first_mean": f.r(_mean([r["first"] for r in recs])),
        "last_mean": f.r(_mean([r["last"] for r in recs])),
        "n_high": len(high),
        "high_layers": sorted({r["layer"] for r in high}),
        "top": [_head_json(r, f, _ratio(r["last"], r["first"])) for r in ranked[: t.top]],
    }


SECTIONS = {"max_logit": _max_logit, "entropy": _entropy, "sink": _sink}


def head_section(
    heads: Mapping[str, HeadSeries], f: Fmt, t: HeadThresholds = HEAD_DEFAULT, n_heads: int | None = None
) -> dict[str, Any]:
    """The ``heads`` dict of a report: per-head findings for each of ``max_logit``, ``entropy`` and
    ``sink`` that ``heads`` holds (numbers rounded with ``f``), and their sentences in ``text``."""
    d: dict[str, Any] = {"n_heads": n_heads, "n_layers": 0, "k": None, "thresholds": t.to_dict()}
    for metric in SECTION_METRICS:
        hs = heads.get(metric)
        if hs is None:
            d[metric] = None
            continue
        d["n_heads"] = d["n_heads"] or hs.n_heads
        d["n_layers"] = max(d["n_layers"], len(hs.layers))
        recs = _records(hs, t)
        d[metric] = SECTIONS[metric](recs, f, t) if recs else None
        if recs and d["k"] is None:
            d["k"] = max(r["k"] for r in recs)
    d["text"] = head_text(d, f)
    return d


def head_label(h: dict[str, Any]) -> str:
    """'layer 3 head 1 (`h.2`)'."""
    return f"layer {h['layer']} head {h['head']} ({code(h['layer_name'])})"


def _of(n: int, total: int, noun: str = "heads") -> str:
    return f"{n} of {total} {noun}"


def head_text(d: dict[str, Any], f: Fmt) -> list[str]:
    """The section's sentences, from the numbers in ``d`` only."""
    t = d["thresholds"]
    lines: list[str] = []
    if d["k"] == 1:
        lines.append(
            "Each head is summarised by its first and last recorded values (heads are counted from zero within a layer)."
        )
    elif d["k"] is not None:
        lines.append(
            f"Each head is summarised by its first and last values: the median of its first and last "
            f"{d['k']} recorded values (heads are counted from zero within a layer)."
        )
    m = d.get("max_logit")
    if m:
        head = "**Max logit growth** (growth factor = last / first max logit of a head)"
        if m["n_growing"]:
            fastest = "; ".join(
                f"{head_label(h)} from {f.v(h['first'])} to {f.v(h['last'])} (a factor of {f.v(h['factor'])})"
                for h in m["top"][: min(len(m["top"]), m["n_growing"])]
            )
            lines.append(
                f"{head}: {_of(m['n_growing'], m['n_heads'])} {'grows' if m['n_growing'] == 1 else 'grow'} by a factor of {f.v(t['growth_factor'])} "
                f"or more, in {f.layers_text(m['growing_layers'])}. Fastest: {fastest}."
            )
        elif m["top"]:
            h = m["top"][0]
            lines.append(
                f"{head}: no head grows by a factor of {f.v(t['growth_factor'])} or more; the largest "
                f"growth is {head_label(h)}, from {f.v(h['first'])} to {f.v(h['last'])} (a factor of "
                f"{f.v(h['factor'])})."
            )
        else:
            lines.append(f"{head}: no head has a positive first and last value, so no factor is defined.")
        lines[-1] += (
            f" The largest max logit is {f.v(m['max'])}, at layer {m['max_layer']} head {m['max_head']}, "
            f"step {format_step(m['max_step'])}."
        )
        if m["n_undefined"]:
            lines[-1] += f" {m['n_undefined']} heads have a first or last value of zero or below (no factor)."
    e = d.get("entropy")
    if e:
        head = (
            f"**Entropy collapse** (a head's entropy falling by a factor of {f.v(t['collapse_factor'])} or "
            "more, first to last, in nats)"
        )
        if e["n_collapsed"]:
            which = "; ".join(
                f"{head_label(h)} from {f.v(h['first'])} to {f.v(h['last'])}"
                + (f" (a factor of {f.v(h['factor'])})" if h["factor"] is not None else "")
                for h in e["collapsed"]
            )
            more = (
                f", and {e['n_collapsed'] - len(e['collapsed'])} more"
                if e["n_collapsed"] > len(e["collapsed"])
                else ""
            )
            verb = "collapses" if e["n_collapsed"] == 1 else "collapse"
            lines.append(f"{head}: {_of(e['n_collapsed'], e['n_heads'])} {verb}: {which}{more}.")
        else:
            lines.append(f"{head}: no head's entropy falls that far.")
        lines[-1] += (
            f" Mean entropy over the heads: {f.v(e['first_mean'])} at first, {f.v(e['last_mean'])} at last; "
            f"{_of(e['n_low'], e['n_heads'])} {'ends' if e['n_low'] == 1 else 'end'} below {f.v(t['entropy_floor'])} nats"
            + (f" (lowest: {head_label(e['low'][0])}, {f.v(e['low'][0]['last'])})" if e["low"] else "")
            + "."
        )
    s = d.get("sink")
    if s:
        top = s["top"][0] if s["top"] else None
        text = (
            f"**Sink** (the share of a head's attention on the first position): the mean over the heads is "
            f"{f.v(s['first_mean'])} at first and {f.v(s['last_mean'])} at last; "
            f"{_of(s['n_high'], s['n_heads'])} {'puts' if s['n_high'] == 1 else 'put'} {f.v(t['sink_high'])} or more of their attention there at the end"
        )
        if s["n_high"]:
            text += f", in {f.layers_text(s['high_layers'])}"
        if top is not None:
            text += f"; the highest is {head_label(top)}, {f.v(top['last'])}"
        lines.append(text + ".")
    return lines


def head_readings(d: dict[str, Any]) -> list[str]:
    """Hedged readings of the per-head findings (Interpretation bullets), from ``d`` only."""
    out = []
    m, e, s = d.get("max_logit"), d.get("entropy"), d.get("sink")
    if m and m["n_growing"]:
        h = m["top"][0]
        out.append(
            f"{cap(head_label(h))} and the other growing heads {phrase('head_growth', site='attn', metric='max_logit')}."
        )
        if e and any((c["layer"], c["head"]) == (h["layer"], h["head"]) for c in e["collapsed"]):
            out.append(
                f"The same head's entropy collapses too, {phrase('growth_and_collapse', site='attn', metric='entropy')}."
            )
    if e and e["n_collapsed"]:
        out.append(f"The collapsing heads {phrase('head_collapse', site='attn', metric='entropy')}.")
    if s and s["n_high"]:
        out.append(f"The heads with a high sink share {phrase('head_sink', site='attn', metric='sink')}.")
    return out
