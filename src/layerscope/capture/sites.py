"""Sites: the places inside a layer whose activations are recorded.

``output``      the layer's output (the residual stream of a transformer block)
``mlp_act``     the MLP's hidden activation after the nonlinearity: the output of the activation
                module, or the input of the down projection when the nonlinearity is a function
``attn_out``    the attention's contribution to the residual stream (before the residual add)
``mlp_out``     the MLP's contribution to the residual stream (before the residual add)
``mlp_down_in`` what the MLP's down projection reads: the same tensor as ``mlp_act`` for a plain
                MLP, ``act(gate) * up`` for a gated one (Llama, T5 v1.1); TransformerLens's
                ``mlp.hook_post``

Sites of training rather than of the forward pass (``capture/params.py``; ``TRAINING_SITES``):

``grad_output`` d loss / d (the layer's output), in the backward pass
``param_grad``  the gradients of the layer's own parameters, as one stream, when the optimizer
                is about to use them (after accumulation and AMP unscaling)
``update``      the change one optimizer step made to those parameters (delta W)
``weight``      the parameters themselves after the step

Any other module can be recorded by selecting it as a layer (``layers="h.*.mlp.c_fc"``).

Resolution is data-driven: the tables below name the sub-modules of the model families we know
(matched case-insensitively against the last component of a path inside the block), and
structural rules cover the rest (an MLP is a sub-module holding an activation and two projections;
a projection is a leaf with a 2-D or larger weight). ``docs/layers-and-sites.md`` has the table of
what each Hugging Face family resolves to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError
from .discovery import Layer, _relative_name, child_index, unwrap

SITES = ("output", "mlp_act", "attn_out", "mlp_out", "mlp_down_in")
# The backward pass and the optimizer step (capture/params.py): hooked at the layer itself.
GRAD_SITES = ("grad_output",)
PARAM_SITES = ("param_grad", "update", "weight")
TRAINING_SITES = GRAD_SITES + PARAM_SITES
# Every name sites= accepts: the forward sites (SITES, the keys of site_map) and the training sites.
ALL_SITES: tuple[str, ...] = SITES + TRAINING_SITES

# -- what we know of the families, as data ----------------------------------------------------------
# Self-attention sub-modules. Cross-attention (T5's EncDecAttention, BART's encoder_attn) is not
# `attn_out`; select it with layers= if you want it.
ATTN_NAMES = ("attn", "self_attn", "attention", "self_attention", "SelfAttention", "attn_block", "mha", "sa")
# MLP sub-modules (searched up to three levels down: T5 keeps it at layer.1.DenseReluDense).
MLP_NAMES = (
    "mlp",
    "ffn",
    "feed_forward",
    "feedforward",
    "ff",
    "ffwd",
    "DenseReluDense",
    "mlp_block",
    "block_sparse_moe",
    "moe",
)
# Post-norm MLPs split in two: (up, down). `up` = projection + nonlinearity; `down` = projection,
# residual add and LayerNorm (BERT, RoBERTa, ELECTRA; ViT/DeiT in transformers 4).
SPLIT_MLP = (("intermediate", "output"),)
# MLPs written straight into the block: its (up, down) children (OPT, BART, Whisper, Marian;
# torch.nn.TransformerEncoderLayer; ALBERT; ConvNeXt).
FLAT_MLP = (("fc1", "fc2"), ("linear1", "linear2"), ("ffn", "ffn_output"), ("pwconv1", "pwconv2"))
# Down projections inside an MLP sub-module, in order of preference; otherwise the MLP's last
# projection is taken.
DOWN_NAMES = (
    "down_proj",
    "c_proj",
    "fc2",
    "wo",
    "dense_4h_to_h",
    "fc_out",
    "w2",
    "lin2",
    "linear2",
    "proj_out",
    "out_proj",
    "proj",
)
# The projection inside a "projection + residual + norm" holder (BertSelfOutput, BertOutput).
HOLDER_PROJ_NAMES = ("dense", "o", "o_proj", "out_proj", "c_proj", "proj")
# Where BERT-style attention keeps its output projection (with the residual add and LayerNorm).
ATTN_OUTPUT_HOLDERS = ("output",)
# Activation sub-modules by attribute name (any parameter-free leaf under these names counts).
ACT_NAMES = (
    "act",
    "act_fn",
    "activation",
    "activation_fn",
    "intermediate_act_fn",
    "act_layer",
    "nonlinearity",
    "gelu_impl",
    "gelu",
    "relu",
    "silu",
)
# A sub-module of this name makes an MLP a mixture of experts.
MOE_NAMES = ("experts",)
# LayerNorms inside a sub-layer: the residual add is inside it too (post-norm).
NORM_NAMES = ("layernorm", "layer_norm", "ln", "norm")

_ACT_TYPES: tuple[type, ...] = (
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.Softplus,
    nn.Hardswish,
    nn.ReLU6,
    nn.SELU,
    nn.CELU,
    nn.GLU,
    nn.PReLU,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.RReLU,
)
# Class-name words of activations: anywhere in the name, or (short ones) only at its end.
_ACT_WORDS = ("activation", "gelu", "relu", "silu", "swish", "mish", "sigmoid", "tanh", "softplus")
_ACT_SUFFIXES = ("elu", "glu", "act")
_NOT_ACT_TYPES: tuple[type, ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Softmax,
    nn.LogSoftmax,
)

_LOWER = {
    name: tuple(n.lower() for n in names)
    for name, names in {
        "attn": ATTN_NAMES,
        "mlp": MLP_NAMES,
        "down": DOWN_NAMES,
        "holder_proj": HOLDER_PROJ_NAMES,
        "act": ACT_NAMES,
        "moe": MOE_NAMES,
        "norm": NORM_NAMES,
    }.items()
}


@dataclass(frozen=True)
class SiteHook:
    """Where one (layer, site) is captured: a forward hook on ``module``'s output, or (``kind ==
    'input'``) a forward pre-hook on its first input."""

    layer: Layer
    site: str
    module: nn.Module
    module_name: str  # normalised path, for `layerscope layers` and the run's config
    kind: str = "output"  # "output" | "input" | "grad" (backward) | "param" (optimizer step)


# -- the structure of one block -----------------------------------------------------------------------
def _last(path: str) -> str:
    return path.rpartition(".")[2].lower()


def _depth(path: str) -> int:
    return 0 if path == "" else path.count(".") + 1


def _inside(path: str, outer: str) -> bool:
    return path != outer and (outer == "" or path.startswith(outer + "."))


def _is_projection(m: nn.Module) -> bool:
    """A leaf with a weight of two or more dimensions: Linear, HF Conv1D, Conv*, FalconLinear..."""
    m = unwrap(m)
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) or any(True for _ in m.children()):
        return False
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.dim() >= 2


def _is_activation(m: nn.Module, attr: str = "") -> bool:
    """An activation module: a torch activation class, or a parameter-free leaf whose class name
    says so (transformers' ``NewGELUActivation``, ``GELUTanh``, Bloom's ``BloomGelu``) or whose
    attribute name is a known activation name (``act``, ``act_fn``...)."""
    m = unwrap(m)
    if isinstance(m, _ACT_TYPES):
        return True
    if isinstance(m, _NOT_ACT_TYPES) or any(True for _ in m.children()) or any(True for _ in m.parameters()):
        return False
    cls = type(m).__name__.lower()
    return any(w in cls for w in _ACT_WORDS) or cls.endswith(_ACT_SUFFIXES) or attr.lower() in _LOWER["act"]


def _is_attention_class(m: nn.Module) -> bool:
    cls = type(unwrap(m)).__name__.lower()
    return ("attention" in cls or "attn" in cls) and "cross" not in cls


class _Block:
    """The sub-modules of one layer by normalised path relative to it ('' is the layer itself).

    Wrappers (FSDP, checkpoint, compile) are seen through: a path maps to the outermost module of
    that name, the one to hook.
    """

    def __init__(self, module: nn.Module) -> None:
        self.mods: dict[str, nn.Module] = {}
        for name, mod in module.named_modules():
            self.mods.setdefault(_relative_name(name), mod)
        self.kids = child_index(self.mods.items())
        # A stack of blocks nested in this layer (a hierarchical model's stage holding its blocks):
        # its insides belong to those blocks, so no site of this layer is looked for there.
        self.nested: list[str] = [
            p
            for p, m in self.mods.items()
            if p
            and isinstance(unwrap(m), (nn.ModuleList, nn.Sequential))
            and self.kids.get(p)
            and len({type(unwrap(c)) for _, c in self.kids[p]}) == 1
            and all(self.kids.get(c) for c, _ in self.kids[p])
        ]

    def children(self, path: str) -> list[str]:
        return [p for p, _ in self.kids.get(path, [])]

    def subtree(self, path: str, exclude: Sequence[str] = (), blocks: bool = False) -> list[str]:
        """Paths strictly inside ``path``, in module order, skipping the subtrees in ``exclude`` and
        (unless ``blocks``) the insides of nested stacks of blocks."""
        skip = [e for e in exclude if e is not None]
        inner = [] if blocks else [n for n in self.nested if n != path and not _inside(path, n)]
        return [
            p
            for p in self.mods
            if _inside(p, path)
            and not any(p == e or _inside(p, e) for e in skip)
            and not any(_inside(p, n) for n in inner)
        ]

    def composite(self, path: str) -> bool:
        return bool(self.kids.get(path))

    def find_named(
        self, names: tuple[str, ...], exclude: Sequence[str] = (), max_depth: int = 3
    ) -> str | None:
        """The shallowest composite sub-module (first in module order) whose name is in ``names``."""
        hits = [
            p
            for p in self.subtree("", exclude)
            if _depth(p) <= max_depth and _last(p) in names and self.composite(p)
        ]
        return min(hits, key=_depth) if hits else None

    def projection_in(self, holder: str, names: tuple[str, ...]) -> str | None:
        """A projection among ``holder``'s direct children: by name in ``names``, else the last."""
        projs = [p for p in self.children(holder) if _is_projection(self.mods[p])]
        for n in names:
            for p in projs:
                if _last(p) == n:
                    return p
        return projs[-1] if projs else None

    def holds_norm(self, path: str) -> bool:
        return any(_last(p) in _LOWER["norm"] for p in self.children(path))


@dataclass(frozen=True)
class _Resolved:
    """Block-relative paths of each site's module and the hook kind, or None where absent."""

    attn_out: str | None = None
    mlp_act: tuple[str, str] | None = None  # (path, "output" | "input")
    mlp_out: str | None = None
    mlp_down_in: str | None = None


def _attention(b: _Block) -> str | None:
    p = b.find_named(_LOWER["attn"])
    if p is not None:
        return p
    hits = [
        q
        for q in b.subtree("")
        if _depth(q) <= 3
        and b.composite(q)
        and _is_attention_class(b.mods[q])
        and not any(w in _last(q) for w in ("cross", "encdec", "encoder_attn"))
    ]
    return min(hits, key=_depth) if hits else None


def _attn_out(b: _Block, attn: str) -> str:
    """The attention's contribution to the residual stream.

    BERT's attention module ends in ``output`` (projection, residual add, LayerNorm): take that
    projection. An attention module holding its own LayerNorm (ALBERT) likewise. Otherwise the
    attention module itself (GPT-2, Llama, T5's ``SelfAttention``: the residual add is outside).
    """
    for holder in ATTN_OUTPUT_HOLDERS:
        h = f"{attn}.{holder}"
        if h in b.mods and b.composite(h):
            proj = b.projection_in(h, _LOWER["holder_proj"])
            if proj is not None:
                return proj
    if b.holds_norm(attn):
        proj = b.projection_in(attn, _LOWER["holder_proj"])
        if proj is not None:
            return proj
    return attn


def _activation(b: _Block, paths: Sequence[str]) -> str | None:
    """The MLP's activation among ``paths``: the shallowest; by a known name, else the last one
    (the one that feeds the down projection)."""
    acts = [p for p in paths if _is_activation(b.mods[p], _last(p))]
    if not acts:
        return None
    top = min(_depth(p) for p in acts)
    acts = [p for p in acts if _depth(p) == top]
    named = [p for p in acts if _last(p) in _LOWER["act"]]
    return (named or acts)[-1]


def _structural_mlp(b: _Block, exclude: Sequence[str]) -> str | None:
    """An unnamed MLP: the shallowest sub-module (not attention) holding an activation module and
    at least two projections, with no attention inside."""
    for p in sorted(b.subtree("", exclude), key=_depth):
        if (
            _depth(p) > 2
            or not b.composite(p)
            or _is_attention_class(b.mods[p])
            or _last(p) in _LOWER["attn"]
        ):
            continue
        inner = b.subtree(p)
        if any(_is_attention_class(b.mods[q]) or _last(q) in _LOWER["attn"] for q in inner):
            continue
        if sum(_is_projection(b.mods[q]) for q in inner) >= 2 and any(
            _is_activation(b.mods[q], _last(q)) for q in inner
        ):
            return p
    return None


def _resolve_block(b: _Block) -> _Resolved:
    attn = _attention(b)
    excl = [attn] if attn is not None else []
    attn_out = _attn_out(b, attn) if attn is not None else None

    def done(act: str | None, down: str | None, out: str | None) -> _Resolved:
        mlp_act = (act, "output") if act is not None else (down, "input") if down is not None else None
        return _Resolved(attn_out, mlp_act, out, down)

    for up, down_holder in SPLIT_MLP:  # BERT-style: up = intermediate, down = output.dense
        if (
            b.composite(up)
            and b.composite(down_holder)
            and up in b.children("")
            and down_holder in b.children("")
        ):
            down = b.projection_in(down_holder, _LOWER["holder_proj"])
            if down is not None:
                return done(_activation(b, b.subtree(up)), down, down)

    scope = b.find_named(_LOWER["mlp"], excl)
    if scope is None:
        for up, down in FLAT_MLP:  # OPT/BART: fc1 -> act -> fc2 straight in the block
            if all(p in b.children("") and _is_projection(b.mods[p]) for p in (up, down)):
                return done(_activation(b, [p for p in b.children("") if p not in excl]), down, down)
        scope = _structural_mlp(b, excl)
    if scope is None:
        return _Resolved(attn_out)

    inner = b.subtree(scope, excl)
    if any(_last(p) in _LOWER["moe"] for p in b.subtree(scope, excl, blocks=True)):
        # Mixture of experts: the block's output is the MLP output. One shared activation module
        # (transformers' fused experts) sees every routed token; per-expert modules would not.
        acts = [p for p in inner if _is_activation(b.mods[p], _last(p))]
        return _Resolved(attn_out, (acts[0], "output") if len(acts) == 1 else None, scope, None)
    down = None
    for n in _LOWER["down"]:
        down = next((p for p in b.children(scope) if _last(p) == n and _is_projection(b.mods[p])), None)
        if down is not None:
            break
    if down is None:
        projs = [p for p in inner if _is_projection(b.mods[p])]
        down = projs[-1] if len(projs) >= 2 else None
    # A LayerNorm inside the MLP module means the residual add is inside too: take the projection.
    out = down if down is not None and b.holds_norm(scope) else scope
    return done(_activation(b, inner), down, out)


def _hook(layer: Layer, b: _Block, site: str, path: str, kind: str = "output") -> SiteHook:
    name = layer.name if path == "" else (f"{layer.name}.{path}" if layer.name else path)
    return SiteHook(layer, site, b.mods[path], name, kind)


def site_map(layer: Layer) -> dict[str, SiteHook | None]:
    """Every forward site of ``layer`` -> its hook point, or None where the layer has no such site
    (the training sites, ``TRAINING_SITES``, are all taken at the layer itself).

    >>> from layerscope.testing import tiny_gpt
    >>> from layerscope.capture import discover_layers
    >>> first = discover_layers(tiny_gpt(n_layer=2, n_embd=16, n_head=2))[0]
    >>> {site: (h.module_name, h.kind) for site, h in site_map(first).items() if h}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'output': ('h.0', 'output'), 'mlp_act': ('h.0.mlp.act', 'output'), 'attn_out': ('h.0.attn', 'output'),
     'mlp_out': ('h.0.mlp', 'output'), 'mlp_down_in': ('h.0.mlp.c_proj', 'input')}
    """
    b = _Block(layer.module)
    r = _resolve_block(b)
    return {
        "output": _hook(layer, b, "output", ""),
        "mlp_act": _hook(layer, b, "mlp_act", *r.mlp_act) if r.mlp_act else None,
        "attn_out": _hook(layer, b, "attn_out", r.attn_out) if r.attn_out is not None else None,
        "mlp_out": _hook(layer, b, "mlp_out", r.mlp_out) if r.mlp_out is not None else None,
        "mlp_down_in": _hook(layer, b, "mlp_down_in", r.mlp_down_in, "input")
        if r.mlp_down_in is not None
        else None,
    }


def _training_sites(layer: Layer) -> dict[str, SiteHook | None]:
    """The training sites of ``layer``: all at the layer itself; the parameter sites only where it
    has parameters of its own."""
    has_params = any(True for _ in layer.module.parameters())
    out: dict[str, SiteHook | None] = {
        s: SiteHook(layer, s, layer.module, layer.name, "grad") for s in GRAD_SITES
    }
    for s in PARAM_SITES:
        out[s] = SiteHook(layer, s, layer.module, layer.name, "param") if has_params else None
    return out


def _check_site(site: str) -> None:
    if site not in ALL_SITES:
        raise ConfigError(
            f"unknown site {site!r}; sites are {', '.join(ALL_SITES)}, or 'all' (or select any module with "
            "layers='glob')."
        )


def resolve_site(layer: Layer, site: str) -> SiteHook | None:
    """The hook point of ``site`` in ``layer``, or None where the layer has no such site.

    >>> from layerscope.testing import tiny_gpt
    >>> from layerscope.capture import discover_layers
    >>> layer = discover_layers(tiny_gpt(n_layer=2, n_embd=16, n_head=2))[1]
    >>> resolve_site(layer, "mlp_act").module_name
    'h.1.mlp.act'
    """
    _check_site(site)
    if site == "output":
        return SiteHook(layer, "output", layer.module, layer.name, "output")
    if site in TRAINING_SITES:
        return _training_sites(layer)[site]
    return site_map(layer)[site]


def resolve_sites(layers: Sequence[Layer], sites: Sequence[str] | str) -> list[SiteHook]:
    """Every (layer, site) hook point that exists, site by site; a site found in no layer is an error.

    ``"all"`` is every site that exists in at least one layer (as ``plot --site all`` reads every
    recorded one).
    """
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    if not sites:
        raise ConfigError("no sites given; pass e.g. sites=('output',).")
    every = "all" in sites
    for site in sites:
        if site != "all":
            _check_site(site)
    if not layers:
        raise ConfigError("no layers to resolve sites in; discover_layers() returned none.")
    maps = [{**site_map(la), **_training_sites(la)} for la in layers]
    if every:  # the forward sites: the training sites need an optimizer or a backward, so are named
        sites = [s for s in SITES if any(m[s] is not None for m in maps)]
    out: list[SiteHook] = []
    for site in dict.fromkeys(sites):
        hooks = [h for h in (m[site] for m in maps) if h is not None]
        if not hooks:
            raise ConfigError(
                f"site {site!r} exists in none of the {len(layers)} layers (first: {layers[0].name!r}, a "
                f"{type(unwrap(layers[0].module)).__name__}); record 'output', or select the module itself "
                "with layers='glob' (see `layerscope layers`)."
            )
        out.extend(hooks)
    return out


def extract_tensor(out: Any, _depth: int = 0) -> torch.Tensor | None:
    """The hidden-state tensor of a module output (or of a pre-hook's positional inputs).

    The tensor itself; the first tensor of a tuple or list, depth first (HF blocks return
    ``(hidden_states, attn_weights, ...)``); for a dict or ``ModelOutput``, ``last_hidden_state``,
    then ``hidden_states``, then ``logits`` when they are tensors, else the first tensor value.

    >>> import torch
    >>> extract_tensor(((torch.ones(2), None), torch.zeros(3))).shape
    torch.Size([2])
    >>> extract_tensor({"attentions": None, "last_hidden_state": torch.zeros(4)}).shape
    torch.Size([4])
    """
    if isinstance(out, torch.Tensor):
        return out
    if _depth > 4:
        return None
    if isinstance(out, (tuple, list)):
        for o in out:
            t = extract_tensor(o, _depth + 1)
            if t is not None:
                return t
        return None
    if isinstance(out, dict) or (hasattr(out, "keys") and hasattr(out, "__getitem__")):
        for key in ("last_hidden_state", "hidden_states", "logits"):
            v = out.get(key) if hasattr(out, "get") else None
            if isinstance(v, torch.Tensor):
                return v
        for k in list(out.keys()):
            t = extract_tensor(out[k], _depth + 1)
            if t is not None:
                return t
    return None
