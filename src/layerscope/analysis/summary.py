"""Map-level sentences: the summary paragraph (its parts as a table, in order) and the bullet of
each band of layers. Like :mod:`.narrative`, they quote only numbers the report holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._format import format_step
from .bands import Band
from .narrative import Context
from .observations import Observation
from .text import LIST_EVENTS, TREND_WORDS, cap

# --------------------------------------------------------------------------------------------
# Summary: one paragraph, its parts in this order
# --------------------------------------------------------------------------------------------

ByKind = dict[str, list[Observation]]


def _summary_gradients(k: ByKind, c: Context) -> str | None:
    dg = k.get("depth_gradient", [None])[-1]
    st = k.get("step_trend", [None])[-1]
    if dg and st:
        verb = "increase" if dg.direction == "increasing" else "decrease"
        if dg.direction == st.direction:
            return f"values {verb} with depth and over training"
        other = "increase" if st.direction == "increasing" else "decrease"
        return f"values {verb} with depth and {other} over training"
    if dg:
        return f"values {'increase' if dg.direction == 'increasing' else 'decrease'} with depth"
    if st:
        return f"values {'increase' if st.direction == 'increasing' else 'decrease'} over training"
    return None


def _summary_hotspot(k: ByKind, c: Context) -> str | None:
    if "hotspot" not in k:
        return None
    h = k["hotspot"][-1]
    return f"the highest values are in {c.fmt.layers_text(h.layers)} at {c.fmt.steps_text(h.steps)}"


def _summary_low(k: ByKind, c: Context) -> str | None:
    if "consistently_low" not in k:
        return None
    lays = k["consistently_low"][-1].layers
    return f"{c.fmt.layers_text(lays)} {'stays' if len(lays) == 1 else 'stay'} low throughout"


def _summary_saturation(k: ByKind, c: Context) -> str | None:
    if "saturation" not in k:
        return None
    sat = k["saturation"][-1]
    verb = "levels" if len(sat.layers) == 1 else "level"
    return f"{c.fmt.layers_text(sat.layers)} {verb} off from {c.fmt.step_range(sat.steps[0], sat.steps[-1])}"


def _summary_jumps(k: ByKind, c: Context) -> str | None:
    jumps = k.get("sudden_change", [])
    if not jumps:
        return None
    said = [
        f"jump {'up' if o.direction == 'increasing' else 'down'} at "
        + ", ".join(format_step(x) for x in o.steps[:LIST_EVENTS])
        for o in sorted(jumps, key=lambda o: o.steps[0])
    ]
    return "values " + " and ".join(said)


def _summary_noise(k: ByKind, c: Context) -> str | None:
    return None if c.structured else "most of the variation is cell-to-cell noise"


SUMMARY: tuple[Callable[[ByKind, Context], str | None], ...] = (
    _summary_gradients,
    _summary_hotspot,
    _summary_low,
    _summary_saturation,
    _summary_jumps,
    _summary_noise,
)
"""The parts of the summary paragraph, in order; each returns None when it has nothing to say."""


def summary(obs: list[Observation], c: Context) -> str:
    """The one-paragraph summary of the map."""
    if c.n_steps == 0 or c.n_layers == 0:
        return "The heatmap is empty."
    if not c.has_values:
        return "No cell holds a finite value."
    if c.flat:
        return "The map is flat: there is no trend, gradient or hotspot to describe."
    by_kind: ByKind = {}
    for o in obs:
        by_kind.setdefault(o.kind, []).append(o)
    parts = [p for p in (fn(by_kind, c) for fn in SUMMARY) if p]
    if not parts:
        return "No pattern stands out at the thresholds used."
    return cap("; ".join(parts)) + "."


# --------------------------------------------------------------------------------------------
# Bands: one bullet per band of similar layers
# --------------------------------------------------------------------------------------------


def band_text(b: Band, c: Context) -> str:
    """One bullet for a band: '**Layers 1–4** (flat, low): between a and b throughout (...)'."""
    f = c.fmt
    one = len(b.layers) == 1
    name = f"**{cap(f.layers_text(b.layers))}**"
    if not b.details:
        return f"{name}: no recorded values."

    def at(rng_v: list[Any] | None, rng_s: list[Any] | None) -> str:
        assert rng_v is not None and rng_s is not None
        return f"{f.vrange(*rng_v)} at {f.step_range(*rng_s)}"

    if b.trend == "mixed":
        counts = ", ".join(
            f"{k} {w}" for w, k in sorted((b.trend_counts or {}).items(), key=lambda kv: -kv[1])
        )
        return (
            f"{name} (mixed: {counts}): values between {f.between(b.min, b.max)}; highest "
            f"{at(b.peak, b.peak_step)}."
        )
    tr, lvl = b.trend, b.level
    head = f"{name} ({TREND_WORDS[tr]}, {lvl})"
    first, last = at(b.first, b.first_step), at(b.last, b.last_step)
    assert b.peak_step is not None and b.last_step is not None and b.low_step is not None
    if c.n_steps == 1 or all(x.n_values == 1 for x in b.details):
        return f"{name} ({lvl}): a single recorded value{'' if one else ' each'}, {first}."
    if tr == "flat" and f.v(b.min) == f.v(b.max):
        body = f"{f.v(b.min)} throughout"
    elif tr == "flat":
        body = f"between {f.between(b.min, b.max)} throughout (first {first}, last {last})"
    elif tr == "rising":
        body = f"from {first} to {last}"
        if b.peak_step[1] < b.last_step[0]:
            body += f"; highest {at(b.peak, b.peak_step)}"
    elif tr == "falling":
        body = f"from {first} to {last}"
        if b.low_step[1] < b.last_step[0]:
            body += f"; lowest {at(b.low, b.low_step)}"
    elif tr == "rise_then_fall":
        body = f"from {first} up to a peak of {at(b.peak, b.peak_step)}, then down to {last}"
    elif tr == "fall_then_rise":
        body = f"from {first} down to a low of {at(b.low, b.low_step)}, then up to {last}"
    else:
        body = (
            f"between {f.between(b.min, b.max)}; highest {at(b.peak, b.peak_step)}, "
            f"lowest {at(b.low, b.low_step)}"
        )
    if b.plateau_from:
        near = "peak" if tr in ("rising", "rise_then_fall") else "low"
        who = "stays near its" if one else "stay near their"
        body += f"; {who} {near} from {f.step_range(*b.plateau_from)} on"
    return f"{head}: {body}."
