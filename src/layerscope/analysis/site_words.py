"""What the values of a training site mean, in the interpretation's hedged words.

The sites of training (``grad_output``, ``param_grad``, ``update``, ``weight``) are not
activations: a hotspot of an update ratio is a layer learning fast, not an outlier feature. The
report asks :func:`reading` for a site's phrase of one situation and falls back to its generic
(activation) wording when this table has none. ``{m}`` is replaced by the metric's code span.

>>> reading("update", "ratio", "hotspot").startswith("; an update-to-weight ratio")
True
>>> reading("output", "rms", "hotspot") is None
True
"""

from __future__ import annotations

# (site, metric substring or None) -> situation -> phrase; the first match in table order wins.
_READINGS: tuple[tuple[str, str | None, dict[str, str]], ...] = (
    (
        "update",
        "ratio",
        {
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
    (
        "update",
        None,
        {
            "hotspot": (
                "; the optimizer's steps are largest there, which may follow the gradients or the "
                "layers' sizes; the ratio metric would say whether they are large relative to the weights."
            ),
        },
    ),
    (
        "param_grad",
        None,
        {
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
    (
        "grad_output",
        None,
        {
            "hotspot": (
                "; the loss is most sensitive to these layers' outputs there; a growing backward "
                "signal may point at an exploding gradient, which param_grad norms would confirm."
            ),
            "depth_rise": "may indicate that the gradient flowing back through the blocks shrinks on its way to the first layers",
            "step_trend": "the backward signal through the blocks is changing in scale as the model learns",
        },
    ),
    (
        "weight",
        None,
        {
            "hotspot": (
                "; these layers' weights are the largest, which may reflect growth under training "
                "(weight decay would hold it back) rather than any one step."
            ),
            "depth_rise": "may indicate that deeper layers' weights have grown larger",
            "step_trend": "the weights' scale is drifting as training proceeds, as it does with too little weight decay",
        },
    ),
)


def reading(site: str, metric: str, situation: str) -> str | None:
    """The phrase for ``situation`` of ``metric`` values at a training ``site``, or None."""
    name = metric.lower()
    for s, sub, phrases in _READINGS:
        if s == site and (sub is None or sub in name) and situation in phrases:
            return phrases[situation].replace("{m}", f"`{metric}`")
    return None
