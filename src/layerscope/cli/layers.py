"""``layerscope layers``: the layers layerscope finds in a model, and where each site is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._common import echo_json, format_option

if TYPE_CHECKING:
    from ..capture import Layer, SiteHook


def _selection(values: tuple[str, ...]) -> list[str] | None:
    globs = [g.strip() for v in values for g in v.split(",") if g.strip()]
    return globs or None


def layer_rows(layers: list[Layer]) -> list[dict[str, Any]]:
    """One JSON-ready dict per layer: stack, index, depth, name, class, sites (site -> module name
    or None) and inputs (the sites recorded at a module's input rather than its output)."""
    from ..capture import site_map, unwrap

    rows = []
    for la in layers:
        hooks: dict[str, SiteHook | None] = site_map(la)
        rows.append(
            {
                "stack": la.stack,
                "index": la.index,
                "depth": la.depth,
                "name": la.name,
                "class": type(unwrap(la.module)).__name__,
                "sites": {s: (h.module_name if h is not None else None) for s, h in hooks.items()},
                "inputs": [s for s, h in hooks.items() if h is not None and h.kind == "input"],
            }
        )
    return rows


def _relative(row: dict[str, Any], site: str) -> str:
    full = row["sites"][site]
    if full is None:
        return "-"
    name = row["name"]
    rel = full[len(name) + 1 :] if name and full.startswith(name + ".") else full
    return rel + (" (input)" if site in row["inputs"] else "")


@click.command("layers")
@click.option(
    "--model",
    "model_spec",
    default=None,
    metavar="PKG.MODULE:FACTORY",
    help="A callable that returns the nn.Module (or path/to/file.py:FACTORY).",
)
@click.option(
    "--hf-config",
    "hf_config",
    default=None,
    metavar="PATH",
    help="A Hugging Face config.json, or the model folder holding it. The model is built "
    "without weights; nothing is downloaded.",
)
@click.option(
    "--layers",
    "layer_globs",
    multiple=True,
    metavar="GLOB",
    help="Use these modules as the layers instead of the discovered stack ('*' matches one "
    "name component, '**' any number; repeat or comma-separate for several).",
)
@format_option
def layers(model_spec: str | None, hf_config: str | None, layer_globs: tuple[str, ...], fmt: str) -> None:
    """Show the layer stack(s) layerscope finds in a model and the module each site records.

    Give the model as --model (your factory) or --hf-config (a Hugging Face config). Sites are
    output (the layer itself), mlp_act, attn_out, mlp_out and mlp_down_in; in the table they are
    shown relative to the layer, '(input)' marks a site recorded at a module's input and '-' one
    the layer does not have (null in JSON).

    \b
    Examples:
      layerscope layers --model layerscope.testing:tiny_gpt
      layerscope layers --model ./model.py:build_model --format json
      layerscope layers --hf-config ./t5-small/config.json
      layerscope layers --hf-config ./my-llama --layers 'model.layers.*.mlp'
    """
    from ..capture import discover_layers, load_model_spec, model_from_hf_config, unwrap

    if (model_spec is None) == (hf_config is None):
        raise click.UsageError("pass exactly one of --model PKG.MODULE:FACTORY or --hf-config PATH.")
    if model_spec is not None:
        model = load_model_spec(model_spec)
    else:
        assert hf_config is not None
        model = model_from_hf_config(hf_config, device="meta")  # structure only: no memory, no init cost
    found = discover_layers(model, _selection(layer_globs))
    rows = layer_rows(found)
    if fmt == "json":
        echo_json(rows)
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stacks = list(dict.fromkeys(r["stack"] for r in rows))
    what = (
        "selected by --layers"
        if layer_globs
        else f"in {len(stacks)} stack{'s' if len(stacks) != 1 else ''}: "
        + ", ".join(f"{s or '(model)'} ({sum(r['stack'] == s for r in rows)})" for s in stacks)
    )
    t = Table(
        title=escape(f"{type(unwrap(model)).__name__}: {len(rows)} layers {what}"), title_justify="left"
    )
    for col in ("#", "layer", "depth", "class", "mlp_act", "attn_out", "mlp_out", "mlp_down_in"):
        t.add_column(col, overflow="fold", justify="right" if col in ("#", "depth") else "left")
    for i, r in enumerate(rows):
        if i and r["stack"] != rows[i - 1]["stack"]:
            t.add_section()  # a rule between an encoder and a decoder
        t.add_row(
            str(r["index"]),
            escape(r["name"]),
            str(r["depth"]),
            escape(r["class"]),
            *(escape(_relative(r, s)) for s in ("mlp_act", "attn_out", "mlp_out", "mlp_down_in")),
        )
    console = Console(soft_wrap=False)
    # On a terminal, fit it (cells fold); into a pipe or file, keep every module path on one line.
    console.width = max(100, console.width) if console.is_terminal else 1000
    console.print(t)
