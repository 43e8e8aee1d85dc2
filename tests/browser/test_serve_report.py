"""The dashboard's report panel in headless Chromium: the server's HTML is shown with its headings,
lists and code spans, and hostile names in it stay text."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("flask")

from layerscope.store import LayerInfo, StepRecord, Store

RUN = "<img src=x onerror=alert(1)>"
LAYERS = ["<script>alert(2)</script>", "a`b", "**c**"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = tmp_path_factory.mktemp("report") / "runs.db"
    with Store(store) as st:
        st.create_run(RUN, [LayerInfo(i + 1, n) for i, n in enumerate(LAYERS)])
        st.write_steps(
            RUN, [StepRecord(s, {("r`m*s", "output"): [0.1 * s, 0.2 * s, 0.4 * s]}) for s in range(1, 9)]
        )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LAYERSCOPE_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", "serve", str(store), "--port", "0", "--poll-ms", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:\d+/", line)
    try:
        assert m, f"no URL in {line!r}"
        yield m.group(0)
    finally:
        proc.kill()
        proc.communicate()


def test_report_panel_shows_the_server_html_and_names_as_text(served, page) -> None:
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served)
    page.locator(".run-item", has=page.locator(".run-name", has_text=RUN)).first.click()
    page.wait_for_selector("#report h3", timeout=20000)
    heads = page.locator("#report h4").all_text_contents()
    assert heads[:2] == ["Overview", "Components/Axes"] and "Interpretation" in heads
    assert page.locator("#report h3").inner_text() == "r`m*s across layers and training steps"
    codes = page.locator("#report code").all_text_contents()
    assert RUN in codes and LAYERS[0] in codes and "r`m*s" in codes
    assert page.locator("#report li").count() >= 3
    # nothing but the allowed tags, and no attribute on any of them
    assert page.evaluate("document.querySelectorAll('#report img, #report script, #report a').length") == 0
    assert page.evaluate("[...document.querySelectorAll('#report *')].every(e => e.attributes.length === 0)")
    page.wait_for_timeout(900)
    assert dialogs == [] and errors == [] and page.blocked_requests == []
