"""``layerscope view``: the offline report bundle, DIR/index.html."""

from __future__ import annotations

from typing import Any

import click

from ._common import run_option
from .plot import plotly_option_with


@click.command("view")
@click.argument("source", metavar="STORE", type=click.Path(dir_okay=True, path_type=str))
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DIR",
    help="Folder to write index.html into (created if missing; other files there are left alone).",
)
@run_option
@click.option(
    "--metric",
    "--metrics",
    "metric",
    default="all",
    show_default=True,
    metavar="LIST",
    help="Metric(s) to include, comma-separated, or 'all' recorded (histograms too, when 'hist' was recorded).",
)
@click.option(
    "--site",
    "--sites",
    "site",
    default="all",
    show_default=True,
    metavar="LIST",
    help="Site(s), comma-separated, or 'all' recorded.",
)
@click.option(
    "--cmap", default=None, metavar="NAME", help="Heatmap colormap (default: magma; RdBu_r for signed data)."
)
@click.option("--log", "log_scale", is_flag=True, help="Logarithmic colour scale and y axis.")
@click.option("--symlog", is_flag=True, help="Symmetric log scale for signed metrics.")
@click.option("--true-steps", is_flag=True, help="Place rows at their true step values.")
@click.option("--title", default=None, help="Page title. Default: 'layerscope — run NAME'.")
@plotly_option_with("directory")
def view(
    source: str,
    out_dir: str,
    run: str | None,
    metric: str,
    site: str,
    cmap: str | None,
    log_scale: bool,
    symlog: bool,
    true_steps: bool,
    title: str | None,
    plotly: str,
) -> None:
    """Write DIR/index.html for a run of STORE (or a CSV): for each recorded metric and site, the
    interactive heatmap, the profile at a step (with a step slider), the per-layer lines and the
    analysis report; then the histograms, when 'hist' was recorded.

    The page fetches nothing, so it opens from disk, in an air-gapped cluster, or as a CI artifact.
    plotly.js is written once beside it (DIR/plotly-VERSION.min.js; --plotly inline embeds it in
    index.html instead, for a single file to send).

    \b
    Examples:
      layerscope view layerscope-demo/runs.db -o layerscope-demo/report
      layerscope view runs.db --run baseline --metric rms,kurtosis -o report
      layerscope view runs.db --site output -o report --plotly inline
    """
    from pathlib import Path

    from .._io import check_outputs_are_not_inputs
    from ..errors import NotFoundError, escape_controls
    from ..render.bundle import check_bundle_dir, write_bundle
    from ..sources import is_csv
    from ..store import Store
    from ..store.histogram import load_histograms
    from .plot import parse_list, render_options, select_heatmaps

    opts = render_options("heatmap", cmap=cmap, log_scale=log_scale, symlog=symlog, true_steps=true_steps)
    check_bundle_dir(out_dir, create=False)
    check_outputs_are_not_inputs([("-o", Path(out_dir) / "index.html")], [("SOURCE", source)])
    metrics: list[str] | None = parse_list(metric) or ["all"]
    sites = parse_list(site)
    csv = is_csv(source)
    if csv:
        metrics = [m for m in metrics or [] if m not in ("all", "hist")] or None  # a CSV holds what it holds
        sites = [s for s in sites or [] if s != "all"] or None
    want_hist = not csv and ("all" in metrics or "hist" in metrics) if metrics else False
    heat_metrics = [m for m in metrics if m != "hist"] if metrics else None
    hms = select_heatmaps(source, run, heat_metrics or (["all"] if not csv else None), sites)
    hists: list[Any] = []
    if want_hist:
        with Store(source, readonly=True) as st:
            rname = st.resolve_run(run)
            for s in dict.fromkeys(h.site for h in hms):
                if sites and "all" not in sites and s not in sites:
                    continue
                try:
                    hists.append(load_histograms(st, rname, s))
                except NotFoundError:
                    if metrics == ["hist"]:
                        raise
    path = write_bundle(hms, out_dir, opts, title=title, source=source, hists=hists, plotly=plotly)
    what = ", ".join(h.metric if h.site == "output" else f"{h.metric} ({h.site})" for h in hms)
    if hists:
        what += "; histograms at " + ", ".join(h.site for h in hists)
    click.echo(
        escape_controls(f"wrote {path} ({len(hms)} {'heatmap' if len(hms) == 1 else 'heatmaps'}: {what})")
    )
