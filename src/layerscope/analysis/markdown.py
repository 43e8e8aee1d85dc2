"""The Markdown layout of a report: a pure function of the report's dict (every sentence and number
in it was written by :mod:`.narrative` and :mod:`.detect`), and the one Markdown -> HTML converter
that the offline bundle and the dashboard both show it through.

Sections: Overview, Components/Axes, Detailed analysis, Key observations, Interpretation. User
strings (metric, site, run, layer names, the source path) appear only as code spans (:func:`.text.code`).
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt

from .._format import format_step
from .text import Fmt, code

# CommonMark with raw HTML off (a name such as "<script>" stays text) and without links, images,
# autolinks or reference definitions: the report writes none, so a name cannot make one either.
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable(
    ["link", "image", "autolink", "html_inline", "html_block", "reference"]
)


def markdown_to_html(md: str, heading_offset: int = 2) -> str:
    """Markdown (as the report writes it) -> an HTML fragment, every text escaped; headings move
    ``heading_offset`` levels down so that the report's ``#`` sits under the page's own titles.

    >>> print(markdown_to_html("# Title\\n\\nA <b> `x<y>`\\n\\n- **one**\\n- two"), end="")
    <h3>Title</h3>
    <p>A &lt;b&gt; <code>x&lt;y&gt;</code></p>
    <ul>
    <li><strong>one</strong></li>
    <li>two</li>
    </ul>
    """
    tokens = _MD.parse(md)
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1:]) + heading_offset)}"
    return _MD.renderer.render(tokens, _MD.options, {})


def render_markdown(d: dict[str, Any]) -> str:
    """The report dict (:meth:`Report.to_dict`) laid out as Markdown; reads nothing else."""
    f = Fmt(d["digits"], d["steps"])
    m = code(d["metric"])
    one = d.get("logits")  # one series for the whole model: no layer axis
    title = f"# {m} over training steps (output logits)" if one else f"# {m} across layers and training steps"
    lines: list[str] = [title, ""]
    src = f"run {code(d['run'])}" if d["run"] else (code(d["source"]) if d["source"] else "an unnamed run")
    lines += ["## Overview", ""]
    if d["n_steps"] == 0 or d["n_layers"] == 0:
        lines += [
            f"The heatmap of {m} (site {code(d['site'])}, {src}) is empty: {d['n_steps']} steps x "
            f"{d['n_layers']} layers. There is nothing to analyse.",
            "",
        ]
        return "\n".join(lines)
    steps = d["steps"]
    step_span = f.step_range(steps[0], steps[-1])
    if one:
        ov = (
            f"The series holds {m} (site {code(d['site'])}, {src}) for the whole model at {d['n_steps']} "
            f"training {'step' if d['n_steps'] == 1 else 'steps'} ({step_span}): one value per step, no layer axis."
        )
    else:
        ov = (
            f"The heatmap plots {m} (site {code(d['site'])}, {src}) for {d['n_layers']} "
            f"{'layer' if d['n_layers'] == 1 else 'layers'} (x axis) against {d['n_steps']} training "
            f"{'step' if d['n_steps'] == 1 else 'steps'} ({step_span}, y axis); colour is the value."
        )
    if d["value_min"] is None:
        ov += f" None of the {d['n_cells']} cells holds a finite value."
    elif d["value_min"] == d["value_max"]:
        ov += f" Every finite cell holds {f.v(d['value_min'])}."
    else:
        ov += f" Values range from {f.v(d['value_min'])} to {f.v(d['value_max'])}"
        ov += " (judged on a log scale)." if d["scale"] == "log" else "."
    lines += [ov, "", d["summary"], ""]

    lines += ["## Components/Axes", ""]
    layers = d["layers"]
    if d["n_layers"] == 1:
        xl = f"- **X axis, Layer:** 1 layer, number {layers[0]}"
    else:
        xl = (
            f"- **X axis, Layer:** {d['n_layers']} layers, numbered by depth "
            f"{f.layers_text(layers, word=False)} (lower numbers are nearer the input)"
        )
    names = d["layer_names"]
    if names and [str(x) for x in layers] != list(names):
        xl += f"; names {code(names[0])}" + (f" … {code(names[-1])}" if len(names) > 1 else "")
    if one:
        xl = (
            f"- **No layer axis:** site {code(d['site'])} is one value per step for the whole model, from "
            "the LM head's output"
        )
        if one["layer"] is not None:
            xl += f" (the store keeps it in the column of layer {one['layer']}, {code(one['layer_name'])})"
    lines.append(xl + ".")
    yl = f"- **Y axis, Steps:** {d['n_steps']} recorded {'step' if d['n_steps'] == 1 else 'steps'}"
    yl += f", {step_span}"
    if d["step_interval"] is not None:
        yl += f", every {format_step(d['step_interval'])}"
    elif d["step_gap_min"] is not None:
        gap_lo, gap_hi = format_step(d["step_gap_min"]), format_step(d["step_gap_max"])
        yl += f", at irregular intervals ({gap_lo} to {gap_hi} apart)"
    lines.append(yl + ".")
    if d["value_min"] is not None and d["value_min"] == d["value_max"]:
        lines.append(f"- **Colour, {m}:** a single value, {f.v(d['value_min'])}.")
    elif d["value_min"] is not None:
        lo_hi = f"{f.v(d['value_min'])} (lowest) to {f.v(d['value_max'])} (highest)"
        cl = f"- **Colour, {m}:** values from {lo_hi}"
        noise = d["noise"]
        if d["scale"] == "log" and noise.get("multiplicative"):
            cl += (
                "; their cell-to-cell noise grows with the value (multiplicative), so this report "
                "judges levels and trends on a log scale (log10 of the values; `layerscope plot --log` "
                "draws the matching heatmap)"
            )
        elif d["scale"] == "log":
            span = (
                f"span a factor of {f.v(d['value_factor'])}"
                if d["value_factor"] is not None
                else "span decades"
            )
            cl += (
                f"; they {span}, so this report judges levels and trends on a log scale (log10 of the "
                "values; `layerscope plot --log` draws the matching heatmap)"
            )
        else:
            cl += ", judged on a linear scale"
        if noise.get("material"):
            cl += (
                f"; the range of the smoothed map (below) is {f.vrange(d['range_min'], d['range_max'])}, "
                "and levels and trends are relative to that"
            )
        elif d["n_outliers"]:
            cl += (
                f"; without the outliers the range is {f.vrange(d['range_min'], d['range_max'])}, and "
                "levels and trends are relative to that"
            )
        lines.append(cl + ".")
    if d.get("meaning"):
        lines.append(f"- **What {m} at site {code(d['site'])} is:** {d['meaning']}.")
    agg = d.get("aggregate")
    if agg:
        n_heads = f"the {agg['n_heads']} heads" if agg["n_heads"] else "the heads"
        how = (
            f"head {agg['reduce']} of its layer"
            if isinstance(agg["reduce"], int)
            else f"the {agg['reduce']} over {n_heads} of its layer"
        )
        lines.append(
            f"- **Heads:** {code(d['metric'])} is recorded per head; each cell is {how} (by default the max "
            "for `max_logit`, the mean for `entropy` and `sink`), and the section on attention heads below "
            "reads every head."
        )
    cells = f"- **Cells:** {d['n_cells']} ({d['n_layers']} x {d['n_steps']})"
    extra = []
    if d["n_missing"]:
        extra.append(f"{d['n_missing']} without a value")
    if d["n_infinite"]:
        extra.append(f"{d['n_infinite']} infinite")
    if d["n_outliers"]:
        extra.append(f"{d['n_outliers']} isolated {'outlier' if d['n_outliers'] == 1 else 'outliers'}")
    if extra:
        cells += ", of which " + ", ".join(extra)
    lines += [cells + ".", ""]
    lines.append(
        "Levels (low, mid, high) are thirds of the map's range; trends and observations are judged "
        "relative to the same range (the thresholds are in the JSON report under `thresholds`)."
    )
    if d["n_steps"] and d["n_layers"] and d["noise"].get("material"):
        unit = " decades" if d["scale"] == "log" else ""
        tail = (
            f", with tails like a Student t with {f.v(d['noise']['tail_df'])} degrees of freedom"
            if d["noise"]["tail_df"] is not None
            else ""
        )
        lines.append("")
        lines.append(
            f"Cell-to-cell noise is large here (a robust standard deviation of "
            f"{f.v(d['noise']['sigma'])}{unit}{tail}): noise alone could move the most extreme cells by a tenth of the range or more. "
            "So levels, trends and observations are judged on the map smoothed over each cell's 3 x 3 "
            "neighbourhood (its median), and each observation about structure had to beat what noise "
            "alone would reach over everything it searched (`facts.noise` in the JSON)."
        )
    lines.append("")

    lines += ["## Detailed analysis", ""]
    if one and one["text"]:  # one series: each of the site's metrics instead of bands of layers
        lines += ["Output logits, each metric of the site over training:", ""]
        lines += [f"- {t}" for t in one["text"][:-1]] + ["", one["text"][-1], ""]
    elif d["value_min"] is None:
        lines += ["No layer has a finite value.", ""]
    else:
        lines += [f"- {b['text']}" for b in d["bands"]]
        lines.append("")

    lines += ["## Key observations", ""]
    if d["observations"]:
        lines += [f"{i}. {o['text']}" for i, o in enumerate(d["observations"], 1)]
    else:
        lines.append("No observation passes the thresholds.")
    if d["value_min"] is not None and not d["noise"]["structured"] and d["value_min"] != d["value_max"]:
        lines += [
            "",
            f"Cell-to-cell noise accounts for about {f.p(d['noise']['share_pct'])} of the variance of "
            "the map.",
        ]
    lines.append("")

    if d.get("heads"):
        lines += ["## Attention heads", ""] + [f"- {t}" for t in d["heads"]["text"]] + [""]
    alerts = d.get("alerts")
    if alerts and alerts["n_total"]:
        lines += ["## Watch alerts", ""] + alerts["text"][:1] + [""] + alerts["text"][1:]
        lines += [""] if len(alerts["text"]) > 1 else []

    lines += ["## Interpretation", ""]
    for it in d["interpretation"]:
        text = it["text"]
        if it["observation"]:
            text = f"{text.rstrip('.')} (observation {it['observation']})."
        lines.append(f"- {text}")
    lines += [
        "",
        "These readings are hypotheses suggested by the numbers above, not conclusions; each names "
        "the observation it rests on.",
        "",
    ]
    return "\n".join(lines)
