"""The C statistics pass as a user installing a wheel meets it: it is compiled on first use, so
every way that can go wrong (no compiler, a compiler that fails or lacks the tuned flags, a cache
folder that cannot be written, a damaged or foreign library in the cache, two ranks building at
once) must end in a working pass or the torch path, with at most one warning that says why.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from layerscope.stats import kernels, native
from layerscope.stats.kernels import StatsPass, eager_raw

GROUPS = frozenset({"moments", "abs"})
REAL_CC = native._find_compiler()


@pytest.fixture
def fresh(monkeypatch, tmp_path: Path) -> Path:
    """A process that never built or loaded the pass, with its own cache and temp folders."""
    monkeypatch.setattr(native, "_libs", {})
    monkeypatch.setattr(native, "_compiler", [])
    monkeypatch.setattr(native, "_errors", [])
    monkeypatch.setattr(kernels, "_warned", [])
    for var in ("CC", "RANK", native.DISABLE_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _fake_cc(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _record_pass() -> tuple[StatsPass, list[warnings.WarningMessage]]:
    """A recorder's pass on CPU, used twice; what it computed must equal the eager reference."""
    x = torch.randn(8, 33)
    p = StatsPass(GROUPS, 1e-6, "auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            raw, _ = p(x, None)
            ref, _ = eager_raw(x, None, p.groups, 1e-6, False)
            torch.testing.assert_close(raw, ref, rtol=1e-5, atol=1e-4)  # float32 partial sums
        StatsPass(GROUPS | {"minmax"}, 1e-6, "auto")(x, None)  # another pass: still one warning
    return p, [w for w in caught if "layerscope" in str(w.message)]


def test_it_builds_into_the_cache_and_loads_from_it_later(fresh: Path) -> None:
    assert native.kernels(GROUPS) is not None
    libs = list((fresh / "cache").glob("stats-*.so"))
    assert len(libs) == 1
    native._libs.clear()  # a later process
    mtime = libs[0].stat().st_mtime_ns
    assert native.kernels(GROUPS) is not None
    assert libs[0].stat().st_mtime_ns == mtime  # loaded, not built again


def test_no_compiler_falls_back_with_one_warning(fresh: Path, monkeypatch) -> None:
    empty = fresh / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    p, caught = _record_pass()
    assert p.used == {"eager"}
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "no C compiler found" in msg and "gcc" in msg and native.DISABLE_ENV in msg
    assert "\n" not in msg


def test_a_failing_compiler_falls_back_with_one_line(fresh: Path, monkeypatch) -> None:
    cc = _fake_cc(
        fresh / "badcc", 'echo "In file included from x.c:" >&2\necho "x.c:1: error: boom" >&2\nexit 1\n'
    )
    monkeypatch.setenv("CC", cc)
    p, caught = _record_pass()
    assert p.used == {"eager"}
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "x.c:1: error: boom" in msg and "\n" not in msg


def test_a_compiler_without_the_tuned_flags_gets_portable_ones(fresh: Path, monkeypatch) -> None:
    assert REAL_CC is not None, native.build_error()
    cc = _fake_cc(
        fresh / "oldcc",
        f"""\
        for a in "$@"; do [ "$a" = "-march=native" ] && {{ echo "error: unknown flag $a" >&2; exit 1; }}; done
        exec {" ".join(REAL_CC)} "$@"
        """,
    )
    monkeypatch.setenv("CC", cc)
    p, caught = _record_pass()
    assert p.used == {"native"} and caught == []
    native._libs.clear()  # a later process loads the portable build without trying the tuned one again

    def no_compile(*a: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(native, "_compile", no_compile)
    assert native.kernels(GROUPS) is not None


def test_cc_with_arguments(fresh: Path, monkeypatch) -> None:
    assert REAL_CC is not None
    log = fresh / "cc.log"
    cc = _fake_cc(fresh / "wrap", f'echo "$1" >> {log}\nshift\nexec {" ".join(REAL_CC)} "$@"\n')
    monkeypatch.setenv("CC", f"{cc} --wrapped")  # as CC="ccache gcc"
    assert native.kernels(GROUPS) is not None
    assert log.read_text().split() == ["--wrapped"]


def test_a_cache_folder_that_cannot_be_written(fresh: Path, monkeypatch) -> None:
    blocker = fresh / "file"
    blocker.write_text("")
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(blocker / "cache"))  # under a file: never writable
    p, caught = _record_pass()
    assert p.used == {"native"} and caught == []
    private = fresh / "tmp" / f"layerscope-{os.getuid()}"
    assert len(list(private.glob("stats-*.so"))) == 2  # this user's folder in the temp dir
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_a_temp_folder_others_may_write_is_not_trusted(fresh: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(fresh / "built"))
    assert native.kernels(GROUPS) is not None
    planted = fresh / "tmp" / f"layerscope-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    for lib in (fresh / "built").glob("stats-*.so"):
        (planted / lib.name).write_bytes(lib.read_bytes())  # a library someone else put there
    loaded: list[Path] = []
    real_load = native._load
    monkeypatch.setattr(native, "_load", lambda p: loaded.append(p) or real_load(p))
    native._libs.clear()
    blocker = fresh / "file"
    blocker.write_text("")
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(blocker / "cache"))
    assert native.kernels(GROUPS) is not None
    assert loaded and all(planted not in p.parents for p in loaded)


_LOAD = textwrap.dedent(
    """
    import warnings, torch
    warnings.simplefilter("error")
    from layerscope.stats.kernels import StatsPass
    p = StatsPass(frozenset({"moments", "abs"}), 1e-6, "auto")
    p(torch.randn(16, 64), None)
    assert p.used == {"native"}, p.used
    print("ok")
    """
)


def _start(cache: Path, **env: str) -> subprocess.Popen[str]:
    """A fresh process recording with the C pass (a library once loaded stays mapped in its
    process, so a cache changed under it is only seen by the next one, as by the next job)."""
    full = {**os.environ, "LAYERSCOPE_CACHE": str(cache), **env}
    full.pop(native.DISABLE_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-c", _LOAD], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ok(proc: subprocess.Popen[str]) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.strip() == "ok", err
    assert "layerscope" not in err  # no warning


@pytest.mark.parametrize("what", ["garbage", "foreign library"])
def test_a_damaged_or_foreign_cached_library_is_built_again(tmp_path: Path, what: str) -> None:
    assert REAL_CC is not None, native.build_error()
    cache = tmp_path / "cache"
    _ok(_start(cache))
    (lib,) = cache.glob("stats-*.so")
    if what == "garbage":
        lib.write_bytes(b"\x7fELF truncated")
    else:  # a real library without the pass's symbols (another program's file at that name)
        src = tmp_path / "other.c"
        src.write_text("int other(void) { return 1; }\n")
        subprocess.run([*REAL_CC, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    _ok(_start(cache))
    _ok(_start(cache))  # and the rebuilt one loads
    assert list(cache.glob("stats-*.so")) == [lib]


def test_a_library_of_another_source_version_is_never_loaded(fresh: Path, monkeypatch) -> None:
    assert native.kernels(GROUPS) is not None
    (old,) = (fresh / "cache").glob("stats-*.so")
    native._libs.clear()
    monkeypatch.setattr(native, "_SOURCE", native._SOURCE + "\n/* the next version */\n")
    assert native.kernels(GROUPS) is not None
    libs = set((fresh / "cache").glob("stats-*.so"))
    assert old in libs and len(libs) == 2  # its own library, named by the source's hash


def test_turned_off_by_the_environment(fresh: Path, monkeypatch) -> None:
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    p, caught = _record_pass()
    assert p.used == {"eager"} and caught == []
    assert not (fresh / "cache").exists()  # nothing was built
    assert native.DISABLE_ENV in (native.build_error() or "")


def test_other_ranks_do_not_repeat_the_warning(fresh: Path, monkeypatch) -> None:
    monkeypatch.setenv("CC", _fake_cc(fresh / "badcc", "exit 1\n"))
    monkeypatch.setenv("PATH", str(fresh / "nothing"))
    monkeypatch.setenv("RANK", "3")
    p, caught = _record_pass()
    assert p.used == {"eager"} and caught == []


def test_two_processes_building_at_once(tmp_path: Path) -> None:
    """The ranks of a torchrun job start together with an empty cache: one compiles, the other
    waits for it and loads its library; both record with the C pass and print no warning."""
    assert REAL_CC is not None, native.build_error()
    log = tmp_path / "cc.log"
    cc = _fake_cc(tmp_path / "cc", f'echo run >> {log}\nexec {" ".join(REAL_CC)} "$@"\n')
    procs = [_start(tmp_path / "cache", CC=cc) for _ in range(2)]
    for p in procs:
        _ok(p)
    assert log.read_text().split() == ["run"]  # one compile
    assert len(list((tmp_path / "cache").glob("stats-*.so"))) == 1
