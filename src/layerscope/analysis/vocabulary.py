"""What a site's or a metric's values mean, in the words the interpretation uses.

The narrative never branches on a site or metric name: it asks :func:`phrase` for the reading of
one situation (``"depth_rise"``: values grow with depth; ``"hotspot"``: where the largest values
are) and gets the most specific one the table holds, in this order: an entry for the exact
(site, metric) pair, one for the site, one for the metric (matched as a substring of its name, in
table order), the default. A new site or metric gets its own readings by adding an entry here::

    Entry(site="update", metric="ratio", phrases={"hotspot": "; ..."})

``{m}`` in a phrase is replaced by the metric's name as a code span.

>>> phrase("hotspot", site="output", metric="kurtosis").startswith("; high kurtosis")
True
>>> phrase("depth_rise", site="mlp_act", metric="rms")
'may indicate that deeper layers carry larger `rms`'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .text import code


@dataclass(frozen=True)
class Entry:
    """Readings for values of ``site`` (exact name, None: any) and ``metric`` (a substring of the
    metric's name, None: any)."""

    site: str | None = None
    metric: str | None = None
    phrases: Mapping[str, str] = field(default_factory=dict)

    def matches(self, site: str, metric: str) -> bool:
        return (self.site is None or self.site == site) and (
            self.metric is None or self.metric in metric.lower()
        )

    @property
    def rank(self) -> int:
        """0 for a (site, metric) entry, 1 for a site entry, 2 for a metric entry, 3 for the default."""
        return (0 if self.metric else 1) if self.site else (2 if self.metric else 3)


ENTRIES: tuple[Entry, ...] = (
    Entry(
        site="output",
        phrases={
            "depth_rise": "is consistent with each block adding to a residual stream that grows with depth",
        },
    ),
    Entry(
        metric="kurt",
        phrases={
            "hotspot": (
                "; high kurtosis means heavy-tailed activations, so these layers and steps may hold "
                "outlier features, which a max_abs statistic would confirm."
            ),
        },
    ),
    Entry(
        metric="max",
        phrases={
            "hotspot": (
                "; these may be outlier features or activation spikes, and kurtosis would tell "
                "whether a few extreme units or a broad rise in scale drives them."
            ),
        },
    ),
    Entry(
        phrases={
            "depth_rise": "may indicate that deeper layers carry larger {m}",
            "hotspot": (
                "; if {m} measures activation scale, these layers and steps may be the first to "
                "inspect for instability (overflow, outlier features), for example with a max_abs "
                "or kurtosis statistic."
            ),
        },
    ),
)


def phrase(key: str, *, site: str, metric: str, entries: tuple[Entry, ...] = ENTRIES) -> str:
    """The most specific reading of ``key`` for values of ``metric`` at ``site`` (see the module
    docstring); KeyError when no entry, not even the default, has one."""
    found = [e for e in entries if key in e.phrases and e.matches(site, metric)]
    if not found:
        raise KeyError(f"no reading {key!r} for site {site!r}, metric {metric!r}")
    best = min(found, key=lambda e: e.rank)  # min() keeps table order among equal ranks
    return best.phrases[key].replace("{m}", code(metric))
