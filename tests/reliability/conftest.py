"""The reliability tests' in-process CLI runner (the same ``main`` and error handler a user runs,
without an interpreter start per case)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run layerscope's CLI entry point in this process; exit code and output as a user sees them."""
    from layerscope.cli.main import main

    monkeypatch.delenv("LAYERSCOPE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "120")

    def run(*args: str | os.PathLike[str]) -> Result:
        capsys.readouterr()
        try:
            main([os.fspath(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
