"""Options and helpers shared by the command files."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

# SOURCE/STORE are checked by layerscope itself (clear messages, exit 2 for a missing path).
source_argument = click.argument("source", metavar="SOURCE", type=click.Path(dir_okay=True, path_type=str))
store_argument = click.argument("store", metavar="STORE", type=click.Path(dir_okay=True, path_type=str))


def run_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--run",
        "run",
        default=None,
        metavar="NAME",
        help="Run to read (may be omitted when the store holds one run).",
    )(f)


def site_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--site",
        default=None,
        metavar="SITE",
        help="Site to read: output (default), mlp_act, attn_out, mlp_out, mlp_down_in.",
    )(f)


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))
