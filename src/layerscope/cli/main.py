"""Entry point: wires the commands (imported lazily, so ``layerscope --help`` is instant) and turns
layerscope's errors into one line on stderr with the right exit code.

Set ``LAYERSCOPE_DEBUG=1`` to get the full traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..errors import LayerscopeError, escape_controls, one_line, quote

# name -> "module:attribute". One file per command (group); add a line here to add a command.
COMMANDS: dict[str, str] = {
    "demo": "layerscope.cli.demo:demo",
    "runs": "layerscope.cli.runs:runs",
    "plot": "layerscope.cli.plot:plot",
    "export": "layerscope.cli.export:export",
    "layers": "layerscope.cli.layers:layers",
    "sweep": "layerscope.cli.sweep:sweep",
    "report": "layerscope.cli.report:report",
    "serve": "layerscope.cli.serve:serve",
    "compare": "layerscope.cli.compare:compare",
    "view": "layerscope.cli.view:view",
}


class _Interrupted(Exception):
    """Ctrl-C inside a command. Click turns a KeyboardInterrupt into its own "Aborted." (exit 1);
    carried past it as this, :func:`main` says what Ctrl-C left behind and exits 130."""


class LazyGroup(click.Group):
    """A group whose commands are imported only when used (torch/matplotlib import is slow)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted() from e

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(mod_name), attr)


def _version() -> str:
    from .. import __version__

    return __version__


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(_version(), "-V", "--version", prog_name="layerscope")
def cli() -> None:
    """layerscope: how every layer of a network evolves over training.

    \b
    Record statistics live (Python API: layerscope.Recorder) or sweep saved checkpoints, then
    draw the layer x step heatmap and read its analysis.

    \b
    Examples:
      layerscope demo                       # train a tiny 12-layer GPT, record it, draw it
      layerscope runs layerscope-demo/runs.db
      layerscope plot layerscope-demo/runs.db --metric rms -o rms.png

    Set LAYERSCOPE_DEBUG=1 to see tracebacks.
    """


def _debug() -> bool:
    return os.environ.get("LAYERSCOPE_DEBUG", "") not in ("", "0", "false", "no")


INTERRUPTED = "Interrupted; everything flushed so far is kept."


def _click_message(e: click.ClickException) -> str:
    """Click's usage errors as one line: the problem, then where the usage is explained."""
    msg = one_line(e.format_message()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        return f"{msg}; see {quote(ctx.command_path + ' --help')}."
    return f"{msg}."


def _os_message(e: OSError) -> str:
    """An operating-system error (disk full, permission, missing folder) that escaped a command."""
    what = e.strerror or one_line(str(e)) or type(e).__name__
    where = f"{quote(e.filename)}: " if e.filename else ""
    return escape_controls(
        f"{where}{what}; check the path, its permissions and the free disk space, or choose another path."
    )


def main(argv: list[str] | None = None, prog_name: str = "layerscope") -> Any:
    """Run the CLI; return/exit with 0 on success, 1 on a failure, 2 on a usage error."""
    try:
        rv = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        return 0
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.format_message(), err=True)  # the help text, as click shows it
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if _debug():
            raise
        click.echo(f"error: {_click_message(e)}", err=True)
        sys.exit(e.exit_code)
    except (click.Abort, _Interrupted, KeyboardInterrupt):
        # Ctrl-C (click's Abort is Ctrl-C while it parsed). Every store write is one transaction.
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except LayerscopeError as e:
        if _debug():
            raise
        click.echo(f"error: {e.render(cli=True)}", err=True)  # the CLI's wording: --run, not run=
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except UnicodeEncodeError as e:  # a name from argv that is not UTF-8 (bytes the shell passed raw)
        if _debug():
            raise
        bad = e.object[e.start : e.end] if isinstance(e.object, str) else ""
        click.echo(
            f"error: a name or path holds {escape_controls(repr(bad))}, which is not UTF-8 text and "
            "cannot be stored or looked up; pass names as UTF-8.",
            err=True,
        )
        sys.exit(2)
    except OSError as e:  # the machine let us down (disk full, permissions): not a bug, one line
        if _debug():
            raise
        click.echo(f"error: {_os_message(e)}", err=True)
        sys.exit(1)
    except Exception as e:
        if _debug():
            raise
        click.echo(
            f"error: unexpected {type(e).__name__}: {one_line(str(e))}. This is a bug in layerscope; "
            "rerun with LAYERSCOPE_DEBUG=1 and report the traceback.",
            err=True,
        )
        sys.exit(1)
