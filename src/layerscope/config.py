"""The recorder's configuration: one typed dataclass, each field with its trade-off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

WINDOWS = ("step", "all")


@dataclass
class RecorderConfig:
    # Metric names (see layerscope.stats.available_metrics()). Each adds a few reductions per hook;
    # 'kurtosis' adds two more passes, 'hist' and 'dead_frac' the most.
    metrics: Sequence[str] = ("mean", "std", "rms", "max_abs")
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        d["sites"] = list(self.sites)
        return d
