"""What ``plot`` does with the sites that are not one value per layer: per-head series (``attn``,
read through a reduction over the heads, or as a head x layer map at one step with ``--heads
--step N``) and series of one value per step (``logits``, drawn as lines).

Torch-free: only the store and (for the head map) matplotlib are imported, and only when used.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping
from typing import Any

import click

from ..errors import ConfigError, NotFoundError, quote

PER_STEP_SITES = ("logits",)  # one value per step, stored in one layer's column (the LM head's)
HEAD_MAP = "map"  # what --heads means without a value: the head x layer map at --step
REDUCE_CHOICES = ("max", "mean", "min")


def site_default_metrics(
    sites: Collection[str], pairs: Collection[tuple[str, str]], default: str | None
) -> list[str]:
    """The metrics drawn when ``--metric`` is not given: ``default`` (rms) where the sites have it;
    else, for sites that do not (``attn``, ``logits``), ``max_logit`` for ``attn`` and every
    recorded metric of a per-step site (one line plot each)."""
    if default is not None and any((default, s) in pairs for s in sites):
        return [default]
    out: list[str] = []
    for s in sites:
        have = sorted(m for m, si in pairs if si == s)
        if s in PER_STEP_SITES:
            out += have
        elif "max_logit" in have:
            out.append("max_logit")
    return list(dict.fromkeys(out)) or ([default] if default else [])


def parse_heads(ctx: click.Context, param: click.Parameter, value: str | None) -> str | int | None:
    """``--heads max|mean|min|N`` -> the reduction (a head index as an int); bare ``--heads`` ->
    :data:`HEAD_MAP`."""
    if value is None or value == HEAD_MAP:
        return value
    v = value.strip().lower()
    if v in REDUCE_CHOICES:
        return v
    if v.isdigit():
        return int(v)
    raise click.BadParameter(
        f"{quote(value)} is not max, mean, min or a head number (0-based); pass e.g. --heads max, "
        "--heads 3, or --heads --step N for the head x layer map at one step.",
        param_hint="--heads",
    )


def reduction(heads: str | int | None, metric: str, inner: int) -> str | int | None:
    """The ``reduce=`` to read a series with ``inner`` values per layer: None for one value per
    layer, ``heads`` when given, else the metric's default (max for a maximum, mean otherwise)."""
    from ..store.heads import default_reduce

    if inner <= 1:
        return None
    return default_reduce(metric) if heads is None else heads


def head_sites(inner: Mapping[tuple[str, str], int]) -> str:
    """``attn (entropy, max_logit, sink)``: the per-head series of a run, for a message."""
    by_site: dict[str, list[str]] = {}
    for (m, s), k in sorted(inner.items()):
        if k > 1:
            by_site.setdefault(s, []).append(m)
    return "; ".join(f"{s} ({', '.join(ms)})" for s, ms in by_site.items())


def check_heads_apply(
    heads: str | int | None,
    chosen: Collection[tuple[str, str]],
    inner: Mapping[tuple[str, str], int],
    pairs: Collection[tuple[str, str]],
) -> None:
    """A ConfigError when ``--heads`` was given but none of the chosen series has heads."""
    if heads is None or not chosen or any(inner.get(p, 1) > 1 for p in chosen):
        return
    what = ", ".join(f"{m}/{s}" for m, s in chosen)
    have = head_sites(inner)
    raise ConfigError(
        f"--heads reads a per-head series, but {what} holds one value per layer; "
        + (
            f"series with heads in this run: {have} (e.g. --site attn --metric max_logit)."
            if have
            else "this run recorded no per-head site: record sites=('attn',) to get heads."
        )
    )


def per_step_column(hm: Any, config: Mapping[str, Any]) -> Any:
    """A series of one value per step (site ``logits``) as its one column, named after the module
    that produced it (the LM head); any other heatmap unchanged."""
    import numpy as np

    from ..store.heatmap import Heatmap

    if hm.site not in PER_STEP_SITES or hm.values.shape[1] <= 1:
        return hm
    found = config.get(hm.site)
    info: dict[str, Any] = found if isinstance(found, dict) else {}
    layer: Any = info.get("layer")
    if layer not in hm.layers:  # an older run without the note: the one column with values
        filled = [j for j in range(hm.values.shape[1]) if not np.isnan(hm.values[:, j]).all()]
        layer = hm.layers[filled[-1] if filled else -1]
    j = list(hm.layers).index(layer)
    name = str(info.get("module") or hm.layer_names[j])
    meta = dict(hm.meta, per_step=True)
    return Heatmap(hm.values[:, [j]], hm.steps, [hm.layers[j]], [name], hm.metric, hm.site, hm.run, meta)


def is_per_step(hm: Any) -> bool:
    """Whether ``hm`` is a series of one value per step (drawn as lines, never as a heatmap)."""
    return bool(getattr(hm, "meta", {}).get("per_step"))


def nearest_steps(steps: list[int], step: int, k: int = 2) -> list[int]:
    """The recorded steps nearest ``step`` (up to ``k`` on each side), ascending."""
    i = bisect.bisect_left(steps, step)
    return steps[max(0, i - k) : i + k]


# Style flags the head x layer map draws; the others are refused with one line.
_HEAD_MAP_STYLE = {"cmap", "vmin", "vmax", "title", "figsize", "dpi", "colorbar", "plotly"}


def plot_head_map(
    source: str,
    output: str,
    run: str | None,
    metric: str,
    site: str,
    step: int,
    style: Mapping[str, Any],
) -> str:
    """``plot --heads --step N``: the head x layer map of ``metric`` at ``site`` at ``step``;
    returns the line ``plot`` prints."""
    from ..render.heads import plot_heads
    from ..sources import is_csv
    from ..store import Store

    if output.lower().endswith((".html", ".htm")):
        raise click.UsageError(
            "the head x layer map (--heads --step N) is a static figure; write .png, .svg or .pdf."
        )
    if is_csv(source):
        raise click.UsageError("per-head values live in a run store (.db), not in a CSV.")
    on = [
        f"--{k.replace('_scale', '').replace('_', '-')}"
        for k, v in style.items()
        # --alerts is on by default and marks heatmaps only: the head map ignores it, silently.
        if k not in _HEAD_MAP_STYLE and k != "alerts" and v not in (None, False)
    ]
    if on:
        raise click.UsageError(
            f"{', '.join(on)} do not apply to the head x layer map (--heads --step N); drop them."
        )
    with Store(source, readonly=True) as st:
        run = st.resolve_run(run)
        inner = {(i.metric, i.site): i.inner for i in st.series(run) if i.kind == "value" and not i.variant}
        if (metric, site) not in inner:
            st.load(run, metric, site)  # raises NotFoundError naming what was recorded
        if inner[(metric, site)] <= 1:
            check_heads_apply(HEAD_MAP, [(metric, site)], inner, inner)
        steps = st.load(run, metric, site, reduce=0).steps
        if step not in steps:
            near = nearest_steps(list(steps), step)
            raise NotFoundError(
                f"step {step} was not recorded for {metric}/{site} of run {quote(run)}; the nearest "
                f"recorded steps are {', '.join(map(str, near))} ({len(steps)} steps, {steps[0]}..{steps[-1]}).",
                what="step",
                value=step,
                choices=near,
                param="step",
            )
        hm = st.load_heads(run, metric, site, step)
    path = plot_heads(
        hm,
        output,
        cmap=style.get("cmap") or "magma",
        dpi=int(style.get("dpi") or 150),
        vmin=style.get("vmin"),
        vmax=style.get("vmax"),
        title=style.get("title"),
        figsize=style.get("figsize"),
        colorbar=str(style.get("colorbar") or "right"),
    )
    return f"wrote {path} ({len(hm.heads)} heads x {len(hm.layers)} layers, {metric} ({site}) at step {step})"


__all__ = [
    "HEAD_MAP",
    "PER_STEP_SITES",
    "check_heads_apply",
    "is_per_step",
    "nearest_steps",
    "parse_heads",
    "per_step_column",
    "plot_head_map",
    "reduction",
    "site_default_metrics",
]
