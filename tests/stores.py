"""The one store-making helper of the tests: ``make_store`` writes small stores of known values.

By default each run holds ``n_layers`` x ``steps`` of ``metrics`` at site ``output`` with the value
``step * (k + 1) + layer`` (metric ``k``): easy to check by hand. ``values=`` replaces that with any
pattern; ``two_runs`` is the one the CLI's plot/compare/view tests share (``base`` and ``lr_hi``: rms
growing with depth and step, faster in lr_hi, which has one +inf; ``mean`` near 0; ``mlp_act`` rms).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from layerscope.store import LayerInfo, StepRecord, Store

# (run index, run name, step index, step) -> {(metric, site): one value per layer}
Values = Callable[[int, str, int, int], dict[tuple[str, str], list[float]]]


def make_store(
    path: str | os.PathLike[str],
    runs: Sequence[str] = ("a",),
    n_layers: int = 3,
    steps: Iterable[int] = (10, 20, 30),
    metrics: Sequence[str] = ("rms", "mean"),
    layer_names: Sequence[str] | None = None,
    values: Values | None = None,
) -> Path:
    """A store with ``runs``, each ``n_layers`` x ``steps``; see the module docstring for the values."""
    names = list(layer_names) if layer_names is not None else [f"h.{i}" for i in range(n_layers)]
    steps = list(steps)

    def plain(r: int, run: str, k: int, s: int) -> dict[tuple[str, str], list[float]]:
        return {
            (m, "output"): [float(s) * (i + 1) + j for j in range(n_layers)] for i, m in enumerate(metrics)
        }

    fill = values or plain
    with Store(path) as st:
        for r, run in enumerate(runs):
            st.create_run(run, [LayerInfo(i + 1, names[i]) for i in range(n_layers)])
            st.write_steps(run, [StepRecord(s, fill(r, run, k, s)) for k, s in enumerate(steps)])
    return Path(path)


TWO_RUNS_LAYERS = 6
TWO_RUNS_STEPS = list(range(10, 130, 10))


def two_runs(path: str | os.PathLike[str], runs: Sequence[str] = ("base", "lr_hi")) -> Path:
    """Runs ``base`` and ``lr_hi`` of a 6-layer model (``blocks.0`` ..): rms/mean at the block output
    and rms at mlp_act; lr_hi grows faster with depth and has +inf at layer 5, step 90."""
    rng = np.random.default_rng(0)
    n = TWO_RUNS_LAYERS

    def pattern(r: int, run: str, k: int, step: int) -> dict[tuple[str, str], list[float]]:
        rms = [0.1 * (j + 1) * (1 + k / 10) * (1 + 0.3 * r * j * k / 100) for j in range(n)]
        if run == "lr_hi" and step == 90:
            rms[4] = float("inf")
        mean = [float(v) for v in rng.normal(0, 0.01, n)]
        return {("rms", "output"): rms, ("mean", "output"): mean, ("rms", "mlp_act"): [2 * x for x in rms]}

    return make_store(
        path, runs, n, TWO_RUNS_STEPS, layer_names=[f"blocks.{j}" for j in range(n)], values=pattern
    )
