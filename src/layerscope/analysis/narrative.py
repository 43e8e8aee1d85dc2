"""The narrative: sentences written from typed observations, by table rather than by if/elif.

:data:`DESCRIBE` maps an observation kind to the function that states it (the "Key observations"
sentence), :data:`INTERPRET` to the one that reads it (a hedged "Interpretation" bullet), and
:data:`SUMMARY` lists the parts of the one-paragraph summary. Each function takes the observation
(or the observations by kind) and a :class:`Context` (formatting, metric, site, map-wide facts) and
quotes only numbers held in the observation's facts or the report. What a site's or metric's values
mean comes from :mod:`.vocabulary`, so a new site needs a table entry, not a new branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._format import format_step
from .observations import (
    ConsistentFacts,
    DepthGradientFacts,
    Facts,
    HotspotFacts,
    InfiniteFacts,
    MissingFacts,
    Observation,
    OutlierFacts,
    SaturationFacts,
    StepTrendFacts,
    SuddenChangeFacts,
)
from .text import LIST_CELLS, LIST_EVENTS, Fmt, cap, code
from .vocabulary import phrase


@dataclass(frozen=True)
class Context:
    """What the sentences need besides an observation's own facts."""

    fmt: Fmt
    metric: str
    site: str
    scale: str  # "linear" or "log": the analysis scale
    n_steps: int
    n_layers: int
    n_layers_with_values: int
    has_values: bool  # some cell holds a finite value that is not an outlier
    flat: bool  # every such cell holds the same value
    structured: bool  # noise is below Thresholds.noise_share of the variance
    noise_share_pct: float
    first_step: int | None  # the first step with a value

    @property
    def m(self) -> str:
        """The metric's name as a code span."""
        return code(self.metric)


F = TypeVar("F", bound=Facts)


def _facts(o: Observation, kind: type[F]) -> F:
    assert isinstance(o.facts, kind), (o.kind, type(o.facts))
    return o.facts


# --------------------------------------------------------------------------------------------
# Key observations: one statement per observation
# --------------------------------------------------------------------------------------------


def _describe_depth_gradient(o: Observation, c: Context) -> str:
    fa, f = _facts(o, DepthGradientFacts), c.fmt
    verb = "increase" if o.direction == "increasing" else "decrease"
    move = "rises" if o.direction == "increasing" else "falls"
    text = (
        f"Values {verb} with depth: the median over steps {move} from {f.v(fa.from_value)} "
        f"at layer {fa.from_layer} to {f.v(fa.to_value)} at layer {fa.to_layer}, never moving back by more "
        f"than {f.p(fa.drawdown_pct)} of the range between layers."
    )
    if o.steps:
        if len(o.steps) == fa.n_steps:
            text += f" Step by step, the profile {move} this way at every recorded step."
        else:
            text += (
                f" Step by step, the profile {move} this way at {len(o.steps)} of {fa.n_steps} "
                f"steps ({f.steps_text(o.steps)})."
            )
    else:
        text += " No single step shows the whole profile this cleanly."
    return text


def _describe_step_trend(o: Observation, c: Context) -> str:
    fa, f = _facts(o, StepTrendFacts), c.fmt
    verb, word = ("increase", "higher") if o.direction == "increasing" else ("decrease", "lower")
    move = "rises" if o.direction == "increasing" else "falls"
    text = (
        f"Values {verb} over training: the median across layers {move} from "
        f"{f.v(fa.from_value)} at {format_step(fa.from_step)} to {f.v(fa.to_value)} at "
        f"{format_step(fa.to_step)}"
    )
    follow, n_with = o.layers, fa.n_layers
    if follow and len(follow) == n_with and n_with > 1:
        text += (
            f"; all {n_with} layers end at least {f.p(fa.change_pct)} of the range {word} than they start."
        )
    elif follow:
        text += (
            f"; {len(follow)} of {n_with} {'layer' if n_with == 1 else 'layers'} "
            f"({f.layers_text(follow, word=False)}) end at least {f.p(fa.change_pct)} of the "
            f"range {word} than they start."
        )
    else:
        text += "; no single layer changes that much from its first to its last step."
    return text


def _describe_hotspot(o: Observation, c: Context) -> str:
    fa, f = _facts(o, HotspotFacts), c.fmt
    return (
        f"The highest values (at or above {f.v(fa.threshold)}, the top "
        f"{f.p(fa.top_pct)} of the range) are in {f.layers_text(o.layers)} at "
        f"{'step' if len(o.steps) == 1 else 'steps'} {f.steps_text(o.steps)} ({fa.n_cells} "
        f"cells, {f.p(fa.cells_pct)} of those with a value); the maximum, "
        f"{f.v(fa.max)}, is at layer {fa.max_layer}, step {format_step(fa.max_step)}."
    )


def _describe_consistent(o: Observation, c: Context) -> str:
    fa, f = _facts(o, ConsistentFacts), c.fmt
    low = o.kind == "consistently_low"
    where = "bottom" if low else "top"
    cmp = "at or below" if low else "at or above"
    return (
        f"{cap(f.layers_text(o.layers))} {'stays' if len(o.layers) == 1 else 'stay'} in the {where} "
        f"{f.p(fa.pct)} of the range ({cmp} {f.v(fa.bound)}) at every recorded step, "
        f"with values between {f.between(fa.min, fa.max)}."
    )


def _describe_saturation(o: Observation, c: Context) -> str:
    fa, f = _facts(o, SaturationFacts), c.fmt
    one = len(o.layers) == 1
    text = (
        f"{cap(f.layers_text(o.layers))} {'levels' if one else 'level'} off: from "
        f"{f.step_range(fa.from_min, fa.from_max)} on, {'it stays' if one else 'each stays'} within "
        f"{f.p(fa.tol_pct)} of its rise below its peak ({f.vrange(fa.peak_min, fa.peak_max)})"
    )
    if fa.declining:
        text += f", then declines slightly: the last value is up to {f.v(fa.decline_max)} below the peak."
    elif fa.decline_max:
        text += f", ending within {f.v(fa.decline_max)} of it."
    else:
        text += ", ending at it."
    return text


def _describe_sudden_change(o: Observation, c: Context) -> str:
    fa, f = _facts(o, SuddenChangeFacts), c.fmt
    ranked = sorted(fa.events, key=lambda e: (-e.n_layers, e.step))[:LIST_EVENTS]
    ranked.sort(key=lambda e: e.step)
    word = "up" if o.direction == "increasing" else "down"
    parts = [
        f"between {format_step(e.step_before)} and {format_step(e.step)} in "
        f"{f.layers_text(e.layers)} (by {f.vrange(e.change_min, e.change_max)})"
        for e in ranked
    ]
    where = "" if c.n_layers_with_values == 1 else " in several layers at once"
    times = "" if fa.n_events == 1 else f", at {fa.n_events} points"
    return (
        f"Values jump {word} by at least {f.p(fa.jump_pct)} of the range between "
        f"consecutive steps{where}{times}: "
        + "; ".join(parts)
        + ("; …" if fa.n_events > len(ranked) else "")
        + "."
    )


def _describe_outlier(o: Observation, c: Context) -> str:
    fa, f = _facts(o, OutlierFacts), c.fmt
    n = fa.n_cells
    listed = ", ".join(
        f"layer {cell[1]} at {format_step(cell[0])} ({f.v(val)})"
        for cell, val in zip(o.cells[:LIST_CELLS], fa.values)
    )
    return (
        f"{n} isolated {'cell stands' if n == 1 else 'cells stand'} out from "
        f"{'its' if n == 1 else 'their'} neighbours by at least {f.p(fa.margin_pct)} of the "
        f"range: {listed}{', …' if n > LIST_CELLS else ''}. Levels, trends and per-layer values "
        f"leave {'it' if n == 1 else 'them'} out."
    )


def _describe_infinite(o: Observation, c: Context) -> str:
    fa = _facts(o, InfiniteFacts)
    n = fa.n_cells
    listed = ", ".join(
        f"layer {cell[1]} at {format_step(cell[0])} ({'+inf' if sign > 0 else '-inf'})"
        for cell, sign in zip(o.cells[:LIST_CELLS], fa.signs)
    )
    return (
        f"{n} {'cell holds an infinite value' if n == 1 else 'cells hold infinite values'}: "
        f"{listed}{', …' if n > LIST_CELLS else ''}. They are left out of every range, level and trend."
    )


def _describe_missing(o: Observation, c: Context) -> str:
    fa, f = _facts(o, MissingFacts), c.fmt
    parts = []
    if fa.full_layers:
        parts.append(
            f"{f.layers_text(fa.full_layers)} {'has' if len(fa.full_layers) == 1 else 'have'} no value at all"
        )
    if fa.full_steps:
        parts.append(
            f"{'step' if len(fa.full_steps) == 1 else 'steps'} {f.steps_text(fa.full_steps)} "
            f"{'has' if len(fa.full_steps) == 1 else 'have'} no value in any layer"
        )
    n_rest = fa.n_scattered
    if n_rest:
        gone_l, gone_s = set(fa.full_layers), set(fa.full_steps)
        eg_cells = [cell for cell in o.cells if cell[1] not in gone_l and cell[0] not in gone_s][:3]
        eg = ", ".join(f"layer {cell[1]} at {format_step(cell[0])}" for cell in eg_cells)
        parts.append(
            f"{'the other ' if parts else ''}{n_rest} {'is' if n_rest == 1 else 'are'} scattered "
            f"({eg}{', …' if n_rest > 3 else ''})"
        )
    return (
        f"{fa.n_cells} of {fa.n_total} cells ({f.p(fa.pct)}) have no value: "
        + "; ".join(parts)
        + ". They are not filled in; every statement above uses recorded values only."
    )


Writer = Callable[[Observation, Context], str]

DESCRIBE: dict[str, Writer] = {
    "depth_gradient": _describe_depth_gradient,
    "step_trend": _describe_step_trend,
    "hotspot": _describe_hotspot,
    "consistently_low": _describe_consistent,
    "consistently_high": _describe_consistent,
    "saturation": _describe_saturation,
    "sudden_change": _describe_sudden_change,
    "outlier": _describe_outlier,
    "infinite_values": _describe_infinite,
    "missing_values": _describe_missing,
}
"""kind -> the sentence(s) stating the observation (Key observations)."""


# --------------------------------------------------------------------------------------------
# Interpretation: one hedged reading per observation
# --------------------------------------------------------------------------------------------


def _interpret_depth_gradient(o: Observation, c: Context) -> str:
    fa, f = _facts(o, DepthGradientFacts), c.fmt
    where = (
        f"(median {f.v(fa.from_value)} at layer {fa.from_layer}, {f.v(fa.to_value)} at layer {fa.to_layer})"
    )
    if o.direction == "increasing":
        reading = phrase("depth_rise", site=c.site, metric=c.metric)
        return (
            f"The rise of {c.m} with depth {where} {reading}; it does not by itself say which layers "
            "matter more for the model's output."
        )
    return (
        f"The fall of {c.m} with depth {where} may indicate that the shallower layers dominate this "
        "statistic; it does not by itself say which layers matter more."
    )


def _interpret_step_trend(o: Observation, c: Context) -> str:
    fa = _facts(o, StepTrendFacts)
    verb = "grows" if o.direction == "increasing" else "shrinks"
    return (
        f"Since {c.m} {verb} over training in {fa.n_layers_following} of {fa.n_layers} layers, "
        + phrase("step_trend", site=c.site, metric=c.metric)
        + "."
    )


def _interpret_hotspot(o: Observation, c: Context) -> str:
    f = c.fmt
    return f"The largest {c.m} values sit in {f.layers_text(o.layers)} at {f.steps_text(o.steps)}" + phrase(
        "hotspot", site=c.site, metric=c.metric
    )


def _interpret_consistently_low(o: Observation, c: Context) -> str:
    fa, f = _facts(o, ConsistentFacts), c.fmt
    one = len(o.layers) == 1
    they, their = ("it is", "its") if one else ("they are", "their")
    text = (
        f"{cap(f.layers_text(o.layers))} staying near the bottom of the shared colour scale need not "
        f"mean {they} inactive"
    )
    if fa.own_factor is not None and fa.own_factor >= 2:
        other = "a per-layer" if c.scale == "log" else "a per-layer or log"
        varies = "it still varies" if one else "they still vary"
        text += (
            f": on {their} own scale {varies} by a factor of up to {f.v(fa.own_factor)} "
            f"(layer {fa.own_layer}: {f.vrange(fa.own_min, fa.own_max)}), which {other} "
            "colour scale would show"
        )
    else:
        text += f"; {their} {c.m} may simply be small next to the other layers'"
    return text + "."


def _interpret_consistently_high(o: Observation, c: Context) -> str:
    one = len(o.layers) == 1
    return (
        f"{cap(c.fmt.layers_text(o.layers))} {'holds' if one else 'hold'} high {c.m} from the first "
        f"recorded step on, so {'its' if one else 'their'} level may come from initialisation or from "
        "training before the first recorded step rather than from the recorded part of training."
    )


def _interpret_saturation(o: Observation, c: Context) -> str:
    fa, f = _facts(o, SaturationFacts), c.fmt
    return (
        f"{cap(f.layers_text(o.layers))} levelling off from {f.step_range(fa.from_min, fa.from_max)} is "
        f"consistent with their {c.m} having converged, or with a learning-rate decay around then; a "
        "plateau in one statistic is not evidence that the loss has converged."
    )


def _interpret_sudden_change(o: Observation, c: Context) -> str:
    fa = _facts(o, SuddenChangeFacts)
    ev = sorted(fa.events, key=lambda e: (-e.n_layers, e.step))[0]
    who = f" in {ev.n_layers} layers at once" if ev.n_layers > 1 else ""
    span = f"between {format_step(ev.step_before)} and {format_step(ev.step)}"
    if ev.step_before == c.first_step:
        return (
            f"A jump{who} {span}, right after the first recorded step, is common early in training, when "
            "weights move fast away from their initialisation; it need not indicate a change of setup."
        )
    return (
        f"A jump{who} {span} may reflect a change in the training setup at that point (learning-rate "
        "schedule, data, a resumed checkpoint, precision) or a fast transition in what these layers "
        "compute; checking the run's configuration at that step would tell them apart."
    )


def _interpret_outlier(o: Observation, c: Context) -> str:
    return (
        "Isolated extreme cells may be logging or numerical glitches rather than dynamics, since their "
        "neighbours do not share them; they were set aside before judging levels and trends."
    )


def _interpret_infinite(o: Observation, c: Context) -> str:
    return (
        "Infinite values may indicate an overflow (for example in reduced precision) at those steps; they "
        "are not part of any trend above."
    )


def _interpret_missing(o: Observation, c: Context) -> str:
    fa = _facts(o, MissingFacts)
    return (
        f"With {fa.n_cells} of {fa.n_total} cells missing, statements about the layers or steps with gaps "
        "rest on fewer values and are less certain."
    )


INTERPRET: dict[str, Writer] = {
    "depth_gradient": _interpret_depth_gradient,
    "step_trend": _interpret_step_trend,
    "hotspot": _interpret_hotspot,
    "consistently_low": _interpret_consistently_low,
    "consistently_high": _interpret_consistently_high,
    "saturation": _interpret_saturation,
    "sudden_change": _interpret_sudden_change,
    "outlier": _interpret_outlier,
    "infinite_values": _interpret_infinite,
    "missing_values": _interpret_missing,
}
"""kind -> a hedged reading of the observation (Interpretation); a kind may have none."""


def interpretation(obs: list[Observation], c: Context) -> list[dict[str, Any]]:
    """Hedged readings, each resting on one observation (1-based index) or on a map-wide fact."""
    out: list[dict[str, Any]] = []

    def add(i: int | None, text: str) -> None:
        out.append({"observation": None if i is None else i + 1, "text": text})

    if c.n_steps == 0 or c.n_layers == 0 or not c.has_values:
        add(None, "There are no values to interpret.")
        return out
    if c.flat:
        add(
            None,
            f"A constant {c.m} gives nothing to interpret; it may be worth checking that it was recorded.",
        )
        return out
    if not c.structured:
        add(
            None,
            f"Cell-to-cell noise accounts for about {c.fmt.p(c.noise_share_pct)} of the variance, so the map "
            "may not show real structure at this resolution; more steps, or a less noisy statistic, may help.",
        )
    if c.n_steps == 1:
        add(None, "With a single recorded step, nothing can be said about change over training.")
    for i, o in enumerate(obs):
        reading = INTERPRET.get(o.kind)
        if reading is not None:
            add(i, reading(o, c))
    if not out:
        add(
            None,
            "No pattern stood out at the thresholds used, so there is nothing to interpret beyond the "
            "per-layer description.",
        )
    return out
