"""Interactive HTML and the report bundle, checked on the figure dicts and the written files
(the browser tests in tests/browser open them in Chromium)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import layerscope
from layerscope.render.bundle import markdown_to_html, write_bundle
from layerscope.render.html import esc, heatmap_figure, lines_figure, value_texts
from layerscope.store.heatmap import Heatmap


def hm(values, metric="rms", site="output", steps=None, names=None, run="r") -> Heatmap:
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[1]
    return Heatmap(
        v,
        steps=steps or [100 * (i + 1) for i in range(v.shape[0])],
        layers=range(1, n + 1),
        layer_names=names or [f"h.{j}" for j in range(n)],
        metric=metric,
        site=site,
        run=run,
    )


def external_refs(text: str) -> list[str]:
    """src/href attributes pointing off the page (the plotly.js source itself only holds URLs in strings)."""
    return re.findall(
        r"""<(?:script|link|img|iframe)[^>]+(?:src|href)\s*=\s*["']?(?:https?:)?//""", text, re.I
    )


def test_value_texts_are_exact_and_name_non_finite_cells():
    v = np.array([[0.1, 1 / 3, np.nan, np.inf, -np.inf, 1e-300]])
    assert value_texts(v) == [["0.1", "0.3333333333333333", "missing / NaN", "+inf", "\u2212inf", "1e-300"]]
    assert float(value_texts(np.array([[0.029912345178723335]]))[0][0]) == 0.029912345178723335


def test_heatmap_figure_hover_and_axes():
    fig = heatmap_figure([hm(np.arange(6.0).reshape(3, 2) / 7)])
    (trace,) = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert trace["x"] == ["1 \u00b7 h.0", "2 \u00b7 h.1"] and trace["y"] == [100, 200, 300]
    assert trace["customdata"][2][1] == repr(5 / 7)
    assert trace["hovertemplate"] == "layer %{x}<br>step %{y:d}<br>rms = %{customdata}<extra></extra>"
    lay = fig["layout"]
    assert lay["yaxis"]["autorange"] == "reversed" and lay["xaxis"]["ticktext"] == ["1", "2"]
    assert lay["yaxis"]["ticktext"] == ["100", "200", "300"]
    assert "updatemenus" not in lay


def test_user_strings_cannot_inject_markup_or_template_fields():
    h = hm(np.ones((2, 2)), metric="rms<i>", names=["<b>x</b>", "%{z}"], run="<img src=x onerror=alert(1)>")
    fig = heatmap_figure([h])
    (trace,) = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert trace["x"] == ["1 \u00b7 &lt;b&gt;x&lt;/b&gt;", "2 \u00b7 &#37;{z}"]
    assert "rms&lt;i&gt; = %{customdata}" in trace["hovertemplate"]
    assert "<img" not in fig["layout"]["title"]["text"] and "&lt;img src=x" in fig["layout"]["title"]["text"]
    assert esc("a%{x}<b>") == "a&#37;{x}&lt;b&gt;"


def test_uneven_steps_are_categories_unless_true_steps():
    h = hm(np.ones((4, 2)), steps=[1, 2, 10, 1000])
    lay = heatmap_figure([h])["layout"]
    assert lay["yaxis"]["type"] == "category"
    (t,) = [t for t in heatmap_figure([h])["data"] if t["type"] == "heatmap"]
    assert t["y"] == ["1", "2", "10", "1000"] and "step %{y}<br>" in t["hovertemplate"]
    assert heatmap_figure([h], true_steps=True)["layout"]["yaxis"]["type"] == "linear"


def test_anomalies_get_marks_and_legend_keys_only_when_present():
    v = np.ones((3, 3))
    fig = heatmap_figure([hm(v)])
    assert [t for t in fig["data"] if t.get("showlegend")] == []
    v[0, 0], v[1, 1], v[2, 2] = np.nan, np.inf, -np.inf
    fig = heatmap_figure([hm(v)])
    assert [t["name"] for t in fig["data"] if t.get("showlegend")] == ["missing / NaN", "+inf", "\u2212inf"]
    marks = [t for t in fig["data"] if t["type"] == "scatter" and t["x"] != [None]]
    assert [(m["marker"]["symbol"], m["x"], m["y"]) for m in marks] == [
        ("triangle-up", ["2 \u00b7 h.1"], [200]),
        ("triangle-down", ["3 \u00b7 h.2"], [300]),
    ]
    assert fig["layout"]["plot_bgcolor"] == "#bdbdbd"  # gaps (missing cells) show as grey


def test_switcher_toggles_one_panel_at_a_time():
    m = [hm(np.ones((2, 2)), "rms"), hm(np.ones((2, 2)) * 5, "kurtosis")]
    fig = heatmap_figure(m)
    (menu,) = fig["layout"]["updatemenus"]
    labels = [b["label"] for b in menu["buttons"]]
    assert labels == ["rms", "kurtosis"]
    vis = [b["args"][0]["visible"] for b in menu["buttons"]]
    heat = [i for i, t in enumerate(fig["data"]) if t["type"] == "heatmap"]
    assert [[v[i] for i in heat] for v in vis] == [[True, False], [False, True]]
    assert [fig["data"][i]["visible"] for i in heat] == [True, False]
    assert menu["buttons"][1]["args"][1]["title.text"].startswith("kurtosis per layer")


def test_log_colours_are_log10_with_decade_ticks():
    v = np.array([[1e-3, 1e-1], [1.0, 10.0]])
    fig = heatmap_figure([hm(v)], scale="log")
    (t,) = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert np.allclose(t["z"], np.log10(v))
    assert t["colorbar"]["ticktext"] == ["1e-3", "1e-2", "1e-1", "1e0", "1e1"]
    assert t["customdata"][0][0] == "0.001"  # hover still shows the value, not its log


def test_diverging_heatmap_is_centred():
    (t,) = [t for t in heatmap_figure([hm(np.array([[-1.0, 3.0]]))])["data"] if t["type"] == "heatmap"]
    assert t["zmid"] == 0.0 and (t["zmin"], t["zmax"]) == (-3.0, 3.0)


def test_annotate_adds_cell_text():
    (t,) = [
        t
        for t in heatmap_figure([hm(np.array([[0.5, np.nan]]))], annotate=True)["data"]
        if t["type"] == "heatmap"
    ]
    assert t["text"] == [["0.5", ""]] and t["texttemplate"] == "%{text}"


def test_lines_figure_has_a_trace_per_layer_and_a_depth_key():
    v = np.arange(12.0).reshape(4, 3)
    v[1, 0] = np.inf
    fig = lines_figure([hm(v)])
    layers = [t for t in fig["data"] if str(t.get("name", "")).startswith("layer ")]
    assert len(layers) == 3
    assert layers[2]["customdata"] == ["2.0", "5.0", "8.0", "11.0"]
    assert "step %{x:d}" in layers[0]["hovertemplate"]
    assert any(t.get("marker", {}).get("showscale") for t in fig["data"])
    assert [t["name"] for t in fig["data"] if t.get("showlegend")] == ["+inf"]


def test_html_file_is_one_self_contained_page(tmp_path):
    out = layerscope.plot([hm(np.ones((3, 2)), "rms"), hm(np.ones((3, 2)), "std")], tmp_path / "x.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("plotly.js v") == 1
    assert external_refs(text) == []
    assert "Plotly.newPlot" in text and '"switcher"' in text
    assert [p.name for p in tmp_path.iterdir()] == ["x.html"]


def test_html_lines_output(tmp_path):
    out = layerscope.plot(hm(np.ones((3, 2))), tmp_path / "l.html", kind="lines")
    assert '"Layer (depth)"' in out.read_text(encoding="utf-8")


# --- bundle --------------------------------------------------------------------------------


def test_markdown_subset_is_escaped_then_rendered():
    md = "# Title `a<b>`\n\nText with **bold `code`** and <script>x</script>.\n\n1. one\n2. two\n\n- a\n- b"
    out = markdown_to_html(md)
    assert "<h3>Title <code>a&lt;b&gt;</code></h3>" in out
    assert (
        "<strong>bold <code>code</code></strong>" in out and "&lt;script&gt;" in out and "<script>" not in out
    )
    assert "<ol>\n<li>one</li>\n<li>two</li>\n</ol>" in out and "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in out


def test_bundle_has_a_section_per_heatmap_with_report(tmp_path):
    m = [
        hm(np.outer(np.arange(1, 6), np.arange(1, 4)) * 0.1, "rms"),
        hm(np.full((5, 3), -0.5) + np.arange(3), "mean", run="r"),
    ]
    out = write_bundle(m, tmp_path / "rep", source="runs<1>.db", title="Run <r>")
    assert out == tmp_path / "rep" / "index.html"
    text = out.read_text(encoding="utf-8")
    # plotly.js once, beside the page, shared by every page of the folder; the page loads it locally
    (js,) = (tmp_path / "rep").glob("plotly-*.min.js")
    assert "plotly.js v" in js.read_text(encoding="utf-8")[:300] and text.count("plotly.js v") == 0
    assert f'<script type="text/javascript" src="{js.name}"></script>' in text and external_refs(text) == []
    assert '<section id="rms-output">' in text and '<section id="mean-output">' in text
    assert text.count('class="plotly-graph-div"') == 6  # heatmap + profile + lines per metric
    assert text.count('type="range"') == 2  # a step slider per metric
    assert "<h3><code>rms</code> across layers and training steps</h3>" in text  # the report, rendered
    assert "<title>Run &lt;r&gt;</title>" in text and "runs&lt;1&gt;.db" in text


def test_bundle_inline_is_one_file_and_a_second_bundle_reuses_plotly_js(tmp_path):
    m = [hm(np.ones((3, 2)))]
    one = write_bundle(m, tmp_path / "one", plotly="inline")
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["index.html"]
    assert one.read_text(encoding="utf-8").count("plotly.js v") == 1
    write_bundle(m, tmp_path / "two")
    (js,) = (tmp_path / "two").glob("plotly-*.min.js")
    before = js.stat().st_mtime_ns
    write_bundle(m, tmp_path / "two")  # an identical copy is there: not written again
    assert js.stat().st_mtime_ns == before


def test_bundle_with_log_keeps_metrics_without_positive_values_linear(tmp_path):
    from layerscope.render.options import RenderOptions

    m = [hm(np.outer(np.arange(1, 6), np.arange(1, 4)) * 0.1, "rms"), hm(-np.ones((5, 3)), "mean")]
    text = write_bundle(m, tmp_path / "rep", RenderOptions(scale="log")).read_text(encoding="utf-8")
    assert text.count("No positive values: drawn on a linear scale.") == 1


def test_bundle_refuses_a_file_as_folder(tmp_path):
    from layerscope.errors import ConfigError

    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a folder"):
        write_bundle([hm(np.ones((2, 2)))], tmp_path / "f")
