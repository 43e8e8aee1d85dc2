"""Small formatting helpers shared by the renderers, the report and the CLI."""

from __future__ import annotations

import math


def format_step(step: int | float) -> str:
    """Short label for a training step, as papers write them.

    >>> [format_step(s) for s in (0, 950, 30000, 1200000, 1500, 2_000_000_000)]
    ['0', '950', '30k', '1.2M', '1.5k', '2B']
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
