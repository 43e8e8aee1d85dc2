"""One exception tree for everything layerscope raises on purpose.

Every message names what is wrong, the offending value, and what to do instead, so the CLI can
print it as one line. ``exit_code`` is what the CLI exits with: 2 for a usage error (the user asked
for something that does not exist or is not allowed), 1 for a failure (the data or the machine let
us down).

An error may also carry what it is about as fields: ``what`` (``"run"``), ``value`` (the name that
was given), ``choices`` (the names there are) and ``param`` (the keyword argument that takes it).
Its message then speaks Python (``run='a'``) and :meth:`LayerscopeError.render` with ``cli=True``
speaks the command line (``--run a``): the CLI's one error handler prints that form.

>>> e = NotFoundError("run 'b' not found in 'runs.db'; runs there: 'a'", what="run", value="b",
...                   choices=["a"], param="run")
>>> str(e)
"run 'b' not found in 'runs.db'; runs there: 'a'; pass run='a'."
>>> e.render(cli=True)
"run 'b' not found in 'runs.db'; runs there: 'a'; pass --run a."
>>> e.exit_code, e.choices
(2, ['a'])

User-supplied text is never printed raw: :func:`quote` shows a name as ``repr`` does, and every
message goes through :func:`escape_controls`, so a file name holding a newline or a terminal escape
cannot forge a second line or recolour the terminal.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any


def _escape_char(c: str) -> str:
    return repr(c)[1:-1]  # '\n' -> \n, ESC -> \x1b, U+202E -> \u202e, a lone surrogate -> \udcff


def escape_controls(text: str) -> str:
    """``text`` with every character that is not printable escaped as ``repr`` escapes it:
    newlines, carriage returns, tabs, NUL, ESC (terminal colours), Unicode line separators and
    bidirectional controls, lone surrogates (undecodable bytes in a file name). Spaces stay.

    >>> escape_controls("step_1.pt\\nerror: forged \\x1b[31mred\\u202e")
    'step_1.pt\\\\nerror: forged \\\\x1b[31mred\\\\u202e'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def quote(value: Any) -> str:
    """A user-supplied name (run, metric, site, file) for a message: quoted and escaped, as ``repr``
    shows a string, so it is one physical line whatever it holds.

    >>> quote("base\\nline"), quote(3)
    ("'base\\\\nline'", "'3'")
    """
    return repr(str(value))


def one_line(text: str) -> str:
    """A message as one physical line: runs of whitespace (newlines included) become one space,
    then what is left that is not printable is escaped. For text from other libraries (SQLite,
    torch) whose line breaks are layout, not content."""
    return escape_controls(" ".join(str(text).split()))


def _flag(param: str) -> str:
    return "--" + param.replace("_", "-")


def _shell_word(value: Any) -> str:
    return shlex.quote(str(value))


class LayerscopeError(Exception):
    """Base of every error layerscope raises deliberately.

    Args:
        message: what is wrong, with the offending value (use :func:`quote` for names).
        what: the kind of thing it is about: ``"run"``, ``"metric"``, ``"site"``, ``"store"`` ...
        value: the value that was given.
        choices: the values that would have worked (e.g. the runs in the store).
        param: the keyword argument the fix is about (``"run"``); the CLI spells it ``--run``
            unless ``flag`` says otherwise.
        example: the value the fix suggests for ``param`` (default: the first choice, else
            ``value``); ``True`` is a plain ``--flag`` on the command line.
        fix: what to do, appended after ``; ``. It may name the argument as ``{arg}`` (``run=`` /
            ``--run``) and the suggestion as ``{example}`` (``run='a'`` / ``--run a``). Without
            it, an error with ``param`` and ``choices`` says "pass one of them, e.g. ...".
    """

    exit_code: int = 1

    def __init__(
        self,
        message: str = "",
        *,
        what: str | None = None,
        value: Any = None,
        choices: Sequence[Any] | None = None,
        param: str | None = None,
        flag: str | None = None,
        example: Any = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.what = what
        self.value = value
        self.choices = list(choices) if choices is not None else None
        self.param = param
        self.flag = flag or (_flag(param) if param else None)
        self.example = example
        self.fix = fix

    def _example(self, value: Any, cli: bool) -> str:
        if cli:
            if isinstance(value, bool):
                return self.flag or ""
            return f"{self.flag} {_shell_word(value)}"
        return f"{self.param}={value!r}"

    def _fix_text(self, cli: bool) -> str | None:
        fix = self.fix
        if fix is None and self.param and self.choices:
            fix = "pass {example}" if len(self.choices) == 1 else "pass one of them, e.g. {example}"
        if fix is None:
            return None
        if self.param:
            sample = self.example
            if sample is None:
                sample = self.choices[0] if self.choices else self.value
            arg = (self.flag or "") if cli else f"{self.param}="
            fix = fix.replace("{arg}", arg).replace("{example}", self._example(sample, cli))
        return fix

    def render(self, cli: bool = False) -> str:
        """The message as one line: the Python wording, or with ``cli`` the command-line one."""
        text = self.message
        fix = self._fix_text(cli)
        if fix:
            text = f"{text.rstrip().rstrip('.;')}; {fix.rstrip('.')}."
        elif self.param and not text.rstrip().endswith((".", "!", "?")):
            text = text.rstrip() + "."  # a structured message whose fix had nothing to suggest
        return escape_controls(text)

    def __str__(self) -> str:
        return self.render(cli=False)


class ConfigError(LayerscopeError, ValueError):
    """An argument or option has a value layerscope cannot use (a usage error)."""

    exit_code = 2


class NotFoundError(LayerscopeError, LookupError):
    """A file, run, metric, site or layer that was asked for does not exist (a usage error)."""

    exit_code = 2


class RunExistsError(ConfigError):
    """A run of that name is already in the store and may not be continued (``resume=False``, or a
    recording that differs from the one in the store)."""


class DiscoveryError(LayerscopeError):
    """No layer stack could be found in a model; pass ``layers=`` explicitly."""

    exit_code = 2


class StoreError(LayerscopeError):
    """The run store cannot be opened, read or written (corrupt, locked, newer schema, read-only)."""


class DataError(LayerscopeError, ValueError):
    """Input data (a CSV, a probe, a matrix) is malformed."""


class CheckpointError(LayerscopeError):
    """A checkpoint is missing, truncated, unsafe to load, or does not fit the model."""


class DistributedError(LayerscopeError):
    """The ranks of a distributed job disagree (layers, metrics) or a collective failed."""


class CheckpointWarning(UserWarning):
    """A checkpoint was used, but something in it is probably not what was meant (e.g. integer
    weights converted into a floating-point model)."""


class WatchAlert(LayerscopeError):
    """The live watch fired and the Recorder was told to stop (``on_alert="stop"``), raised from
    ``Recorder.step`` after a final flush. ``alerts`` holds what fired."""

    exit_code = 1

    def __init__(self, message: str, alerts: list[Any] | None = None) -> None:
        super().__init__(message)
        self.alerts = list(alerts or [])


__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "ConfigError",
    "DataError",
    "DiscoveryError",
    "DistributedError",
    "LayerscopeError",
    "NotFoundError",
    "RunExistsError",
    "StoreError",
    "WatchAlert",
    "escape_controls",
    "one_line",
    "quote",
]
