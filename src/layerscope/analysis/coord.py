"""The coord-check's verdict: per layer and step, how a statistic scales with the width.

For each (step, layer) the statistic's mean over seeds is fitted as a power of the width,
``log2(stat) = slope * log2(width) + c`` (least squares, every width weighted alike), and the slope
is judged against ``stable_slope``:

- ``|slope| <= stable_slope``: **stable** (width-independent, what muP promises);
- ``slope > stable_slope``: **grows**. Standard parametrization trained with Adam at one learning
  rate grows like ``width`` after a step (slope ~1: ``dW @ x`` sums ``width`` updates of size
  ``lr``); ~0.5 is the signature of a fixed init std (GPT-2's 0.02) or of SGD;
- ``slope < -stable_slope``: **shrinks** (e.g. an over-corrected multiplier).

``stable_slope = 0.2`` (over a 16x range of widths, a factor ``2**(0.2*4) = 1.7``) leaves room for
the finite-width drift of a correct muP model over a few steps (0.1-0.2 in the tiny GPT's
attention outputs) while the standard-parametrization failure is 0.5-1.5. The fit quality is in
every row: ``r2`` (1 for an exact power law; meaningless for a flat line, whose variance is all
residual), ``resid`` (root mean square residual in log2 units: 0.1 is +-7 %), the slope's standard
error ``stderr``, and ``seed_sd``, the standard deviation over seeds of the per-seed slope. A fit
whose ``resid`` exceeds ``irregular_resid`` is not a power law and is called out as irregular.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..store.coord import CoordData

STABLE_SLOPE = 0.2
IRREGULAR_RESID = 0.35  # log2 units: a point ~27 % off the fitted power law on average


@dataclass(frozen=True)
class SlopeFit:
    """A least-squares line through ``(log2 width, log2 stat)`` for one (step, layer)."""

    slope: float
    intercept: float
    r2: float
    resid: float  # root mean square residual, log2 units
    stderr: float  # standard error of the slope (NaN with fewer than 3 widths)
    seed_sd: float  # std over seeds of the per-seed slope (NaN with one seed)
    n_widths: int


def fit_loglog(widths: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> SlopeFit:
    """Fit ``log2(values) = slope * log2(widths) + intercept`` over the finite, positive points.

    >>> f = fit_loglog([64, 128, 256], [1.0, 2.0, 4.0])
    >>> round(f.slope, 6), round(f.r2, 6)
    (1.0, 1.0)
    """
    w = np.asarray(widths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(w) & (w > 0)
    n = int(ok.sum())
    nan = float("nan")
    if n < 2:
        return SlopeFit(nan, nan, nan, nan, nan, nan, n)
    x, y = np.log2(w[ok]), np.log2(v[ok])
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx == 0:
        return SlopeFit(nan, nan, nan, nan, nan, nan, n)
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    res = y - (slope * x + intercept)
    ss_res, ss_tot = float(np.sum(res**2)), float(np.sum((y - ym) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    stderr = float(np.sqrt(ss_res / (n - 2) / sxx)) if n > 2 else nan
    return SlopeFit(slope, intercept, r2, float(np.sqrt(ss_res / n)), stderr, nan, n)


def judge(slope: float, stable_slope: float = STABLE_SLOPE) -> str:
    """``"stable"``, ``"grows"``, ``"shrinks"``, or ``"unknown"`` for a NaN slope.

    >>> judge(0.05), judge(0.9), judge(-0.4), judge(float("nan"))
    ('stable', 'grows', 'shrinks', 'unknown')
    """
    if not np.isfinite(slope):
        return "unknown"
    if abs(slope) <= stable_slope:
        return "stable"
    return "grows" if slope > 0 else "shrinks"


def _near(slope: float) -> str:
    """Which textbook exponent a growing slope is nearest to (0.5: fixed-std init / SGD; 1: Adam)."""
    return "1" if slope >= 0.75 else "0.5"


def _ranges(layers: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out: list[str] = []
    ls = sorted(layers)
    i = 0
    while i < len(ls):
        j = i
        while j + 1 < len(ls) and ls[j + 1] == ls[j] + 1:
            j += 1
        out.append(str(ls[i]) if i == j else f"{ls[i]}-{ls[j]}")
        i = j + 1
    return ", ".join(out)


@dataclass
class CoordVerdict:
    """Every fit of one (metric, site) of a coord-check and the verdict it supports.

    ``fits[t][j]`` is the fit at ``steps[t]`` for ``layers[j]``; ``layer_verdict[j]`` the verdict
    of layer ``layers[j]`` at its step of largest ``|slope|`` (``worst_step[j]``).
    """

    data: CoordData
    fits: list[list[SlopeFit]]
    stable_slope: float = STABLE_SLOPE
    irregular_resid: float = IRREGULAR_RESID
    layer_verdict: list[str] = field(default_factory=list)
    worst_step: list[int] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``"stable"`` if every layer is, else ``"grows"``/``"shrinks"``/``"mixed"``/``"unknown"``."""
        kinds = set(self.layer_verdict) - {"stable"}
        if not kinds:
            return "stable"
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def slopes(self) -> np.ndarray:
        """(n_steps, n_layers) fitted slopes."""
        return np.array([[f.slope for f in row] for row in self.fits], dtype=np.float64)

    def layers_with(self, kind: str) -> list[int]:
        """The layers (1-based) whose verdict is ``kind``."""
        return [la for la, v in zip(self.data.layers, self.layer_verdict) if v == kind]

    def irregular(self) -> list[tuple[int, int, SlopeFit]]:
        """(step, layer, fit) of every fit whose residual says it is not a power law."""
        return [
            (st, la, f)
            for st, row in zip(self.data.steps, self.fits)
            for la, f in zip(self.data.layers, row)
            if np.isfinite(f.resid) and f.resid > self.irregular_resid
        ]

    def to_dict(self) -> dict[str, Any]:
        """Every slope with its fit quality, the per-layer verdicts and the bounds behind them."""
        d = self.data
        mean = d.mean_over_seeds()
        return {
            "run": d.run,
            "metric": d.metric,
            "site": d.site,
            "widths": [int(w) for w in d.widths],
            "seeds": [int(s) for s in d.seeds],
            "steps": [int(s) for s in d.steps],
            "layers": [int(la) for la in d.layers],
            "verdict": self.verdict,
            "thresholds": {"stable_slope": self.stable_slope, "irregular_resid": self.irregular_resid},
            "layer_verdicts": [
                {
                    "layer": int(la),
                    "name": d.layer_names[j] if j < len(d.layer_names) else "",
                    "verdict": self.layer_verdict[j],
                    "worst_step": self.worst_step[j],
                    "slope": _num(self.fits[d.steps.index(self.worst_step[j])][j].slope)
                    if self.worst_step[j] in d.steps
                    else None,
                }
                for j, la in enumerate(d.layers)
            ],
            "fits": [
                {
                    "step": int(st),
                    "layer": int(la),
                    "slope": _num(f.slope),
                    "intercept": _num(f.intercept),
                    "r2": _num(f.r2),
                    "resid": _num(f.resid),
                    "stderr": _num(f.stderr),
                    "seed_sd": _num(f.seed_sd),
                    "n_widths": f.n_widths,
                    "verdict": judge(f.slope, self.stable_slope),
                    "values": [_num(x) for x in mean[:, t, j]],
                }
                for t, (st, row) in enumerate(zip(d.steps, self.fits))
                for j, (la, f) in enumerate(zip(d.layers, row))
            ],
        }

    def sentences(self) -> list[str]:
        """The verdict in words; every number quoted is in :meth:`to_dict`."""
        d = self.data
        label = f"{d.metric} at {d.site}"
        ws = f"widths {min(d.widths)}-{max(d.widths)} ({len(d.widths)} widths, {len(d.seeds)} seed(s))"
        out: list[str] = []
        stable = self.layers_with("stable")
        if len(stable) == len(d.layers):
            worst = max(
                (abs(f.slope) for row in self.fits for f in row if np.isfinite(f.slope)), default=float("nan")
            )
            out.append(
                f"Width-stable: {label} of every layer (1-{len(d.layers)}) stays flat over {ws} at every "
                f"step; the largest |slope| is {worst:.2f} (bound {self.stable_slope:g})."
            )
            return out
        if stable:
            out.append(
                f"Width-stable (|slope| <= {self.stable_slope:g} at every step): layers {_ranges(stable)}."
            )
        for kind, words in (("grows", "Grows with width"), ("shrinks", "Shrinks with width")):
            ls = self.layers_with(kind)
            if not ls:
                continue
            idx = [list(d.layers).index(la) for la in ls]
            sl = [self.fits[d.steps.index(self.worst_step[j])][j].slope for j in idx]
            first = [self._first_step(j, kind) for j in idx]
            lo, hi = min(sl), max(sl)
            text = (
                f"{words}: layers {_ranges(ls)} of {label} over {ws}, from step {min(first)} on; the steepest "
                f"slopes are {lo:+.2f} to {hi:+.2f} (width^{lo:.2f}..width^{hi:.2f})"
            )
            if kind == "grows":
                text += f", near {_near(hi)}: the standard-parametrization failure " + (
                    "(one Adam learning rate for every width)."
                    if _near(hi) == "1"
                    else "(a fixed init std, or SGD without muP's per-layer rates)."
                )
            else:
                text += "."
            out.append(text)
        unknown = self.layers_with("unknown")
        if unknown:
            out.append(f"No fit (fewer than 2 finite, positive widths): layers {_ranges(unknown)}.")
        irr = self.irregular()
        if irr:
            st, la, f = max(irr, key=lambda x: x[2].resid)
            out.append(
                f"Not a clean power law at {len(irr)} (step, layer) point(s); the worst, layer {la} at "
                f"step {st}, is off its fit by {f.resid:.2f} in log2 (R^2 {f.r2:.2f})."
            )
        return out

    def _first_step(self, j: int, kind: str) -> int:
        for st, row in zip(self.data.steps, self.fits):
            if judge(row[j].slope, self.stable_slope) == kind:
                return int(st)
        return int(self.data.steps[-1])

    def to_markdown(self) -> str:
        """The verdict as the report's Markdown: sections, then a table of slopes per step and layer."""
        d = self.data
        lines = [f"## Coordinate check: {d.metric} at {d.site}", ""]
        lines.append(
            f"Run `{d.run}`: widths {', '.join(str(w) for w in d.widths)}; seeds {len(d.seeds)}; steps "
            f"{', '.join(str(s) for s in d.steps)} (step 1 is the initialisation: recorded before the "
            "first update)."
        )
        lines += ["", f"**Verdict: {self.verdict}.**", ""]
        lines += [f"- {s}" for s in self.sentences()]
        lines += ["", "### Slopes of log(stat) against log(width)", ""]
        lines.append("| layer | " + " | ".join(f"step {s}" for s in d.steps) + " | verdict |")
        lines.append("|---:|" + "---:|" * len(d.steps) + "---|")
        for j, la in enumerate(d.layers):
            cells = []
            for t in range(len(d.steps)):
                f = self.fits[t][j]
                cells.append("-" if not np.isfinite(f.slope) else f"{f.slope:+.2f} (R^2 {f.r2:.2f})")
            lines.append(f"| {la} | " + " | ".join(cells) + f" | {self.layer_verdict[j]} |")
        lines += [
            "",
            f"A slope is the exponent of the width: +1 doubles the statistic when the width doubles. Stable means "
            f"|slope| <= {self.stable_slope:g} at every step; R^2 and the residual of every fit are in the JSON.",
            "",
        ]
        return "\n".join(lines)


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def coord_verdict(
    data: CoordData, stable_slope: float = STABLE_SLOPE, irregular_resid: float = IRREGULAR_RESID
) -> CoordVerdict:
    """Fit every (step, layer) of ``data`` and judge each layer at its step of largest ``|slope|``.

    >>> d = CoordData(np.array([1.0, 2.0, 4.0]).reshape(1, 3, 1, 1), widths=[64, 128, 256], seeds=[0],
    ...               steps=[2], layers=[1])
    >>> v = coord_verdict(d)
    >>> v.verdict, round(v.fits[0][0].slope, 3)
    ('grows', 1.0)
    """
    mean = data.mean_over_seeds()  # (W, T, L)
    vals = np.asarray(data.values, dtype=np.float64)
    fits: list[list[SlopeFit]] = []
    for t in range(len(data.steps)):
        row = []
        for j in range(len(data.layers)):
            f = fit_loglog(data.widths, mean[:, t, j])
            per_seed = [fit_loglog(data.widths, vals[s, :, t, j]).slope for s in range(vals.shape[0])]
            per_seed = [x for x in per_seed if np.isfinite(x)]
            sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
            row.append(SlopeFit(f.slope, f.intercept, f.r2, f.resid, f.stderr, sd, f.n_widths))
        fits.append(row)
    verdicts, worst = [], []
    for j in range(len(data.layers)):
        col = [(abs(fits[t][j].slope), t) for t in range(len(data.steps)) if np.isfinite(fits[t][j].slope)]
        if not col:
            verdicts.append("unknown")
            worst.append(int(data.steps[-1]) if len(data.steps) else 0)
            continue
        t = max(col)[1]
        verdicts.append(judge(fits[t][j].slope, stable_slope))
        worst.append(int(data.steps[t]))
    return CoordVerdict(data, fits, stable_slope, irregular_resid, verdicts, worst)
