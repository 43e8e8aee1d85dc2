"""``layerscope plot``: draw the layer x step heatmap of a store or CSV."""

from __future__ import annotations

import click

from ._common import metric_option, run_option, site_option, source_argument


@click.command("plot")
@source_argument
@click.option("-o", "--output", required=True, metavar="FILE", help="Image to write: .png, .svg or .pdf.")
@run_option
@metric_option("rms")
@site_option
@click.option("--cmap", default="magma", show_default=True, help="Matplotlib colormap.")
@click.option("--vmin", type=float, default=None, help="Low end of the colour scale (default: min(0, data)).")
@click.option("--vmax", type=float, default=None, help="High end of the colour scale (default: data max).")
@click.option("--title", default=None, help="Figure title ('' for none).")
@click.option("--dpi", type=click.IntRange(20, 1200), default=150, show_default=True, help="Raster resolution.")
def plot(source: str, output: str, run: str | None, metric: str, site: str | None, cmap: str,
         vmin: float | None, vmax: float | None, title: str | None, dpi: int) -> None:
    """Draw the layer x step heatmap of SOURCE (a run store or a CSV) to FILE.

    \b
    Examples:
      layerscope plot layerscope-demo/runs.db -o rms.png
      layerscope plot runs.db --run baseline --metric kurtosis -o kurtosis.pdf
      layerscope plot values.csv -o values.svg
    """
    from ..render import plot as draw
    from ..render.static import check_output_path
    from ..sources import open_heatmap

    check_output_path(output)
    hm = open_heatmap(source, run=run, metric=metric, site=site)
    path = draw(hm, output, cmap=cmap, vmin=vmin, vmax=vmax, title=title, dpi=dpi)
    click.echo(f"wrote {path} ({len(hm.steps)} steps x {len(hm.layers)} layers, {hm.metric})")
