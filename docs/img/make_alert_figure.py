"""Regenerate docs/img/watch-alert-heatmap.png: the diverging tiny-GPT run of
tests/integration/test_watch_instability.py (`layerscope.testing.diverge`) (SGD at lr 0.3, growing 30% a step after step 40),
recorded with the live watch, and the layer x step map of the per-head attention max logit (max over
heads) over its last steps, with the watch's alerts marked on their cells.

    python docs/img/make_alert_figure.py [--store runs.db] [--dashboard]

``--store`` keeps the run's store (e.g. to serve it: ``layerscope serve runs.db``);
``--dashboard`` also writes docs/img/dashboard-watch-alerts.png, the dashboard showing that map
and the list of alerts, in Debian's headless Chromium (Playwright).
"""

import argparse
import dataclasses
import tempfile
from pathlib import Path

import layerscope
from layerscope.testing.diverge import diverging_run

ap = argparse.ArgumentParser()
ap.add_argument("--store", type=Path, default=Path(tempfile.mkdtemp()) / "runs.db")
ap.add_argument("--out", type=Path, default=Path(__file__).parent / "watch-alert-heatmap.png")
ap.add_argument("--dashboard", action="store_true")
args = ap.parse_args()
args.store.unlink(missing_ok=True)

diverging_run(args.store, "diverge")
hm = layerscope.load(args.store, "diverge", metric="max_logit", site="attn", reduce="max")
# The last steps before the divergence, where the alerts are (a 2000-step map marks them the same).
rows = [i for i, s in enumerate(hm.steps) if s >= hm.steps[-1] - 16]
hm = dataclasses.replace(hm, values=hm.values[rows], steps=[hm.steps[i] for i in rows])
path = layerscope.plot(hm, args.out, scale="log", figsize=(6.4, 5.2))
print(path, f"({len(hm.events)} alerts in the run)")

if args.dashboard:
    import os
    import shutil

    from playwright.sync_api import sync_playwright

    from layerscope.serve import Dashboard

    chromium = os.environ.get("LAYERSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    dash = Dashboard(args.store, port=0).start()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            page = b.new_page(viewport={"width": 1300, "height": 900})
            page.goto(dash.url + "#view=run&run=diverge&metric=max_logit&site=attn&log=1")
            page.wait_for_function(
                "() => +document.getElementById('heatmap').dataset.alerts > 0", timeout=30000
            )
            page.wait_for_timeout(800)  # plotly's transitions
            shot = args.out.parent / "dashboard-watch-alerts.png"
            top, end = page.locator("#view-run").bounding_box(), page.locator("#alerts-card").bounding_box()
            assert top is not None and end is not None
            clip = {
                "x": top["x"],
                "y": top["y"],
                "width": top["width"],
                "height": end["y"] + end["height"] - top["y"],
            }
            page.screenshot(path=str(shot), clip=clip, full_page=True)  # the map, its lines and the alerts
            print(shot)
            b.close()
    finally:
        dash.stop()
