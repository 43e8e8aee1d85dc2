"""`layerscope serve` in headless Chromium: the real server, the real page, a second process recording.

Each test asserts what a user sees: the values drawn are the store's, a metric switch redraws them,
steps recorded by another process appear without a reload, a hostile run name is text, and the page
loads nothing from outside the machine (the `page` fixture aborts and lists any such request).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from layerscope.store import LayerInfo, StepRecord, Store

XSS = "<img src=x onerror=alert(1)>"
STEPS = list(range(10, 90, 10))  # 8 steps
POLL_MS = 300

WRITER = textwrap.dedent("""
    import sys, time
    import torch
    import layerscope
    from layerscope.testing import tiny_gpt

    store, run = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = tiny_gpt(n_layer=4, n_embd=32, n_head=2, block_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randint(0, 256, (4, 16))
    with layerscope.Recorder(model, store, run=run, flush_every=1) as rec:
        for step in range(1, 400):
            _, loss = model(x, x)
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.step(step)
            time.sleep(0.3)
""")


def _matrix(k: int, phase: float) -> np.ndarray:
    s = np.arange(len(STEPS))[:, None]
    layer = np.arange(4)[None, :]
    return 0.1 + (k + 1) * (s + 1) * (layer + 1 + phase) / 10.0


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LAYERSCOPE_DEBUG", None)
    return env


def _start_server(store: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", "serve", str(store), "--port", "0", "--poll-ms", str(POLL_MS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL in the first line {line!r}; stderr: {proc.communicate()[1]}")
    return proc, m.group(0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with runs `baseline`, `other` and the hostile one, served by `layerscope serve`."""
    store = tmp_path_factory.mktemp("serve") / "runs.db"
    with Store(store) as st:
        for run, phase in (("baseline", 0.0), ("other", 0.5)):
            st.create_run(run, [LayerInfo(i + 1, f"h.{i}") for i in range(4)], model="TinyGPT")
            mats = {m: _matrix(k, phase) for k, m in enumerate(("rms", "std", "mean"))}
            st.write_steps(
                run,
                [StepRecord(s, {(m, "output"): v[i] for m, v in mats.items()}) for i, s in enumerate(STEPS)],
            )
        st.create_run(XSS, [LayerInfo(1, "<b>h.0</b>"), LayerInfo(2, "<script>alert(2)</script>")])
        st.write_steps(XSS, [StepRecord(s, {("rms", "output"): [1.0 * s, 2.0 * s]}) for s in (1, 2, 3)])
    proc, url = _start_server(store)
    try:
        yield SimpleNamespace(store=store, url=url)
    finally:
        proc.kill()
        proc.communicate()


def _watch(page):
    """Record alert()/confirm() dialogs and page errors (a CSP violation is a console error)."""
    seen = SimpleNamespace(dialogs=[], errors=[])
    page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    return seen


def _z(page, div: str) -> list[list[float | None]]:
    return page.evaluate(f"document.getElementById({json.dumps(div)}).data[0].z")


def _steps(page) -> int:
    return int(page.get_attribute("#step-count", "data-steps") or 0)


def _click_run(page, run: str) -> None:
    page.locator(".run-item", has=page.locator(".run-name", has_text=run)).first.click()


def test_pick_run_switch_metric_and_watch_steps_arrive(served, page, tmp_path: Path) -> None:
    # A second process records into the same store; started first because importing torch is slow.
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), str(served.store), "live"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _pick_switch_and_follow(served, page, writer)
    finally:
        writer.kill()
        writer.wait()


def _pick_switch_and_follow(served, page, writer: subprocess.Popen[str]) -> None:
    seen = _watch(page)
    page.goto(served.url)
    _click_run(page, "baseline")
    page.wait_for_function(
        "() => { const d = document.getElementById('heatmap').data;"
        " return d && d[0].z.length === 8 && d[0].z[0].length === 4; }",
        timeout=15000,
    )
    expected = Store(served.store, readonly=True).load("baseline", "rms")
    np.testing.assert_allclose(np.array(_z(page, "heatmap"), dtype=float), expected.values)
    assert page.text_content("#run-title") == "baseline" and _steps(page) == 8

    page.select_option("#metric", "std")
    page.wait_for_function("() => document.getElementById('heatmap').layout.title.text.startsWith('std')")
    std = Store(served.store, readonly=True).load("baseline", "std")
    np.testing.assert_allclose(np.array(_z(page, "heatmap"), dtype=float), std.values)
    assert "metric=std" in page.url  # the view is in the URL: a reload shows the same map
    lines = page.evaluate("document.getElementById('lines').data.map(t => t.y)")
    np.testing.assert_allclose(np.array(lines, dtype=float), std.values.T)  # one line per layer

    # The writer's run shows up in the list and its map grows while the page stays loaded.
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector('.run-item[data-run="live"]', timeout=30000)
    _click_run(page, "live")
    page.wait_for_function("() => +document.getElementById('step-count').dataset.steps >= 2", timeout=20000)
    n0 = _steps(page)
    page.wait_for_function(
        f"() => +document.getElementById('step-count').dataset.steps >= {n0 + 3}", timeout=20000
    )
    assert writer.poll() is None, writer.communicate()[1]
    writer.kill()
    writer.wait()
    with Store(served.store, readonly=True) as st:
        final = st.load("live", "std")
    # Everything the writer committed reaches the page, drawn row for row.
    page.wait_for_function(
        f"() => +document.getElementById('step-count').dataset.steps === {len(final.steps)}", timeout=10000
    )
    np.testing.assert_allclose(np.array(_z(page, "heatmap"), dtype=float), final.values)
    assert page.evaluate("window.__notReloaded === true")
    assert page.blocked_requests == [] and seen.dialogs == [] and seen.errors == []


def test_hostile_run_name_is_shown_as_text(served, page) -> None:
    seen = _watch(page)
    page.goto(served.url)
    _click_run(page, XSS)
    page.wait_for_function(
        "() => { const d = document.getElementById('heatmap').data; return d && d[0].z.length === 3; }",
        timeout=15000,
    )
    assert page.text_content("#run-title") == XSS
    assert XSS in page.text_content("#run-list")
    assert XSS in page.text_content("#heatmap .gtitle")  # plotly's title: the literal name
    legend = page.locator("#lines .legendtext").all_text_contents()
    assert legend == ["1 <b>h.0</b>", "2 <script>alert(2)</script>"]
    assert page.evaluate("document.querySelectorAll('img, main script, .legend b').length") == 0
    page.wait_for_timeout(3 * POLL_MS)  # a few polls: any injected handler would have fired by now
    assert seen.dialogs == [] and seen.errors == [] and page.blocked_requests == []


def test_compare_view_draws_both_runs_and_their_difference(served, page) -> None:
    seen = _watch(page)
    page.goto(served.url + "#view=compare&a=baseline&b=other&metric=mean")
    page.wait_for_function(
        "() => { const d = document.getElementById('cmp-plot-diff').data; return d && d[0].z.length === 8; }",
        timeout=15000,
    )
    with Store(served.store, readonly=True) as st:
        a, b = st.load("baseline", "mean").values, st.load("other", "mean").values
    np.testing.assert_allclose(np.array(_z(page, "cmp-plot-a"), dtype=float), a)
    np.testing.assert_allclose(np.array(_z(page, "cmp-plot-b"), dtype=float), b)
    np.testing.assert_allclose(
        np.array(_z(page, "cmp-plot-diff"), dtype=float), b - a
    )  # as `layerscope compare`
    summary = page.locator("#cmp-summary li").all_text_contents()
    assert summary[0].startswith("Compared mean") and any("Largest difference" in s for s in summary)
    page.select_option("#cmp-mode", "relative")
    page.wait_for_function(
        "() => document.getElementById('cmp-plot-diff').layout.title.text.startsWith('relative')"
    )
    np.testing.assert_allclose(
        np.array(_z(page, "cmp-plot-diff"), dtype=float), 100 * (b - a) / np.abs(a), rtol=1e-9
    )
    assert page.get_attribute("#cmp-count", "data-steps") == "8" and "mode=relative" in page.url
    assert seen.errors == [] and page.blocked_requests == []


def test_a_store_that_does_not_exist_yet_fills_in(page, tmp_path: Path) -> None:
    from layerscope.serve import Dashboard

    store = tmp_path / "later.db"
    dash = Dashboard(store, port=0, poll_ms=POLL_MS).start()
    try:
        seen = _watch(page)
        page.goto(dash.url)
        page.wait_for_selector("#empty:not([hidden])")
        assert "does not exist yet" in page.text_content("#empty") and str(store) in page.text_content(
            "#empty"
        )
        with Store(store) as st:
            st.create_run("first", [LayerInfo(1, "h.0"), LayerInfo(2, "h.1")])
            st.write_step("first", StepRecord(5, {("rms", "output"): [1.0, 2.0]}))
        page.wait_for_function(
            "() => { const d = document.getElementById('heatmap').data; return d && d[0].z.length === 1; }",
            timeout=10000,
        )
        assert page.is_hidden("#empty") and page.text_content("#run-title") == "first"
        assert seen.errors == [] and page.blocked_requests == []
    finally:
        dash.stop()


def test_ctrl_c_stops_the_server_cleanly(tmp_path: Path) -> None:
    proc, url = _start_server(tmp_path / "runs.db")
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:  # a server that did not stop is killed, never left behind
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
