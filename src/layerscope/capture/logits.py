"""The ``logits`` site: the output distribution of a language model, one series per step.

A forward hook on the LM head (``model.get_output_embeddings()`` for Hugging Face models, else a
projection named ``lm_head``/``embed_out``/``output``/``head`` holding the model's last
parameters) reads its output ``(batch, tokens, vocab)`` on recorded steps and folds per-row
statistics into a ``(1, 4)`` state (:func:`layerscope.stats.heads.logits_partials`): the max
logit, the mean log Z (logsumexp: what z-loss penalises) and the mean entropy of the softmax.
Padding rows are left out when the recorder has a token mask. Rows are subsampled to at most
``MAX_ROWS`` (evenly spaced, always including the last one) so that a large vocabulary costs a
bounded amount; no host sync.

The values are stored in the column of the last layer (the one the LM head reads): a plain
``(steps x layers)`` series with one filled column, drawn as a line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..stats.heads import empty_heads, logits_partials, merge_heads
from .discovery import named_modules, unwrap
from .sites import extract_tensor
from .sources import CaptureContext, MaskTracker, _in_backward

MAX_ROWS = 4096  # token rows per forward whose softmax is taken
HEAD_NAMES = ("lm_head", "embed_out", "output", "head", "output_projection", "classifier")


def find_lm_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The LM head of ``model`` (name, module), or a ConfigError that says what to do."""
    root = unwrap(model)
    get = getattr(root, "get_output_embeddings", None)
    head = get() if callable(get) else None
    mods = named_modules(root)
    if isinstance(head, nn.Module):
        for name, m in mods:
            if m is head:
                return name, m
    for want in HEAD_NAMES:
        for name, m in mods:
            if name.rpartition(".")[2] == want and isinstance(unwrap(m), nn.Linear):
                return name, m
    raise ConfigError(
        f"site 'logits': no LM head found in {type(root).__name__} (get_output_embeddings() is None and no "
        f"nn.Linear named {', '.join(HEAD_NAMES)}); leave 'logits' out of sites."
    )


def row_index(n: int) -> torch.Tensor | None:
    """Evenly spaced rows (host ints from the shape), or None for all ``n``."""
    if n <= MAX_ROWS:
        return None
    stride = n / MAX_ROWS
    return torch.tensor(sorted({n - 1 - int(i * stride) for i in range(MAX_ROWS)}), dtype=torch.long)


class LogitsSource:
    """The capture source of the ``logits`` site: one forward hook on the LM head."""

    always_attached: ClassVar[bool] = False
    site = "logits"

    def __init__(self, name: str, module: nn.Module, layer_index: int, masks: MaskTracker | None) -> None:
        self.name, self.module, self.layer_index, self.masks = name, module, layer_index, masks
        self.slots: list[Any] = []
        self.state: torch.Tensor | None = None
        self._handles: list[Any] = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _hook(self, ctx: CaptureContext) -> Callable[..., None]:
        gate = ctx.gate

        # No host sync in here: shapes and Python bools only; the rest are tensor ops.
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not gate.open_for(module) or (not torch.compiler.is_compiling() and _in_backward()):
                return
            t = extract_tensor(out)
            if t is None or not t.is_floating_point() or t.dim() < 2:
                return
            with torch.no_grad():
                x = t.detach().reshape(-1, t.shape[-1])
                valid = None
                m = self.masks
                pad = None if m is None else (m.explicit if m.explicit is not None else m.current.get(""))
                if pad is not None and t.dim() == 3 and tuple(pad.shape) == tuple(t.shape[:2]):
                    valid = pad.to(x.device).reshape(-1)
                idx = row_index(x.shape[0])
                if idx is not None:
                    idx = idx.to(x.device)
                    x = x.index_select(0, idx)
                    valid = valid.index_select(0, idx) if valid is not None else None
                part = logits_partials(x, valid)
            self.state = part if self.state is None else merge_heads(self.state, part)

        return hook

    def attach(self, ctx: CaptureContext) -> None:
        if not self._handles:
            self._handles = [self.module.register_forward_hook(self._hook(ctx))]

    def detach(self) -> None:
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    close = detach

    def reset(self) -> None:
        self.state = None

    def snapshot(self, n_layers: int, device: torch.device) -> torch.Tensor:
        """This step's ``(n_layers, 1, 4)`` state (the last layer's column holds it)."""
        out = empty_heads(n_layers, device).reshape(n_layers, 1, 4)
        if self.state is not None:
            out[self.layer_index - 1, 0] = self.state[0].to(device)
        return out

    def run_config(self) -> dict[str, Any]:
        return {"logits": {"module": self.name, "layer": self.layer_index, "max_rows": MAX_ROWS}}


__all__ = ["MAX_ROWS", "LogitsSource", "find_lm_head", "row_index"]
