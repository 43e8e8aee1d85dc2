"""``layerscope view``: the offline report bundle, DIR/index.html."""

from __future__ import annotations

from typing import Any

import click

from ._common import run_option


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
    default="all",
    show_default=True,
    metavar="LIST",
    help="Metric(s) to include, comma-separated, or 'all' recorded.",
)
@click.option(
    "--site", default=None, metavar="LIST", help="Site(s), comma-separated, or 'all'. Default: output."
)
@click.option(
    "--cmap", default=None, metavar="NAME", help="Heatmap colormap (default: magma; RdBu_r for signed data)."
)
@click.option("--log", "log_scale", is_flag=True, help="Logarithmic colour scale and y axis.")
@click.option("--symlog", is_flag=True, help="Symmetric log scale for signed metrics.")
@click.option("--true-steps", is_flag=True, help="Place rows at their true step values.")
@click.option("--title", default=None, help="Page title. Default: 'layerscope — run NAME'.")
def view(
    source: str,
    out_dir: str,
    run: str | None,
    metric: str,
    site: str | None,
    cmap: str | None,
    log_scale: bool,
    symlog: bool,
    true_steps: bool,
    title: str | None,
) -> None:
    """Write DIR/index.html for a run of STORE (or a CSV): for each metric and site, the
    interactive heatmap, the per-layer lines and the analysis report, in one offline file.

    The page embeds plotly.js and fetches nothing, so it opens from disk, in an air-gapped
    cluster, or as a CI artifact.

    \b
    Examples:
      layerscope view layerscope-demo/runs.db -o layerscope-demo/report
      layerscope view runs.db --run baseline --metric rms,kurtosis -o report
      layerscope view runs.db --site all -o report
    """
    from pathlib import Path

    from .._io import check_outputs_are_not_inputs
    from ..errors import escape_controls
    from ..render.bundle import check_bundle_dir, write_bundle
    from ..sources import is_csv
    from .plot import parse_list, render_options, select_heatmaps

    opts = render_options("heatmap", cmap=cmap, log_scale=log_scale, symlog=symlog, true_steps=true_steps)
    check_bundle_dir(out_dir, create=False)
    check_outputs_are_not_inputs([("-o", Path(out_dir) / "index.html")], [("SOURCE", source)])
    metrics = parse_list(metric)
    if is_csv(source) and metrics == ["all"]:
        metrics = None  # a CSV holds what it holds
    hms = select_heatmaps(source, run, metrics, parse_list(site))
    kw: dict[str, Any] = {"title": title, "source": source}
    path = write_bundle(hms, out_dir, opts, **kw)
    click.echo(
        escape_controls(
            f"wrote {path} ({len(hms)} {'heatmap' if len(hms) == 1 else 'heatmaps'}: "
            f"{', '.join(h.metric if h.site == 'output' else f'{h.metric} ({h.site})' for h in hms)})"
        )
    )
