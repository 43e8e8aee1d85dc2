"""Width-scaled tiny GPTs for ``layerscope coord-check``: standard parametrization and muP.

Both factories follow the coord-check contract (see :mod:`layerscope.coordcheck`): they take the
``width`` (the residual width ``n_embd``; the head count stays fixed, so the head dimension grows
with the width) and return a model, or ``(model, param_groups)``. Both untie the readout from the
embedding and initialise every matrix with variance ``1/fan_in`` (PyTorch's scale, not GPT-2's
fixed 0.02: with a fixed std the activations already grow as ``width**0.5`` before training), so
at initialisation both are width-stable and the difference is in what a training step does:

- ``tiny_gpt_sp``: one learning rate for every parameter, attention ``1/sqrt(head_dim)``, plain
  readout. With Adam, a step moves each entry of a hidden matrix by about ``lr`` whatever the
  width, so ``dW @ x`` sums ``width`` such terms: activations grow like ``width`` after a step.
- ``tiny_gpt_mup``: the muP table for Adam (Tensor Programs V, table 3; microsoft/mup's
  ``MuAdam`` and ``MuReadout``), relative to ``base_width`` where both coincide: hidden matrices
  train at ``lr * base_width / width``; embeddings, biases and LayerNorms at ``lr``; the logits are
  multiplied by ``base_width / width``; attention scores by ``sqrt(base_head_dim) / head_dim``
  (``1/d`` attention, equal to ``1/sqrt(d)`` at the base width). For SGD (``optimizer="sgd"``)
  the groups follow ``MuSGD`` instead: hidden matrices at ``lr``, vector-like parameters
  (embeddings, biases, LayerNorms, the readout) at ``lr * width / base_width``.

>>> model, groups = tiny_gpt_mup(128, base_width=32)
>>> model.config.n_embd, [round(g["lr_scale"], 3) for g in groups]
(128, [0.25, 1.0])
"""

from __future__ import annotations

import math

import torch.nn as nn

from ..errors import ConfigError
from .model import GPTConfig, TinyGPT

_HIDDEN = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # matrices with both sides ~ width


def _check(width: int, n_head: int, base_width: int | None = None) -> None:
    if not isinstance(width, int) or width < n_head or width % n_head:
        raise ConfigError(
            f"width={width!r} is not a positive multiple of n_head={n_head}; pass widths such as "
            f"{n_head * 16}, {n_head * 32}, {n_head * 64}."
        )
    if base_width is not None and (base_width < n_head or base_width % n_head):
        raise ConfigError(f"base_width={base_width!r} is not a positive multiple of n_head={n_head}.")


def _config(
    width: int,
    n_layer: int,
    n_head: int,
    block_size: int,
    attn_scale: float | None = None,
    readout_mult: float = 1.0,
) -> GPTConfig:
    return GPTConfig(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=width,
        block_size=block_size,
        attn_scale=attn_scale,
        readout_mult=readout_mult,
        tie_weights=False,
    )


def _init_fan_in(model: TinyGPT) -> None:
    """Variance 1/fan_in for every matrix (residual projections also / 2L, as GPT-2), N(0, 1)
    embeddings, zero biases, LayerNorm at (1, 0): every activation O(1) at any width."""
    n_layer = model.config.n_layer
    for name, p in model.named_parameters():
        if p.ndim == 2 and not name.startswith(("wte", "wpe")):
            std = 1.0 / math.sqrt(p.shape[1])
            if name.endswith("c_proj.weight"):
                std /= math.sqrt(2 * n_layer)
            nn.init.normal_(p, 0.0, std)
        elif name.startswith(("wte", "wpe")):
            nn.init.normal_(p, 0.0, 1.0)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


def tiny_gpt_sp(width: int, n_layer: int = 4, n_head: int = 4, block_size: int = 64) -> TinyGPT:
    """A tiny GPT of residual width ``width`` in standard parametrization (one learning rate).

    >>> tiny_gpt_sp(64).config.n_embd
    64
    """
    _check(width, n_head)
    model = TinyGPT(_config(width, n_layer, n_head, block_size))
    _init_fan_in(model)
    return model


def tiny_gpt_mup(
    width: int,
    n_layer: int = 4,
    n_head: int = 4,
    block_size: int = 64,
    base_width: int = 32,
    optimizer: str = "adam",
) -> tuple[TinyGPT, list[dict[str, object]]]:
    """A tiny GPT of residual width ``width`` in muP, equal to :func:`tiny_gpt_sp` at ``base_width``.

    Returns ``(model, param_groups)``; each group's ``lr_scale`` multiplies the coord-check's
    learning rate (the per-layer learning rates of the muP table for ``optimizer``).
    """
    _check(width, n_head, base_width)
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"optimizer={optimizer!r}; the muP factory knows 'adam', 'adamw' and 'sgd'.")
    mult = width / base_width
    base_head = base_width // n_head
    head = width // n_head
    model = TinyGPT(
        _config(
            width,
            n_layer,
            n_head,
            block_size,
            attn_scale=math.sqrt(base_head) / head,
            readout_mult=1.0 / mult,
        )
    )
    _init_fan_in(model)
    hidden = [p for n, p in model.named_parameters() if n.endswith(_HIDDEN)]
    ids = {id(p) for p in hidden}
    vector = [p for p in model.parameters() if id(p) not in ids]
    if optimizer == "sgd":
        groups: list[dict[str, object]] = [
            {"params": hidden, "lr_scale": 1.0, "name": "hidden"},
            {"params": vector, "lr_scale": mult, "name": "vector-like"},
        ]
    else:
        groups = [
            {"params": hidden, "lr_scale": 1.0 / mult, "name": "hidden"},
            {"params": vector, "lr_scale": 1.0, "name": "vector-like"},
        ]
    return model, groups
