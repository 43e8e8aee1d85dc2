"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright.

Never a downloaded browser: `.ci/run` installs Debian's chromium. Networking is off except
loopback, so a page that fetched anything from a CDN would fail to draw.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("LAYERSCOPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser():
    # CI installs chromium (.ci/run), so there its absence fails; a laptop without it skips.
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    try:
        import playwright.sync_api as sync_api  # the test extra installs it: missing is a failure
    except ImportError as e:
        pytest.fail(f"playwright is not installed ({e}); pip install -e '.[test]'", pytrace=False)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A page whose requests to anything but loopback/file/data are aborted (offline check)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:", "http://127.0.0.1", "http://localhost", "about:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    pg.route("**/*", route)
    pg.blocked_requests = blocked  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        ctx.close()
