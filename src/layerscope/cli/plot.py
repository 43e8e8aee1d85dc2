"""``layerscope plot``: draw the layer x step heatmap (or per-layer lines) of a store or CSV.

The drawing options here (``style_options``) are shared with ``compare`` and ``view``; so is
:func:`select_heatmaps`, which turns ``--metric``/``--site`` lists into heatmaps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import escape_controls, quote
from ._alerts import alerts_option
from ._common import run_option, source_argument
from ._heads import HEAD_MAP, is_per_step, parse_heads, plot_head_map

PREFERRED = ("rms", "mean", "std", "max_abs", "kurtosis")  # "all" lists these first, then the rest A-Z


def parse_list(value: str | None) -> list[str] | None:
    """``"rms, kurtosis"`` -> ``["rms", "kurtosis"]`` (order kept, duplicates dropped); None stays None."""
    if value is None:
        return None
    items = list(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    if not items:
        raise click.BadParameter(f"{quote(value)} names nothing; pass e.g. rms or rms,kurtosis.")
    return items


def _order(metrics: list[str]) -> list[str]:
    return [m for m in PREFERRED if m in metrics] + sorted(m for m in metrics if m not in PREFERRED)


def select_heatmaps(
    source: str,
    run: str | None,
    metrics: list[str] | None,
    sites: list[str] | None,
    default_metric: str | None = "rms",
    heads: str | int | None = None,
) -> list[Any]:
    """The heatmaps named by ``--metric`` x ``--site`` lists (``all`` = every recorded one).

    A pair asked for explicitly that was not recorded is an error naming what was; with ``all`` on
    one side, pairs not recorded are skipped. A per-head series (site ``attn``) is read as one
    value per layer by ``heads`` (``"max"``, ``"mean"``, ``"min"`` over the heads, or a head index;
    None: :func:`layerscope.store.heads.default_reduce` of the metric). A series of one value per
    step (site ``logits``) comes back as its one column.
    """
    from pathlib import Path

    from ..errors import ConfigError, NotFoundError
    from ..sources import is_csv, open_heatmap

    p = Path(source)
    if not p.exists() or p.is_dir():
        return [open_heatmap(source)]  # raises NotFoundError: missing, or a folder
    if is_csv(source):
        if (metrics and "all" in metrics) or (sites and "all" in sites):
            raise ConfigError("'all' needs a run store (.db); for a CSV name the metric and site.")
        if heads is not None:
            raise ConfigError(
                "--heads reads a per-head series of a run store (.db); a CSV has one value per layer."
            )
        return [
            open_heatmap(source, run=run, metric=m, site=s)
            for m in (list(metrics) if metrics else [None])
            for s in (list(sites) if sites else [None])
        ]
    from ..store import Store
    from ._heads import check_heads_apply, per_step_column, reduction, site_default_metrics

    with Store(source, readonly=True) as st:
        run = st.resolve_run(run)
        pairs = st.metrics(run)
        if not pairs:
            raise NotFoundError(f"run {quote(run)} in {quote(source)} has no recorded steps yet.")
        inner = {(i.metric, i.site): i.inner for i in st.series(run) if i.kind == "value" and not i.variant}
        recorded_m = _order(sorted({m for m, _ in pairs}))
        recorded_s = sorted({s for _, s in pairs}, key=lambda s: (s != "output", s))
        all_m = metrics is not None and "all" in metrics
        all_s = sites is not None and "all" in sites
        ss = recorded_s if all_s else (sites or (["output"] if "output" in recorded_s else recorded_s[:1]))
        ms = (
            recorded_m
            if all_m
            else (metrics or site_default_metrics(ss, pairs, default_metric) or recorded_m)
        )
        chosen = [(m, s) for m in ms for s in ss if (m, s) in pairs]
        check_heads_apply(heads, chosen, inner, pairs)
        out = []
        for m in ms:
            for s in ss:
                if (m, s) in pairs:
                    hm = st.load(run, m, s, reduce=reduction(heads, m, inner.get((m, s), 1)))
                    out.append(per_step_column(hm, st.run_config(run)))
                elif not (all_m or all_s):
                    st.load(run, m, s)  # raises NotFoundError naming what was recorded
        if not out:
            raise NotFoundError(
                f"no recorded (metric, site) pair of run {quote(run)} matches --metric {quote(','.join(ms))} "
                f"--site {quote(','.join(ss))}; recorded: {', '.join(f'{m}@{s}' for m, s in pairs)}."
            )
        return out


def _figsize(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    from ..errors import ConfigError
    from ..render.options import parse_figsize

    try:
        return parse_figsize(value)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


def _style_decorators(diff: bool) -> list[Callable[..., Any]]:
    if diff:
        cmap_help = "Matplotlib colormap of the difference. Default: RdBu_r (blue: B lower, red: B higher), centred at 0."
        vmin_help = "Low end of the colour scale. Default: -max |B - A| (symmetric about 0)."
        vmax_help = "High end of the colour scale. Default: +max |B - A|."
    else:
        cmap_help = (
            "Matplotlib colormap. Default: magma; RdBu_r centred at 0 for signed data and --symlog; "
            "viridis (by depth) for --kind lines, plasma (by step) for --kind profile."
        )
        vmin_help = (
            "Low end of the colour scale (lines, profile: of the y axis). Default: min(0, data); the "
            "smallest positive value with --log."
        )
        vmax_help = "High end of the colour scale (lines, profile: y axis). Default: data max."
    opts = [
        click.option("--cmap", default=None, metavar="NAME", help=cmap_help),
        click.option("--vmin", type=float, default=None, help=vmin_help),
        click.option("--vmax", type=float, default=None, help=vmax_help),
    ]
    # A difference takes both signs: compare keeps --log only to say so (hidden from its help).
    opts.append(
        click.option(
            "--log",
            "log_scale",
            is_flag=True,
            hidden=diff,
            help="Logarithmic colour scale (positive values; cells <= 0 are marked).",
        )
    )
    opts += [
        click.option(
            "--symlog",
            is_flag=True,
            help="Symmetric log scale for signed values"
            + (" (differences)" if diff else " (mean, min, max)")
            + ": linear within +-LINTHRESH, logarithmic beyond, diverging colours centred at 0.",
        ),
        click.option(
            "--linthresh",
            type=float,
            default=None,
            metavar="X",
            help="With --symlog: half-width of the linear band. Default: 5th percentile of |values| > 0.",
        ),
        click.option(
            "--annotate",
            is_flag=True,
            help="Print each cell's value in it, in black or white for contrast (skipped with a "
            "warning above 40 x 40 cells).",
        ),
        click.option(
            "--colorbar",
            type=click.Choice(["right", "bottom"]),
            default="right",
            show_default=True,
            help="Where the colour bar goes.",
        ),
        click.option(
            "--title",
            default=None,
            help="Figure title ('' for none). Default: "
            + ("the metric and B - A." if diff else "metric and run."),
        ),
        click.option(
            "--figsize",
            callback=_figsize,
            default=None,
            metavar="W,H",
            help="Figure size in inches, e.g. 7,4 (HTML: x100 px). Default: sized from the matrix.",
        ),
        click.option(
            "--dpi",
            type=click.IntRange(20, 1200),
            default=150,
            show_default=True,
            help="Raster resolution (use 300 for print).",
        ),
        click.option(
            "--true-steps",
            is_flag=True,
            help="Place rows at their true step values, so uneven recording intervals show "
            "(default: one equal row per recorded step).",
        ),
        plotly_option,
    ]
    return opts


def plotly_option_with(default: str) -> Callable[..., Any]:
    """``--plotly inline|directory``: where an HTML page finds plotly.js."""
    return click.option(
        "--plotly",
        type=click.Choice(["inline", "directory"]),
        default=default,
        show_default=True,
        help="HTML only: embed plotly.js in the page (one self-contained file, ~4.8 MB) or write it "
        "once beside the page (plotly-VERSION.min.js, shared by every page in that folder).",
    )


plotly_option = plotly_option_with("inline")


def style_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The drawing options of ``plot`` (they map onto RenderOptions)."""
    for o in reversed(_style_decorators(diff=False)):
        f = o(f)
    return f


def diff_style_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The drawing options of ``compare``: the same flags, help written for a difference (no --log)."""
    for o in reversed(_style_decorators(diff=True)):
        f = o(f)
    return f


def render_options(
    kind: str = "heatmap",
    *,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    log_scale: bool = False,
    symlog: bool = False,
    linthresh: float | None = None,
    annotate: bool = False,
    colorbar: str = "right",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 150,
    true_steps: bool = False,
    plotly: str = "inline",
    **extra: Any,
) -> Any:
    """CLI flags -> RenderOptions (a usage error when flags contradict each other)."""
    from ..render.options import RenderOptions

    if log_scale and symlog:
        raise click.UsageError("--log and --symlog exclude each other; pass one of them.")
    if linthresh is not None and not symlog:
        raise click.UsageError("--linthresh only applies with --symlog; add --symlog or drop --linthresh.")
    return RenderOptions(
        kind=kind,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        scale="log" if log_scale else ("symlog" if symlog else "linear"),
        linthresh=linthresh,
        annotate=annotate,
        colorbar=colorbar,
        title=title,
        figsize=figsize,
        dpi=dpi,
        true_steps=true_steps,
        plotly=plotly,
        **extra,
    )


@contextmanager
def echo_warnings() -> Iterator[None]:
    """Print the renderers' warnings (e.g. --annotate skipped) as one 'warning:' line each."""
    from ..render.options import RenderWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RenderWarning)
        yield
    for w in caught:
        if issubclass(w.category, RenderWarning):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@click.command("plot")
@source_argument
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="File to write: .png, .svg, .pdf (static) or .html (interactive, offline).",
)
@run_option
@click.option(
    "--metric",
    "--metrics",
    "metric",
    default=None,
    metavar="LIST",
    help="Metric(s) to draw, comma-separated, or 'all'. Several give small multiples (static) or "
    "a switcher (HTML); 'hist' draws the recorded histograms (bins x steps per layer). "
    "Default: rms for a store; the CSV's own metric.",
)
@click.option(
    "--site",
    "--sites",
    "site",
    default=None,
    metavar="LIST",
    help="Site(s), comma-separated, or 'all': output (default), mlp_act, attn_out, mlp_out, mlp_down_in.",
)
@click.option(
    "--kind",
    type=click.Choice(["heatmap", "lines", "profile"]),
    default=None,
    help="heatmap (default): layer x step cells; lines: value against step, one line per layer "
    "coloured by depth; profile: value against depth at a few steps (--step), one line per step. "
    "Site logits (one value per step) is drawn as lines.",
)
@click.option(
    "--heads",
    "heads",
    is_flag=False,
    flag_value="map",
    default=None,
    callback=parse_heads,
    metavar="[max|mean|min|N]",
    help="A per-head series (site attn): fold the heads into one value per layer with max, mean or "
    "min, or draw head N (0-based). Default: max for max_logit, mean for entropy and sink. Bare "
    "--heads with --step N draws the head x layer map at step N instead.",
)
@click.option(
    "--step",
    "--steps",
    "at_steps",
    default=None,
    metavar="LIST",
    help="--kind profile: the recorded steps to draw, comma-separated (default: 6 spread over the "
    "run); with bare --heads: the one step of the head x layer map.",
)
@click.option(
    "--layer",
    "--layers",
    "layers",
    default=None,
    metavar="LIST",
    help="--metric hist: the layer(s) to draw, comma-separated, or 'all'. Default: all layers, or 12 "
    "spread over the depth when there are more than 16.",
)
@style_options
@alerts_option
@click.option(
    "--shared-scale/--independent-scale",
    "shared_scale",
    default=None,
    help="Small multiples: one colour scale for all panels, or one per panel. Default: shared "
    "when every panel shows the same metric.",
)
@click.option(
    "--cols",
    "ncols",
    type=click.IntRange(1, 12),
    default=None,
    metavar="N",
    help="Small multiples: panels per row. Default: one per site, or up to 3.",
)
def plot(
    source: str,
    output: str,
    run: str | None,
    metric: str | None,
    site: str | None,
    kind: str | None,
    heads: str | int | None,
    at_steps: str | None,
    layers: str | None,
    shared_scale: bool | None,
    ncols: int | None,
    **style: Any,
) -> None:
    """Draw the layer x step heatmap of SOURCE (a run store or a CSV) to FILE.

    Steps run down (first at the top, labels like 30k / 1.2M), layers across; missing/NaN cells are
    grey and +-inf hatched, each named in a legend when present. Comma lists of metrics or sites
    draw small multiples of one run. An .html FILE is one page that works offline: hover a cell for
    its layer, layer name, step and exact value; below the map, the profile at a step follows a
    step slider and the hover. Long runs keep their spikes: when there are more steps than pixel
    rows, each row shows the most extreme value of its block of steps.

    \b
    Examples:
      layerscope plot layerscope-demo/runs.db -o rms.png
      layerscope plot runs.db --run baseline --metric kurtosis --log -o kurtosis.pdf
      layerscope plot runs.db --metric mean --symlog --colorbar bottom --figsize 7,4 --dpi 300 -o mean.png
      layerscope plot runs.db --metric rms,kurtosis --site output,mlp_act -o grid.png
      layerscope plot runs.db --kind lines -o lines.svg
      layerscope plot runs.db --kind profile --step 100,300,600 -o profile.png
      layerscope plot runs.db --metric hist --layer 7 -o hist7.png
      layerscope plot runs.db --metric all -o explore.html --plotly directory
      layerscope plot values.csv --annotate --true-steps -o values.svg
      layerscope plot runs.db --site attn --metric max_logit -o max-logit.png
      layerscope plot runs.db --site attn --metric entropy --heads min -o entropy.png
      layerscope plot runs.db --site attn --metric max_logit --heads --step 500 -o heads.png
      layerscope plot runs.db --site logits --metric all -o logits.png
      layerscope plot runs.db --metric max_abs --no-alerts -o max_abs.png
    """
    from .._io import check_outputs_are_not_inputs
    from ..render import plot as draw
    from ..render.output import ALL_FORMATS, check_output_path

    check_output_path(output, ALL_FORMATS)
    check_outputs_are_not_inputs([("-o", output)], [("SOURCE", source)])
    metrics = parse_list(metric)
    if heads == HEAD_MAP:
        _plot_head_map(source, output, run, metrics, parse_list(site), kind, at_steps, layers, style)
        return
    if metrics and "hist" in metrics:
        if heads is not None:
            raise click.UsageError("--heads applies to a per-head series (site attn), not to --metric hist.")
        _plot_hist(source, output, run, metrics, parse_list(site), kind or "heatmap", layers, ncols, style)
        return
    if layers is not None:
        raise click.UsageError("--layer selects the layers of --metric hist; for a heatmap, drop it.")
    if at_steps is not None and kind != "profile":
        raise click.UsageError(
            "--step picks the steps of --kind profile (or, with bare --heads, the step of the head x "
            "layer map); add --kind profile or --heads, or drop --step."
        )
    steps = _whole_list(at_steps, "--step") if at_steps is not None else None
    hms = select_heatmaps(source, run, metrics, parse_list(site), heads=heads)
    hms, kind = _per_step_kind(hms, kind)
    opts = render_options(kind, shared_scale=shared_scale, ncols=ncols, at_steps=steps, **style)
    if kind == "profile" and len(hms) > 1 and not output.lower().endswith((".html", ".htm")):
        raise click.UsageError(
            "--kind profile draws one metric and site in a static figure; name one (or write .html)."
        )
    with echo_warnings():
        path = draw(hms if len(hms) > 1 else hms[0], output, **_as_kwargs(opts))
    from ..render.labels import metric_label

    what = ", ".join(metric_label(h) for h in hms)
    hm = hms[0]
    if all(is_per_step(h) for h in hms):
        shape = f"{len(hm.steps)} steps of {hm.layer_names[0]}"
    else:
        shape = f"{len(hm.steps)} steps x {len(hm.layers)} layers"
    click.echo(escape_controls(f"wrote {path} ({shape}, {what})"))


def _per_step_kind(hms: list[Any], kind: str | None) -> tuple[list[Any], str]:
    """Series of one value per step (site logits) are lines: the kind when they are all there is;
    left out, with a note saying how to draw them, from a heatmap of other series."""
    per_step = [h for h in hms if is_per_step(h)]
    if not per_step:
        return hms, kind or "heatmap"
    if kind == "profile":
        raise click.UsageError(
            f"site {per_step[0].site} holds one value per step, not one per layer; --kind profile "
            "draws values against depth: use --kind lines (its default)."
        )
    if len(per_step) == len(hms):
        return hms, kind or "lines"
    if kind == "lines":
        return hms, kind
    rest = [h for h in hms if not is_per_step(h)]
    names = ", ".join(dict.fromkeys(h.metric for h in per_step))
    click.echo(
        escape_controls(
            f"note: left out {names} at site {per_step[0].site} (one value per step, drawn as lines): "
            f"plot it with --site {per_step[0].site} --metric {names.replace(', ', ',')}"
        ),
        err=True,
    )
    return rest, kind or "heatmap"


def _plot_head_map(
    source: str,
    output: str,
    run: str | None,
    metrics: list[str] | None,
    sites: list[str] | None,
    kind: str | None,
    at_steps: str | None,
    layers: str | None,
    style: dict[str, Any],
) -> None:
    """Bare ``--heads --step N``: the head x layer map of one per-head series at one step."""
    if output.lower().endswith((".html", ".htm")):
        raise click.UsageError(
            "the head x layer map (--heads --step N) is a static figure; write .png, .svg or .pdf."
        )
    if at_steps is None:
        raise click.UsageError(
            "bare --heads draws the head x layer map at one step: add --step N, or pass --heads "
            "max|mean|min|N for the layer x step map folded over the heads."
        )
    step = _whole_list(at_steps, "--step")
    if len(step) != 1:
        raise click.UsageError(f"--heads --step draws one step; pass one, not {at_steps!r}.")
    if kind is not None or layers is not None:
        raise click.UsageError(
            "--kind and --layer do not apply to the head x layer map (--heads --step N); drop them."
        )
    if metrics in (None, ["all"]) or (metrics and len(metrics) > 1):
        raise click.UsageError(
            "the head x layer map draws one metric: pass e.g. --metric max_logit (or entropy, sink)."
        )
    if sites is not None and (len(sites) > 1 or sites == ["all"]):
        raise click.UsageError("the head x layer map draws one site: pass e.g. --site attn.")
    assert metrics is not None
    line = plot_head_map(source, output, run, metrics[0], (sites or ["attn"])[0], step[0], style)
    click.echo(escape_controls(line))


def _whole_list(value: str, flag: str) -> tuple[int, ...]:
    items = parse_list(value) or []
    try:
        return tuple(int(x) for x in items)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a list of whole numbers; pass e.g. 100,200.", param_hint=flag
        ) from None


def _plot_hist(
    source: str,
    output: str,
    run: str | None,
    metrics: list[str],
    sites: list[str] | None,
    kind: str,
    layers: str | None,
    ncols: int | None,
    style: dict[str, Any],
) -> None:
    """``--metric hist``: bins x steps per layer, from the recorded histogram counts."""
    from ..render import plot as draw
    from ..sources import is_csv
    from ..store.histogram import load_histograms

    if metrics != ["hist"]:
        raise click.UsageError(
            "--metric hist draws its own view (bins x steps per layer); plot it alone, without "
            f"{','.join(m for m in metrics if m != 'hist')}."
        )
    if kind != "heatmap":
        raise click.UsageError("--kind applies to metrics; --metric hist has one view, drop --kind.")
    if is_csv(source):
        raise click.UsageError("histograms live in a run store (.db), not in a CSV.")
    if sites and (len(sites) > 1 or sites == ["all"]):
        raise click.UsageError("--metric hist draws one site at a time; pass one --site.")
    if style.get("log_scale") or style.get("symlog") or style.get("annotate"):
        raise click.UsageError(
            "histogram counts are always on a log colour scale; drop --log/--symlog/--annotate."
        )
    h = load_histograms(source, run, (sites or ["output"])[0])
    chosen = None if layers is None or layers.strip() == "all" else _whole_list(layers, "--layer")
    if layers is not None and layers.strip() == "all":
        chosen = tuple(h.layers)
    opts = render_options("heatmap", ncols=ncols, layers=chosen, **style)
    path = draw(h, output, **_as_kwargs(opts))
    from ..render.hist import default_layers

    shown = list(chosen) if chosen is not None else default_layers(h.layers)
    few = ", ".join(map(str, shown)) if len(shown) <= 12 else f"{len(shown)} layers"
    click.echo(
        escape_controls(
            f"wrote {path} (histograms of {len(h.steps)} steps, layer{'s' if len(shown) > 1 else ''} {few}, "
            f"site {h.site})"
        )
    )


def _as_kwargs(opts: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
