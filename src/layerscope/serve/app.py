"""The dashboard's Flask app: one page, a JSON API over a read-only store, plotly.js served locally.

Endpoints (all GET; every ``/api`` answer is strict JSON, errors as ``{"error": "..."}``)::

    /                       the page (templates/index.html + static/app.js, app.css)
    /vendor/plotly.min.js   plotly.js from the installed plotly package (cached for a year)
    /api/runs               the store's state and its runs: steps, step range, layers
    /api/run?run=           one run: its (metric, site) pairs, layers, model, config
    /api/heatmap?run=&metric=&site=[&since_step=]
                            the (steps x layers) matrix; with since_step only the later steps
    /api/heatmap?...&max_rows=N[&step_min=&step_max=]
                            at most N rows of it (a long run: blocks of steps, each showing its
                            most extreme value, so spikes stay), values as base64 float64; a zoom
                            asks for its step range in detail the same way
    /api/events?run=[&since_step=]
                            the run's watch alerts, newest first: step, site, metric, layer, head,
                            value, rule (drawn as markers on the heatmap and listed)
    /api/hist?run=&site=[&layers=1,5,9][&max_rows=N]
                            the recorded histograms of those layers (counts per bin and step)
    /api/report?run=&metric=&site=
                            the analysis report of that matrix (with the run's watch alerts and, at
                            site attn, its heads): its Markdown, the same as HTML
                            (the one converter the offline bundle uses) and its JSON
    /api/compare?run_a=&run_b=&metric=&site=[&mode=absolute|relative]
                            two runs on their common steps and layers, B - A (as ``layerscope
                            compare``), and the sentences saying where they differ most

Nothing here writes: each request opens its own read-only connection (``serve.reader``).
The page sets every user string (run, layer, metric, site names) as text, and the
Content-Security-Policy header allows scripts from this origin only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from .._version import __version__
from ..analysis.run import report_run
from ..errors import ConfigError, DataError, LayerscopeError, NotFoundError, StoreError
from ..render.page import VIEWS_JS
from ..store.histogram import load_histograms
from . import reader

log = logging.getLogger("layerscope.serve")

DEFAULT_POLL_MS = 1500
# Host names a loopback-bound server answers to. Checking the Host header keeps a web page the
# user visits from reading the store through DNS rebinding (its name re-pointed at 127.0.0.1).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",  # no inline script, no eval, no other origin
        # plotly.js sets style attributes on the SVG it draws; styles cannot run code
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",  # plotly's "download as PNG" makes a data: URL
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_STATUS = ((NotFoundError, 404), (ConfigError, 400), (DataError, 400), (StoreError, 503))


def _plotly_js() -> tuple[Path | None, str]:
    """Where the installed plotly package keeps plotly.min.js, and its version (for cache busting)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return (path if path.is_file() else None), str(getattr(plotly, "__version__", "0"))


def _json(obj: Any, status: int = 200) -> Response:
    body = json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


def _arg(name: str, default: str | None = None) -> str:
    value = request.args.get(name, default)
    if value is None or value == "":
        raise ConfigError(
            f"missing query parameter {name!r}; pass it as ?{name}=... (see /api/runs for names)."
        )
    return value


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"query parameter {name}={raw!r} is not an integer step; pass e.g. {name}=120."
        ) from None


def _int_range(name: str, lo: int, hi: int) -> int | None:
    v = _int_arg(name)
    if v is not None and not lo <= v <= hi:
        raise ConfigError(f"query parameter {name}={v} is out of range; pass {lo}..{hi}.")
    return v


def _int_list(name: str) -> list[int] | None:
    raw = request.args.get(name)
    if raw is None or raw.strip() in ("", "auto"):
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"query parameter {name}={raw!r} is not a list of layers; pass e.g. {name}=1,4,7."
        ) from None


def _host_allowed(host_header: str, allowed: Collection[str]) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in allowed


def create_app(
    store_path: str | os.PathLike[str],
    *,
    poll_ms: int = DEFAULT_POLL_MS,
    allowed_hosts: Collection[str] | None = LOOPBACK_HOSTS,
) -> Flask:
    """The dashboard for the store at ``store_path`` (which need not exist yet).

    ``poll_ms`` is how often the page asks for new steps. ``allowed_hosts`` are the names the
    server answers to (the ``Host`` header without its port); ``None`` answers to any name, for a
    server bound to a public address on purpose.

    >>> app = create_app("runs.db")
    >>> app.test_client().get("/api/runs").get_json()["status"]
    'missing'
    """
    if not isinstance(poll_ms, int) or poll_ms < 100:
        raise ConfigError(
            f"poll_ms={poll_ms!r} is too short; poll at most every 100 ms (default {DEFAULT_POLL_MS})."
        )
    path = Path(store_path).expanduser()
    here = Path(__file__).parent
    app = Flask(
        "layerscope.serve",
        static_folder=str(here / "static"),
        static_url_path="/static",
        template_folder=str(here / "templates"),
    )
    app.config["LAYERSCOPE_STORE"] = path
    allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
    plotly_path, plotly_version = _plotly_js()

    def asset_version(name: str) -> str:
        f = here / "static" / name
        stamp = f"{__version__}:{f.stat().st_mtime_ns if f.exists() else 0}"
        return hashlib.sha1(stamp.encode()).hexdigest()[:10]

    @app.before_request
    def check_host() -> Response | None:
        if allowed is not None and not _host_allowed(request.host, allowed):
            return _error(
                400,
                f"host {request.host!r} is not served here; open http://127.0.0.1:<port>/ "
                "(or start layerscope serve with --host to serve other names).",
            )
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.path.startswith("/api/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(LayerscopeError)
    def layerscope_error(e: LayerscopeError) -> Response:
        status = next((code for cls, code in _STATUS if isinstance(e, cls)), 500)
        return _error(status, str(e))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        code = e.code or 500
        if request.path.startswith("/api/"):
            return _error(
                code,
                f"{e.name}: {request.method} {request.path} is not an endpoint here; see /api/runs."
                if code in (404, 405)
                else (e.description or e.name),
            )
        resp = Response(f"{code} {e.name}. The dashboard is at /.\n", status=code, mimetype="text/plain")
        return resp

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.exception("unexpected error serving %s", request.path)
        return _error(
            500,
            f"unexpected {type(e).__name__}: {e}. This is a bug in layerscope; the server "
            "log has the traceback.",
        )

    def store_reader(fn: Callable[[Any], Any]) -> Any:
        if reader.store_status(path) == "missing":
            raise NotFoundError(
                f"store {str(path)!r} does not exist yet; it appears once a run records into it."
            )
        with reader.open_readonly(path) as st:
            return fn(st)

    # -- the page -------------------------------------------------------------------------------
    @app.get("/")
    def index() -> str:
        return render_template(
            "index.html",
            poll_ms=poll_ms,
            store=str(path),
            store_name=path.name,
            version=__version__,
            plotly_version=plotly_version,
            app_js_v=asset_version("app.js"),
            alerts_js_v=asset_version("alerts.js"),
            views_js_v=hashlib.sha1(f"{__version__}:{VIEWS_JS.stat().st_mtime_ns}".encode()).hexdigest()[:10],
            app_css_v=asset_version("app.css"),
        )

    @app.get("/assets/views.js")
    def views_js() -> Response:  # shared with the offline HTML pages (render/assets/views.js)
        resp = send_file(VIEWS_JS, mimetype="text/javascript", max_age=0, conditional=True)
        resp.cache_control.no_cache = True
        return resp

    @app.get("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        if plotly_path is not None:
            resp = send_file(
                plotly_path, mimetype="text/javascript", max_age=365 * 24 * 3600, conditional=True
            )
        else:  # a plotly build without package_data: ask it for the bundle
            from plotly.offline import get_plotlyjs

            resp = Response(get_plotlyjs(), mimetype="text/javascript")
            resp.cache_control.max_age = 365 * 24 * 3600
        resp.cache_control.public = True
        resp.cache_control.immutable = True  # the URL carries ?v=<plotly version>
        return resp

    # -- the API --------------------------------------------------------------------------------
    @app.get("/api/runs")
    def api_runs() -> Response:
        status = reader.store_status(path)
        runs: list[dict[str, Any]] = []
        if status == "ok":
            with reader.open_readonly(path) as st:
                runs = [s.to_dict() for s in reader.run_summaries(st)]
        return _json(
            {"store": str(path), "status": status, "poll_ms": poll_ms, "version": __version__, "runs": runs}
        )

    @app.get("/api/run")
    def api_run() -> Response:
        run = _arg("run")

        def read(st: Any) -> dict[str, Any]:
            summary = reader.run_summary(st, run)
            pairs = st.metrics(run)
            return {
                **summary.to_dict(),
                "pairs": [list(p) for p in pairs],
                "metrics": sorted({m for m, _ in pairs}),
                "sites": sorted({s for _, s in pairs}),
                "layer_info": [
                    {"layer": li.layer, "name": li.name, "stack": li.stack, "depth": li.depth}
                    for li in st.layers(run)
                ],
                "config": st.run_config(run),
                "hist_sites": reader.hist_sites(st.run_config(run)),
            }

        return _json(store_reader(read))

    @app.get("/api/heatmap")
    def api_heatmap() -> Response:
        run, metric, site = _arg("run"), _arg("metric", "rms"), _arg("site", "output")
        since = _int_arg("since_step")
        max_rows = _int_range("max_rows", 1, 100_000)
        hm = store_reader(lambda st: reader.read_matrix(st, run, metric, site, since))
        if max_rows is None:  # the whole matrix as JSON numbers (what curl users and old pages read)
            return _json(reader.heatmap_json(hm, since))
        return _json(reader.overview_json(hm, max_rows, _int_arg("step_min"), _int_arg("step_max"), since))

    @app.get("/api/events")
    def api_events() -> Response:
        run, since = _arg("run"), _int_arg("since_step")
        return _json(store_reader(lambda st: reader.events_json(st, run, since)))

    @app.get("/api/hist")
    def api_hist() -> Response:
        run, site = _arg("run"), _arg("site", "output")
        layers = _int_list("layers")
        max_rows = _int_range("max_rows", 1, 100_000) or 400
        h = store_reader(lambda st: load_histograms(st, run, site))
        return _json(reader.hist_json(h, layers, max_rows))

    @app.get("/api/report")
    def api_report() -> Response:
        run, metric, site = _arg("run"), _arg("metric", "rms"), _arg("site", "output")
        hm = store_reader(lambda st: reader.read_matrix(st, run, metric, site))
        # The stored run's report: its watch alerts and, at site attn, the per-head section.
        rep = store_reader(lambda st: report_run(st, run, metric, site))
        return _json(
            {
                "run": run,
                "metric": metric,
                "site": site,
                "last_step": hm.steps[-1] if hm.steps else None,
                "n_steps": len(hm.steps),
                "markdown": rep.to_markdown(),
                "html": rep.to_html(),
                "report": rep.to_dict(),
            }
        )

    @app.get("/api/compare")
    def api_compare() -> Response:
        run_a, run_b = _arg("run_a"), _arg("run_b")
        metric, site = _arg("metric", "rms"), _arg("site", "output")
        mode = request.args.get("mode", "absolute")
        if mode not in ("absolute", "relative"):
            raise ConfigError(
                f"mode={mode!r} is not a comparison; pass mode=absolute (B - A) or mode=relative "
                "(100 x (B - A) / |A|, in %)."
            )

        def read(st: Any) -> tuple[Any, Any]:
            return reader.read_matrix(st, run_a, metric, site), reader.read_matrix(st, run_b, metric, site)

        a, b = store_reader(read)
        return _json(reader.compare_json(a, b, relative=mode == "relative"))

    return app
