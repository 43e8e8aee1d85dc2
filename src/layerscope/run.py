"""Creating or continuing a run in a store: the one place a live ``Recorder`` and a sweep agree on it.

A run is described by :class:`RunSpec` (its layers, the model's class name and the recording's
config, probe hash included); :func:`open_run` creates the run from it, or checks that an existing
run of that name was recorded on the same probe. ``Recorder.run_spec()`` gives the spec of a
recorder, so a sweep creates its run from the spec of the (store-less) recorder its workers use,
without building another recorder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .store import LayerInfo, Store


@dataclass
class RunSpec:
    """What the store keeps about a recording when the run is created."""

    layers: Sequence[LayerInfo]  # 1-based index, normalised name, stack, depth
    model: str  # the model's class name
    config: dict[str, Any] = field(default_factory=dict)  # the recorder's config (+ probe_hash, notes ...)

    @property
    def probe_hash(self) -> str | None:
        return self.config.get("probe_hash")


def open_run(store: Store, run: str, spec: RunSpec, *, source: str = "live", resume: bool = True) -> None:
    """Create run ``run`` in ``store`` from ``spec``, or continue it (``resume``: same layers).

    A run recorded with another probe is refused, naming both probe hashes; a run created without
    a probe gets this spec's probe hash.
    """
    store.create_run(
        run, layers=list(spec.layers), model=spec.model, config=spec.config, source=source, resume=resume
    )
    old = store.run_config(run)
    new = spec.probe_hash
    if new and old.get("probe_hash") not in (None, new):
        raise ConfigError(
            f"run {run!r} was recorded with probe {old.get('probe_hash')}, not {new}; "
            "use the same probe or record into a new run name."
        )
    if new and old.get("probe_hash") is None:
        store.update_run_config(run, probe_hash=new)


__all__ = ["RunSpec", "open_run"]
