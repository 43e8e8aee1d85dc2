"""How layerscope writes numbers, in one place: the renderers, the report, the CLI and the
comparison all format through these functions.

Two rules run through them:

- a step named in text is exact (``step 60050``); only an axis label may round (``60k``), because
  the axis also shows where the tick sits;
- a percentage is written in plain digits (``100%``, ``2420%``, ``0.35%``), never in exponent
  form, and a share that is not exactly 100% (or 0%) never prints as one.
"""

from __future__ import annotations

import math
from decimal import Decimal

# A percentage smaller than this (in %) is written "<0.0001%": more digits say nothing useful.
PCT_FLOOR = 1e-4


def format_step(step: int | float) -> str:
    """A step as text names it: exact, plain digits.

    >>> [format_step(s) for s in (0, 950, 60050, 1_200_000, -3)]
    ['0', '950', '60050', '1200000', '-3']
    >>> format_step(2.5)   # a mean of steps, say
    '2.5'
    """
    s = float(step)
    if math.isnan(s) or math.isinf(s):
        return format_value(s)
    return str(int(s)) if s == int(s) else _plain(s)


def step_label(step: int | float) -> str:
    """Short axis label for a step, as papers write them (axis labels only; text uses
    :func:`format_step`).

    >>> [step_label(s) for s in (0, 950, 30000, 1200000, 1500, 2_000_000_000, 60050)]
    ['0', '950', '30k', '1.2M', '1.5k', '2B', '60k']
    """
    s = float(step)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(s) >= div:
            v = s / div
            txt = f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:.0f}"
            return txt + suffix
    return str(int(s)) if s == int(s) else f"{s:g}"


def format_value(v: float, digits: int = 3) -> str:
    """A value with ``digits`` significant digits; NaN and infinities spelled out.

    >>> [format_value(x) for x in (0.0081234, 12345.0, float("nan"), float("-inf"), 0.0)]
    ['0.00812', '1.23e+04', 'nan', '-inf', '0']
    """
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def format_signed(v: float, digits: int = 3, unit: str = "") -> str:
    """A value with its sign always written (``+0.5``, ``-2``, ``0``), then ``unit``.

    >>> format_signed(0.5), format_signed(-2.0), format_signed(0.0), format_signed(24.2, unit="%")
    ('+0.5', '-2', '0', '+24.2%')
    """
    text = format_percent(v, digits).rstrip("%") if unit == "%" else format_value(v, digits)
    return ("+" if v > 0 and not text.startswith("+") else "") + text + unit


def format_percent(pct: float, digits: int | None = None) -> str:
    """A percentage (``pct`` already in %) in plain digits.

    ``digits=None`` writes the number as given (the report stores rounded percentages); a number
    of ``digits`` rounds to that many significant digits, but never to a false 100% or 0%: 99.97
    with 2 digits is ``99.97%``, not ``100%``. Below 0.0001% it says ``<0.0001%``.

    >>> [format_percent(x) for x in (100.0, 9.2, 0.0084, 2400.0, 1.2e6)]
    ['100%', '9.2%', '0.0084%', '2400%', '1200000%']
    >>> [format_percent(x, 2) for x in (100.0, 2423.7, 99.97, 0.004, 12.5, -7.25)]
    ['100%', '2400%', '99.97%', '0.004%', '12%', '-7.2%']
    >>> format_percent(1e-9, 2), format_percent(0.0), format_percent(float("nan"))
    ('<0.0001%', '0%', 'nan%')
    """
    if math.isnan(pct) or math.isinf(pct):
        return format_value(pct) + "%"
    if pct == 0:
        return "0%"
    if abs(pct) < PCT_FLOOR:
        return ("-" if pct < 0 else "") + f"<{_plain(PCT_FLOOR)}%"
    if digits is None:
        return _plain(pct) + "%"
    d = max(1, int(digits))
    text = _plain(float(f"{pct:.{d}g}"))
    # Rounding must not turn "almost all" into "all" (or "almost none" into "none").
    while d < 12 and text.lstrip("-") in ("100", "0") and abs(pct) not in (100.0, 0.0):
        d += 1
        text = _plain(float(f"{pct:.{d}g}"))
    return text + "%"


def format_share(fraction: float, digits: int = 3) -> str:
    """A fraction in 0..1 as a percentage: :func:`format_percent` of ``100 * fraction``.

    >>> format_share(1.0), format_share(0.999), format_share(0.1234)
    ('100%', '99.9%', '12.3%')
    """
    return format_percent(100.0 * fraction, digits)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 step"``, ``"3 steps"`` (``many`` for irregular plurals).

    >>> plural(1, "step"), plural(3, "step"), plural(2, "matrix", "matrices")
    ('1 step', '3 steps', '2 matrices')
    """
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _plain(x: float) -> str:
    """The shortest text of ``x`` in positional notation (no exponent), trailing zeros trimmed."""
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
