"""Run the dashboard: werkzeug's threaded WSGI server on a socket bound here, so that a port in use
or a bad host is one clear line instead of werkzeug's exit.
"""

from __future__ import annotations

import errno
import importlib
import ipaddress
import os
import signal
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import (
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

from .._io import refuse_special_file
from ..errors import ConfigError, escape_controls
from . import reader
from .app import DEFAULT_POLL_MS, LOOPBACK_HOSTS, create_app


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _QuietHandler(WSGIRequestHandler):
    """Logs failed requests only: the page polls every second or two, which would flood the terminal."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith("5"):
            super().log_request(code, size)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port), or a one-line ConfigError."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; pass 1-65535 (or 0 for any free port).")
    family = select_address_family(host, port)
    try:
        addr = get_sockaddr(host, port, family)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on host {host!r} ({e.strerror or e}); pass an address of this "
            "machine such as 127.0.0.1."
        ) from None
    try:
        # Lets a restarted server take its port back from connections in TIME_WAIT; on Linux and
        # macOS it does not let two servers listen on one port (that is still EADDRINUSE).
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another layerscope serve?); pass "
                f"another --port, e.g. --port {port + 1 if port < 65535 else 8050}, or --port 0 "
                "for any free port."
            ) from None
        if e.errno == errno.EACCES:
            raise ConfigError(
                f"not allowed to listen on port {port}; ports below 1024 need root, pass --port 8050."
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pass an address of this "
            "machine such as 127.0.0.1."
        ) from None
    return sock


def url_for(host: str, port: int) -> str:
    """The address to open in a browser for a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def check_store(store_path: Path) -> str:
    """Fail early on a path that can never be a store; a store that does not exist yet is fine."""
    refuse_special_file(store_path, "store")  # a FIFO looks like an empty file that never fills in
    status = reader.store_status(store_path)  # NotFoundError for a folder
    if status == "ok":
        with reader.open_readonly(store_path):  # not SQLite, not layerscope's, newer schema: one line now
            pass
    elif status == "missing" and not store_path.parent.exists():
        raise ConfigError(
            f"folder {str(store_path.parent)!r} for store {str(store_path)!r} does not exist; "
            "check the path (the store itself may appear later)."
        )
    return status


class Dashboard:
    """A dashboard server bound to a port, serving in the calling thread (``serve_forever``) or in a
    background thread (``start``; for notebooks and tests). ``url`` is where it answers.

    >>> d = Dashboard("runs.db", port=0).start()   # doctest: +SKIP
    >>> d.url                                       # doctest: +SKIP
    'http://127.0.0.1:54321/'
    >>> d.stop()                                    # doctest: +SKIP
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8050,
        poll_ms: int = DEFAULT_POLL_MS,
    ) -> None:
        self.store_path = Path(store_path).expanduser()
        self.status = check_store(self.store_path)
        allowed = (*LOOPBACK_HOSTS, host.lower()) if is_loopback(host) else None
        self.app = create_app(self.store_path, poll_ms=poll_ms, allowed_hosts=allowed)
        self.host = host
        sock = bind(host, port)
        try:
            self.server: BaseWSGIServer = make_server(
                host, port, self.app, threaded=True, request_handler=_QuietHandler, fd=sock.fileno()
            )
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        self.port = int(self.server.port)
        self.url = url_for(host, self.port)
        self._thread: threading.Thread | None = None
        self._closed = False
        # Import the analysis now, off the request path: the page's first report is then as fast
        # as the next ones (the page spaces its report reads by how long one takes). In this thread,
        # not a background one: a daemon thread still importing when Ctrl-C ends the process can
        # hold the import machinery while the interpreter shuts down.
        importlib.import_module("layerscope.analysis")

    def serve_forever(self) -> None:
        """Serve until Ctrl-C (KeyboardInterrupt) or :meth:`stop`; then close the socket."""
        try:
            self.server.serve_forever(poll_interval=0.25)  # wakes 4x a second: a signal is seen soon
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def start(self) -> Dashboard:
        self._thread = threading.Thread(target=self.serve_forever, name="layerscope-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Close the listening socket (once; safe to call again)."""
        if not self._closed:
            self._closed = True
            self.server.server_close()

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM stop the server, whatever this process inherited: a process
    started in the background by a script inherits SIGINT *ignored*, and Python then leaves it
    ignored, so ``kill -INT`` (and Ctrl-C after ``fg``) would never stop it. Restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the caller stops us
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def serve(
    store_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8050,
    poll_ms: int = DEFAULT_POLL_MS,
    open_browser: bool = False,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard for ``store_path`` until Ctrl-C. Prints the URL first."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    if not is_loopback(host):
        warn(
            f"warning: --host {host} serves the dashboard, without a password, to every machine that "
            "can reach this one; use the default 127.0.0.1 unless that is what you want."
        )
    dash: Dashboard | None = None
    # Ctrl-C at any moment from here on (while binding, before serving starts, while serving, while
    # closing) is a clean stop: one handler, one socket close, one "stopped" line.
    with _stop_on_signals():
        try:
            dash = Dashboard(store_path, host=host, port=port, poll_ms=poll_ms)
            note = {
                "missing": " (the store does not exist yet; the page waits for it)",
                "empty": " (no runs yet; the page waits for them)",
            }.get(dash.status, "")
            say(escape_controls(f"layerscope serve: {dash.url}  store {dash.store_path!s}{note}"))
            say("Press Ctrl-C to stop.")
            if open_browser:
                opener = threading.Timer(0.3, webbrowser.open, args=(dash.url,))
                opener.daemon = True  # never holds up the exit
                opener.start()
            dash.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if dash is not None:
                dash.close()
    say("layerscope serve: stopped.")


__all__ = ["Dashboard", "bind", "is_loopback", "serve", "url_for"]
