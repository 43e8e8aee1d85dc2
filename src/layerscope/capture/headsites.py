"""Sites whose statistics are not activation moments: ``attn`` (per head) and ``logits``.

Their sources keep ``(k, 4)`` states of their own (:mod:`layerscope.stats.heads`) instead of
slots; the Recorder snapshots them at a record step, merges them across ranks and copies them to
the host with the rest of a flush (one transfer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch
import torch.nn as nn

from .attention import AttentionSource, attention_points
from .discovery import Layer
from .logits import LogitsSource, find_lm_head
from .sources import CaptureContext, MaskTracker, mask_key

HEAD_SITES = ("attn", "logits")


class HeadSource(Protocol):
    """What the Recorder asks of an ``attn``/``logits`` source."""

    site: str
    slots: list[Any]
    always_attached: ClassVar[bool]

    @property
    def attached(self) -> bool: ...

    def attach(self, ctx: CaptureContext) -> None: ...

    def detach(self) -> None: ...

    def close(self) -> None: ...

    def reset(self) -> None: ...

    def snapshot(self, n_layers: int, device: torch.device) -> torch.Tensor: ...

    def run_config(self) -> dict[str, Any]: ...


def build_head_sources(
    model: nn.Module,
    layers: Sequence[Layer],
    sites: Sequence[str],
    masks: MaskTracker | None,
    attn_queries: int | None,
) -> list[HeadSource]:
    """The sources of the ``attn`` and ``logits`` sites among ``sites`` (a ConfigError where one
    cannot be recorded in this model)."""
    out: list[HeadSource] = []
    stacks = sorted({la.stack for la in layers})
    if "attn" in sites:
        pts = attention_points(layers)
        for pt in pts:
            pt.mask_key = mask_key(pt.layer.stack, stacks)
        out.append(AttentionSource(pts, masks, attn_queries))
    if "logits" in sites:
        name, mod = find_lm_head(model)
        out.append(LogitsSource(name, mod, max(la.index for la in layers), masks))
    return out


__all__ = ["HEAD_SITES", "HeadSource", "build_head_sources"]
