"""How the report writes numbers, steps, layer lists and names; shared by the narrative and the layout.

Everything here takes numbers already rounded to the report's ``digits`` (the JSON holds exactly what
the text quotes), and user strings (run, metric, site, layer names) only through :func:`code`, which
makes a Markdown code span that nothing in the name can break out of.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .._format import format_percent, format_step, format_value
from . import patterns as P

PCT_DIGITS = 2  # percentages are quoted (and stored) with 2 significant digits
LIST_CELLS = 5  # cells spelled out in an observation's sentence
LIST_EVENTS = 3  # sudden changes spelled out per direction
LIST_RUNS = 4  # runs of steps/layers spelled out before "..."

TREND_WORDS: dict[str | None, str] = {
    "flat": "flat",
    "rising": "rising",
    "falling": "falling",
    "rise_then_fall": "rise then fall",
    "fall_then_rise": "fall then rise",
    "irregular": "irregular",
    None: "no values",
}


def code(name: object) -> str:
    """``name`` (a run, metric, site or layer name) as a Markdown code span that shows it literally.

    Backticks in the name get a longer fence (CommonMark), and line breaks become spaces, so that
    nothing in a name can end the span or start a Markdown block of its own.

    >>> code("rms"), code("a`b"), code("x\\ny"), code("`")
    ('`rms`', '``a`b``', '`x y`', '`` ` ``')
    """
    s = re.sub(r"[\r\n]+", " ", str(name))
    if not s:
        return "` `"  # an empty span would print its backticks
    fence = "`" * (max((len(m) for m in re.findall("`+", s)), default=0) + 1)
    # CommonMark strips one space from both ends of a span: pad where the name would lose or merge
    pad = s.startswith("`") or s.endswith("`") or (len(s) > 1 and s[0] == s[-1] == " " and s.strip() != "")
    return f"{fence} {s} {fence}" if pad else f"{fence}{s}{fence}"


def cap(s: str) -> str:
    """``s`` with its first letter upper-case (the rest untouched)."""
    return s[:1].upper() + s[1:]


class Fmt:
    """Formats numbers the way one report quotes them; ``digits`` is fixed per report.

    >>> f = Fmt(3, [100, 200, 300, 500])
    >>> f.v(0.0081234), f.steps_text([100, 200, 500]), f.layers_text([1, 2, 3, 7])
    ('0.00812', '100–200, 500', 'layers 1–3, 7')
    """

    def __init__(self, digits: int, steps: Sequence[int]):
        self.digits = digits
        self.steps = list(steps)
        self._pos = {s: i for i, s in enumerate(self.steps)}

    def r(self, x: float | None) -> float | None:
        """``x`` rounded as the report stores and quotes it (None for NaN/inf)."""
        return P.round_sig(x, self.digits)

    def v(self, x: float | None) -> str:
        """A stored value as text ('n/a' for None)."""
        return "n/a" if x is None else format_value(x, self.digits)

    def vrange(self, lo: float | None, hi: float | None) -> str:
        """'a–b' (or 'a to b' when the range starts below zero), or one value when both print alike."""
        a, b = self.v(lo), self.v(hi)
        if a == b:
            return a
        sep = "–" if (lo is not None and lo >= 0) else " to "
        return f"{a}{sep}{b}"

    @staticmethod
    def pct(x: float) -> float:
        """A percentage rounded as stored (2 significant digits)."""
        return float(P.round_sig(x, PCT_DIGITS) or 0.0)

    @staticmethod
    def p(x: float) -> str:
        """A stored percentage as text."""
        return format_percent(x)

    def between(self, lo: float | None, hi: float | None) -> str:
        """'0.0002 and 0.00085' (for 'between ...'), or one value when they print the same."""
        a, b = self.v(lo), self.v(hi)
        return a if a == b else f"{a} and {b}"

    def steps_text(self, steps: Sequence[int]) -> str:
        """'210k–300k' for a run of consecutive recorded steps; runs joined by ', '."""
        idx = [self._pos[s] for s in steps]
        rs = P.runs(idx)
        parts = []
        for a, b in rs[:LIST_RUNS]:
            sa, sb = format_step(self.steps[a]), format_step(self.steps[b])
            parts.append(sa if a == b else f"{sa}–{sb}")
        if len(rs) > LIST_RUNS:
            parts.append("…")
        return ", ".join(parts)

    @staticmethod
    def layers_text(layers: Sequence[int], word: bool = True) -> str:
        """'layers 1–4, 7' (or 'layer 5')."""
        rs = P.runs(layers)
        parts = [str(a) if a == b else f"{a}–{b}" for a, b in rs[:LIST_RUNS]]
        if len(rs) > LIST_RUNS:
            parts.append("…")
        body = ", ".join(parts)
        if not word:
            return body
        return ("layer " if len(layers) == 1 else "layers ") + body

    @staticmethod
    def step_range(lo: int, hi: int) -> str:
        """'210k' or '210k–240k'."""
        return format_step(lo) if lo == hi else f"{format_step(lo)}–{format_step(hi)}"
