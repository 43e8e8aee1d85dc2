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


def attn_info(layer: Layer) -> dict[str, Any] | None:
    """What site ``attn`` records in ``layer``: the attention module, its query and key heads, the
    family and whether rotary is applied; ``{"unsupported": why}`` where discovery refuses it;
    None where the layer has no attention."""
    from ..capture.attention import resolve_attention
    from ..errors import ConfigError

    try:
        pt = resolve_attention(layer)
    except ConfigError as e:
        return {"unsupported": str(e)}
    if pt is None:
        return None
    return {
        "module": pt.module_name,
        "heads": pt.n_heads,
        "kv_heads": pt.n_kv,
        "head_dim": pt.head_dim,
        "family": pt.family,
        "causal": pt.causal,
        "rotary": pt.rotary is not None,
    }


def lm_head(model: Any) -> str | None:
    """The module site ``logits`` records (the LM head), or None when the model has none."""
    from ..capture.logits import find_lm_head
    from ..errors import ConfigError

    try:
        return find_lm_head(model)[0]
    except ConfigError:
        return None


def layer_rows(layers: list[Layer], model: Any = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per layer: stack, index, depth, name, class, sites (site -> module name
    or None), inputs (the sites recorded at a module's input rather than its output), attn
    (:func:`attn_info`) and logits (the LM head, on the last layer, whose column holds the
    ``logits`` site; None elsewhere or without ``model``)."""
    from ..capture import site_map, unwrap

    head = lm_head(model) if model is not None else None
    last = max((la.index for la in layers), default=0)
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
                "attn": attn_info(la),
                "logits": head if la.index == last else None,
            }
        )
    return rows


def _attn_cell(row: dict[str, Any]) -> str:
    """``attn (12 heads)``, ``self_attn (32 q / 8 kv heads, rotary)``, ``unsupported`` or ``-``."""
    a = row["attn"]
    if a is None:
        return "-"
    if "unsupported" in a:
        return "unsupported"
    name = row["name"]
    rel = a["module"][len(name) + 1 :] if name and a["module"].startswith(name + ".") else a["module"]
    heads = (
        f"{a['heads']} heads" if a["kv_heads"] == a["heads"] else f"{a['heads']} q / {a['kv_heads']} kv heads"
    )
    return f"{rel} ({heads}{', rotary' if a['rotary'] else ''})"


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
    the layer does not have (null in JSON). The attn column is the attention module whose heads
    site attn records (query / key heads: GQA shows both); the lines under the table say how
    many layers have it and which LM head site logits records (JSON: "attn" and "logits").

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
    rows = layer_rows(found, model)
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
    for col in ("#", "layer", "depth", "class", "mlp_act", "attn_out", "mlp_out", "mlp_down_in", "attn"):
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
            escape(_attn_cell(r)),
        )
    console = Console(soft_wrap=False)
    # On a terminal, fit it (cells fold); into a pipe or file, keep every module path on one line.
    console.width = max(100, console.width) if console.is_terminal else 1000
    console.print(t)
    console.print(escape(_site_notes(rows)), soft_wrap=True, highlight=False)


def _site_notes(rows: list[dict[str, Any]]) -> str:
    """The lines under the table: what sites attn and logits record in this model."""
    n_attn = sum(1 for r in rows if r["attn"] is not None and "unsupported" not in r["attn"])
    bad = next((r["attn"]["unsupported"] for r in rows if r["attn"] and "unsupported" in r["attn"]), None)
    if bad is not None:
        attn = f"site attn: not recordable here: {bad}"
    elif n_attn:
        attn = f"site attn: per-head max_logit, entropy and sink in {n_attn} of {len(rows)} layers"
    else:
        attn = "site attn: no attention module found in these layers"
    head = next((r["logits"] for r in rows if r["logits"]), None)
    last = max((r["index"] for r in rows), default=0)
    logits = (
        f"site logits: the LM head {head} (one series per step, in layer {last}'s column)"
        if head
        else "site logits: no LM head found (get_output_embeddings() is None, no lm_head Linear)"
    )
    return f"{attn}\n{logits}"
