"""Sites: the places inside a layer whose activations are recorded.

``output``   the layer's output (the residual stream of a transformer block)
``mlp_act``  the MLP's hidden activation after the nonlinearity: a hook on the activation module,
             or on the input of the down-projection when the nonlinearity is functional
``attn_out`` the attention sub-module's output
``mlp_out``  the MLP sub-module's output

Any other module can be recorded by selecting it as a layer (``layers="blocks.*.mlp.act"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError
from .discovery import Layer

SITES = ("output", "mlp_act", "attn_out", "mlp_out")

_MLP_NAMES = ("mlp", "ffn", "feed_forward", "feedforward", "mlp_block", "intermediate", "DenseReluDense", "ff")
_ATTN_NAMES = ("attn", "self_attn", "attention", "self_attention", "SelfAttention", "attn_block", "sa")
_DOWN_NAMES = ("c_proj", "down_proj", "fc2", "wo", "dense_4h_to_h", "w2", "proj", "out_proj", "lin2")
_ACT_TYPES: tuple[type, ...] = (
    nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus,
    nn.Hardswish, nn.ReLU6, nn.SELU, nn.CELU, nn.GLU,
)


@dataclass(frozen=True)
class SiteHook:
    """Where one (layer, site) is captured: a forward hook on ``module``'s output, or (``kind ==
    'input'``) a forward pre-hook on its first input."""

    layer: Layer
    site: str
    module: nn.Module
    module_name: str  # normalised path, for `layerscope layers` and the run's config
    kind: str = "output"  # "output" | "input"


def _child(module: nn.Module, names: Sequence[str]) -> tuple[str, nn.Module] | None:
    kids = dict(module.named_children())
    for n in names:
        if n in kids:
            return n, kids[n]
    low = {k.lower(): (k, v) for k, v in kids.items()}
    for n in names:
        if n.lower() in low:
            return low[n.lower()]
    return None


def _is_activation(m: nn.Module) -> bool:
    if isinstance(m, _ACT_TYPES):
        return True
    cls = type(m).__name__.lower()
    return not any(True for _ in m.children()) and not any(True for _ in m.parameters(recurse=False)) and (
        "activation" in cls or cls.endswith(("gelu", "relu", "silu", "swish", "act"))
    )


def resolve_site(layer: Layer, site: str) -> SiteHook | None:
    """The hook point of ``site`` in ``layer``, or None where the layer has no such site."""
    if site == "output":
        return SiteHook(layer, site, layer.module, layer.name, "output")
    if site in ("mlp_act", "mlp_out"):
        found = _child(layer.module, _MLP_NAMES)
        if found is None:
            return None
        mlp_name, mlp = found
        if site == "mlp_out":
            return SiteHook(layer, site, mlp, f"{layer.name}.{mlp_name}", "output")
        for n, m in mlp.named_modules():
            if n and _is_activation(m):
                return SiteHook(layer, site, m, f"{layer.name}.{mlp_name}.{n}", "output")
        down = _child(mlp, _DOWN_NAMES)
        if down is not None:
            return SiteHook(layer, site, down[1], f"{layer.name}.{mlp_name}.{down[0]}", "input")
        return None
    if site == "attn_out":
        found = _child(layer.module, _ATTN_NAMES)
        if found is None:
            return None
        return SiteHook(layer, site, found[1], f"{layer.name}.{found[0]}", "output")
    raise ConfigError(f"unknown site {site!r}; sites are {', '.join(SITES)} (or select modules with layers=).")


def resolve_sites(layers: Sequence[Layer], sites: Sequence[str] | str) -> list[SiteHook]:
    """Every (layer, site) hook point that exists; a site found in no layer is an error."""
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    if not sites:
        raise ConfigError("no sites given; pass e.g. sites=('output',).")
    out: list[SiteHook] = []
    for site in dict.fromkeys(sites):
        hooks = [h for h in (resolve_site(la, site) for la in layers) if h is not None]
        if not hooks:
            raise ConfigError(
                f"site {site!r} exists in none of the {len(layers)} layers (first: {layers[0].name!r}); "
                "record 'output', or select the module itself with layers='glob'."
            )
        out.extend(hooks)
    return out


def extract_tensor(out: Any) -> torch.Tensor | None:
    """The hidden-state tensor of a module output: the tensor itself, the first tensor of a tuple or
    list, or ``last_hidden_state``/``hidden_states``/the first tensor of a dict or ``ModelOutput``."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
        return None
    if isinstance(out, dict) or hasattr(out, "keys"):
        for key in ("last_hidden_state", "hidden_states", "logits"):
            v = out.get(key) if hasattr(out, "get") else None
            if isinstance(v, torch.Tensor):
                return v
        for k in out.keys():
            if isinstance(out[k], torch.Tensor):
                return out[k]
    return None
