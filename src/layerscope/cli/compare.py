"""``layerscope compare``: run vs run, the difference heatmap and where the runs differ most."""

from __future__ import annotations

from typing import Any

import click

from .plot import diff_style_options, echo_warnings, parse_list, render_options, select_heatmaps


@click.command("compare")
@click.argument("store", metavar="STORE", type=click.Path(dir_okay=True, path_type=str))
@click.option(
    "--run",
    "runs",
    multiple=True,
    metavar="NAME",
    help="Run A, then run B (give --run twice); B - A is shown. May be omitted when the store "
    "holds exactly two runs.",
)
@click.option(
    "--metric",
    default="rms",
    show_default=True,
    metavar="LIST",
    help="Metric(s) to compare, comma-separated, or 'all' (one panel each).",
)
@click.option(
    "--site", default=None, metavar="LIST", help="Site(s), comma-separated: output (default), mlp_act, ..."
)
@click.option(
    "--relative",
    is_flag=True,
    help="Relative change 100 x (B - A) / |A| in %, instead of the absolute difference B - A.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Figure to write: .png, .svg, .pdf or .html. Without it only the summary is printed.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Summary format on stdout.",
)
@diff_style_options
def compare(
    store: str,
    runs: tuple[str, ...],
    metric: str,
    site: str | None,
    relative: bool,
    output: str | None,
    fmt: str,
    **style: Any,
) -> None:
    """Compare two runs of STORE: B - A on their common steps and layers, drawn with a diverging
    colour map centred at 0, plus a few lines saying where they differ most.

    Steps or layers recorded in only one run are left out (and counted in the summary). Cells
    missing in either run are grey, as in `plot`.

    \b
    Examples:
      layerscope compare runs.db --run baseline --run lr3e-4 -o diff.png
      layerscope compare runs.db --run baseline --run lr3e-4 --metric rms,kurtosis --relative -o diff.pdf
      layerscope compare runs.db --run a --run b --format json
      layerscope compare runs.db --run a --run b -o diff.html
    """
    from pathlib import Path

    from .._io import check_outputs_are_not_inputs
    from ..errors import NotFoundError, escape_controls, quote
    from ..render import plot as draw
    from ..render.diff import difference, summarize
    from ..render.output import ALL_FORMATS, check_output_path
    from ._common import echo_json

    if output is not None:
        check_output_path(output, ALL_FORMATS)
        check_outputs_are_not_inputs([("-o", output)], [("STORE", store)])
    if not Path(store).exists() or Path(store).is_dir():
        from ..sources import open_heatmap

        open_heatmap(store)  # raises the one-line NotFoundError: missing, or a folder
    if len(runs) not in (0, 2):
        raise click.UsageError(
            f"give exactly two runs (--run A --run B), got {len(runs)}: {', '.join(map(quote, runs))}."
        )
    if not runs:
        from ..store import Store

        with Store(store, readonly=True) as st:
            names = st.run_names()
        if len(names) != 2:
            raise click.UsageError(
                f"{quote(store)} holds {len(names)} runs ({', '.join(map(quote, names)) or 'none'}); "
                "choose two with --run A --run B."
            )
        runs = (names[0], names[1])
    if style.get("log_scale"):
        raise click.UsageError("--log cannot show differences (they take both signs); use --symlog.")
    run_a, run_b = runs
    if run_a == run_b:
        raise click.UsageError(f"--run {quote(run_a)} given twice; compare two different runs.")
    metrics, sites = parse_list(metric), parse_list(site)
    side_a = select_heatmaps(store, run_a, metrics, sites)
    side_b = {(h.metric, h.site): h for h in select_heatmaps(store, run_b, metrics, sites)}
    pairs = [(a, side_b[(a.metric, a.site)]) for a in side_a if (a.metric, a.site) in side_b]
    if not pairs:
        raise NotFoundError(
            f"runs {quote(run_a)} and {quote(run_b)} have no metric and site in common for --metric "
            f"{quote(metric)}."
        )
    summaries = [summarize(a, b, relative) for a, b in pairs]
    if fmt == "json":
        echo_json([s.to_dict() for s in summaries])
    else:
        for k, s in enumerate(summaries):
            if len(summaries) > 1:
                f = s.facts
                click.echo(
                    ("\n" if k else "")
                    + escape_controls(
                        f["metric"] if f["site"] == "output" else f"{f['metric']} ({f['site']})"
                    )
                )
            for line in s.sentences:
                click.echo(escape_controls(f"  {line}" if len(summaries) > 1 else line))
    if output is None:
        return
    diffs = [difference(a, b, relative) for a, b in pairs]
    if style.get("title") is None:
        how = f"({run_b} \u2212 {run_a}) / |{run_a}|, %" if relative else f"{run_b} \u2212 {run_a}"
        style["title"] = f"{pairs[0][0].metric}: {how}" if len(pairs) == 1 else how
    opts = render_options("heatmap", center=0.0, shared_scale=False, **style)
    import dataclasses

    with echo_warnings():
        path = draw(
            diffs if len(diffs) > 1 else diffs[0],
            output,
            **{f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)},
        )
    click.echo(escape_controls(f"wrote {path}"), err=fmt == "json")
