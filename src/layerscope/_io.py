"""Reading and writing files safely: a result never replaces one of its own inputs, a failure never
leaves half a result behind, and nothing blocks on a pipe or a device it was given by mistake.

- :func:`check_outputs_are_not_inputs`: the guard every writing command runs before it writes;
- :func:`refuse_special_file` / :func:`special_kind`: only regular files (and folders) are read;
- :func:`write_atomic`: the one writer of result files.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import ConfigError, StoreError, quote

PathLike = str | os.PathLike[str]

# Files SQLite keeps next to a store: writing one of them damages the store as surely as the store.
_SIDE_FILES = (
    ("-wal", "the write-ahead log (-wal) of"),
    ("-shm", "the shared-memory file (-shm) of"),
    (
        "-journal",
        "the rollback journal of",
    ),
)
_SQLITE_HEADER = b"SQLite format 3\x00"


# -- reading: regular files only ---------------------------------------------------------------------
def special_kind(path: PathLike) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (a link is followed):
    ``"a named pipe (FIFO)"``, ``"a socket"``, ``"a character device"``, ``"a block device"``;
    ``None`` for a regular file, a folder, or a path that does not exist. Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def refuse_special_file(path: PathLike, what: str = "file") -> None:
    """Raise a one-line ConfigError when ``path`` is a pipe, socket or device: reading one could
    block forever (a FIFO nobody writes) or never end (``/dev/zero``). Missing paths and folders
    are left to the caller, which knows what to say about them.

    >>> refuse_special_file("/dev/null", "probe")
    Traceback (most recent call last):
    ...
    layerscope.errors.ConfigError: probe '/dev/null' is a character device, not a regular file; layerscope reads only regular files (a pipe or device could block or never end): save the data to a file and pass that.
    """
    kind = special_kind(path)
    if kind is not None:
        raise ConfigError(
            f"{what} {quote(os.fspath(path))} is {kind}, not a regular file; layerscope reads only "
            "regular files (a pipe or device could block or never end): save the data to a file and "
            "pass that."
        )


# -- an output that is an input --------------------------------------------------------------------
def _real(path: PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _ident(path: PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _family(label: str, path: PathLike) -> list[tuple[str, str, str]]:
    """An input and the files SQLite may keep beside it: (path, relation, the input as named)."""
    base = os.fspath(path)
    name = f"{label} {quote(base)}"
    return [(base, "the same file as", name)] + [(base + suf, how, name) for suf, how in _SIDE_FILES]


def check_outputs_are_not_inputs(
    outputs: Iterable[tuple[str, PathLike | None]], inputs: Iterable[tuple[str, PathLike | None]]
) -> None:
    """Refuse, before anything is written, an output that would overwrite an input.

    ``outputs`` and ``inputs`` are ``(label, path)`` pairs, the label as the user wrote it
    (``"-o"``, ``"--json"``, ``"STORE"``); ``None`` is skipped and ``"-"`` is stdout. An output
    is refused (ConfigError, exit 2) when it is an input after symbolic links are resolved, one of
    an input store's ``-wal``/``-shm``/``-journal`` files, a hard link to an input (same device
    and inode), or the same file as another output; ``-`` is refused when stdout is redirected into
    an input.

    >>> check_outputs_are_not_inputs([("-o", "runs.db")], [("STORE", "./runs.db")])
    Traceback (most recent call last):
    ...
    layerscope.errors.ConfigError: -o 'runs.db' is the same file as STORE './runs.db'; writing it would destroy an input: choose another output path.
    """
    members = [
        m for label, p in inputs if p is not None and os.fspath(p) not in ("", "-") for m in _family(label, p)
    ]
    by_real: dict[str, tuple[str, str]] = {}
    by_ident: dict[tuple[int, int], tuple[str, str]] = {}
    for p, how, name in members:
        by_real.setdefault(_real(p), (how, name))
        ident = _ident(p)
        if ident is not None:
            by_ident.setdefault(ident, (how, name))
    seen: dict[str, str] = {}
    for label, out in outputs:
        if out is None:
            continue
        o = os.fspath(out)
        if o == "-":
            ident = _stdout_ident()
            if ident is not None and ident in by_ident:
                raise ConfigError(
                    f"{label} - writes to stdout, which is redirected into {by_ident[ident][1]}; that "
                    "would destroy an input: redirect stdout elsewhere or pass a file name."
                )
            continue
        real = _real(o)
        found = by_real.get(real)
        if found is None:
            ident = _ident(o)
            if ident is not None and ident in by_ident:
                how, name = by_ident[ident]
                found = ("a hard link to" if how == "the same file as" else f"a hard link to {how}", name)
        if found is not None:
            raise ConfigError(
                f"{label} {quote(o)} is {found[0]} {found[1]}; writing it would destroy an input: "
                "choose another output path."
            )
        if real in seen:
            raise ConfigError(
                f"{label} {quote(o)} is the same file as {seen[real]}; give each output its own file."
            )
        seen[real] = f"{label} {quote(o)}"


def _stdout_ident() -> tuple[int, int] | None:
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return None  # no real stdout (captured by a test, closed)
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def is_stream(path: PathLike) -> bool:
    """Whether ``path`` names something to write into rather than a file to replace: a pipe, a
    device, or anything under /dev or /proc (``-o /dev/stdout`` while stdout is redirected to a file
    resolves to a regular file, and renaming over it would replace the /dev node itself)."""
    p = Path(path)
    try:
        if str(p.absolute()).startswith(("/dev/", "/proc/")):
            return p.exists()
        return p.exists() and not stat.S_ISREG(p.stat().st_mode) and not p.is_dir()
    except OSError:
        return False


def _is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_HEADER
    except OSError:
        return False


def write_atomic(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(filename)`` so that ``path`` never holds half a result.

    A regular file is written as a temporary file next to it and renamed into place, with the mode
    any other program would give it (an existing file's own mode, else 0666 minus the umask; mkstemp
    alone would leave 0600); through a symbolic link, the file it points to is replaced and the link
    stays. A pipe or device (``-o /dev/stdout``, a FIFO) is written into, after what it holds.
    Failures become one StoreError line. An existing SQLite database (a run store) is never
    replaced by a result: that is a ConfigError, whoever asks (the CLI checks its own inputs first,
    with :func:`check_outputs_are_not_inputs`; this also covers ``report(...).save("runs.db")``).
    """
    out = Path(path)

    def fail(e: OSError) -> StoreError:
        return StoreError(f"cannot write {quote(out)}: {e.strerror or e}; choose another output path.")

    if is_stream(out):
        # Writers may seek (PNG does): render to a private temporary file, then stream it in.
        try:
            with tempfile.TemporaryDirectory(prefix="layerscope-") as d:
                tmp = os.path.join(d, out.name)
                write(tmp)
                with open(tmp, "rb") as src, open(out, "ab") as dst:
                    shutil.copyfileobj(src, dst)
        except OSError as e:
            raise fail(e) from e
        return out
    target = out.resolve() if out.is_symlink() else out
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise fail(e) from e
    if st is not None and stat.S_ISREG(st.st_mode) and _is_sqlite_file(target):
        raise ConfigError(
            f"refusing to replace {quote(out)}: it is an SQLite database (a run store?), not an earlier "
            "result; choose another output path."
        )
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else "."
        )
    except OSError as e:
        raise fail(e) from e
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        raise fail(e) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`write_atomic`."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return write_atomic(path, write)
