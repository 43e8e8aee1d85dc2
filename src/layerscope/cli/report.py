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


def _heads(value: str | None) -> str | int | None:
    """``--heads``: max, mean, min or a head index."""
    from ..errors import ConfigError, quote

    if value is None or value in ("max", "mean", "min"):
        return value
    if value.isdigit():
        return int(value)
    raise ConfigError(
        f"--heads {quote(value)} is not max, mean, min or a head index (0, 1, ...)",
        what="heads",
        value=value,
        choices=["max", "mean", "min"],
        param="heads",
    )


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
@click.option(
    "--heads",
    "heads",
    default=None,
    metavar="HOW",
    help="For a per-head series (site attn): aggregate the heads of each layer by max, mean or min, "
    "or show one head (an index from 0). Default: max for max_logit, mean for entropy and sink.",
)
def report(
    source: str,
    run: str | None,
    metric: str | None,
    site: str | None,
    output: str | None,
    json_path: str | None,
    scale: str,
    heads: str | None,
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
      layerscope report runs.db --site attn --metric max_logit   # with a per-head section
      layerscope report runs.db --site logits --metric log_z     # the output logits, one series

    \b
    A report of a store also lists the run's watch alerts on that map (and counts the others).
    """
    from .._io import check_outputs_are_not_inputs
    from ..analysis import report as analyse
    from ..analysis.report import write_text_atomic
    from ..analysis.run import report_run
    from ..errors import ConfigError, escape_controls, quote
    from ..sources import is_csv, open_heatmap, refuse_folder_or_missing

    for dest in (output, None if json_path == "-" else json_path):  # fail before any work or any write
        if dest:
            _check_destination(dest)
    check_outputs_are_not_inputs([("-o", output), ("--json", json_path)], [("SOURCE", source)])
    if is_csv(source):
        if heads is not None:
            raise ConfigError(
                f"--heads {quote(heads)} needs a run store; a CSV holds one value per layer.",
                what="heads",
                value=heads,
                param="heads",
            )
        hm = open_heatmap(source, run=run, metric=metric, site=site)
        rep = analyse(hm, scale=scale)
    else:
        refuse_folder_or_missing(source)
        rep = report_run(source, run, metric or "rms", site or "output", heads=_heads(heads), scale=scale)
        assert rep.heatmap is not None
        hm = rep.heatmap
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
