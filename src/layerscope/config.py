"""The recorder's configuration: one typed dataclass, each field with its trade-off."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .defaults import DEFAULT_METRICS
from .errors import ConfigError
from .stats.kernels import BACKENDS

WINDOWS = ("step", "all")


@dataclass
class RecorderConfig:
    # Metric names (see layerscope.stats.available_metrics()). The statistics pass reads each
    # activation once whatever the metrics; each group of statistics adds a few operations per
    # element to it ('kurtosis' the fourth moments); 'hist' adds its own passes.
    metrics: Sequence[str] = DEFAULT_METRICS
    # Record steps where step % every == 0. Hooks are attached only for those steps (window="step"),
    # so steps that are not recorded cost nothing.
    every: int = 1
    # Sites per layer: output, mlp_act, attn_out, mlp_out, mlp_down_in. Each is one more hook per layer.
    sites: Sequence[str] = ("output",)
    # "step": statistics of the recorded step's forwards only (micro-batches fold in); cheapest.
    # "all": every training forward since the last record; hooks stay attached on every step.
    window: str = "step"
    # Only forwards in train mode are recorded; evaluation loops are ignored. False records both.
    train_only: bool = True
    # |x| <= eps counts as zero (zero_frac) and a unit whose max |x| <= eps is dead (dead_frac).
    eps: float = 1e-6
    # Recorded steps are kept on the device and copied to the host (one sync) and written when
    # this many are pending or flush_secs have passed. Larger: fewer syncs; a kill loses more.
    flush_every: int = 50
    flush_secs: float = 10.0
    # Histogram bin edges for the 'hist' metric; fixed for the run and stored with it.
    hist_edges: Sequence[float] | None = None
    # An existing run of the same name: None continues it only if it holds the same recording
    # (model architecture, metrics, sites, probe...; a restarted job) and refuses another one; True
    # continues it whatever it holds (same layers); False refuses it. A step recorded again replaces
    # its rows. See layerscope.recording.
    resume: bool | None = None
    # Free-form notes stored with the run (hyper-parameters, git hash ...).
    notes: dict[str, Any] = field(default_factory=dict)
    # Token mask, so that only real tokens count (padding left out): the root model's forward
    # argument holding the (batch, tokens) mask ("attention_mask"), or fn(args, kwargs) -> mask.
    # None: every position counts. Costs one tiny op per forward; masked rows are skipped.
    mask: str | Callable[..., Any] | None = None
    # Token positions per activation for the statistics: every (rows // k)-th row of the
    # (tokens, width) view. An int for every site or {site: k} (e.g. {"mlp_act": 256}). None:
    # all positions (exact). Cheaper on wide sites; the values become estimates.
    sample: int | Mapping[str, int] | None = None
    # The statistics pass: "auto" (C on CPU, torch.compile on CUDA), "native", "compile", "eager".
    stats_backend: str = "auto"
    # The `update` site keeps a copy of each recorded layer's parameters from just before the
    # optimizer step to just after it, on recorded steps only: one more copy of those parameters
    # (of each rank's shard under FSDP) for that moment. k keeps every k-th row of each matrix
    # (memory / k); its values (ratio, rms, norm of the kept rows) are then estimates.
    update_sample: int | None = None
    # Site 'attn': query positions per attention forward whose logits are recomputed against every
    # key (evenly spaced, the last one included; fewer when batch x heads x queries x keys would
    # pass 2**24). None: all of them (exact, costs a (tokens x tokens) matrix per head).
    attn_queries: int | None = 16

    def validate(self) -> None:
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ConfigError(f"every={self.every!r}; pass a whole number >= 1 (record every N-th step).")
        if self.window not in WINDOWS:
            raise ConfigError(f"window={self.window!r}; pass 'step' or 'all'.")
        if not (self.eps >= 0):
            raise ConfigError(f"eps={self.eps!r}; pass a non-negative number such as 1e-6.")
        if self.flush_every < 1:
            raise ConfigError(f"flush_every={self.flush_every!r}; pass a whole number >= 1.")
        if self.hist_edges is not None:
            e = list(self.hist_edges)
            if len(e) < 1 or any(b <= a for a, b in zip(e, e[1:])):
                raise ConfigError("hist_edges must be a non-empty, strictly increasing list of numbers.")
        if self.mask is not None and not isinstance(self.mask, str) and not callable(self.mask):
            raise ConfigError(
                f"mask={self.mask!r}; pass the name of the model's mask argument ('attention_mask') "
                "or a function (args, kwargs) -> mask."
            )
        for site, k in self.sample_per_site().items():
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ConfigError(f"sample={k!r} for site {site!r}; pass a whole number of token rows >= 1.")
        if isinstance(self.sample, Mapping) and "all" not in self.sites:  # "all": checked once found
            unknown = set(self.sample) - set(self.sites)
            if unknown:
                raise ConfigError(
                    f"sample= names sites {sorted(unknown)} that are not recorded; recorded: {list(self.sites)}."
                )
        if self.update_sample is not None and (
            not isinstance(self.update_sample, int)
            or isinstance(self.update_sample, bool)
            or self.update_sample < 1
        ):
            raise ConfigError(
                f"update_sample={self.update_sample!r}; pass a whole number k >= 1 (keep every k-th row "
                "of each weight matrix for the update snapshot) or None (all of it).",
                what="update_sample",
                value=self.update_sample,
                param="update_sample",
            )
        if self.attn_queries is not None and (
            not isinstance(self.attn_queries, int)
            or isinstance(self.attn_queries, bool)
            or self.attn_queries < 1
        ):
            raise ConfigError(
                f"attn_queries={self.attn_queries!r}; pass a whole number of query positions >= 1, or None for all."
            )
        if self.stats_backend not in BACKENDS:
            raise ConfigError(f"stats_backend={self.stats_backend!r}; pass one of {', '.join(BACKENDS)}.")

    def sample_per_site(self) -> dict[str, int]:
        """Site -> token rows kept per activation (only sites that sample)."""
        if self.sample is None:
            return {}
        if isinstance(self.sample, Mapping):
            return dict(self.sample)
        return dict.fromkeys(self.sites, self.sample)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: mask may be any callable
        d["notes"] = dict(self.notes)
        d["hist_edges"] = list(self.hist_edges) if self.hist_edges is not None else None
        d["metrics"] = list(self.metrics)
        d["sites"] = list(self.sites)
        if callable(self.mask):
            d["mask"] = f"fn:{getattr(self.mask, '__qualname__', type(self.mask).__name__)}"
        d["sample"] = self.sample_per_site() or None
        return d
