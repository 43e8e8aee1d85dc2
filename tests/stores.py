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

from layerscope.store import Event, LayerInfo, StepRecord, Store

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


# ---- attention heads, output logits and alerts with planted patterns (issue 19's report) -------------

ATTN_LAYERS, ATTN_HEADS = 4, 4
ATTN_STEPS = list(range(20, 420, 20))  # 20 recorded steps


def planted_attn() -> dict[tuple[str, str], np.ndarray]:
    """``(metric, site)`` -> values of the planted run, ``(steps, layers, heads)`` for site attn and
    ``(steps, layers)`` for site logits (NaN except the last layer's column, as the Recorder keeps it):

    - ``max_logit``: every head near 1 (a small seeded wobble, +30% over the run), except layer 2
      head 1, which grows 10x (1 -> 10);
    - ``entropy``: near 2.5 nats, except layer 3 head 2, which collapses to 0.1;
    - ``sink``: near 0.1, except layer 1 head 0, which holds 0.8 of its attention there;
    - logits: ``max_logit`` 3 -> 30, ``log_z`` 5 -> 12, ``entropy`` 5 -> 2.
    """
    rng = np.random.default_rng(19)
    S, L, H = len(ATTN_STEPS), ATTN_LAYERS, ATTN_HEADS
    t = np.linspace(0.0, 1.0, S)[:, None, None]
    wobble = 1.0 + 0.02 * rng.standard_normal((S, L, H))
    max_logit = (1.0 + 0.3 * t) * wobble
    max_logit[:, 1, 1] = np.linspace(1.0, 10.0, S)
    entropy = 2.5 * (1.0 - 0.02 * t) * wobble
    entropy[:, 2, 2] = np.geomspace(2.5, 0.1, S)
    sink = 0.1 * wobble
    sink[:, 0, 0] = 0.8
    out = {("max_logit", "attn"): max_logit, ("entropy", "attn"): entropy, ("sink", "attn"): sink}
    for m, (a, b) in {"max_logit": (3.0, 30.0), "log_z": (5.0, 12.0), "entropy": (5.0, 2.0)}.items():
        v = np.full((S, L), np.nan)
        v[:, -1] = np.linspace(a, b, S) * (1.0 + 0.01 * rng.standard_normal(S))
        out[(m, "logits")] = v
    rms = 0.1 * (1 + np.arange(L))[None, :] * (1 + t[:, :, 0])
    out[("rms", "output")] = rms
    return out


def planted_events() -> list[Event]:
    """The planted run's watch alerts: a jump of layer 2 head 1's max logit, the output max logit's
    jump, and a non-finite rms at layer 3 (another series)."""
    return [
        Event(
            200,
            "alert",
            "max_logit@attn > 10x median or mean+6sd",
            "layer 2 head 1 max_logit 5.7",
            site="attn",
            metric="max_logit",
            layer=2,
            head=1,
            value=5.7368421,
            time=0.0,
        ),
        Event(
            240,
            "alert",
            "max_logit@logits > 10x median or mean+6sd",
            "logits max_logit 19.9",
            site="logits",
            metric="max_logit",
            layer=ATTN_LAYERS,
            value=19.9,
            time=0.0,
        ),
        Event(
            300,
            "alert",
            "nonfinite rms@output",
            "layer 3 rms inf",
            site="output",
            metric="rms",
            layer=3,
            value=float("inf"),
            time=0.0,
        ),
        Event(300, "note", "checkpoint", "saved", time=0.0),  # not an alert: not reported
    ]


def attn_store(path: str | os.PathLike[str], run: str = "planted") -> Path:
    """A store holding :func:`planted_attn` and :func:`planted_events` as run ``run``."""
    vals = planted_attn()

    def fill(r: int, name: str, k: int, s: int) -> dict[tuple[str, str], list[float]]:
        return {key: v[k] for key, v in vals.items()}  # type: ignore[misc]

    make_store(
        path, (run,), ATTN_LAYERS, ATTN_STEPS, layer_names=[f"h.{i}" for i in range(ATTN_LAYERS)], values=fill
    )
    with Store(path) as st:
        st.write_events(run, planted_events())
    return Path(path)
