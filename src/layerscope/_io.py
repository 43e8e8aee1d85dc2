"""Writing output files so that a failure never leaves half a result behind."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import StoreError


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def is_stream(path: str | os.PathLike[str]) -> bool:
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


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(filename)`` so that ``path`` never holds half a result.

    A regular file is written as a temporary file next to it and renamed into place, with the mode
    any other program would give it (an existing file's own mode, else 0666 minus the umask; mkstemp
    alone would leave 0600); through a symbolic link, the file it points to is replaced and the link
    stays. A pipe or device (``-o /dev/stdout``, a FIFO) is written into, after what it holds.
    Failures become one StoreError line.
    """
    out = Path(path)

    def fail(e: OSError) -> StoreError:
        return StoreError(f"cannot write {str(out)!r}: {e.strerror or e}; choose another output path.")

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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`write_atomic`."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return write_atomic(path, write)
