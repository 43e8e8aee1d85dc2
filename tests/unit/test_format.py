"""One formatting module for every number layerscope writes, on its edge values (issue 23 item 3):
steps named in text are exact, percentages are plain digits and never round to a false 100%/0%."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layerscope._format import (
    format_percent,
    format_share,
    format_signed,
    format_step,
    format_value,
    plural,
    step_label,
)
from layerscope.analysis import report
from layerscope.render.diff import summarize
from layerscope.store.heatmap import Heatmap


@pytest.mark.parametrize(
    ("step", "text"),
    [(0, "0"), (1, "1"), (60050, "60050"), (1_200_000, "1200000"), (-7, "-7"), (2**40, str(2**40))],
)
def test_steps_in_text_are_exact(step: int, text: str) -> None:
    assert format_step(step) == text


def test_axis_labels_may_round() -> None:
    assert [step_label(s) for s in (950, 1000, 60050, 1_250_000, 3e9)] == ["950", "1k", "60k", "1.2M", "3B"]


@pytest.mark.parametrize(
    ("pct", "digits", "text"),
    [
        (100.0, 2, "100%"),
        (99.97, 2, "99.97%"),  # not a false "100%"
        (99.4, 2, "99%"),
        (0.004, 2, "0.004%"),
        (1e-9, 2, "<0.0001%"),  # not a false "0%"
        (-1e-9, 2, "-<0.0001%"),
        (0.0, 2, "0%"),
        (2423.7, 3, "2420%"),  # not "2.42e+03%"
        (1.5e7, 3, "15000000%"),
        (-33.333, 3, "-33.3%"),
        (9.2, None, "9.2%"),  # as given (the report stores rounded percentages)
        (1.2e6, None, "1200000%"),
        (float("nan"), 2, "nan%"),
        (float("inf"), 2, "inf%"),
    ],
)
def test_percentages_are_plain_digits(pct: float, digits: int | None, text: str) -> None:
    assert format_percent(pct, digits) == text
    assert "e+" not in text and "e-" not in text


def test_shares_signs_and_plurals() -> None:
    assert (format_share(1.0), format_share(0.9999), format_share(0.0)) == ("100%", "99.99%", "0%")
    assert (format_signed(2420.0, 3, "%"), format_signed(-0.5), format_signed(0.0)) == ("+2420%", "-0.5", "0")
    assert (plural(0, "step"), plural(1, "layer"), plural(2, "layer")) == ("0 steps", "1 layer", "2 layers")
    assert format_value(float("nan")) == "nan" and format_value(12345.0) == "1.23e+04"


def test_compare_writes_100_percent_and_large_changes_in_plain_digits() -> None:
    # Run B is higher everywhere, by +2420% relative at one cell: the "1e+02%" and "+2.42e+03%".
    a = Heatmap(np.full((3, 2), 1.0), steps=[10, 20, 30], layers=[1, 2], run="a")
    bv = np.full((3, 2), 1.5)
    bv[2, 1] = 25.2
    b = Heatmap(bv, steps=[10, 20, 30], layers=[1, 2], run="b")
    text = " ".join(summarize(a, b).sentences)
    assert "higher than a in 100% of the compared cells and lower in 0%" in text
    rel = " ".join(summarize(a, b, relative=True).sentences)
    assert "+2420%" in rel and "e+0" not in rel


def test_the_report_names_exact_steps() -> None:
    steps = [60050 + 10 * i for i in range(12)]
    v = np.outer(np.linspace(1, 2, 12), np.linspace(1, 3, 4))
    v[7, 2] = 40.0  # an outlier the report names with its step
    md = report(Heatmap(v, steps=steps, layers=[1, 2, 3, 4], metric="rms")).to_markdown()
    assert "60050" in md and "60k" not in md
    assert not any(
        t.endswith("k") and t[:-1].replace(".", "").isdigit() for t in md.replace("–", " ").split()
    )
    assert math.isfinite(float(steps[7])) and str(steps[7]) in md
