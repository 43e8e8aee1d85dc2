"""What the Recorder does with a flush and a recorded step, as functions of what it holds.

``to_records`` turns the pending window states into :class:`StepRecord` rows (the one device ->
host copy of a flush happens here), ``watch_records`` runs the live watch over them (host values
only) and attaches its alerts as events, and ``unreached`` / ``warn_unreached`` say which
recorded sites saw no forward. Kept out of ``recorder.py`` so that it stays a scheduler.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .capture import SiteHook
from .capture.headsites import HeadSource
from .defaults import REF_METRICS, REF_SITES, SITE_METRICS, STEP_SITES
from .errors import WatchAlert
from .stats import Metric, SlotAccumulator, StatSpec, WindowState, derive_values, finish_states
from .stats.codec import pack_many, unpack_many
from .stats.heads import head_values
from .store import Event, StepRecord
from .watch import Alert, Watch

# (step, the window's states, the head sources' snapshots) for each step not yet written
Pending = list[tuple[int, WindowState, list[torch.Tensor]]]


class UnreachedLayersWarning(UserWarning):
    """Some recorded layers saw no forward at the first recorded step: their values are NaN."""


def to_records(
    pending: Pending,
    hooks: Sequence[SiteHook],
    head_sources: Sequence[HeadSource],
    n_layers: int,
    spec: StatSpec,
    site_metrics: Mapping[str, set[str]],
    source: str,
) -> list[StepRecord]:
    """The rows of every pending step: one device -> host copy for all of them."""
    finish_states([ws for _, ws, _ in pending])
    flat, layouts = pack_many([ws for _, ws, _ in pending])
    heads = [h for _, _, hs in pending for h in hs]
    n_flat = flat.numel()
    if heads:
        flat = torch.cat([flat.reshape(-1), *(h.reshape(-1).to(flat) for h in heads)])
    host_all = flat.cpu().numpy()  # host sync here, once per flush
    host, off = host_all[:n_flat], n_flat
    records = []
    for (step, _, hs), parts in zip(pending, unpack_many(host, layouts)):
        derived = derive_values(parts.states, parts.units, parts.fn, spec, parts.ref)
        values: dict[tuple[str, str], Any] = {}
        hists: dict[str, np.ndarray] = {}
        # A site taken at the optimizer step that saw no step (skipped by a GradScaler): no rows.
        seen = {h.site for i, h in enumerate(hooks) if parts.states[i, 0] > 0}
        for i, h in enumerate(hooks):
            if h.site in STEP_SITES and h.site not in seen:
                continue
            wanted = site_metrics[h.site]
            for name, arr in derived.items():
                if name in wanted:
                    values.setdefault((name, h.site), [float("nan")] * n_layers)[h.layer.index - 1] = float(
                        arr[i]
                    )
            if parts.hist is not None:
                nb = parts.hist.shape[1]
                hists.setdefault(h.site, np.zeros((n_layers, nb)))[h.layer.index - 1] = parts.hist[i]
        for src, snap in zip(head_sources, hs):
            state = host_all[off : off + snap.numel()].reshape(snap.shape)
            off += snap.numel()
            for name, arr in head_values(state, src.site).items():
                v = np.asarray(arr, dtype=np.float64)
                values[(name, src.site)] = v[:, 0] if src.site == "logits" else v
        records.append(StepRecord(step, values, hists or None, source=source))
    return records


def watch_records(watch: Watch | None, records: Sequence[StepRecord]) -> list[Alert]:
    """Evaluate the watch on flushed records (host values only: no sync); each record carries
    its alerts as events, written in the step's transaction. The records of a flush retried
    after a failed write are not evaluated twice (:meth:`Watch.check_flush`)."""
    if watch is None:
        return []
    new: list[Alert] = []
    for r, fired in zip(records, watch.check_flush([(r.step, r.values) for r in records])):
        if fired:
            r.events = [
                Event(a.step, "alert", a.rule, a.message, a.site, a.metric, a.layer, a.head, a.value)
                for a in fired
            ]
        new.extend(fired)
    return new


def site_label(h: SiteHook) -> str:
    """How a message names a recorded site: the layer, and the site unless it is ``output``."""
    return h.layer.name if h.site == "output" else f"{h.layer.name} ({h.site})"


def unreached(hooks: Sequence[SiteHook], accs: Sequence[SlotAccumulator]) -> list[str]:
    """The sites that saw no forward since the window began (a host-side count: no sync). The
    optimizer step's sites warn on their own (capture/params.py)."""
    return [site_label(h) for h, acc in zip(hooks, accs) if acc.n_updates == 0 and h.site not in STEP_SITES]


def warn_unreached(names: Sequence[str], total: int, step: int, has_probe: bool) -> None:
    """Warn that ``names`` (of ``total`` recorded sites) are NaN at ``step``, and what to do."""
    if has_probe:
        fix = (
            "the probe's forward does not run them: pass probe_fn=fn(model, batch) that does"
            " (e.g. lambda m, x: m.decoder(m.encoder(x))), or leave them out with layers=."
        )
    else:
        fix = (
            "they did not run in train mode in this step's forwards: record only the layers "
            "that run (layers=), or train_only=False for modules kept in eval mode."
        )
    n = len(names)
    warnings.warn(
        f"layerscope: {n} of {total} recorded sites saw no forward at step {step}, so their values "
        f"are NaN: {', '.join(names[:8])}{' ...' if n > 8 else ''}; {fix}",
        UnreachedLayersWarning,
        stacklevel=5,
    )


def site_metrics(
    metric_objs: Sequence[Metric], metrics: Sequence[str], sites: Sequence[str]
) -> dict[str, set[str]]:
    """Which metrics each site writes: the recorder's, those its site adds (a norm), and the
    ratio metrics only where there is a reference (the update site)."""
    return {
        site: {
            m.name
            for m in metric_objs
            if (m.name in metrics and (m.name not in REF_METRICS or site in REF_SITES))
            or m.name in SITE_METRICS.get(site, ())
        }
        for site in sites
    }


def stop_error(step: int, alerts: Sequence[Alert]) -> WatchAlert:
    """What ``Recorder.step`` raises when the watch fired and ``on_alert="stop"``."""
    fired = list(alerts)
    more = f" (and {len(fired) - 1} more alerts)" if len(fired) > 1 else ""
    return WatchAlert(
        f"layerscope watch stopped training at step {step}: {fired[0].message}{more}; everything "
        "recorded is in the store. Pass on_alert='warn' to keep training.",
        fired,
    )
