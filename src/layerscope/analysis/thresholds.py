"""Every threshold the analysis uses, in one place.

All fractions are of the map's *range* ``R = max - min`` on the analysis scale (linear, or log10 when
the values span decades), computed over the finite cells that are not outliers. So the same matrix
times 1000, or shifted by a constant, gets the same report. ``sigma`` is the cell-to-cell noise,
estimated robustly from second differences along the steps (1.4826 * median |d2| / sqrt(6)); it only
ever *raises* a threshold, so smooth data is judged by the fractions alone. (Along the layers
instead, when that is smaller: noise shows in both directions, structure usually in one.)

=========================  =======  ===================================================================
name                       default  meaning
=========================  =======  ===================================================================
``log_ratio``              1000     ``scale="auto"`` uses log10 when every finite value is > 0 and the
                                    95th percentile is at least this many times the 5th
``level_low``              1/3      a layer whose median (over steps) is below this is ``low``
``level_high``             2/3      ... above this is ``high``; otherwise ``mid``
``flat``                   0.10     a layer whose smoothed values span less than this is ``flat``
``flat_noise_k``           6        ... or span less than this many sigma of the smoothed series
``leg``                    0.05     a rise or a fall counts (for rise_then_fall / fall_then_rise) when it
                                    moves at least this much ...
``leg_noise_k``            4        ... and at least this many sigma of the smoothed series
``irregular_path``         2.0      ``irregular`` when the smoothed series travels more than this many
                                    times the shortest path through its first value, extremes and last
                                    value (it wiggles), or has both an inner peak and an inner trough
``smooth_frac``            1/20     trends are judged on a centred moving average over this fraction of
                                    the steps (odd window, 1 = none below 40 steps) ...
``trend_points``           50       ... taken at this many evenly spaced steps at most
``plateau_tol``            0.10     a rising layer plateaus from the first step where it is within this
                                    fraction of its rise below its peak ...
``plateau_max_decline``    0.25     ... never falls more than this fraction of its rise below the peak
                                    afterwards ("slight decline") ...
``plateau_min_tail``       0.25     ... and stays so for at least this fraction of its steps (>= 2)
``consistent_low``         0.20     ``consistently_low``: every value in the bottom 20% of the range
``consistent_high``        0.80     ``consistently_high``: every value in the top 20%
``gradient``               0.20     ``depth_gradient`` / ``step_trend``: the median profile (over steps /
                                    over layers) must change by at least this end to end ...
``monotone_tol``           0.10     ... and never move back by more than this (largest drawdown)
``hotspot``                0.90     ``hotspot``: cells at or above 90% of the range
``jump``                   0.20     ``sudden_change``: a step-to-step change of at least this ...
``jump_ratio``             3        ... and this many times the layer's median step-to-step change ...
``jump_noise_k``           5        ... and this many sigma * sqrt(2) ...
``jump_min_layers``        2        ... in the same direction in at least this many layers (or in all
                                    layers when fewer have values)
``outlier``                0.20     ``outlier``: a cell beyond all but one of its 8 neighbours (all of
                                    them on an edge or beside a gap) by this fraction of the range of
                                    the finite cells ...
``outlier_noise_k``        6        ... and by this many sigma; repeated until none is found (<= 3 passes)
``noise_share``            0.5      when sigma^2 is at least this share of the variance of the map's
                                    cells, the report says so and claims no depth_gradient, step_trend
                                    or hotspot (per-layer trends still need to beat the noise floors)
``band_tol``               0.10     adjacent layers form a band when they share trend, level and plateau
                                    and their smoothed values differ from the band's first layer by at
                                    most this on average; while there are more than ``max_bands`` it is
                                    doubled, doubled again, then dropped, and last equal chunks of
                                    adjacent layers are described as mixed (noise-dominated maps: dropped)
``max_bands``              12       at most this many bands in the Markdown (layers_detail keeps all)
``max_cells``              1000     at most this many ``[step, layer]`` cells listed per observation
``min_gradient_points``    3        fewest layers / steps for a depth_gradient / step_trend claim
=========================  =======  ===================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """The analysis's thresholds; see the module docstring for what each one means.

    >>> Thresholds().hotspot
    0.9
    >>> Thresholds(hotspot=0.95).hotspot
    0.95
    """

    log_ratio: float = 1000.0
    level_low: float = 1 / 3
    level_high: float = 2 / 3
    flat: float = 0.10
    flat_noise_k: float = 6.0
    leg: float = 0.05
    leg_noise_k: float = 4.0
    irregular_path: float = 2.0
    smooth_frac: float = 1 / 20
    trend_points: int = 50
    plateau_tol: float = 0.10
    plateau_max_decline: float = 0.25
    plateau_min_tail: float = 0.25
    consistent_low: float = 0.20
    consistent_high: float = 0.80
    gradient: float = 0.20
    monotone_tol: float = 0.10
    hotspot: float = 0.90
    jump: float = 0.20
    jump_ratio: float = 3.0
    jump_noise_k: float = 5.0
    jump_min_layers: int = 2
    outlier: float = 0.20
    outlier_noise_k: float = 6.0
    noise_share: float = 0.5
    band_tol: float = 0.10
    max_bands: int = 12
    max_cells: int = 1000
    min_gradient_points: int = 3

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as a plain dict (stored in the report's JSON)."""
        return asdict(self)


DEFAULT = Thresholds()
