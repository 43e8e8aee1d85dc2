"""The coord-check's model factory contract, and factories built from a Hugging Face config.

**The contract.** A factory is a callable taking the width as its first argument (or ``width=``)::

    def my_gpt(width: int) -> nn.Module | tuple[nn.Module, list[dict]]: ...

- It returns the model at that width, or ``(model, param_groups)`` for per-layer learning rates:
  ``param_groups`` are ``torch.optim`` groups (``{"params": [...], ...}``) that together cover the
  parameters to train; a group's ``lr_scale`` multiplies the coord-check's ``lr`` (µP's
  ``base_width / width`` for hidden matrices under Adam), a group's ``lr`` replaces it, and other
  keys (``weight_decay``, ``betas``) go to the optimizer as they are.
- It is called after ``torch.manual_seed(seed)``, once per (width, seed): do not seed inside it,
  or take a ``seed`` keyword, which is then passed.
- If it takes an ``optimizer`` keyword, the coord-check's optimizer name (``"adam"``, ``"sgd"``)
  is passed, so it can return the groups of that optimizer's µP table.
- Every width must have the same layers (the same ``named_modules`` block stack): only the sizes
  change.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

from ..capture.models import load_function, model_from_hf_dict, read_hf_config
from ..errors import ConfigError, quote

Factory = Callable[..., Any]

_HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads")
_KV_KEYS = ("num_key_value_heads", "n_kv_heads", "num_kv_heads")


def load_factory(spec: str) -> Factory:
    """Import the factory a ``"pkg.module:factory"`` or ``"path/to/file.py:factory"`` spec names.

    >>> load_factory("layerscope.testing:tiny_gpt_sp").__name__
    'tiny_gpt_sp'
    """
    return load_function(spec, what="--model", n_args=1)


def _accepts(fn: Factory, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def build(
    factory: Factory, width: int, seed: int, optimizer: str
) -> tuple[nn.Module, list[dict[str, Any]] | None]:
    """Call ``factory`` for one width (after the caller seeded torch) and check what it returns."""
    kwargs: dict[str, Any] = {}
    if _accepts(factory, "seed"):
        kwargs["seed"] = seed
    if _accepts(factory, "optimizer"):
        kwargs["optimizer"] = optimizer
    name = getattr(factory, "__name__", type(factory).__name__)
    try:
        out = factory(width, **kwargs)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"the coord-check factory {name}(width={width}) raised {type(e).__name__}: {e}; a factory "
            "takes the width and returns the model at that width (LAYERSCOPE_DEBUG=1 shows the traceback)."
        ) from e
    groups = None
    if isinstance(out, tuple) and len(out) == 2:
        out, groups = out
        if not isinstance(groups, Sequence) or not all(isinstance(g, dict) and "params" in g for g in groups):
            raise ConfigError(
                f"{name}(width={width}) returned (model, {type(groups).__name__}); the second item must be "
                "a list of torch.optim param groups, dicts with 'params' (and optionally 'lr_scale')."
            )
        groups = [dict(g) for g in groups]
    if not isinstance(out, nn.Module):
        raise ConfigError(
            f"{name}(width={width}) returned a {type(out).__name__}; a coord-check factory returns an "
            "nn.Module, or (model, param_groups) for per-layer learning rates."
        )
    return out, groups


def _int_key(cfg: dict[str, Any], key: str, source: str, what: str) -> int:
    if key not in cfg:
        near = sorted(k for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool))
        raise ConfigError(
            f"{source}: no {what} key {quote(key)}; its integer keys are {', '.join(near)}.",
            what=what,
            value=key,
            choices=near,
            param="width_key" if what == "width" else "scale_keys",
        )
    v = cfg[key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ConfigError(
            f"{source}: {key}={v!r} is not a positive integer; it cannot be scaled with the width."
        )
    return v


def scale_hf_config(
    raw: dict[str, Any],
    width: int,
    width_key: str = "hidden_size",
    scale_keys: Sequence[str] = ("intermediate_size",),
    keep: str = "head_dim",
    heads_key: str | None = None,
    source: str = "config",
) -> dict[str, Any]:
    """A copy of HF config dict ``raw`` at ``width``: ``width_key`` set to it, each of ``scale_keys``
    scaled by ``width / raw[width_key]`` (a key that is ``null`` is derived by the model and left),
    and the heads per ``keep``: ``"head_dim"`` keeps the head dimension (more heads as the width
    grows; key/value heads scaled alike), ``"heads"`` keeps the head count (wider heads).

    >>> cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_attention_heads": 4}
    >>> c = scale_hf_config(cfg, 128)
    >>> c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    (128, 352, 8)
    """
    if keep not in ("head_dim", "heads"):
        raise ConfigError(
            f"keep={keep!r}; pass 'head_dim' (more heads as it widens) or 'heads' (wider heads)."
        )
    base = _int_key(raw, width_key, source, "width")
    out = dict(raw)
    out[width_key] = int(width)
    for key in scale_keys:
        if key in raw and raw[key] is None:
            continue
        v = _int_key(raw, key, source, "scale")
        scaled = v * width / base
        if abs(scaled - round(scaled)) > 1e-9:
            raise ConfigError(
                f"{source}: {key}={v} scaled to width {width} is {scaled:g}, not an integer; pick widths "
                f"that are multiples of {base // _gcd(v, base)}."
            )
        out[key] = int(round(scaled))
    hk = heads_key or next((k for k in _HEAD_KEYS if isinstance(raw.get(k), int)), None)
    if hk is None:
        if heads_key is None:
            return out  # no attention heads (an MLP or a CNN config): nothing else to keep
        raise ConfigError(f"{source}: no heads key {quote(heads_key)}.")
    heads = _int_key(raw, hk, source, "heads")
    explicit_hd = raw.get("head_dim") if isinstance(raw.get("head_dim"), int) else None
    if keep == "head_dim":
        hd = explicit_hd or base // heads
        if width % hd:
            raise ConfigError(
                f"width {width} is not a multiple of the head dimension {hd} (keep='head_dim'); pick widths "
                f"that are multiples of {hd}, or keep the head count (--keep heads)."
            )
        out[hk] = width // hd
        for kv in _KV_KEYS:
            if isinstance(raw.get(kv), int) and raw[kv] > 0:
                if (raw[kv] * width) % base:
                    raise ConfigError(
                        f"{source}: {kv}={raw[kv]} does not scale to width {width} in whole heads."
                    )
                out[kv] = raw[kv] * width // base
    else:
        if width % heads:
            raise ConfigError(
                f"width {width} is not a multiple of the head count {heads} (keep='heads'); pick widths "
                f"that are multiples of {heads}, or keep the head dimension (--keep head_dim)."
            )
        if explicit_hd is not None:
            out["head_dim"] = width // heads
    return out


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def hf_factory(
    path: str | os.PathLike[str],
    width_key: str = "hidden_size",
    scale_keys: Sequence[str] = ("intermediate_size",),
    keep: str = "head_dim",
    heads_key: str | None = None,
) -> Factory:
    """A coord-check factory that builds the Hugging Face model of ``config.json`` at each width
    (randomly initialised, nothing downloaded); see :func:`scale_hf_config` for the scaling.
    The config is read and checked once, here."""
    raw = read_hf_config(path)
    source = str(path)
    scale_hf_config(
        raw, raw.get(width_key, 0) or 1, width_key, scale_keys, keep, heads_key, source
    )  # checks keys

    def factory(width: int) -> nn.Module:
        return model_from_hf_dict(
            scale_hf_config(raw, width, width_key, scale_keys, keep, heads_key, source), source=source
        )

    factory.__name__ = factory.__qualname__ = f"hf_config[{os.path.basename(os.fspath(path))}]"
    factory.__module__ = ""
    return factory
