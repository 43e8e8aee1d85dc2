"""Shared fixtures. Tests are layered by folder: unit, integration, distributed, gpu, browser, reliability."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# CI runs the property tests with a fixed seed, so a run is reproducible and a rare input cannot make
# one submission fail and the next pass; locally they explore new inputs on every run.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hyp_settings.load_profile("ci")

_LAYER_MARKS = {
    "integration": "integration",
    "distributed": "distributed",
    "gpu": "gpu",
    "browser": "browser",
    "reliability": "reliability",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, mark in _LAYER_MARKS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)  # 2-core CI: keep tests from fighting each other's threads


_REPORT_VALIDATOR = None


def report_validator():
    """The validator of the JSON Schema that ships with the package (``report.schema.json``)."""
    global _REPORT_VALIDATOR
    if _REPORT_VALIDATOR is None:
        import json

        from jsonschema import Draft202012Validator

        from layerscope.analysis.report import SCHEMA_PATH

        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        _REPORT_VALIDATOR = Draft202012Validator(schema)
    return _REPORT_VALIDATOR


@pytest.fixture(autouse=True)
def _reports_follow_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report a test makes in this process is checked against the shipped JSON Schema as it
    is made (reports made by a CLI subprocess are checked by their tests with ``check_report``)."""
    from layerscope.analysis import Report

    made = Report.__init__

    def checked(self, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        made(self, data, *args, **kwargs)
        report_validator().validate(data)

    monkeypatch.setattr(Report, "__init__", checked)


@pytest.fixture
def check_report():
    """``check_report(d)`` raises when the report dict ``d`` does not follow the shipped schema."""
    return lambda d: report_validator().validate(d)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def tiny_model():
    """A 4-layer TinyGPT, small enough for unit tests."""
    from layerscope.testing import tiny_gpt

    return tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16)


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m layerscope ARGS`` as a subprocess; returns the completed process."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    e.pop("LAYERSCOPE_DEBUG", None)
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "layerscope", *args],
        capture_output=True,
        text=True,
        env=e,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
