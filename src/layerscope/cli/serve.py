"""``layerscope serve``: a local dashboard that fills in the layer x step map while a run records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import click

from ._common import store_argument


@click.command("serve")
@store_argument
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback shares the store with your network; "
    "there is no password.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8050,
    show_default=True,
    help="TCP port (0: any free port; the URL is printed).",
)
@click.option(
    "--poll-ms",
    type=click.IntRange(100, 600_000),
    default=1500,
    show_default=True,
    help="How often the page asks for new steps, in milliseconds.",
)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=False,
    show_default=True,
    help="Open the page in the default browser.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Evaluate the live watch's default rules over every run's values as they arrive and print "
    "each alert once here. The server only reads: alerts are not stored (a Recorder with watch= "
    "stores its own, and the page draws the stored ones).",
)
def serve(store: str, host: str, port: int, poll_ms: int, open_browser: bool, watch: bool) -> None:
    """Serve a dashboard for STORE at http://127.0.0.1:8050/: runs, metric and site pickers, the
    interactive heatmap (a long run is drawn from an overview that keeps its spikes; zoom for
    detail), per-layer lines, the profile at a step with its slider, histograms, the report, and a
    two-run comparison. Needs flask: pip install 'layerscope[serve]'.

    The page polls for new steps, so leave it open while a run records into STORE (which need not
    exist yet). The server only reads the store and never holds up the process writing it.

    \b
    Examples:
      layerscope serve layerscope-demo/runs.db
      layerscope serve runs.db --port 8051 --open
      layerscope serve runs.db --host 0.0.0.0      # reachable from other machines: no password!
      layerscope serve runs.db --watch             # print the watch's alerts as steps arrive
    """
    from ..errors import ConfigError

    try:  # the dashboard is the one user of a web server: flask is the [serve] extra
        import flask  # noqa: F401
    except ImportError:
        raise ConfigError(
            "layerscope serve needs flask, which is not installed; install it with: "
            "pip install 'layerscope[serve]'"
        ) from None
    from ..serve import serve as run_server

    if watch:
        start_watch(store, poll_ms / 1000, lambda m: click.echo(m, err=True))

    run_server(
        store,
        host=host,
        port=port,
        poll_ms=poll_ms,
        open_browser=open_browser,
        say=lambda m: click.echo(m),
        warn=lambda m: click.echo(m, err=True),
    )


def start_watch(store: str, every_s: float, warn: Callable[[str], None]) -> threading.Thread:
    """A daemon thread that evaluates the watch over ``store`` every ``every_s`` seconds (at
    least 1 s) and passes each alert's line to ``warn``; it ends with the server's process."""
    from ..errors import LayerscopeError, escape_controls
    from ..watch_store import StoreWatcher

    watcher = StoreWatcher(
        store, lambda run, a: warn(escape_controls(f"layerscope watch: run {run!r}: {a.message}"))
    )

    def loop() -> None:
        said = ""
        while True:
            try:
                watcher.poll()
                said = ""
            except LayerscopeError as e:  # a store being created or replaced: try again next time
                line = f"warning: the watch could not read the store: {e}"
                if line != said:  # once, not at every poll
                    warn(line)
                said = line
            time.sleep(max(every_s, 1.0))

    t = threading.Thread(target=loop, name="layerscope-watch", daemon=True)
    t.start()
    return t
