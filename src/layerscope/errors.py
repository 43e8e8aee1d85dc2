"""One exception tree for everything layerscope raises on purpose.

Every message names what is wrong, the offending value, and what to do instead, so the CLI can
print it as one line. ``exit_code`` is what the CLI exits with: 2 for a usage error (the user asked
for something that does not exist or is not allowed), 1 for a failure (the data or the machine let
us down).

>>> try:
...     raise NotFoundError("run 'b' not found in runs.db; runs there: a. Pass --run a.")
... except LayerscopeError as e:
...     print(e.exit_code)
2
"""

from __future__ import annotations

from typing import Any


class LayerscopeError(Exception):
    """Base of every error layerscope raises deliberately."""

    exit_code: int = 1


class ConfigError(LayerscopeError, ValueError):
    """An argument or option has a value layerscope cannot use (a usage error)."""

    exit_code = 2


class NotFoundError(LayerscopeError, LookupError):
    """A file, run, metric, site or layer that was asked for does not exist (a usage error)."""

    exit_code = 2


class DiscoveryError(LayerscopeError):
    """No layer stack could be found in a model; pass ``layers=`` explicitly."""

    exit_code = 2


class StoreError(LayerscopeError):
    """The run store cannot be opened, read or written (corrupt, locked, newer schema, read-only)."""


class DataError(LayerscopeError, ValueError):
    """Input data (a CSV, a probe, a matrix) is malformed."""


class CheckpointError(LayerscopeError):
    """A checkpoint is missing, truncated, unsafe to load, or does not fit the model."""


class DistributedError(LayerscopeError):
    """The ranks of a distributed job disagree (layers, metrics) or a collective failed."""


class WatchAlert(LayerscopeError):
    """The live watch fired and the Recorder was told to stop (``on_alert="stop"``), raised from
    ``Recorder.step`` after a final flush. ``alerts`` holds what fired."""

    exit_code = 1

    def __init__(self, message: str, alerts: list[Any] | None = None) -> None:
        super().__init__(message)
        self.alerts = list(alerts or [])


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DiscoveryError",
    "DistributedError",
    "LayerscopeError",
    "NotFoundError",
    "StoreError",
    "WatchAlert",
]
