"""The ``layerscope`` command line. ``main`` wires the command groups; one file per command."""

from .main import cli, main

__all__ = ["cli", "main"]
