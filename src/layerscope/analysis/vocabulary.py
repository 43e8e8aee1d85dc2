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
    # Attention heads and output logits (issue 19). The readings say what the numbers are and what
    # they are known to accompany; none claims a cause the report's numbers do not show.
    Entry(
        site="attn",
        metric="max_logit",
        phrases={
            "meaning": (
                "the largest pre-softmax attention logit of a head (q . k scaled, plus any position bias) "
                "over the query and key positions it may attend; the softmax turns a large logit into "
                "attention on one key, and logits that keep growing are an often-watched early sign of "
                "training instability"
            ),
            "hotspot": (
                "; the attention logits (q . k scaled, before the softmax) are largest there, so those "
                "layers' heads may attend most sharply; growing attention logits are an often-watched early "
                "sign of training instability, and the per-head section says which heads drive it."
            ),
            "depth_rise": "may indicate that deeper layers' heads form larger attention logits, and so sharper attention",
            "step_trend": (
                "the heads' largest attention logits are changing as training proceeds, which may be attention "
                "sharpening while the model learns; a growth that does not level off could be the start of "
                "attention-logit instability"
            ),
            "head_growth": (
                "may be sharpening their attention as they learn, or may be the start of the attention-logit "
                "growth that small-scale studies of training instability watch for (logit soft-capping and "
                "QK-norm act on it); whether the growth levels off, and the loss at the same steps, would "
                "tell the two apart"
            ),
            "alert": (
                "is a head's max logit leaving its own recent range; it may come before a divergence, and the "
                "loss over the following steps would show whether it did"
            ),
        },
    ),
    Entry(
        site="attn",
        metric="entropy",
        phrases={
            "meaning": (
                "the mean entropy, in nats, of a head's attention over the keys it may attend: the log of "
                "the number of keys for uniform attention, zero for attention on one key; a head whose "
                "entropy falls toward zero has collapsed onto few keys (entropy collapse)"
            ),
            "hotspot": (
                "; attention entropy is highest there, so those heads may spread their attention over many "
                "keys (the per-head section says which heads, if any, collapse)."
            ),
            "depth_rise": "may indicate that deeper layers' heads spread their attention over more keys",
            "step_trend": (
                "the heads' attention may be getting more spread out or more focused as training proceeds; "
                "a steady fall toward zero could be the entropy collapse the per-head section looks for"
            ),
            "head_collapse": (
                "now put nearly all their attention on a few keys; that may be a sharp pattern the model "
                "learned (a previous-token or copying head), or the attention-entropy collapse reported "
                "before some divergences; the loss and the same heads' max logit would tell them apart"
            ),
            "growth_and_collapse": (
                "which may be the combination (larger logits, fewer keys attended) that attention-entropy "
                "collapse describes, though the numbers here do not show that it harms training"
            ),
            "alert": (
                "is a head's attention entropy leaving its own recent range, which may mark attention "
                "focusing abruptly; the loss at the same steps would show whether it matters"
            ),
        },
    ),
    Entry(
        site="attn",
        metric="sink",
        phrases={
            "meaning": (
                "the mean share of a head's attention on the first position it may attend; heads of trained "
                "language models often park attention there when they have nothing to attend to (an "
                "attention sink)"
            ),
            "hotspot": (
                "; those heads put the largest share of their attention on the first position, which may "
                "be an attention sink (a place for attention that is not needed), common in trained "
                "language models and not a fault by itself."
            ),
            "depth_rise": "may indicate that deeper layers' heads park more of their attention on the first position",
            "step_trend": (
                "the share of attention on the first position is changing as training proceeds, which may be "
                "heads learning to use it as a sink"
            ),
            "head_sink": (
                "may use the first position as an attention sink, a no-op target that trained language "
                "models often develop; it is a fault only if the model needs those heads elsewhere"
            ),
            "alert": "is a head's sink share leaving its own recent range, which may mark a head changing what it does",
        },
    ),
    Entry(
        site="attn",
        phrases={
            "head_growth": (
                "grow their max attention logit the most; that may be attention sharpening as the model "
                "learns, or the start of attention-logit growth"
            ),
            "alert": (
                "is an attention statistic leaving its own recent range, which may come before a "
                "divergence; the loss at the same steps would show whether it matters"
            ),
        },
    ),
    Entry(
        site="logits",
        metric="max_logit",
        phrases={"meaning": "the largest logit of the LM head's output over the sampled token positions"},
    ),
    Entry(
        site="logits",
        metric="log_z",
        phrases={
            "meaning": (
                "the mean log-partition function of the output, logsumexp of the logits per token; z-loss "
                "penalises its square, pulling it toward zero, and a log Z that drifts away from zero may "
                "come before output-logit divergence"
            ),
        },
    ),
    Entry(
        site="logits",
        metric="entropy",
        phrases={"meaning": "the mean entropy, in nats, of the model's next-token distribution"},
    ),
    Entry(
        site="logits",
        phrases={
            "hotspot": (
                "; the output logits are most extreme there, which may come from a sharpening output "
                "distribution or from logits drifting in scale."
            ),
            "step_trend": "the output logits' scale or sharpness may be changing as the model learns",
            "alert": (
                "is an output-logit statistic leaving its own recent range; a sudden growth of the output "
                "logits may come before a loss divergence, and the loss at the same steps would show it"
            ),
            "logits_max_logit_rising": (
                "the largest output logit is growing, as it does when the model becomes more confident; "
                "growth that does not level off alongside a growing log Z may be logit drift, which "
                "z-loss or a final-logit soft-cap hold back"
            ),
            "logits_log_z_rising": (
                "log Z is drifting up, away from zero; that is the quantity z-loss penalises, and a log Z "
                "that keeps growing may come before output-logit divergence, though it can also follow "
                "a growing vocabulary bias without harm"
            ),
            "logits_log_z_falling": (
                "log Z is moving down; if it is moving toward zero that is what z-loss encourages, "
                "and if it is moving below zero the logits may be shifting as a whole"
            ),
            "logits_entropy_falling": (
                "the output distribution is getting sharper, as it does when the model learns to predict; "
                "an entropy that falls much faster than the loss would suggest over-confidence"
            ),
            "logits_entropy_rising": (
                "the output distribution is getting flatter, which may mean the model is becoming less "
                "certain, as it does after a disruption of training"
            ),
        },
    ),
    Entry(
        phrases={
            "step_trend": (
                "the network's internal scale may still be changing as it learns; comparing with the "
                "loss and the learning-rate schedule would show whether the change tracks learning"
            ),
            "depth_rise": "may indicate that deeper layers carry larger {m}",
            "alert": (
                "is a value leaving its own recent range (or turning non-finite); it may come before a "
                "divergence, and the loss over the following steps would show whether it did"
            ),
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
