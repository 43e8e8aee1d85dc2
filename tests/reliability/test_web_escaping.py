"""Names come from users (run names, layer names from a model's code, store paths), and the web
outputs show them: ``plot -o x.html``, ``compare -o x.html``, ``view`` (an offline page) and the
``serve`` dashboard. A run named ``<img src=x onerror=alert(1)>`` and a layer named
``<script>alert(1)</script>`` must show as text, never become markup that runs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tests.reliability._helpers import HOSTILE_LAYER, HOSTILE_RUN, make_store, run_cli

from layerscope.cli.main import COMMANDS

HOSTILE_DIR = "<svg onload=alert(2)>"


class _Markup(HTMLParser):
    """What a browser would build: elements with inline handlers (the payloads' onerror/onload), and
    script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.handlers: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [(tag, k) for k, _ in attrs if k.lower().startswith("on")]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def assert_inert(html: str) -> None:
    """No hostile name became an element, an inline handler or a script of its own."""
    m = _Markup()
    m.feed(html)
    m.close()
    assert not m.handlers, f"a name became an element with an inline handler: {m.handlers[:5]}"
    assert not [s for s in m.scripts if s.strip().startswith("alert(")], "a name became a <script>"
    # The names are in the page (escaped), so the checks above looked at something.
    assert "alert(1)" in html


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("web") / HOSTILE_DIR
    folder.mkdir()
    return make_store(
        folder / "runs.db", runs=(HOSTILE_RUN, "b"), n_layers=3, layer_names=[HOSTILE_LAYER, "x", "y"]
    )


def _need(cmd: str) -> None:
    assert cmd in COMMANDS, f"`layerscope {cmd}` is not registered"


def test_plot_html_shows_names_as_text(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    r = run_cli("plot", hostile, "--run", HOSTILE_RUN, "-o", out)
    assert r.returncode == 0, r.stderr
    assert_inert(out.read_text(encoding="utf-8"))


def test_plot_svg_is_well_formed_and_scriptless(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.svg"
    r = run_cli("plot", hostile, "--run", HOSTILE_RUN, "--title", f"{HOSTILE_RUN} {HOSTILE_LAYER}", "-o", out)
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()  # a raw '<' from a name would make this fail
    tags = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    assert not tags & {"script", "foreignObject", "img"}, tags


def test_compare_html_shows_names_as_text(hostile: Path, tmp_path: Path) -> None:
    _need("compare")
    out = tmp_path / "c.html"
    r = run_cli("compare", hostile, "--run", HOSTILE_RUN, "--run", "b", "-o", out)
    assert r.returncode == 0, r.stderr
    assert_inert(out.read_text(encoding="utf-8"))


def test_view_page_shows_names_as_text(hostile: Path, tmp_path: Path) -> None:
    _need("view")
    r = run_cli("view", hostile, "--run", HOSTILE_RUN, "--title", HOSTILE_LAYER, "-o", tmp_path / "bundle")
    assert r.returncode == 0, r.stderr
    assert_inert((tmp_path / "bundle" / "index.html").read_text(encoding="utf-8"))


def test_dashboard_escapes_names_and_serves_json_as_json(hostile: Path) -> None:
    _need("serve")
    from layerscope.serve import create_app

    client = create_app(hostile).test_client()
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    m = _Markup()
    m.feed(html)
    assert not m.handlers, f"the store path became markup: {m.handlers}"
    assert "onload=alert(2)" in html  # it is shown, as text

    for url in (
        "/api/runs",
        f"/api/run?run={HOSTILE_RUN}",
        f"/api/heatmap?run={HOSTILE_RUN}&metric=rms",
        f"/api/report?run={HOSTILE_RUN}&metric=rms",
        f"/api/compare?run_a={HOSTILE_RUN}&run_b=b",
        "/api/heatmap?run=%3Cscript%3Ealert(3)%3C/script%3E&metric=rms",
    ):
        resp = client.get(url)
        assert resp.mimetype == "application/json", (url, resp.mimetype)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", url
        assert resp.get_json() is not None, url
    data = client.get(f"/api/run?run={HOSTILE_RUN}").get_json()
    assert (
        data["run"] == HOSTILE_RUN and data["layer_info"][0]["name"] == HOSTILE_LAYER
    )  # data is not mangled
    missing = client.get("/api/heatmap?run=%3Cscript%3Ealert(3)%3C/script%3E&metric=rms")
    assert missing.status_code == 404 and "alert(3)" in missing.get_json()["error"]


def test_dashboard_script_builds_no_markup_from_strings() -> None:
    # The page draws every name with textContent / DOM nodes; a later edit that reaches for
    # innerHTML (or friends) with a name would reopen the hole the tests above close.
    _need("serve")
    import layerscope.serve

    js = (Path(layerscope.serve.__file__).parent / "static" / "app.js").read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", js)  # comments may name what the code avoids
    bad = re.findall(r"\.(?:innerHTML|outerHTML)\s*\+?=|insertAdjacentHTML|document\.write|\beval\(", code)
    assert not bad, bad
