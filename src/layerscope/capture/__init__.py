"""Layer discovery, naming, sites and hook points.

``discover_layers(model)`` finds "layer 1..N" (the repeated block stacks) once, with normalised
names and 1-based indices; ``site_map(layer)`` / ``resolve_sites(layers, sites)`` say which module
each site of a layer is recorded at; ``load_model_spec`` and ``model_from_hf_config`` build a model
from a ``pkg.module:factory`` spec or a Hugging Face ``config.json`` (used by the CLI).
"""

from . import params as _params  # noqa: F401  (registers the training sites' capture sources)
from .discovery import (
    Layer,
    Selection,
    discover_layers,
    find_stacks,
    matches,
    named_modules,
    normalize_name,
    unwrap,
)
from .models import load_function, load_model_spec, model_from_hf_config
from .sites import (
    ALL_SITES,
    SITES,
    TRAINING_SITES,
    SiteHook,
    extract_tensor,
    resolve_site,
    resolve_sites,
    site_map,
)

__all__ = [
    "ALL_SITES",
    "SITES",
    "TRAINING_SITES",
    "Layer",
    "Selection",
    "SiteHook",
    "discover_layers",
    "extract_tensor",
    "find_stacks",
    "load_function",
    "load_model_spec",
    "matches",
    "model_from_hf_config",
    "named_modules",
    "normalize_name",
    "resolve_site",
    "resolve_sites",
    "site_map",
    "unwrap",
]
