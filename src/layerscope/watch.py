"""The live watch: rules evaluated on the host, at each flush, on values that are already there.

::

    rec = layerscope.Recorder(model, "runs.db", every=10, sites=("output", "attn"),
                              watch=True, on_alert="stop")

A rule looks at each new value of one ``(metric, site)`` series per layer (and per head for
per-head series) and fires an :class:`Alert` at most once per (rule, layer). The defaults
(:func:`default_rules`):

- ``nonfinite``: a NaN or infinity appears in any recorded series;
- ``jump``: a layer's ``max_abs`` / ``top_ratio`` / ``kurtosis``, a head's ``max_logit`` (site
  ``attn``) or the output ``max_logit`` (site ``logits``) rises beyond ``factor`` x the running
  median of its history, or beyond mean + ``sigmas`` x std of its recent history, after
  ``warmup`` values;
- ``above``: an update ratio (metric ``ratio``, site ``update``) above ``bound``.

User rules are ``(site, metric, predicate)`` tuples (``predicate(value) -> bool``) or
:class:`Rule` objects. No rule reads a tensor: the watch sees the host values of a flush, so it
adds no sync; its latency is the flush interval (``every x flush_every`` steps; with a watch the
Recorder flushes at every recorded step unless ``flush_every`` says otherwise).
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

# (metric, site, floor): a jump counts only above the floor, so that the early growth of small
# values (attention logits leave ~0 at init; a Gaussian's kurtosis is 3) does not fire.
JUMP_METRICS = (
    ("max_abs", None, 0.0),
    ("top_ratio", None, 0.0),
    ("kurtosis", None, 10.0),
    ("max_logit", "attn", 5.0),
    ("max_logit", "logits", 5.0),
)
ON_ALERT = ("warn", "stop")


@dataclass(frozen=True)
class Alert:
    """One firing of a rule: where (site, metric, 1-based layer, 0-based head), when, what value."""

    step: int
    rule: str
    site: str
    metric: str
    layer: int
    head: int | None
    value: float
    message: str
    layer_name: str = ""


@dataclass
class Rule:
    """A watch rule over one ``(metric, site)`` (``site=None``: every site that has the metric;
    ``metric=None``: every metric).

    ``kind``: ``"nonfinite"`` (a non-finite value appears), ``"jump"`` (beyond ``factor`` x the
    running median of ``|history|``, or beyond mean + ``sigmas`` x std of the last ``window``
    values, once ``warmup`` values were seen, and only where ``|value| > floor``), ``"above"`` (``value > bound``) or ``"predicate"``
    (``predicate(value)`` is true).
    """

    kind: str
    metric: str | None = None
    site: str | None = None
    factor: float = 10.0
    sigmas: float = 6.0
    window: int = 50
    warmup: int = 8
    bound: float = math.inf
    floor: float = 0.0
    predicate: Callable[[float], bool] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("nonfinite", "jump", "above", "predicate"):
            raise ConfigError(
                f"watch rule kind={self.kind!r}; pass 'nonfinite', 'jump', 'above' or 'predicate'."
            )
        if self.kind == "predicate" and not callable(self.predicate):
            raise ConfigError(
                f"watch rule for {self.metric!r} at {self.site!r}: predicate must be a function value -> bool."
            )
        if not self.name:
            where = f"{self.metric or '*'}@{self.site or '*'}"
            self.name = {
                "nonfinite": f"nonfinite {where}",
                "jump": f"{where} > {self.factor:g}x median or mean+{self.sigmas:g}sd",
                "above": f"{where} > {self.bound:g}",
                "predicate": f"{where} {getattr(self.predicate, '__name__', 'predicate')}",
            }[self.kind]

    def applies(self, metric: str, site: str) -> bool:
        return (self.metric is None or self.metric == metric) and (self.site is None or self.site == site)


def default_rules(update_ratio_bound: float = 0.05) -> list[Rule]:
    """The default rules: non-finite values, jumps of the outlier statistics and logits, update ratios."""
    rules = [Rule("nonfinite")]
    rules += [Rule("jump", metric=m, site=s, floor=f) for m, s, f in JUMP_METRICS]
    rules.append(Rule("above", metric="ratio", site="update", bound=update_ratio_bound))
    return rules


WatchSpec = bool | str | Rule | tuple[str, str, Callable[[float], bool]] | Sequence[Any] | None


def as_rules(spec: WatchSpec) -> list[Rule]:
    """Rules from what ``Recorder(watch=...)`` accepts: True / ``"default"`` (the defaults), a
    :class:`Rule`, a ``(site, metric, predicate)`` tuple, or a list of those (``"default"`` in the
    list adds the defaults)."""
    if spec is None or spec is False:
        return []
    if spec is True or spec == "default":
        return default_rules()
    if isinstance(spec, Rule):
        return [spec]
    if isinstance(spec, tuple) and len(spec) == 3 and callable(spec[2]) and isinstance(spec[0], str):
        site, metric, pred = spec
        return [Rule("predicate", metric=metric, site=site, predicate=pred)]
    if isinstance(spec, (list, tuple)):
        out: list[Rule] = []
        for s in spec:
            out.extend(as_rules(s))
        return out
    raise ConfigError(
        f"watch={spec!r}; pass True (the default rules), a Rule, a (site, metric, predicate) tuple, or a list of those."
    )


@dataclass
class _Track:
    """One rule's history over one ``(metric, site)`` series, for every layer and head at once.

    ``buf`` holds each element's last ``window`` finite values (a ring per element: ``pos`` is
    where its next value goes, ``n`` how many it has had; unfilled slots are NaN), so the running
    median and the mean + k sd band of every element come from a few array operations instead of
    a Python loop per layer and head."""

    buf: np.ndarray  # (window, layers, heads)
    n: np.ndarray  # (layers, heads) int: finite values seen
    seen_finite: np.ndarray  # (layers, heads) bool

    @classmethod
    def new(cls, window: int, shape: tuple[int, int]) -> _Track:
        return cls(
            np.full((max(window, 1), *shape), np.nan),
            np.zeros(shape, dtype=np.int64),
            np.zeros(shape, dtype=bool),
        )

    def push(self, v: np.ndarray, where: np.ndarray) -> None:
        """Append ``v`` to the history of the elements ``where`` is true."""
        w = self.buf.shape[0]
        li, hi = np.nonzero(where)
        self.buf[self.n[li, hi] % w, li, hi] = v[li, hi]
        self.n[li, hi] += 1


@dataclass
class Watch:
    """Evaluates rules on flushed steps; remembers what fired. ``print_to``: where alerts are printed
    (stderr; None: silent)."""

    rules: list[Rule]
    layer_names: Mapping[int, str] = field(default_factory=dict)
    print_to: Any = sys.stderr
    alerts: list[Alert] = field(default_factory=list)
    _tracks: dict[tuple[int, str, str], _Track] = field(default_factory=dict)
    _fired: set[tuple[str, str, str, int]] = field(default_factory=set)
    # step -> (digest of its values, its alerts), for the steps of the last flush: see check_flush
    _last_flush: dict[int, tuple[bytes, list[Alert]]] = field(default_factory=dict)

    def check_flush(self, steps: Sequence[tuple[int, Mapping[tuple[str, str], Any]]]) -> list[list[Alert]]:
        """The alerts of each ``(step, values)`` of one flush, in order.

        A flush whose write failed (a locked store, a full disk) keeps its steps and presents them
        again at the next flush. A step presented again with the same values is not evaluated
        again: its values are in the rules' history once (a duplicate would shift the running
        median and the mean + k sd band, and could fire twice), and its alerts are returned again,
        not printed again, so that the retried write stores them with the step.

        >>> w = Watch([Rule("predicate", "rms", "output", predicate=lambda v: v > 1)], print_to=None)
        >>> [len(a) for a in w.check_flush([(10, {("rms", "output"): [2.0]})])]
        [1]
        >>> [len(a) for a in w.check_flush([(10, {("rms", "output"): [2.0]}), (20, {("rms", "output"): [0.5]})])]
        [1, 0]
        >>> len(w.alerts)
        1
        """
        # A retry prepends what failed to what came since: only the steps of this flush can recur.
        keep = {step for step, _ in steps}
        memo = {k: v for k, v in self._last_flush.items() if k in keep}
        out: list[list[Alert]] = []
        for step, values in steps:
            digest = _digest(values)
            seen = memo.get(step)
            if seen is not None and seen[0] == digest:
                out.append(list(seen[1]))
                continue
            fired = self.check(step, values)
            memo[step] = (digest, fired)
            out.append(fired)
        self._last_flush = memo
        return out

    def check(self, step: int, values: Mapping[tuple[str, str], Any]) -> list[Alert]:
        """The new alerts of one step's values ``{(metric, site): (n_layers,) or (n_layers, k)}``."""
        new: list[Alert] = []
        for (metric, site), arr in values.items():
            a = np.asarray(arr, dtype=np.float64)
            a2 = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
            per_head = a.ndim == 2
            for ri, rule in enumerate(self.rules):
                if not rule.applies(metric, site):
                    continue
                for li, hi, why in self._hits(ri, rule, metric, site, a2):
                    key = (rule.name, site, metric, li + 1)
                    if key in self._fired:
                        continue
                    self._fired.add(key)
                    v = float(a2[li, hi])
                    new.append(
                        self._alert(step, rule, metric, site, li + 1, hi if per_head else None, v, why)
                    )
        self.alerts.extend(new)
        if self.print_to is not None:
            for al in new:
                print(f"layerscope watch: {al.message}", file=self.print_to, flush=True)
        return new

    def _hits(self, ri: int, rule: Rule, metric: str, site: str, v: np.ndarray) -> list[tuple[int, int, str]]:
        """``(layer index, head index, why)`` of the elements of ``v`` (layers x heads) that fire
        ``rule``, in layer then head order; updates the rule's history of the series."""
        tr = self._tracks.get((ri, metric, site))
        if tr is None or tr.n.shape != v.shape:
            tr = self._tracks[(ri, metric, site)] = _Track.new(rule.window, v.shape)
        finite = np.isfinite(v)
        if rule.kind == "nonfinite":
            # NaN in an element that never had a value means "none there" (a layer a probe does
            # not reach), not an alert; any other non-finite value is one.
            fire = ~finite & (tr.seen_finite | ~np.isnan(v))
            tr.seen_finite |= finite
            return [(int(i), int(j), "is not finite") for i, j in zip(*np.nonzero(fire))]
        if rule.kind == "above":
            with np.errstate(invalid="ignore"):
                fire = finite & (v > rule.bound)
            return [(int(i), int(j), f"> bound {rule.bound:g}") for i, j in zip(*np.nonzero(fire))]
        if rule.kind == "predicate":
            assert rule.predicate is not None
            return [
                (int(i), int(j), f"matches {rule.name}")
                for i, j in zip(*np.nonzero(finite))
                if rule.predicate(float(v[i, j]))
            ]
        # jump: beyond factor x the running median of |history|, or beyond mean + k sd of it
        out: list[tuple[int, int, str]] = []
        ready = finite & (tr.n >= rule.warmup) & (np.abs(v) > rule.floor)
        if ready.any():
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # elements with no history: NaN
                # A full history has no NaN slot: the plain reductions (much faster) give the same.
                full = bool((tr.n >= tr.buf.shape[0]).all())
                median, nmean, nstd = (
                    (np.median, np.mean, np.std) if full else (np.nanmedian, np.nanmean, np.nanstd)
                )
                med = median(np.abs(tr.buf), axis=0)
                mean = nmean(tr.buf, axis=0)
                sd = nstd(tr.buf, axis=0)
                by_med = ready & (med > 0) & (np.abs(v) > rule.factor * med)
                by_sd = ready & ~by_med & (sd > 0) & (v > mean + rule.sigmas * sd)
            for i, j in zip(*np.nonzero(by_med | by_sd)):
                if by_med[i, j]:
                    why = f"> {rule.factor:g} x running median {med[i, j]:.4g}"
                else:
                    why = f"> mean {mean[i, j]:.4g} + {rule.sigmas:g} sd ({sd[i, j]:.3g})"
                out.append((int(i), int(j), why))
        tr.push(v, finite)
        return out

    def _alert(
        self, step: int, rule: Rule, metric: str, site: str, layer: int, head: int | None, v: float, why: str
    ) -> Alert:
        name = self.layer_names.get(layer, "")
        where = (
            f"layer {layer}" + (f" ({name})" if name else "") + (f" head {head}" if head is not None else "")
        )
        msg = f"step {step}: {where} {site} {metric} = {v:.4g} {why} [{rule.name}]"
        return Alert(step, rule.name, site, metric, layer, head, v, msg, name)


def _digest(values: Mapping[tuple[str, str], Any]) -> bytes:
    """A fingerprint of one step's values (names, shapes and every bit of every value)."""
    h = hashlib.blake2b(digest_size=16)
    for (metric, site), arr in sorted(values.items()):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
        h.update(f"{metric}\0{site}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.digest()


__all__ = ["ON_ALERT", "Alert", "Rule", "Watch", "WatchSpec", "as_rules", "default_rules"]
