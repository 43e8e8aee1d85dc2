"""Layer discovery, naming, sites and hook points."""

from .discovery import Layer, Selection, discover_layers, find_stacks, normalize_name, unwrap
from .sites import SITES, SiteHook, extract_tensor, resolve_site, resolve_sites

__all__ = [
    "Layer", "Selection", "SITES", "SiteHook", "discover_layers", "extract_tensor", "find_stacks",
    "normalize_name", "resolve_site", "resolve_sites", "unwrap",
]
