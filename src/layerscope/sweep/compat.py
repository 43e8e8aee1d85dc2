"""Checkpoints written by other library versions: which differences from the model are harmless.

The rules are the ones ``transformers`` applies when it loads a checkpoint, read from the model
itself, so they hold for any model family and for both transformers 4 and 5:

- the model's own ignore lists: ``_keys_to_ignore_on_load_unexpected`` and
  ``_keys_to_ignore_on_load_missing`` (regular expressions, gathered from every sub-module);
- tied weights: names that share one tensor in the model (``lm_head.weight`` is
  ``wte.weight``), and those transformers 5 declares tied (``all_tied_weights_keys``);
  one present in the file loads them all;
- non-persistent buffers: a tensor an older version saved under the name of a buffer the model
  now recomputes (BERT's ``embeddings.position_ids``), and transformers' two moved buffers,
  ``rotary_emb.inv_freq`` (saved per layer by old Llama/GPT-NeoX checkpoints) and ``position_ids``;
- buffers no current version has: a causal-mask ``bias`` of shape ``(1, 1, n, n)`` and the scalar
  ``masked_bias`` of old GPT-2, GPT-J, GPT-Neo and GPT-NeoX (Pythia) attention layers;
- legacy names: ``LayerNorm.gamma`` / ``LayerNorm.beta`` (TF-era BERT) for ``.weight`` / ``.bias``,
  and weight-norm's ``weight_g`` / ``weight_v`` for ``parametrizations.weight.original0/1``.

Everything else that differs (a missing weight, a tensor of another model, a wrong shape) is a
real mismatch and stays an error. For a Hugging Face model whose keys still do not fit and
whose class transformers converts layouts for (:func:`converts_layouts`: its modelling code
changed the layout, e.g. transformers 5 fuses mixture-of-experts weights that checkpoints store
per expert), :func:`convert_with_transformers` lets transformers itself convert the state dict;
nothing is read from disk or downloaded there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
import torch.nn as nn

from ..capture import normalize_name

# transformers adds these two to every model that has such a buffer (modeling_utils,
# _adjust_missing_and_unexpected_keys): old checkpoints saved them, often at another path.
_MOVED_BUFFERS = (("rotary_emb.inv_freq", r"rotary_emb\.inv_freq"), ("position_ids", r"(^|\.)position_ids$"))
# Old names -> the names modules use now, applied only where the new name is the model's and missing.
_LEGACY_SUFFIXES = (
    ("LayerNorm.gamma", "LayerNorm.weight"),
    ("LayerNorm.beta", "LayerNorm.bias"),
    (".weight_g", ".parametrizations.weight.original0"),
    (".weight_v", ".parametrizations.weight.original1"),
)


def _patterns(model: nn.Module, attr: str) -> list[re.Pattern[str]]:
    """The ``attr`` ignore patterns of ``model`` and every sub-module (transformers 5 gathers the
    sub-modules' into the top one; 4 kept them per class)."""
    out: dict[str, re.Pattern[str]] = {}
    for m in model.modules():
        for pats in (getattr(type(m), attr, None), getattr(m, attr, None)):
            for p in (pats,) if isinstance(pats, str) else pats or ():
                if isinstance(p, str) and p not in out:
                    with contextlib.suppress(re.error):
                        out[p] = re.compile(p)
    return list(out.values())


class Tolerance:
    """The harmless differences for one model, worked out once (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        persistent = set(model.state_dict())
        buffers = [n for n, _ in model.named_buffers(remove_duplicate=False)]
        self.non_persistent = {normalize_name(n) for n in buffers if n not in persistent}
        self.ignore_missing = _patterns(model, "_keys_to_ignore_on_load_missing")
        self.ignore_unexpected = _patterns(model, "_keys_to_ignore_on_load_unexpected")
        for suffix, pattern in _MOVED_BUFFERS:
            if any(n.endswith(suffix) for n in buffers):
                self.ignore_unexpected.append(re.compile(pattern))
        self.declared_ties: list[tuple[str, str]] = []
        ties = getattr(
            model, "all_tied_weights_keys", None
        )  # transformers 5: {target: source}, active ties only
        if isinstance(ties, Mapping):
            self.declared_ties = [(normalize_name(str(t)), normalize_name(str(s))) for t, s in ties.items()]

    def missing_ok(self, key: str) -> bool:
        """A weight the file may lack: the model declares it ignorable."""
        return any(r.search(key) for r in self.ignore_missing)

    def unexpected_ok(self, key: str, t: torch.Tensor) -> bool:
        """A tensor of the file the model has no place for, and needs none."""
        if key in self.non_persistent or any(r.search(key) for r in self.ignore_unexpected):
            return True
        leaf = key.rpartition(".")[2]
        if leaf == "masked_bias":  # the fill value old attention layers stored next to their mask
            return t.numel() == 1
        if leaf == "bias":  # a causal mask (1, 1, n, n); a bias parameter is 1-d
            return t.dim() == 4 and t.shape[0] == t.shape[1] == 1 and t.shape[2] == t.shape[3]
        return False


def legacy_renames(present: Mapping[str, Any], expected: set[str]) -> dict[str, str]:
    """``{old name: new name}`` for the file's keys with a legacy suffix whose new name the model
    expects and the file does not have."""
    out = {}
    for k in present:
        if k in expected:
            continue
        for old, new in _LEGACY_SUFFIXES:
            if k.endswith(old):
                cand = k[: -len(old)] + new
                if cand in expected and cand not in present:
                    out[k] = cand
                break
    return out


def is_hf_model(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers ``PreTrainedModel`` (checked without importing transformers)."""
    return any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
        for c in type(model).__mro__
    )


def converts_layouts(model: nn.Module) -> bool:
    """Whether transformers converts checkpoint layouts for ``model``'s class (transformers 5's
    conversion mapping, transformers 4's ``_checkpoint_conversion_mapping``): only then is
    :func:`convert_with_transformers` worth its cost."""
    if getattr(model, "_checkpoint_conversion_mapping", None):
        return True
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
    except ImportError:  # transformers 4: no such module
        return False
    try:
        return bool(get_model_conversion_mapping(cast(Any, model), add_legacy=False))
    except Exception:  # noqa: BLE001 - another signature: let from_pretrained decide
        return True


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[Any]:
    import transformers

    log = transformers.utils.logging
    verbosity = log.get_verbosity()
    bars = log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield transformers
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()


def convert_with_transformers(
    model: nn.Module, sd: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Let transformers load ``sd`` into a fresh model of ``model``'s class and config, converting
    layouts its modelling code changed; returns that model's state dict, or ``None`` and why not.

    Built with ``from_pretrained(None, config=..., state_dict=...)``: the tensors given here, no
    file, no download, no remote code. Costs a second copy of the model while it runs; it is only
    tried for checkpoints whose keys do not fit directly.
    """
    cls, config = type(model), getattr(model, "config", None)
    if config is None or not hasattr(cls, "from_pretrained"):
        return None, "not a transformers model"
    try:
        with _quiet_transformers():
            fresh, info = cls.from_pretrained(
                None, config=config, state_dict=dict(sd), output_loading_info=True
            )
    except Exception as e:  # noqa: BLE001 - transformers' own conversion errors: we report the mismatch
        return None, f"transformers could not convert it ({type(e).__name__})"
    missing = sorted(info.get("missing_keys") or ())
    mismatched = list(info.get("mismatched_keys") or ())
    if missing or mismatched:
        return None, "transformers finds weights missing or of another shape"
    unexpected = [k for k in info.get("unexpected_keys") or () if k in sd]
    tol = Tolerance(fresh)
    if any(not tol.unexpected_ok(normalize_name(k), sd[k]) for k in unexpected):
        return None, "transformers finds weights it has no place for"
    out = {k: v.detach() for k, v in fresh.state_dict().items()}
    del fresh
    return out, ""


__all__ = ["Tolerance", "convert_with_transformers", "converts_layouts", "is_hf_model", "legacy_renames"]
