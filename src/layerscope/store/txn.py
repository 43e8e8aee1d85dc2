"""Transactions and SQLite errors: the one place that says BEGIN, COMMIT and ROLLBACK.

``transaction(conn, path, doing)`` is a write transaction (``BEGIN IMMEDIATE``: the write lock is
taken at once, so two writers queue on SQLite's busy timeout instead of failing half-way);
``snapshot(conn, path, doing)`` a read transaction (every query inside sees one committed state, so
a concurrent writer's step is all in or all out). Both roll back on any exception, and turn an
SQLite error into one ``StoreError`` line that says what was being done and what to do.
"""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError


def check_hint(path: Path) -> str:
    """What to run to see what is damaged: ``layerscope runs PATH --check``."""
    return f"the store may be damaged: `layerscope runs {shlex.quote(str(path))} --check`"


def damaged(path: Path, run: str | None, what: str) -> StoreError:
    """The error for damaged store contents: names the run and what is damaged.

    >>> str(damaged(Path("runs.db"), "r", "config is not valid JSON"))
    "run 'r': config is not valid JSON; the store may be damaged: `layerscope runs runs.db --check`."
    """
    who = f"run {run!r}: " if run is not None else f"store {str(path)!r}: "
    return StoreError(f"{who}{what}; {check_hint(path)}.")


def translate(e: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """One line for an SQLite error: what was being done, SQLite's words, and what to do."""
    msg = str(e)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        hint = "another process holds a write lock for too long; retry, or record into another store file"
    elif "readonly" in low or "read-only" in low:
        hint = "the file or its folder is read-only; make it writable or use another store file"
    elif "full" in low:
        hint = "the disk is full; free space and resume: everything committed before is kept"
    elif "i/o" in low:
        hint = (
            "the disk could not be written (full, over a quota or failing); free space and resume: "
            "everything committed before is kept"
        )
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        hint = "the file is not a layerscope store or is damaged; point at another file"
    elif "unable to open" in low:
        hint = "check that the folder exists and is writable"
    elif "no such table" in low or "no such column" in low:
        hint = f"the store's tables are not what layerscope wrote; {check_hint(path)}"
    else:
        hint = f"{check_hint(path)}, or point at another file"
    msg = " ".join(msg.split())  # one line, whatever SQLite said
    return StoreError(f"store {str(path)!r}: {doing} failed ({msg}); {hint}.")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, path: Path, doing: str) -> Iterator[sqlite3.Connection]:
    """A write transaction: committed when the block ends, rolled back if it raises.

    An SQLite error (in the block or at COMMIT) becomes a one-line ``StoreError``; any other
    exception (a ``ConfigError`` raised by the block, ``KeyboardInterrupt``) passes unchanged.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as e:
        raise translate(e, path, doing) from e
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as e:
        _rollback(conn)
        if isinstance(e, sqlite3.Error):
            raise translate(e, path, doing) from e
        raise


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection, path: Path, doing: str) -> Iterator[sqlite3.Connection]:
    """A read transaction: every query in the block sees the same committed state."""
    try:
        conn.execute("BEGIN")
    except sqlite3.Error as e:
        raise translate(e, path, doing) from e
    try:
        yield conn
    except BaseException as e:
        _rollback(conn)
        if isinstance(e, sqlite3.Error):
            raise translate(e, path, doing) from e
        raise
    else:
        _rollback(conn)  # a read transaction has nothing to commit: ending it is all


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already (e.g. after SQLITE_FULL); the first error is the one to tell
