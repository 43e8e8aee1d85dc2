"""The report of a map in a store, with the sections only a stored run can give:
:func:`report_run`.

It reads through the store's reader API only: the map (aggregated over the heads for a per-head
series), the per-head series of the same site (``max_logit``, ``entropy``, ``sink``), the series of
site ``logits`` (one value per step for the whole model), and the run's events.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store.heads import default_reduce
from ..store.heatmap import Heatmap
from ..store.sqlite import Store
from .extras import Extras
from .heads import SECTION_METRICS
from .report import Report, report
from .thresholds import Thresholds

LOGITS_SITE = "logits"


def report_run(
    store: str | os.PathLike[str] | Store,
    run: str | None = None,
    metric: str = "rms",
    site: str = "output",
    *,
    heads: str | int | None = None,
    variant: str = "",
    scale: str = "auto",
    thresholds: Thresholds | None = None,
) -> Report:
    """The report of ``metric`` at ``site`` of ``run`` in ``store``, with the run's watch alerts and,
    for site ``attn``, a per-head section; for site ``logits``, a one-series report of the LM
    head's max logit, log Z and entropy.

    A per-head map is aggregated over the heads by ``heads`` (``"max"``, ``"mean"``, ``"min"`` or a
    head index; by default :func:`~layerscope.store.heads.default_reduce`). ``scale`` and ``thresholds`` are as in
    :func:`~layerscope.analysis.report`.

    >>> rep = report_run("runs.db", metric="max_logit", site="attn")   # doctest: +SKIP
    >>> rep.to_dict()["heads"]["max_logit"]["top"][0]["factor"]        # doctest: +SKIP
    10.2
    """
    if isinstance(store, Store):
        return _report(store, run, metric, site, heads, variant, scale, thresholds)
    with Store(store, readonly=True) as st:
        return _report(st, run, metric, site, heads, variant, scale, thresholds)


def _report(
    st: Store,
    run: str | None,
    metric: str,
    site: str,
    heads: str | int | None,
    variant: str,
    scale: str,
    thresholds: Thresholds | None,
) -> Report:
    run = st.resolve_run(run)
    shapes = {
        (s.metric, s.site): s.inner for s in st.series(run) if s.kind == "value" and s.variant == variant
    }
    inner = shapes.get((metric, site), 1)
    if heads is not None and inner == 1 and (metric, site) in shapes:
        raise ConfigError(
            f"{metric}/{site} of run {run!r} holds one value per layer, not one per head; leave out heads "
            "(--heads), which applies to per-head series such as max_logit at site attn.",
            what="heads",
            value=heads,
            param="heads",
        )
    how = (heads if heads is not None else default_reduce(metric)) if inner > 1 else None
    hm = st.load(run, metric, site, variant=variant, reduce=how)  # raises the one-line NotFoundError
    kw: dict[str, Any] = {"events": st.events(run, variant=variant)}
    if inner > 1:
        kw["reduce"], kw["n_heads"] = how, inner
        kw["heads"] = {
            m: st.load_head_series(run, m, site, variant=variant)
            for m in SECTION_METRICS
            if shapes.get((m, site), 1) > 1
        }
    if site == LOGITS_SITE:
        hm, kw = _one_series(st, run, hm, shapes, variant, kw)
    return report(hm, scale=scale, thresholds=thresholds, extras=Extras(**kw))


def _one_series(
    st: Store, run: str, hm: Heatmap, shapes: dict[tuple[str, str], int], variant: str, kw: dict[str, Any]
) -> tuple[Heatmap, dict[str, Any]]:
    """The logits map cut to the one column that holds values (the LM head's layer), and every
    metric of site ``logits`` on the map's steps."""
    has = np.isfinite(hm.values).any(axis=0) | np.isinf(hm.values).any(axis=0)
    cols = np.flatnonzero(has)
    if cols.size != 1:  # nothing recorded, or a store that holds it in several columns: as it is
        return hm, kw
    j = int(cols[0])
    one = Heatmap(
        hm.values[:, [j]],
        hm.steps,
        [hm.layers[j]],
        [hm.layer_names[j]],
        hm.metric,
        hm.site,
        hm.run,
        dict(hm.meta),
    )
    at = {s: i for i, s in enumerate(hm.steps)}
    series = {}
    for m, s in shapes:
        if s != LOGITS_SITE or shapes[(m, s)] != 1:
            continue
        other = st.load(run, m, s, variant=variant)
        col = np.full(len(hm.steps), np.nan)
        for i, step in enumerate(other.steps):
            if step in at:
                col[at[step]] = other.values[i, j]
        series[m] = col
    kw.update(
        logits=series,
        logits_steps=list(hm.steps),
        logits_layer=hm.layers[j],
        logits_layer_name=hm.layer_names[j],
    )
    return one, kw


__all__ = ["report_run"]
