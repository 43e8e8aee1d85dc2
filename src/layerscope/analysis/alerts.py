"""The watch-alerts section of a report: the run's alerts on the map the report analyses (rule, step,
layer, head, value), and a count of its alerts on other series.

An alert concerns the map when its site and metric are the map's; for a report on site ``logits``,
which covers every metric of that site, when its site is. Only events of kind ``"alert"`` count.

>>> from layerscope.store.records import Event
>>> from layerscope.analysis.text import Fmt
>>> ev = [Event(40, "alert", "jump", site="attn", metric="max_logit", layer=2, head=1, value=12.5),
...       Event(45, "alert", "nonfinite", site="output", metric="rms", layer=3)]
>>> d = alert_section(ev, "attn", "max_logit", Fmt(3, [40, 45]), ["h.0", "h.1", "h.2"])
>>> d["n_map"], d["n_other"], d["items"][0]["value"], d["others"][0]["metric"]
(1, 1, 12.5, 'rms')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._format import format_step
from ..store.records import Event
from .text import Fmt, code
from .vocabulary import phrase

LIST_ALERTS = 20  # alerts spelled out; the rest are counted


def alert_section(
    events: Sequence[Event],
    site: str,
    metric: str,
    f: Fmt,
    layer_names: Sequence[str],
    whole_site: bool = False,
) -> dict[str, Any]:
    """The ``alerts`` dict of a report: this map's alerts (the first :data:`LIST_ALERTS`), a count per
    other series, and the sentences in ``text``. ``whole_site``: every metric of ``site`` counts."""
    alerts = [e for e in events if e.kind == "alert"]

    def mine(e: Event) -> bool:
        return e.site == site and (whole_site or e.metric == metric)

    here = [e for e in alerts if mine(e)]
    other: dict[tuple[str, str], list[Event]] = {}
    for e in alerts:
        if not mine(e):
            other.setdefault((e.site, e.metric), []).append(e)

    def name(layer: int | None) -> str:
        return layer_names[layer - 1] if layer is not None and 0 < layer <= len(layer_names) else ""

    d: dict[str, Any] = {
        "n_total": len(alerts),
        "n_map": len(here),
        "n_other": len(alerts) - len(here),
        "first_step": here[0].step if here else None,
        "n_unlisted": max(0, len(here) - LIST_ALERTS),
        "items": [
            {
                "step": e.step,
                "rule": e.rule,
                "site": e.site,
                "metric": e.metric,
                "layer": e.layer,
                "layer_name": name(e.layer),
                "head": e.head,
                "value": f.r(e.value),  # None: NaN or infinite (a non-finite alert), or no value
                "message": e.message,
            }
            for e in here[:LIST_ALERTS]
        ],
        "others": [
            {"site": s, "metric": m, "n": len(evs), "first_step": evs[0].step}
            for (s, m), evs in sorted(other.items(), key=lambda kv: (kv[1][0].step, kv[0]))
        ],
    }
    d["text"] = alert_text(d, f, site, metric, whole_site)
    return d


def alert_text(d: dict[str, Any], f: Fmt, site: str, metric: str, whole_site: bool) -> list[str]:
    """The section's lines, from ``d`` only: a summary sentence, then one bullet per listed alert."""
    where = f"site {code(site)}" if whole_site else f"{code(metric)} at site {code(site)}"
    n = d["n_map"]
    head = f"The run's watch fired {'no' if n == 0 else n} {'alert' if n <= 1 else 'alerts'} on {where}" + (
        f", the first at step {format_step(d['first_step'])}" if d["first_step"] is not None else ""
    )
    if d["others"]:
        parts = ", ".join(
            f"{o['n']} on {code(o['metric'])} at {code(o['site'])} (from step {format_step(o['first_step'])})"
            for o in d["others"]
        )
        head += f", and {d['n_other']} on other series: {parts}"
    lines = [head + "."]
    for a in d["items"]:
        place: list[str] = []
        if a["layer"] is not None and not whole_site:  # logits: one series for the whole model
            place.append(f"layer {a['layer']}" + (f" ({code(a['layer_name'])})" if a["layer_name"] else ""))
        if a["head"] is not None:
            place.append(f"head {a['head']}")
        if whole_site:
            place.append(code(a["metric"]))
        value = "a non-finite value or none" if a["value"] is None else f"value {f.v(a['value'])}"
        lines.append(
            f"- step {format_step(a['step'])}, {', '.join(place) or 'the whole model'}: rule {code(a['rule'])}, {value}."
        )
    if d["n_unlisted"]:
        lines.append(f"- … and {d['n_unlisted']} more (`layerscope export --events` lists them all).")
    return lines


def alert_readings(d: dict[str, Any], site: str, metric: str) -> list[str]:
    """A hedged reading of this map's alerts (an Interpretation bullet), from ``d`` only."""
    if not d["n_map"]:
        return []
    first = d["items"][0]
    return [
        f"The watch's first alert here, at step {format_step(first['step'])} (rule {code(first['rule'])}), "
        f"{phrase('alert', site=site, metric=metric)}."
    ]
