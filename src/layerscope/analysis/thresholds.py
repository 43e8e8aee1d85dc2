"""Every threshold the analysis uses, in one place.

All fractions are of the map's *range* ``R = max - min`` on the analysis scale (linear, or log10 when
the values span decades or the noise is multiplicative), computed over the finite cells that are
not outliers (over the 3 x 3-median-smoothed map when the noise is material). So the same matrix
times 1000, or shifted by a constant, gets the same report. Noise (:mod:`.noise`) only ever
*raises* a threshold: every structural observation must also beat the most extreme value its
statistic would reach by noise alone over all the cells, steps or layers searched (probability
``noise_alpha`` per kind of observation), so smooth data is judged by the fractions alone.

=========================  =======  ===================================================================
name                       default  meaning
=========================  =======  ===================================================================
``log_ratio``              1000     ``scale="auto"`` uses log10 when every finite value is > 0 and the
                                    95th percentile is at least this many times the 5th
``level_low``              1/3      a layer whose median (over steps) is below this is ``low``
``level_high``             2/3      ... above this is ``high``; otherwise ``mid``
``flat``                   0.10     a layer whose smoothed values span less than this (or less than noise
                                    alone would span over that many points) is ``flat``
``leg``                    0.05     a rise or a fall counts (for rise_then_fall / fall_then_rise) when it
                                    moves at least this much (and more than noise alone would)
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
                                    ... and more than the largest noise difference of that many cells ...
``jump_min_layers``        2        ... in the same direction in at least this many layers (or in all
                                    layers when fewer have values)
``outlier``                0.20     ``outlier``: a cell beyond all but one of its 8 neighbours (all of
                                    them on an edge or beside a gap) by this fraction of the range of
                                    the finite cells ...
                                    ... and by more than the largest of that many noise draws; repeated
                                    until none is found (<= 3 passes)
``noise_share``            0.5      when the noise variance is at least this share of the variance of
                                    the map's cells, the report says that most of the variation is noise
``noise_alpha``            0.001    the chance that noise alone passes one kind of observation's noise
                                    test on a map (Bonferroni over what it searched)
``noise_material``         0.10     noise is *material* when the largest of the map's noise draws would
                                    reach this fraction of the range; levels and structure are then
                                    judged on the 3 x 3-median-smoothed map, and jumps also in the
                                    median across layers
``multiplicative``         1.5      ``scale="auto"`` also uses log10 when the values are positive, the
                                    noise is material and its linear scale is this many times what a
                                    multiplicative noise of the log scale's size would give (Box-Cox)
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
    leg: float = 0.05
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
    jump_min_layers: int = 2
    outlier: float = 0.20
    noise_share: float = 0.5
    noise_alpha: float = 0.001
    noise_material: float = 0.10
    multiplicative: float = 1.5
    band_tol: float = 0.10
    max_bands: int = 12
    max_cells: int = 1000
    min_gradient_points: int = 3

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as a plain dict (stored in the report's JSON)."""
        return asdict(self)


DEFAULT = Thresholds()
