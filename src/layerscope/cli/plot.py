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

from ._common import run_option, source_argument

PREFERRED = ("rms", "mean", "std", "max_abs", "kurtosis")  # "all" lists these first, then the rest A-Z


def parse_list(value: str | None) -> list[str] | None:
    """``"rms, kurtosis"`` -> ``["rms", "kurtosis"]`` (order kept, duplicates dropped); None stays None."""
    if value is None:
        return None
    items = list(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    if not items:
        raise click.BadParameter(f"{value!r} names nothing; pass e.g. rms or rms,kurtosis.")
    return items


def _order(metrics: list[str]) -> list[str]:
    return [m for m in PREFERRED if m in metrics] + sorted(m for m in metrics if m not in PREFERRED)


def select_heatmaps(
    source: str,
    run: str | None,
    metrics: list[str] | None,
    sites: list[str] | None,
    default_metric: str | None = "rms",
) -> list[Any]:
    """The heatmaps named by ``--metric`` x ``--site`` lists (``all`` = every recorded one).

    A pair asked for explicitly that was not recorded is an error naming what was; with ``all`` on
    one side, pairs not recorded are skipped.
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
        return [
            open_heatmap(source, run=run, metric=m, site=s)
            for m in (list(metrics) if metrics else [None])
            for s in (list(sites) if sites else [None])
        ]
    from ..store import Store

    with Store(source, readonly=True) as st:
        run = st.resolve_run(run)
        pairs = st.metrics(run)
        if not pairs:
            raise NotFoundError(f"run {run!r} in {source!r} has no recorded steps yet.")
        recorded_m = _order(sorted({m for m, _ in pairs}))
        recorded_s = sorted({s for _, s in pairs}, key=lambda s: (s != "output", s))
        all_m = metrics is not None and "all" in metrics
        all_s = sites is not None and "all" in sites
        ms = recorded_m if all_m else (metrics or ([default_metric] if default_metric else recorded_m))
        ss = recorded_s if all_s else (sites or (["output"] if "output" in recorded_s else recorded_s[:1]))
        out = []
        for m in ms:
            for s in ss:
                if (m, s) in pairs:
                    out.append(st.load(run, m, s))
                elif not (all_m or all_s):
                    st.load(run, m, s)  # raises NotFoundError naming what was recorded
        if not out:
            raise NotFoundError(
                f"no recorded (metric, site) pair of run {run!r} matches --metric {','.join(ms)} --site "
                f"{','.join(ss)}; recorded: {', '.join(f'{m}@{s}' for m, s in pairs)}."
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


def style_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The drawing options every drawing command takes (they map onto RenderOptions)."""
    opts = [
        click.option(
            "--cmap",
            default=None,
            metavar="NAME",
            help="Matplotlib colormap. Default: magma; RdBu_r centred at 0 for signed data, --symlog "
            "and differences; viridis (by depth) for --kind lines.",
        ),
        click.option(
            "--vmin",
            type=float,
            default=None,
            help="Low end of the colour scale (lines: of the y axis). Default: min(0, data); the "
            "smallest positive value with --log.",
        ),
        click.option(
            "--vmax",
            type=float,
            default=None,
            help="High end of the colour scale (lines: y axis). Default: data max.",
        ),
        click.option(
            "--log",
            "log_scale",
            is_flag=True,
            help="Logarithmic colour scale (positive values; cells <= 0 are marked).",
        ),
        click.option(
            "--symlog",
            is_flag=True,
            help="Symmetric log scale for signed metrics (mean, min, max): linear within "
            "+-LINTHRESH, logarithmic beyond, diverging colours centred at 0.",
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
        click.option("--title", default=None, help="Figure title ('' for none). Default: metric and run."),
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
    ]
    for o in reversed(opts):
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
    default=None,
    metavar="LIST",
    help="Metric(s) to draw, comma-separated, or 'all'. Several give small multiples (static) or "
    "a switcher (HTML). Default: rms for a store; the CSV's own metric.",
)
@click.option(
    "--site",
    default=None,
    metavar="LIST",
    help="Site(s), comma-separated, or 'all': output (default), mlp_act, attn_out, mlp_out, mlp_down_in.",
)
@click.option(
    "--kind",
    type=click.Choice(["heatmap", "lines"]),
    default="heatmap",
    show_default=True,
    help="heatmap: layer x step cells; lines: value against step, one line per layer coloured by depth.",
)
@style_options
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
    kind: str,
    shared_scale: bool | None,
    ncols: int | None,
    **style: Any,
) -> None:
    """Draw the layer x step heatmap of SOURCE (a run store or a CSV) to FILE.

    Steps run down (first at the top, labels like 30k / 1.2M), layers across; missing/NaN cells are
    grey and +-inf hatched, each named in a legend when present. Comma lists of metrics or sites
    draw small multiples of one run. An .html FILE is one self-contained page (plotly embedded,
    no network): hover a cell for its layer, layer name, step and exact value.

    \b
    Examples:
      layerscope plot layerscope-demo/runs.db -o rms.png
      layerscope plot runs.db --run baseline --metric kurtosis --log -o kurtosis.pdf
      layerscope plot runs.db --metric mean --symlog --colorbar bottom --figsize 7,4 --dpi 300 -o mean.png
      layerscope plot runs.db --metric rms,kurtosis --site output,mlp_act -o grid.png
      layerscope plot runs.db --kind lines -o lines.svg
      layerscope plot runs.db --metric all -o explore.html
      layerscope plot values.csv --annotate --true-steps -o values.svg
    """
    from ..render import plot as draw
    from ..render.output import ALL_FORMATS, check_output_path

    check_output_path(output, ALL_FORMATS)
    opts = render_options(kind, shared_scale=shared_scale, ncols=ncols, **style)
    hms = select_heatmaps(source, run, parse_list(metric), parse_list(site))
    with echo_warnings():
        path = draw(hms if len(hms) > 1 else hms[0], output, **_as_kwargs(opts))
    what = ", ".join(h.metric if h.site == "output" else f"{h.metric} ({h.site})" for h in hms)
    hm = hms[0]
    click.echo(f"wrote {path} ({len(hm.steps)} steps x {len(hm.layers)} layers, {what})")


def _as_kwargs(opts: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
