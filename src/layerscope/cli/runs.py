"""``layerscope runs``: what a store holds, and (``--check``) whether it is whole."""

from __future__ import annotations

import click

from ._common import echo_json, format_option, store_argument


@click.command("runs")
@store_argument
@format_option
@click.option(
    "--check",
    is_flag=True,
    help="Check the store instead: SQLite's integrity check and layerscope's own (every step whole, "
    "rows of the right size, layers 1..N, config JSON). One line per problem; exit 1 if any.",
)
def runs(store: str, fmt: str, check: bool) -> None:
    """List the runs in STORE: metrics, sites, step range and layer count.

    \b
    Examples:
      layerscope runs layerscope-demo/runs.db
      layerscope runs runs.db --format json
      layerscope runs runs.db --check          # "ok", or one line per problem (exit 1)
    """
    from pathlib import Path

    from ..errors import NotFoundError, escape_controls, quote
    from ..store import Store

    if not Path(store).exists():
        raise NotFoundError(f"store {quote(store)} does not exist; record a run first or check the path.")
    if check:
        _check(store, fmt)
        return
    with Store(store, readonly=True) as st:
        infos = [st.run_info(r) for r in st.run_names()]
    if fmt == "json":
        echo_json(
            [
                {
                    "run": i.name,
                    "source": i.source,
                    "created": i.created,
                    "model": i.model,
                    "steps": i.n_steps,
                    "first_step": i.first_step,
                    "last_step": i.last_step,
                    "layers": i.n_layers,
                    "metrics": i.metrics,
                    "sites": i.sites,
                    "variants": i.variants,
                    "version": i.version,
                }
                for i in infos
            ]
        )
        return
    if not infos:
        click.echo(escape_controls(f"{store}: no runs yet"))
        return
    from rich.console import Console
    from rich.markup import escape as _escape_markup

    def escape(text: str) -> str:  # rich markup, and control characters (one line per name)
        return _escape_markup(escape_controls(text))

    from rich.table import Table

    from .._format import format_step

    t = Table(title=escape(store), title_justify="left")
    for col in ("run", "source", "steps", "step range", "layers", "sites", "metrics"):
        t.add_column(col, overflow="fold")
    for i in infos:
        rng = "-" if i.first_step is None else f"{format_step(i.first_step)}..{format_step(i.last_step or 0)}"
        t.add_row(
            escape(i.name),
            i.source,
            str(i.n_steps),
            rng,
            str(i.n_layers),
            escape(", ".join(i.sites)),
            escape(", ".join(i.metrics)),
        )
    Console(soft_wrap=False, width=max(100, Console().width)).print(t)


def _check(store: str, fmt: str) -> None:
    import sys

    from ..store.check import check_store

    problems = check_store(store)
    if fmt == "json":
        echo_json(
            {
                "store": store,
                "ok": not problems,
                "problems": [{"run": p.run, "kind": p.kind, "message": p.line()} for p in problems],
            }
        )
    elif problems:
        for p in problems:
            click.echo(" ".join(p.line().split()))  # one physical line each
    else:
        click.echo("ok")
    if problems:
        sys.exit(1)
