"""The dashboard's watch alerts in headless Chromium: markers on the heatmap cells of the alerts of
the shown metric and site, a list newest first that grows while the page stays loaded, a forged rule
shown as text, and a click on a listed alert of another metric showing that metric's map."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from layerscope.store import Event, LayerInfo, StepRecord, Store

XSS = "<img src=x onerror=alert(1)>"


POLL_MS = 300


def _start_server(store: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LAYERSCOPE_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "layerscope", "serve", str(store), "--port", "0", "--poll-ms", str(POLL_MS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    m = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL in the first line {line!r}; stderr: {proc.communicate()[1]}")
    return proc, m.group(0)


def _watch(page) -> SimpleNamespace:
    """Record alert()/confirm() dialogs and page errors (a CSP violation is a console error)."""
    seen = SimpleNamespace(dialogs=[], errors=[])
    page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    return seen


def _click_run(page, run: str) -> None:
    page.locator(".run-item", has=page.locator(".run-name", has_text=run)).first.click()


def _rec(step: int, events: list[Event]) -> StepRecord:
    rng = np.random.default_rng(step)
    return StepRecord(
        step, {("rms", "output"): rng.random(4) + 1, ("kurtosis", "output"): rng.random(4) + 3}, events=events
    )


def _alert(step: int, metric: str, layer: int, rule: str = "jump") -> Event:
    return Event(step, "alert", rule, f"{metric} at layer {layer}", "output", metric, layer, None, 42.0)


def _marks(page, meta: str = "watch-alerts") -> list[list[float]]:
    return page.evaluate(
        f"(document.getElementById('heatmap').data || []).filter(t => t.meta === '{meta}')"
        ".map(t => t.x.map((x, i) => [x, t.y[i]]))"
    )


def test_alerts_marked_and_listed_as_the_run_records(page, tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    with Store(store) as st:
        st.create_run("watched", [LayerInfo(i + 1, f"h.{i}") for i in range(4)])
        st.write_steps(
            "watched", [_rec(s, [_alert(20, "rms", 3)] if s == 20 else []) for s in (10, 20, 30, 40)]
        )
    proc, url = _start_server(store)
    try:
        seen = _watch(page)
        page.goto(url)
        _click_run(page, "watched")
        page.wait_for_function(
            "() => +document.getElementById('heatmap').dataset.alerts === 1", timeout=20000
        )
        # Layer 3 at step 20, the second row (y is in row units).
        assert _marks(page) == [[[3, 1]]]
        assert page.locator("#alerts-card").is_visible()
        assert page.locator("#alert-list .alert-item").all_text_contents() == [
            "step 20 · layer 3 (h.2) · rms@output = 42 · jump"
        ]
        hover = page.evaluate(
            "document.getElementById('heatmap').data.find(t => t.meta === 'watch-alerts').text[0]"
        )
        assert hover.startswith("step 20 · layer 3 (h.2)")

        # The run goes on: a forged rule at step 60, another metric's alert at step 50.
        page.evaluate("window.__notReloaded = true")
        with Store(store) as st:
            st.write_steps(
                "watched",
                [
                    _rec(50, [_alert(50, "kurtosis", 1)]),
                    _rec(60, [_alert(60, "rms", 4, rule=XSS)]),
                ],
            )
        page.wait_for_function(  # marked cells: two of rms, one of kurtosis
            "() => +document.getElementById('heatmap').dataset.alerts === 3", timeout=20000
        )
        assert page.evaluate("window.__notReloaded === true")
        items = page.locator("#alert-list .alert-item").all_text_contents()
        assert items == [
            f"step 60 · layer 4 (h.3) · rms@output = 42 · {XSS}",
            "step 50 · layer 1 (h.0) · kurtosis@output = 42 · jump",
            "step 20 · layer 3 (h.2) · rms@output = 42 · jump",
        ]  # newest first; the forged rule is text
        assert sorted(map(tuple, _marks(page)[0])) == [(3, 1), (4, 5)]
        assert _marks(page, "watch-alerts-other") == [[[1, 4]]]  # kurtosis at step 50, row 4
        assert page.evaluate("document.querySelectorAll('main img, .alert-list b').length") == 0

        # A click on the kurtosis alert shows the kurtosis map, with that alert as its own marker.
        page.locator("#alert-list .alert-item", has_text="kurtosis@output").click()
        page.wait_for_function(
            "() => document.getElementById('heatmap').layout.title.text.startsWith('kurtosis')", timeout=10000
        )
        page.wait_for_function(
            "() => +document.getElementById('heatmap').dataset.alerts === 3", timeout=10000
        )
        assert _marks(page) == [[[1, 4]]]
        assert sorted(map(tuple, _marks(page, "watch-alerts-other")[0])) == [(3, 1), (4, 5)]
        assert page.input_value("#metric") == "kurtosis"
        assert seen.dialogs == [] and seen.errors == [] and page.blocked_requests == []
    finally:
        proc.kill()
        proc.communicate()
