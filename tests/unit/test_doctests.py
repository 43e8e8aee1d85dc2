"""The examples in the docstrings of the modules below run and print what they say (STYLE rule 7:
a docstring's example is a claim, and a claim is tested)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "layerscope._format",
    "layerscope.render.labels",
    "layerscope.render.scale",
    "layerscope.render.reduce",
    "layerscope.render.options",
    "layerscope.render.output",
    "layerscope.render.static",
    "layerscope.render.alerts",
    "layerscope.render.lines",
    "layerscope.render.multiples",
    "layerscope.render.profile",
    "layerscope.render.hist",
    "layerscope.render.html",
    "layerscope.render.html_views",
    "layerscope.render.notebook",
    "layerscope.store.histogram",
    "layerscope.serve.reader",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples in {name} failed (run it with -s to see)"
    )
