"""The metric registry: names, validation, and metrics of one's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope
from layerscope.errors import ConfigError
from layerscope.stats import (
    BUILTIN_METRICS,
    available_metrics,
    register_metric,
    resolve_metrics,
    unregister_metric,
)

ISSUE_METRICS = {
    "mean",
    "std",
    "rms",
    "abs_mean",
    "min",
    "max",
    "max_abs",
    "kurtosis",
    "top_ratio",
    "zero_frac",
    "pos_frac",
    "dead_frac",
    "nan_frac",
    "inf_frac",
    "hist",
    # issue 18: the training sites' norms and the update-to-weight ratio
    "norm",
    "ratio",
    "log_ratio",
}


def test_builtin_names_are_the_documented_ones() -> None:
    assert set(BUILTIN_METRICS) == ISSUE_METRICS
    assert all(available_metrics()[m] for m in ISSUE_METRICS)


def test_resolve_accepts_all_csv_and_list() -> None:
    assert [m.name for m in resolve_metrics("rms, std")] == ["rms", "std"]
    assert {m.name for m in resolve_metrics("all")} == ISSUE_METRICS
    assert [m.name for m in resolve_metrics(["rms", "rms"])] == ["rms"]


def test_unknown_metric_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'rsm'.*rms"):
        resolve_metrics(["rsm"])


def test_custom_metrics_from_stats_and_from_function(tiny_model, store_path) -> None:
    register_metric("cv", from_stats=lambda s: np.sqrt(s.var) / np.abs(s.mean), needs={"moments"})
    register_metric("token_norm", fn=lambda x: x.norm(dim=-1).mean(), reduce="mean")
    try:
        x = torch.randint(0, 256, (2, 16))
        outs = []
        hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o.detach())) for b in tiny_model.h]
        with layerscope.Recorder(
            tiny_model, store_path, run="r", metrics=["cv", "token_norm", "mean"]
        ) as rec:
            tiny_model(x)
            rec.step(1)
        for h in hooks:
            h.remove()
        cv = layerscope.load(store_path, metric="cv").values[0]
        tn = layerscope.load(store_path, metric="token_norm").values[0]
        for j, o in enumerate(outs):
            o64 = o.double()
            assert cv[j] == pytest.approx(float(o64.std(correction=0) / o64.mean().abs()), rel=1e-5)
            assert tn[j] == pytest.approx(float(o.norm(dim=-1).mean()), rel=1e-6)
    finally:
        unregister_metric("cv")
        unregister_metric("token_norm")


def test_register_validates() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        register_metric("x")
    with pytest.raises(ConfigError, match="already exists"):
        register_metric("rms", from_stats=lambda s: s.mean)
    with pytest.raises(ConfigError, match="reduce"):
        register_metric("y", fn=lambda x: x.mean(), reduce="median")
    with pytest.raises(ConfigError, match="built-in"):
        unregister_metric("rms")
