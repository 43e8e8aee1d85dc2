"""``layerscope report``: the write-up of a heatmap (Markdown and JSON), computed from its numbers."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import run_option, site_option, source_argument


def _check_destination(path: str) -> None:
    from ..errors import NotFoundError, quote

    p = Path(path)
    if p.is_dir():
        raise NotFoundError(f"{quote(path)} is a folder; pass a file name such as {quote(p / 'report.md')}.")
    if not p.parent.exists():
        raise NotFoundError(f"folder {quote(p.parent)} for {quote(path)} does not exist; create it first.")


@click.command("report")
@source_argument
@run_option
@click.option(
    "--metric",
    default=None,
    metavar="NAME",
    help="Metric to read (rms, mean, std, max_abs, kurtosis, ...). Default: rms for a store; "
    "for a CSV, the only metric in it (or a label for a wide CSV).",
)
@site_option
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write the Markdown report to FILE (default: print it).",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="FILE",
    help="Also write the JSON report (the contract other tools read) to FILE; '-' prints it instead "
    "of the Markdown.",
)
@click.option(
    "--scale",
    type=click.Choice(["auto", "linear", "log"]),
    default="auto",
    show_default=True,
    help="Scale levels and trends are judged on; auto = log when the values span about three "
    "decades or more.",
)
def report(
    source: str,
    run: str | None,
    metric: str | None,
    site: str | None,
    output: str | None,
    json_path: str | None,
    scale: str,
) -> None:
    """Write up the layer x step heatmap of SOURCE (a run store or a CSV): overview, axes, a
    per-layer (or per-band) analysis, key observations and a hedged interpretation, every number
    computed from the matrix.

    \b
    A CSV may be wide (step,1,2,...: one column per layer) or tidy (step,layer,value
    [,metric,site,run]); empty cells and nan are missing values.

    \b
    Examples:
      layerscope report layerscope-demo/runs.db                 # Markdown to the terminal
      layerscope report runs.db --metric kurtosis -o report.md --json report.json
      layerscope report values.csv --json - | jq '.observations[].kind'
    """
    from .._io import check_outputs_are_not_inputs
    from ..analysis import report as analyse
    from ..analysis.report import write_text_atomic
    from ..errors import escape_controls
    from ..sources import open_heatmap

    for dest in (output, None if json_path == "-" else json_path):  # fail before any work or any write
        if dest:
            _check_destination(dest)
    check_outputs_are_not_inputs([("-o", output), ("--json", json_path)], [("SOURCE", source)])
    hm = open_heatmap(source, run=run, metric=metric, site=site)
    rep = analyse(hm, scale=scale)
    md = rep.to_markdown()
    stdout_used = json_path == "-" or not output  # status then goes to stderr, keeping stdout clean
    written = []
    if json_path == "-":
        click.echo(rep.to_json())
    elif json_path:
        written.append(str(write_text_atomic(json_path, rep.to_json() + "\n")))
    if output:
        written.insert(0, str(write_text_atomic(output, md)))
    elif json_path != "-":
        click.echo(md, nl=False)
    if written:
        n_obs = len(rep.data["observations"])
        click.echo(
            escape_controls(
                f"wrote {', '.join(written)} ({len(hm.steps)} steps x {len(hm.layers)} layers, "
                f"{hm.metric}, {n_obs} observations)"
            ),
            err=stdout_used,
        )
