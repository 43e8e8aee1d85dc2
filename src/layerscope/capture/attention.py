"""The ``attn`` site: per-head attention statistics recomputed from the module's queries and keys.

Flash and SDPA kernels never materialise the attention probabilities, so nothing can be read
off them. Instead, on recorded steps, forward hooks on the attention's query and key projections
keep their outputs, and a forward hook on the attention module (which sees its keyword inputs:
the rotary ``position_embeddings`` and the mask) recomputes the logits ``q . k * scale`` for a
bounded subsample of query positions against every key, with the mask the model applies, in
float32 on the device, and folds per-head statistics into a ``(heads, 4)`` state
(:mod:`layerscope.stats.heads`). No host sync; steps that do not record have no hooks.

The subsample: ``queries`` query positions per forward (default 16), evenly spaced and always
including the last one, fewer when ``batch x heads x queries x keys`` would exceed
``MAX_LOGITS`` (2**24 float32 values, 64 MiB) at once. Every key is used, so the max logit is
exact over the sampled rows, and the entropy and sink are means over them.

Families (by structure, not by name): a fused ``c_attn`` projection (GPT-2, nanoGPT, our tiny
GPT); separate ``q_proj``/``k_proj`` (Llama, Mistral, Qwen2/3 with ``q_norm``/``k_norm``, Gemma,
ViT), ``query``/``key`` (BERT, RoBERTa) or ``q``/``k`` (T5, whose logits are unscaled and carry
its relative position bias, read from the module's output). Grouped-query attention (fewer key
heads) and rotary embeddings (the model's own ``apply_rotary_pos_emb``) are handled. Anything
else is refused with one line: see ``docs/attention.md``.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..stats.heads import attention_partials, empty_heads, merge_heads
from .discovery import Layer, unwrap
from .sites import _attention, _Block, extract_tensor
from .sources import CaptureContext, CaptureSource, Gate, MaskTracker, _in_backward

MAX_LOGITS = 1 << 24  # float32 logits computed at once per layer (64 MiB): bounds the query sample
DEFAULT_QUERIES = 64

# (query, key) projection names inside an attention module, in order of preference.
QK_NAMES = (("q_proj", "k_proj"), ("query", "key"), ("q", "k"), ("wq", "wk"), ("q_lin", "k_lin"))
FUSED_NAMES = ("c_attn",)  # one projection producing [q | k | v] along the last dim
MASK_ARGS = ("attention_mask", "mask", "attn_mask")


@dataclass(eq=False)
class AttnPoint:
    """Where one layer's attention statistics come from, resolved once."""

    layer: Layer
    module: nn.Module  # the attention module whose forward hook computes
    module_name: str
    q_mod: nn.Module
    k_mod: nn.Module | None  # None: fused (q and k are slices of q_mod's output)
    n_heads: int
    n_kv: int
    head_dim: int
    scale: float
    causal: bool
    family: str
    rotary: Callable[..., Any] | None = None  # the model's apply_rotary_pos_emb
    softcap: float | None = None
    bias_from_output: bool = False  # T5: the position bias is the module's output[1]
    arg_names: tuple[str, ...] = ()
    mask_key: str = ""  # which of the tracker's masks applies ("decoder" in an encoder-decoder)
    scratch: dict[str, torch.Tensor] = field(default_factory=dict)
    state: torch.Tensor | None = None  # (n_heads, 4) on the device, this step's


def _num(mod: nn.Module, *names: str) -> Any:
    for n in names:
        v = getattr(mod, n, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
    return None


def _out_features(m: nn.Module) -> int:
    w = getattr(unwrap(m), "weight", None)
    if isinstance(m, nn.Linear) or isinstance(unwrap(m), nn.Linear):
        return int(unwrap(m).out_features)  # type: ignore[arg-type]
    if isinstance(w, torch.Tensor) and w.dim() == 2:
        # HF's Conv1D keeps (in, out); Linear-like modules (out, in).
        return int(w.shape[1] if type(unwrap(m)).__name__ == "Conv1D" else w.shape[0])
    raise ConfigError(f"cannot read the output width of {type(m).__name__}")


def _core(b: _Block, attn: str) -> tuple[str, tuple[str, str] | str] | None:
    """The (sub-)module of ``attn`` that owns the q/k projections, and their names."""
    for path in [attn] + [p for p in b.subtree(attn) if p.count(".") - attn.count(".") <= 2]:
        kids = {p.rpartition(".")[2].lower(): p for p in b.children(path)}
        for qn, kn in QK_NAMES:
            if qn in kids and kn in kids:
                return path, (kids[qn], kids[kn])
        for fn in FUSED_NAMES:
            if fn in kids:
                return path, kids[fn]
    return None


def _refuse(layer: Layer, what: str) -> ConfigError:
    return ConfigError(
        f"site 'attn': {what} in layer {layer.name!r}; the attention families supported are listed in "
        "docs/attention.md (record the other sites, or leave 'attn' out)."
    )


def resolve_attention(layer: Layer) -> AttnPoint | None:
    """The attention of ``layer`` and how to recompute its logits; None where the layer has none."""
    b = _Block(layer.module)
    attn = _attention(b)
    if attn is None:
        return None
    found = _core(b, attn)
    if found is None:
        raise _refuse(
            layer, f"no query/key projections (q_proj/k_proj, query/key, q/k, c_attn) under {attn!r}"
        )
    path, projs = found
    mod = b.mods[path]
    name = f"{layer.name}.{path}" if layer.name else path
    cls = type(unwrap(mod)).__name__
    try:
        params = list(inspect.signature(unwrap(mod).forward).parameters)
    except (TypeError, ValueError):
        params = []
    if any(hasattr(unwrap(mod), r) for r in ("rotary_emb", "rotary", "rope")):
        raise _refuse(layer, f"{cls} applies rotary embeddings inside itself")
    causal = bool(
        getattr(mod, "is_causal", False) or getattr(mod, "is_decoder", False) or "causal" in cls.lower()
    )
    if isinstance(projs, str):  # fused [q | k | v]
        q_mod = b.mods[projs]
        width = _out_features(q_mod)
        n_heads = _num(mod, "num_heads", "n_head", "n_heads", "num_attention_heads")
        embed = _num(mod, "split_size", "embed_dim", "n_embd") or width // 3
        if n_heads is None or width != 3 * embed or embed % n_heads:
            raise _refuse(
                layer, f"the fused projection {projs!r} of {cls} is not [q | k | v] of n_head heads"
            )
        head_dim = embed // n_heads
        n_kv, k_mod, family = n_heads, None, "fused-qkv"
    else:
        q_mod, k_mod = b.mods[projs[0]], b.mods[projs[1]]
        head_dim = _num(mod, "head_dim", "attention_head_size", "key_value_proj_dim", "d_kv")
        n_q = _num(mod, "num_heads", "num_attention_heads", "n_heads", "n_head")
        if head_dim is None and n_q:
            head_dim = _out_features(q_mod) // n_q
        if not head_dim:
            raise _refuse(layer, f"{cls} has no head_dim / attention_head_size attribute")
        n_heads = _out_features(q_mod) // head_dim
        n_kv = _out_features(k_mod) // head_dim
        if n_heads * head_dim != _out_features(q_mod) or n_heads % max(n_kv, 1):
            raise _refuse(layer, f"{cls}'s projections do not split into heads of {head_dim}")
        # T5: unscaled logits plus a relative position bias, which the module returns as output[1].
        family = "t5" if hasattr(unwrap(mod), "has_relative_attention_bias") else "separate-qk"
        # q_norm / k_norm (Qwen3, OLMo2, Gemma3): the normed tensors are what meets the keys.
        for side in ("q", "k"):
            norm = f"{path}.{side}_norm" if path else f"{side}_norm"
            if norm in b.mods:
                if side == "q":
                    q_mod = b.mods[norm]
                else:
                    k_mod = b.mods[norm]
    rotary = None
    if "position_embeddings" in params:
        rotary = getattr(sys.modules.get(type(unwrap(mod)).__module__), "apply_rotary_pos_emb", None)
        if rotary is None:
            raise _refuse(
                layer, f"{cls} takes position_embeddings but its module has no apply_rotary_pos_emb"
            )
    scale = _num(mod, "scaling", "scale")
    if scale is None:
        scale = 1.0 if family == "t5" else 1.0 / math.sqrt(head_dim)
    cfg = getattr(mod, "config", None)
    softcap = getattr(cfg, "attn_logit_softcapping", None) if cfg is not None else None
    return AttnPoint(
        layer,
        mod,
        name,
        q_mod,
        k_mod,
        int(n_heads),
        int(n_kv),
        int(head_dim),
        float(scale),
        causal,
        family,
        rotary,
        float(softcap) if softcap else None,
        family == "t5",
        tuple(params),
    )


def query_index(t_q: int, batch: int, heads: int, t_k: int, queries: int | None) -> torch.Tensor | None:
    """The sampled query rows (host ints from shapes only), or None for all of them."""
    budget = max(1, MAX_LOGITS // max(1, batch * heads * t_k))
    n = min(t_q, budget, queries if queries else t_q)
    if n >= t_q:
        return None
    stride = t_q / n
    return torch.tensor(sorted({t_q - 1 - int(i * stride) for i in range(n)}), dtype=torch.long)


def _heads_view(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, T, H*D) or (B, T, H, D) -> (B, H, T, D)."""
    if x.dim() == 3:
        x = x.reshape(x.shape[0], x.shape[1], -1, head_dim)
    return x.transpose(1, 2)


def _mask4(m: Any, t_q: int, t_k: int) -> torch.Tensor | None:
    """A (B|1, H|1, Q|1, K) bool 'allowed' mask from a model's mask argument, or None."""
    if not isinstance(m, torch.Tensor) or m.dim() not in (2, 4) or m.shape[-1] != t_k:
        return None
    if m.dim() == 2:
        m = m[:, None, None, :]
    elif m.shape[-2] not in (1, t_q):
        return None
    if m.dtype == torch.bool:
        return m
    if m.is_floating_point():
        return m > torch.finfo(m.dtype).min / 2  # additive masks: 0 allowed, -inf / min masked
    return m != 0


def compute_point(
    pt: AttnPoint,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    output: Any,
    pad: torch.Tensor | None,
    queries: int | None,
) -> torch.Tensor | None:
    """The (heads, 4) partial state of one forward of ``pt``'s attention. No host sync."""
    qo = pt.scratch.pop("q", None)
    ko = pt.scratch.pop("k", None)
    if qo is None:
        return None
    if pt.k_mod is None:  # fused [q | k | v]
        e = pt.n_heads * pt.head_dim
        qo, ko = qo[..., :e], qo[..., e : 2 * e]
    if ko is None:
        return None
    q = _heads_view(qo, pt.head_dim)  # (B, H, Tq, D)
    k = _heads_view(ko, pt.head_dim)  # (B, Hkv, Tk, D)
    B, H, t_q, D = q.shape
    t_k = k.shape[2]
    idx = query_index(t_q, B, H, t_k, queries)
    bound = dict(zip(pt.arg_names, args))
    bound.update(kwargs)
    pos = bound.get("position_embeddings")
    if pt.rotary is not None and isinstance(pos, (tuple, list)) and len(pos) == 2:
        cos, sin = pos
        k = pt.rotary(k, k, cos, sin)[1]
        if idx is not None:
            idx_d = idx.to(q.device)
            q = q.index_select(2, idx_d)
            cos, sin = cos.index_select(-2, idx_d), sin.index_select(-2, idx_d)
        q = pt.rotary(q, q, cos, sin)[0]
    elif idx is not None:
        q = q.index_select(2, idx.to(q.device))
    q, k = q.float(), k.float()
    if pt.scale != 1.0:
        q = q * pt.scale  # scaled before the product: (Q, D) values, not (Q, Tk)
    Q = q.shape[2]
    g = H // k.shape[1]
    logits = torch.matmul(q.reshape(B, k.shape[1], g * Q, D), k.transpose(-1, -2))  # (B, Hkv, g*Q, Tk)
    logits = logits.reshape(B, H, Q, t_k)
    rows = torch.arange(t_q, device=q.device) if idx is None else idx.to(q.device)
    if pt.bias_from_output and isinstance(output, (tuple, list)) and len(output) > 1:
        bias = output[1]
        if isinstance(bias, torch.Tensor) and bias.dim() == 4:
            logits = (
                logits + bias.float().index_select(-2, rows)
                if bias.shape[-2] == t_q
                else logits + bias.float()
            )
    allowed = torch.ones(1, 1, Q, t_k, dtype=torch.bool, device=q.device)
    if pt.causal:
        offset = t_k - t_q  # keys of a cache come first
        allowed = allowed & (torch.arange(t_k, device=q.device)[None, :] <= (rows + offset)[:, None])
    m4 = None
    for name in MASK_ARGS:
        if name in bound:
            m4 = _mask4(bound[name], t_q, t_k)
            break
    if m4 is not None:
        m4 = m4.to(q.device)
        allowed = allowed & (m4.index_select(-2, rows) if m4.shape[-2] == t_q else m4)
    if pad is not None and pad.shape == (B, t_q) and t_q == t_k:
        pad = pad.to(q.device)
        allowed = allowed & pad[:, None, None, :] & pad.index_select(1, rows)[:, None, :, None]
    return attention_partials(logits, allowed, pt.softcap)


class AttentionSource(CaptureSource):
    """The capture source of the ``attn`` site: three hooks per layer, on recorded steps only.

    Not a slot source: its state per layer is a ``(heads, 4)`` tensor (``points[i].state``).
    ``queries``: sampled query positions per forward (None: all).
    """

    always_attached = False
    site = "attn"

    def __init__(self, points: Sequence[AttnPoint], masks: MaskTracker | None, queries: int | None) -> None:
        self.points = list(points)
        self.masks = masks
        self.queries = queries
        super().__init__([])  # no slots: its state is per head (points[i].state)

    def _pad(self, pt: AttnPoint) -> torch.Tensor | None:
        m = self.masks
        if m is None:
            return None
        return m.explicit if m.explicit is not None else m.current.get(pt.mask_key)

    def register(self, ctx: CaptureContext) -> list[Any]:
        gate: Gate = ctx.gate
        handles = []
        for pt in self.points:

            def keep(which: str, pt: AttnPoint = pt) -> Callable[..., None]:
                def hook(module: nn.Module, args: Any, out: Any) -> None:
                    if gate.open_for(module) and (torch.compiler.is_compiling() or not _in_backward()):
                        t = extract_tensor(out)
                        if t is not None:
                            pt.scratch[which] = t.detach()

                return hook

            def compute(module: nn.Module, args: Any, kwargs: Any, out: Any, pt: AttnPoint = pt) -> None:
                if not gate.open_for(module) or (not torch.compiler.is_compiling() and _in_backward()):
                    pt.scratch.clear()
                    return
                with torch.no_grad():
                    part = compute_point(pt, args, kwargs, out, self._pad(pt), self.queries)
                if part is not None:
                    pt.state = part if pt.state is None else merge_heads(pt.state, part)

            handles.append(pt.q_mod.register_forward_hook(keep("q")))
            if pt.k_mod is not None:
                handles.append(pt.k_mod.register_forward_hook(keep("k")))
            handles.append(pt.module.register_forward_hook(compute, with_kwargs=True))
        return handles

    def detach(self) -> None:
        super().detach()
        for pt in self.points:
            pt.scratch.clear()

    close = detach

    def reset(self) -> None:
        for pt in self.points:
            pt.state = None

    def snapshot(self, n_layers: int, device: torch.device) -> torch.Tensor:
        """This step's ``(n_layers, max_heads, 4)`` state on ``device`` (neutral where unseen)."""
        k = max((pt.n_heads for pt in self.points), default=1)
        out = empty_heads(n_layers * k, device).reshape(n_layers, k, 4)
        for pt in self.points:
            if pt.state is not None:
                out[pt.layer.index - 1, : pt.n_heads] = pt.state.to(device)
        return out

    def run_config(self) -> dict[str, Any]:
        return {
            "attn": {
                "queries": self.queries,
                "layers": {
                    str(pt.layer.index): {
                        "module": pt.module_name,
                        "family": pt.family,
                        "heads": pt.n_heads,
                        "kv_heads": pt.n_kv,
                        "head_dim": pt.head_dim,
                        "scale": pt.scale,
                        "causal": pt.causal,
                        "rotary": pt.rotary is not None,
                    }
                    for pt in self.points
                },
            }
        }


def attention_points(layers: Sequence[Layer]) -> list[AttnPoint]:
    """The attention of every layer that has one; a ConfigError when none has."""
    pts = [p for p in (resolve_attention(la) for la in layers) if p is not None]
    if not pts:
        raise ConfigError(
            f"site 'attn' exists in none of the {len(layers)} layers (no attention module found); "
            "leave 'attn' out of sites."
        )
    return pts


__all__ = [
    "DEFAULT_QUERIES",
    "MAX_LOGITS",
    "AttentionSource",
    "AttnPoint",
    "attention_points",
    "compute_point",
    "query_index",
    "resolve_attention",
]
