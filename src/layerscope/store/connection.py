"""Opening a store file: refuse what is not ours, create a new store, upgrade an old one, and read
what a previous writer left behind (a hot rollback journal, a WAL store in a read-only folder).

A file is inspected before anything is changed, and the connection is closed on every refusal,
so a foreign or newer file is never switched to WAL or given ``-wal``/``-shm`` files.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError
from . import migrate, schema
from .txn import transaction, translate

BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 8192


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts like an SQLite file (an empty file counts: SQLite makes it one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except IsADirectoryError:
        return False
    except OSError as e:
        # Not "not a store": the user must hear that the file cannot be read, and why.
        raise StoreError(
            f"store {str(path)!r} cannot be read ({e.strerror or e}); check its permissions or point at "
            "another file."
        ) from None
    return head == b"SQLite format 3\x00" or head == b""


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """An open connection to the store at ``path``, at the current schema.

    A writable open creates the schema of an empty file and upgrades an older store. A read-only
    open of an older store upgrades it when the file and its folder may be written (else a
    ``StoreError`` says how to), and rolls back a hot journal left by an interrupted writer when it
    may (else it says that the next writer will).
    """
    conn: sqlite3.Connection | None = None
    try:
        try:
            conn = _open(path, readonly)
            ver = schema.version(conn, path, readonly)  # inspect before changing anything
        except sqlite3.OperationalError as e:
            if conn is not None:
                conn.close()
                conn = None
            if readonly and _hot_journal(path) and _is_readonly_error(e):
                _roll_back_hot_journal(path)
                conn = _open(path, readonly)
            elif _can_open_immutable(path, readonly):
                # A WAL store in a folder we cannot write: SQLite cannot create the -shm file a
                # reader needs. With no -wal (or -journal) file there is nothing outside the main
                # file, and nobody can be writing it from here, so read it as an immutable file.
                conn = _open(path, readonly, immutable=True)
            else:
                raise
            ver = schema.version(conn, path, readonly)
        if not readonly:
            if ver is None:
                # 8 KiB pages: a page holds more rows of 1-3 KiB (128 layers, 12 layers x 12 heads)
                # with less slack at its end. Only a new, empty file takes it (before WAL).
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a network file system without shared memory
                conn.execute("PRAGMA journal_mode=DELETE")
            # WAL + NORMAL: a killed process loses nothing committed; power loss may lose the
            # last transactions but never corrupts the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            if ver is None:
                with transaction(conn, path, "creating the store"):
                    # Checked again under the write lock: another process may have created it meanwhile.
                    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                        schema.create(conn)
            elif ver < schema.SCHEMA_VERSION:
                migrate.upgrade(conn, path)
            conn.execute("PRAGMA foreign_keys=ON")
        elif ver is not None and ver < schema.SCHEMA_VERSION:
            conn.close()
            conn = None
            _upgrade_for_reader(path, ver)
            conn = _open(path, readonly)
            schema.version(conn, path, readonly)
    except sqlite3.Error as e:
        if conn is not None:
            conn.close()
        raise translate(e, path, "opening") from e
    except BaseException:
        if conn is not None:
            conn.close()  # never leave a handle (and its -wal/-shm files) on a refused file
        raise
    return conn


def _open(path: Path, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    if readonly:
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        uri = f"file:{quote(path.resolve().as_posix())}?{flags}"
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _may_write(path: Path) -> bool:
    """Whether this process may write the file and create/delete files beside it."""
    parent = path.resolve().parent
    return os.access(path, os.W_OK) and os.access(parent, os.W_OK | os.X_OK)


def _can_open_immutable(path: Path, readonly: bool) -> bool:
    if not readonly or Path(f"{path}-wal").exists() or _hot_journal(path):
        return False  # never skip a -wal or a journal: the file alone may be half a transaction
    return not os.access(path.resolve().parent, os.W_OK)


def _hot_journal(path: Path) -> bool:
    """Whether a rollback journal with contents lies beside the store (a writer in rollback
    mode died mid-transaction, e.g. killed while the store was being created)."""
    try:
        return Path(f"{path}-journal").stat().st_size > 0
    except OSError:
        return False


def _is_readonly_error(e: sqlite3.Error) -> bool:
    name = getattr(e, "sqlite_errorname", "")  # Python >= 3.11
    return name.startswith("SQLITE_READONLY") or "readonly" in str(e).lower()


def _roll_back_hot_journal(path: Path) -> None:
    journal = f"{path}-journal"
    if not _may_write(path):
        raise StoreError(
            f"store {str(path)!r}: a previous writer was interrupted and left its rollback journal "
            f"{journal!r}; the store is not read-only, but this process may not write it or its folder to "
            "finish the rollback. The next process that opens it for writing (a Recorder, a sweep) repairs "
            "it and loses nothing committed; or make the folder writable and read it again."
        )
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite rolls the journal back here
    finally:
        conn.close()


def _upgrade_for_reader(path: Path, ver: int) -> None:
    if not _may_write(path):
        raise StoreError(
            f"store {str(path)!r} has schema version {ver}, which this layerscope upgrades in place, once, "
            f"to schema {schema.SCHEMA_VERSION}, but the file or its folder is read-only here; make them "
            "writable (or copy the store to a writable folder) and read it again."
        )
    conn = _open(path, readonly=False)
    try:
        if schema.version(conn, path, readonly=False) == ver:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode=DELETE")
            migrate.upgrade(conn, path)
    finally:
        conn.close()
