"""Optional frameworks the tests need: the ``test`` extra installs every one of them, so a missing
one is a broken environment, and a test that skipped for it would pass in disguise (STYLE.md
rule 10). Only a missing GPU is a reason to skip."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import ``module`` or fail the test (at collection, when called at module level)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(
            f"{module} is not installed ({e}); `pip install -e '.[test]'` installs what the tests need.",
            pytrace=False,
        )
