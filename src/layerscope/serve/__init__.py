"""``layerscope serve``: a local dashboard that draws the layer x step map while a run records.

::

    from layerscope.serve import Dashboard, create_app
    app = create_app("runs.db")                  # a Flask app (WSGI); read-only on the store
    Dashboard("runs.db", port=0).start().url     # or serve it from a background thread

The page polls the JSON API for steps recorded since the last one it has and draws them with the
plotly.js of the installed plotly package: nothing is fetched from the internet.
"""

try:
    import flask  # noqa: F401 - only to say what to install when it is missing
except ImportError as e:  # pragma: no cover - exercised in a subprocess by tests/integration
    raise ImportError(
        "layerscope.serve needs flask, which is not installed; install it with: pip install 'layerscope[serve]'"
    ) from e

from .app import DEFAULT_POLL_MS, create_app
from .server import Dashboard, serve

__all__ = ["DEFAULT_POLL_MS", "Dashboard", "create_app", "serve"]
