"""The report as HTML: one converter (markdown-it, raw HTML and links off) for the `view` bundle and
the dashboard, and names that show literally whatever they hold."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

from layerscope.analysis import report
from layerscope.analysis.markdown import markdown_to_html
from layerscope.analysis.text import code
from layerscope.store.heatmap import Heatmap

NAMES = [
    "<script>alert(1)</script>",
    "a`b",
    "**bold** _it_",
    "[link](javascript:alert(1))",
    "x\n# heading",
    "``",
    " padded ",
    "<img src=x onerror=alert(1)>",
]


class Parsed(HTMLParser):
    """Tags (with their attributes) and the text inside <code>, as a browser would read them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.codes: list[str] = []
        self._in_code = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "code":
            self._in_code = True
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.codes[-1] += data


@pytest.mark.parametrize("name", NAMES)
def test_a_code_span_shows_any_name_literally(name: str) -> None:
    p = Parsed(markdown_to_html(f"run {code(name)} here"))
    assert [t for t, _ in p.tags] == ["p", "code"]  # one paragraph, one code span, nothing else
    assert p.codes == [name.replace("\n", " ")]


def test_a_report_of_hostile_names_is_inert_html() -> None:
    v = 0.1 + np.linspace(0, 1, 6)[:, None] * np.linspace(0, 1, len(NAMES))[None, :]
    hm = Heatmap(
        v,
        steps=list(range(1, 7)),
        layers=list(range(1, len(NAMES) + 1)),
        layer_names=list(reversed(NAMES)),
        metric="r`m*s",
        site="<b>s</b>",
        run=NAMES[0],
    )
    rep = report(hm)
    p = Parsed(rep.to_html())
    tags = {t for t, _ in p.tags}
    assert tags <= {"h3", "h4", "p", "ul", "ol", "li", "code", "strong"}, tags
    assert all(not attrs for _, attrs in p.tags)
    assert {"r`m*s", "<b>s</b>", NAMES[0], NAMES[-1]} <= set(p.codes)  # run, site, metric, first layer
    assert p.codes[0] == "r`m*s"  # the title: the metric's name, whole


def test_markdown_links_and_raw_html_stay_text() -> None:
    out = markdown_to_html("[x](http://example.com) <a href='y'>z</a> ![i](j.png) <http://k>")
    assert "<a" not in out and "<img" not in out and "&lt;a href" in out


def test_headings_move_down_and_the_report_sections_survive() -> None:
    rep = report(Heatmap(np.eye(3), steps=[1, 2, 3], layers=[1, 2, 3]))
    out = rep.to_html()
    assert out.startswith("<h3><code>value</code> across layers and training steps</h3>")
    assert "<h4>Key observations</h4>" in out and "<h4>Interpretation</h4>" in out
    assert rep.to_html(heading_offset=0).startswith("<h1>")


def test_the_dashboard_serves_the_same_html(tmp_path) -> None:
    import layerscope
    from layerscope.serve import create_app
    from layerscope.store import LayerInfo, StepRecord, Store

    store = tmp_path / "runs.db"
    with Store(store) as st:
        st.create_run(NAMES[0], [LayerInfo(i + 1, NAMES[i]) for i in range(3)])
        st.write_steps(NAMES[0], [StepRecord(s, {("rms", "output"): [s, 2.0 * s, 4.0]}) for s in (1, 2, 3)])
    client = create_app(store).test_client()
    d = client.get("/api/report", query_string={"run": NAMES[0], "metric": "rms"}).get_json()
    expected = layerscope.report(layerscope.load(store, run=NAMES[0], metric="rms"))
    assert d["html"] == expected.to_html() and d["markdown"] == expected.to_markdown()
    assert NAMES[0] in Parsed(d["html"]).codes
