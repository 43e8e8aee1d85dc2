"""Which layers and sites a Recorder records, and one statistics slot per (layer, site)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..stats import SlotAccumulator, StatSpec
from .discovery import Layer, Selection, discover_layers
from .headsites import HEAD_SITES
from .sites import SiteHook, resolve_sites
from .sources import Slot, mask_key


def plan_slots(
    model: nn.Module, layers: Selection, config: Any, spec: StatSpec
) -> tuple[list[Layer], list[SiteHook], list[Slot]]:
    """The layers of ``model``, the activation sites' hooks and their slots.

    ``config`` is the Recorder's ``RecorderConfig``; ``sites="all"`` is replaced there by the sites
    found (the run records, and its config says, the sites there are). Head sites (attn, logits)
    have sources of their own and no slot here.
    """
    found = discover_layers(model, layers)
    act_sites = [s for s in config.sites if s not in HEAD_SITES]
    hooks = resolve_sites(found, act_sites) if act_sites else []
    if "all" in config.sites:
        heads = tuple(s for s in config.sites if s in HEAD_SITES)
        config.sites = tuple(dict.fromkeys(h.site for h in hooks)) + heads
        config.validate()  # sample={site: k} is checked against the sites found
    per_site = config.sample_per_site()
    stacks = sorted({la.stack for la in found})
    slots = [
        Slot(h, SlotAccumulator(spec, per_site.get(h.site)), mask_key(h.layer.stack, stacks)) for h in hooks
    ]
    return found, hooks, slots
