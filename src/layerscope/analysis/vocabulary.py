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
    # The sites of training (issue 18): a hotspot of an update ratio is a layer learning fast, not an
    # outlier feature.
    Entry(
        site="update",
        metric="ratio",
        phrases={
            "hotspot": (
                "; an update-to-weight ratio this large means the optimizer changed these layers' "
                "weights by a larger fraction per step than elsewhere, so they may be learning fastest "
                "or be the first to destabilise (often-quoted healthy values are around 1e-3; a "
                "learning-rate or warm-up change would show whether it is the cause)."
            ),
            "depth_rise": "may indicate that the optimizer changes deeper layers by a larger fraction of their weights",
            "step_trend": (
                "the fraction of their weights that each step changes is moving, as it does under a "
                "learning-rate schedule; comparing with the schedule would show whether it tracks it"
            ),
        },
    ),
    Entry(
        site="update",
        phrases={
            "hotspot": (
                "; the optimizer's steps are largest there, which may follow the gradients or the "
                "layers' sizes; the ratio metric would say whether they are large relative to the weights."
            ),
        },
    ),
    Entry(
        site="param_grad",
        phrases={
            "hotspot": (
                "; these layers' parameters receive the largest gradients, which may come before a loss "
                "spike or show where the loss is most sensitive; the update ratio would show whether "
                "the optimizer passes them on."
            ),
            "depth_rise": "may indicate that the gradients reaching deeper layers' parameters are larger",
            "step_trend": (
                "the gradients' scale is changing as training proceeds, as it does when the loss "
                "flattens or sharpens"
            ),
        },
    ),
    Entry(
        site="grad_output",
        phrases={
            "hotspot": (
                "; the loss is most sensitive to these layers' outputs there; a growing backward "
                "signal may point at an exploding gradient, which param_grad norms would confirm."
            ),
            "depth_rise": "may indicate that the gradient flowing back through the blocks shrinks on its way to the first layers",
            "step_trend": "the backward signal through the blocks is changing in scale as the model learns",
        },
    ),
    Entry(
        site="weight",
        phrases={
            "hotspot": (
                "; these layers' weights are the largest, which may reflect growth under training "
                "(weight decay would hold it back) rather than any one step."
            ),
            "depth_rise": "may indicate that deeper layers' weights have grown larger",
            "step_trend": "the weights' scale is drifting as training proceeds, as it does with too little weight decay",
        },
    ),
    Entry(
        phrases={
            "step_trend": (
                "the network's internal scale may still be changing as it learns; comparing with the "
                "loss and the learning-rate schedule would show whether the change tracks learning"
            ),
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
