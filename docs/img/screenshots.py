"""Regenerate the screenshots of docs/plotting.md in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): the histogram view, the step slider with its profile, and a 96 x 2000 map
with a one-step spike (the HTML page and the dashboard's overview).

    python docs/img/screenshots.py --out docs/img           # needs a demo store: layerscope demo

Look at every PNG it writes: the spike must be a visible bright line at step 7780, the profile
must be the bold line at the slider's step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import layerscope
from layerscope.store import LayerInfo, StepRecord, Store
from layerscope.store.heatmap import Heatmap

CHROMIUM = os.environ.get("LAYERSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu"]


def spike_matrix(n_steps: int = 2000, n_layers: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    v = 0.01 * (1 + np.linspace(0, 1, n_layers))[None, :] * (1 + np.linspace(0, 0.5, n_steps))[:, None]
    v = v + rng.normal(0, 2e-4, (n_steps, n_layers))
    v[777, 40:44] = 0.2  # one step out of 2000: step 7780, layers 41-44
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/img", help="folder for the PNGs")
    ap.add_argument(
        "--demo", default="layerscope-demo/runs.db", help="a store with 'hist' recorded (the demo's)"
    )
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="layerscope-shots-"))
    steps = [10 * (i + 1) for i in range(2000)]
    hm = Heatmap(spike_matrix(), steps=steps, layers=range(1, 97), metric="rms", run="spike")
    spike_html = layerscope.plot(hm, work / "spike.html")
    layerscope.plot(hm, out / "spike-2000x96.png")  # the static PNG keeps it too
    hist_html = work / "hist.html"
    subprocess.run(
        [sys.executable, "-m", "layerscope", "plot", a.demo, "--metric", "hist", "-o", str(hist_html)],
        check=True,
    )
    db = work / "long.db"
    with Store(db) as st:
        st.create_run("spike", [LayerInfo(i + 1, f"h.{i}", "h", i + 1) for i in range(96)])
        st.write_steps(
            "spike", [StepRecord(s, {("rms", "output"): row.tolist()}) for s, row in zip(steps, hm.values)]
        )
    from layerscope.serve import Dashboard

    dash = Dashboard(db, port=0).start()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = b.new_page(viewport={"width": 1280, "height": 1150})
            page.goto(spike_html.as_uri())
            page.wait_for_selector("#layerscope-plot .hm")
            page.evaluate(
                "const s = document.getElementById('layerscope-profile-step'); s.value = 777;"
                " s.dispatchEvent(new Event('input'))"
            )
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "html-spike-and-slider.png"), full_page=True)
            page.goto(hist_html.as_uri())
            page.wait_for_selector("#layerscope-hist .hm")
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "html-histograms.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 1250})
            page.goto(dash.url + "#view=run&run=spike&metric=rms&site=output")
            page.wait_for_function(
                "() => document.getElementById('profile').dataset.step === '20000'", timeout=60000
            )
            page.evaluate(
                "const s = document.getElementById('step-slider'); s.value = 777; s.dispatchEvent(new Event('input'))"
            )
            page.wait_for_function("() => document.getElementById('profile').dataset.step === '7780'")
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "dashboard-overview-2000x96.png"), full_page=False)
            b.close()
    finally:
        dash.stop()
        shutil.rmtree(work, ignore_errors=True)
    for f in sorted(out.glob("*.png")):
        print(f)


if __name__ == "__main__":
    main()
