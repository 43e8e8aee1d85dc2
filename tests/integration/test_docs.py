"""Every code block in README.md and docs/*.md runs (issue 23 item 1), so none can rot.

A block fenced as ``python``, ``bash``, ``console``, ``sh`` or ``shell`` is runnable: the blocks of
one file run in order, in one fresh folder that starts as a user's does after ``layerscope demo``
(``layerscope-demo/`` with its store, figure and report), with ``layerscope`` and ``python`` on
PATH. ``python`` blocks run as scripts; shell blocks run under ``bash -e``; in a ``console`` block
only the lines after a ``$ `` prompt run (the rest is output).

A block that cannot run here says so on the line before its fence, with the reason:
``<!-- not run: needs a GPU -->``. The test checks that every other block (a ``text`` sample, a
``json`` snippet, a block with no language) carries such a marker with a non-empty reason.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = {"python", "bash", "console", "sh", "shell"}
MARKER = re.compile(r"^<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
BLOCK_TIMEOUT_S = 600


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, when marked


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the ``not run`` marker just above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        code = "\n".join(ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j])
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = MARKER.match(lines[k].strip()) if k >= 0 else None
        out.append(Block(path, i + 1, lang, code, mk.group("reason") if mk else None))
        i = j + 1
    return out


def test_every_block_is_runnable_or_says_why_not() -> None:
    bad = []
    for doc in DOCS:
        for b in blocks(doc):
            where = f"{b.path.relative_to(REPO)}:{b.line}"
            if b.not_run is not None and not b.not_run:
                bad.append(f"{where}: 'not run' needs a reason")
            elif b.lang not in RUNNABLE and b.not_run is None:
                bad.append(
                    f"{where}: a ```{b.lang or '(no language)'} block; make it runnable or mark it <!-- not run: why -->"
                )
    assert bad == []


def test_the_parser_sees_markers_and_languages(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "text\n\n<!-- not run: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```python\nprint(1)\n```\n"
    )
    got = [(b.lang, b.code, b.not_run, b.line) for b in blocks(md)]
    assert got == [("bash", "nvidia-smi", "needs a GPU", 4), ("python", "print(1)", None, 8)]


# --- running them ----------------------------------------------------------------------------


def _env(bin_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("LAYERSCOPE_DEBUG", None)
    env.update(
        {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    )
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _shims(bin_dir: Path) -> None:
    """``layerscope`` and ``python`` on PATH: this interpreter, this checkout (``layerscope`` through
    ``_demo_once.py``: one run of each ``layerscope demo`` command per test session)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, cmd in (
        ("layerscope", f'exec "{sys.executable}" "{Path(__file__).with_name("_demo_once.py")}" "$@"'),
        ("python", f'exec "{sys.executable}" "$@"'),
    ):
        for alias in (name, "python3") if name == "python" else (name,):
            p = bin_dir / alias
            p.write_text(f"#!/bin/sh\n{cmd}\n")
            p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture(scope="module")
def sandbox_template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder as a user has it after ``layerscope demo`` (a short demo: the same records)."""
    root = tmp_path_factory.mktemp("docs")
    bin_dir = root / "bin"
    _shims(bin_dir)
    env = _env(bin_dir)
    # Shared by the pytest-xdist workers (their base folders are siblings), so that a page's
    # `layerscope demo` trains once per session whichever worker runs it.
    base = tmp_path_factory.getbasetemp()
    env["LAYERSCOPE_DOCS_DEMO_CACHE"] = str(
        (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "docs-demo-cache"
    )
    tpl = root / "template"
    tpl.mkdir()
    r = subprocess.run(
        ["layerscope", "demo", "--steps", "40", "--every", "20", "--threads", "1"],  # steps the full demo has too
        cwd=tpl, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return tpl, env


def _console_commands(code: str) -> str:
    """The commands of a console block: lines after '$ ' (with their continuation lines)."""
    out, cont = [], False
    for ln in code.splitlines():
        if ln.startswith("$ "):
            out.append(ln[2:])
            cont = ln.rstrip().endswith("\\")
        elif cont:
            out.append(ln)
            cont = ln.rstrip().endswith("\\")
    return "\n".join(out)


def run_block(b: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if b.lang == "python":
        script = cwd / f"_block_{b.line}.py"
        script.write_text(b.code + "\n", encoding="utf-8")
        cmd = [sys.executable, script.name]
    else:
        code = _console_commands(b.code) if b.lang == "console" else b.code
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_the_blocks_of_a_page_run_in_order(doc: Path, sandbox_template, tmp_path: Path) -> None:
    tpl, env = sandbox_template
    todo = [b for b in blocks(doc) if b.lang in RUNNABLE and b.not_run is None]
    if not todo:
        return  # nothing runnable on this page (the first test checks every block is marked)
    cwd = tmp_path / "work"
    shutil.copytree(tpl, cwd)
    failed = []
    for b in todo:
        r = run_block(b, cwd, env)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-6:]
            failed.append(
                f"{doc.relative_to(REPO)}:{b.line} ({b.lang}) exit {r.returncode}:\n  " + "\n  ".join(tail)
            )
    assert failed == [], "\n".join(failed)


def test_readme_links_and_image_work_on_a_package_index_page() -> None:
    """PyPI shows README.md without the repository: every link and image must be absolute, and
    each one into this repository must name a file that exists."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    assert targets, "no links found"
    relative = [t for t in targets if not re.match(r"https?://", t) and not t.startswith("#")]
    assert relative == []
    repo_files = []
    for t in targets:
        m = re.match(
            r"https://(?:github\.com/layerscope/layerscope/(?:blob|tree)/main|raw\.githubusercontent\.com/layerscope/layerscope/main)/(.+)",
            t,
        )
        if m:
            repo_files.append(m.group(1))
    assert "docs/img/demo-heatmap.png" in repo_files
    assert [f for f in repo_files if not (REPO / f).exists()] == []
