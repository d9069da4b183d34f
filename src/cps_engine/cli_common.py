"""What every face of the ``cps-engine`` command shares: the consoles, exit status 2 on bad input,
the binding options, safe output.  The top layer: only the CLI modules import it.

Hostile data never reaches the terminal raw.  Every user-provided string printed through rich goes
through :func:`safe` (markup escaped, control characters shown) or :func:`cell` (a plain ``Text``);
renderables built elsewhere go through :func:`defang`.  Control characters (C0, DEL, C1) and bidi
overrides are shown as ``\\x1b`` / ``\\u202e``.

Outputs are named when they fail: a file written with :func:`output_file` appears whole or not at all
(written beside, then renamed), a full disk names the file or "standard output", and a closed pipe on
standard output ends the command quietly with status 141 (128 + SIGPIPE), as ``head`` users expect.

>>> clean("ok\\x1b[31mred\\u202e")
'ok\\\\x1b[31mred\\\\u202e'
>>> safe("[/bold]x")
'\\\\[/bold]x'
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timezone
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cps_engine.errors import CpsError, InvalidInput, OutputError, ValueOutOfRange
from cps_engine.graph import BindingConfig, BindingMode
from cps_engine.limits import MAX_DAYS, add_days, check_time

__all__ = [
    "BINDING_MODES",
    "CSV_JSON",
    "CSV_JSONL",
    "EXIT_SIGPIPE",
    "EXIT_UNUSABLE",
    "EXTRAS",
    "JSON_CSV",
    "TABLE_JSON",
    "TABLE_JSON_CSV",
    "TEXT_JSON",
    "UNSAFE",
    "BindingOpt",
    "ExpireOpt",
    "OptionalBindingOpt",
    "bad_input_exits",
    "binding_config",
    "cell",
    "choice",
    "clean",
    "console",
    "defang",
    "err",
    "events_source",
    "fail",
    "format_option",
    "missing_extra",
    "output_file",
    "parse_when",
    "safe",
    "stdout_closed",
    "time_option",
    "write_stdout",
]

#: the exit status for unusable input (1 is kept for "the audit found discrepancies")
EXIT_UNUSABLE = 2
#: standard output closed by its reader (``| head``): 128 + SIGPIPE, like the unix tools
EXIT_SIGPIPE = 141
STDOUT = "standard output"


def _listed(values: Sequence[str]) -> str:
    return " or ".join(values) if len(values) <= 2 else f"one of {', '.join(values[:-1])} or {values[-1]}"


def choice(flag: str, values: Sequence[str], help: str) -> Any:
    """A ``flag`` option taking one of ``values``: listed in ``--help`` (``[csv|jsonl]``) and in the
    error (``Invalid value for '--format': 'xml' is not csv or jsonl``, exit 2), completed by the shell."""
    allowed = tuple(values)

    def parse(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(f"{clean(value)[:80]!r} is not {_listed(allowed)}")
        return value

    def complete(incomplete: str) -> list[str]:
        return [v for v in allowed if v.startswith(incomplete)]

    return typer.Option(flag, parser=parse, metavar=f"[{'|'.join(allowed)}]", autocompletion=complete,
                        help=help)


# one definition per choice set, reused by every command
#: the binding modes (:class:`~cps_engine.graph.BindingMode`)
BINDING_MODES: tuple[str, ...] = tuple(m.value for m in BindingMode)
CSV_JSONL = ("csv", "jsonl")
CSV_JSON = ("csv", "json")
JSON_CSV = ("json", "csv")
TABLE_JSON = ("table", "json")
TABLE_JSON_CSV = ("table", "json", "csv")
TEXT_JSON = ("text", "json")


def format_option(values: Sequence[str], help: str = "output format") -> Any:
    """A ``--format`` option taking one of ``values``."""
    return choice("--format", values, help)


BindingOpt = Annotated[str, choice("--binding", BINDING_MODES, "binding mode")]
OptionalBindingOpt = Annotated[str | None, choice(
    "--binding", BINDING_MODES, "binding mode (default: the manifest's or the ledger's, else first_wins)")]
ExpireOpt = Annotated[int | None, typer.Option("--expire-days", min=0, max=MAX_DAYS, help="with --binding expiring")]

#: C0 controls (tab and newline included), DEL, C1 controls, bidi marks, overrides and isolates,
#: line/paragraph separators: shown escaped, never sent to the terminal
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object, *, newlines: bool = False) -> str:
    """``str(value)`` with every control character and bidi override shown as an escape
    (``newlines``: keep line breaks, for multi-line messages of our own)."""
    text = str(value)
    if newlines:
        return "\n".join(UNSAFE.sub(_visible, line) for line in text.split("\n"))
    return UNSAFE.sub(_visible, text)


def safe(value: object, *, newlines: bool = False) -> str:
    """:func:`clean` and rich-markup-escaped: user data inside a markup string."""
    return escape(clean(value, newlines=newlines))


def cell(value: object) -> Text:
    """User data as a table cell: plain text, never markup, controls shown."""
    return Text(clean(value))


def defang(renderable: Any) -> Any:
    """A renderable built elsewhere (tables of ids) with every plain-string cell and title made a
    :func:`cell` and every ``Text`` cleaned: nothing in it is read as markup or reaches the terminal
    raw."""
    if isinstance(renderable, str):
        return cell(renderable)
    if isinstance(renderable, Text):
        plain = renderable.plain
        return renderable if not UNSAFE.search(plain) else Text(clean(plain), style=renderable.style)
    if isinstance(renderable, Group):
        return Group(*(defang(r) for r in renderable.renderables))
    if isinstance(renderable, Table):
        if isinstance(renderable.title, str):
            renderable.title = cell(renderable.title)
        for column in renderable.columns:
            if isinstance(column.header, str):
                column.header = cell(column.header)
            column._cells = [defang(c) for c in column._cells]
        return renderable
    return renderable


class _Console(Console):
    """A rich console that leaves emoji codes alone and treats a closed standard output as the end."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_closed()


def console(**kwargs: Any) -> Console:
    """The console for results (standard output)."""
    return _Console(**kwargs)


#: messages and progress go to stderr; results to stdout
err: Console = _Console(stderr=True)


def fail(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    """Print ``error: message`` to stderr (controls shown, markup escaped) and exit with ``code``."""
    err.print(f"[bold red]error:[/] {safe(message, newlines=True)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _discard_stdout() -> None:
    """Point the stdout descriptor at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's buffer
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def stdout_closed() -> NoReturn:
    """Standard output was closed by its reader: stop quietly with :data:`EXIT_SIGPIPE`."""
    _discard_stdout()
    raise typer.Exit(EXIT_SIGPIPE)


def _output_failed(exc: OSError, name: str) -> NoReturn:
    if exc.errno == errno.EPIPE and name == STDOUT:
        stdout_closed()
    if name == STDOUT:
        _discard_stdout()
    raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None


@contextmanager
def output_file(path: Path | None, *, newline: str | None = "") -> Iterator[IO[str]]:
    """Standard output (``path`` None or ``-``) or a UTF-8 file written whole or not at all: the text goes to a
    hidden file beside ``path``, renamed over it on success and removed on any failure.  A write
    error raises :class:`~cps_engine.errors.OutputError` naming the file (or "standard output").
    A target that exists and is not a regular file (a device, a FIFO) is written in place."""
    if path is None or str(path) == "-":
        try:
            yield sys.stdout
            sys.stdout.flush()
        except OSError as exc:
            if exc.filename is not None:  # an input file failed inside the block: not ours to name
                raise
            _output_failed(exc, STDOUT)
        return
    target = path.resolve() if path.is_symlink() else path
    if target.exists() and not target.is_file():  # a device, a FIFO, /dev/stdout: write in place
        try:
            with open(target, "w", encoding="utf-8", newline=newline) as fh:
                yield fh
        except OSError as exc:
            if exc.filename is not None and exc.filename not in (str(target), target):
                raise
            _output_failed(exc, str(path))
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        try:
            fh = open(tmp, "w", encoding="utf-8", newline=newline)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            with fh:
                yield fh
            os.replace(tmp, target)
        except OSError as exc:
            if exc.filename is not None and exc.filename not in (str(tmp), tmp):
                raise
            _output_failed(exc, str(path))
    finally:
        tmp.unlink(missing_ok=True)


def write_stdout(text: str) -> None:
    """Write ``text`` to standard output and flush it, naming standard output when that fails."""
    with output_file(None) as out:
        out.write(text)


@contextmanager
def bad_input_exits(*also: type[Exception]) -> Iterator[None]:
    """Turn cps_engine's typed errors, unreadable files (and the ``also`` exception types, e.g. a
    ``ValueError`` from parsing an option) into exit status 2 with a message; a closed standard
    output into a quiet exit."""
    try:
        yield
    except CpsError as exc:
        fail(str(exc))
    except ImportError as exc:  # an optional extra is missing: one sentence, not a traceback
        message = missing_extra(exc)
        if message is None:
            raise
        fail(message)
    except BrokenPipeError:
        stdout_closed()
    except OSError as exc:
        if exc.strerror is None:  # raised with a message of our own
            fail(str(exc))
        if exc.filename is not None:
            fail(f"{exc.filename}: {exc.strerror}")
        fail(f"input/output error: {exc.strerror}")
    except also as exc:
        fail(str(exc))


def binding_config(mode: str, expire_days: int | None) -> BindingConfig:
    """The ``--binding``/``--expire-days`` options as a :class:`BindingConfig` (exit 2 when wrong)."""
    try:
        return BindingConfig(mode=BindingMode(mode), expire_days=expire_days)
    except ValueError as exc:
        fail(f"--binding: {exc}")


def parse_when(text: str, *, end_of_day: bool = False, tz: str = "Z", field: str = "--as-of",
               dates: bool = True) -> datetime:
    """``2026-03-31`` (midnight in ``tz``; with ``end_of_day`` the next midnight; only with ``dates``)
    or a full ISO time, within the supported range (:mod:`cps_engine.limits`); a typed error naming
    ``field`` otherwise.  Without ``dates`` the time must carry its zone.

    >>> parse_when("2026-03-31", end_of_day=True).isoformat()
    '2026-04-01T00:00:00+00:00'
    >>> parse_when("2026-03-01T08:00:00+08:00").isoformat()
    '2026-03-01T08:00:00+08:00'
    >>> parse_when("9999-12-31", end_of_day=True, field="--to")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.ValueOutOfRange: field '--to': time 9999-12-31T00:00:00+00:00 is outside the supported range ...
    """
    try:
        zone = UTC if tz in ("Z", "UTC") else datetime.fromisoformat(f"2000-01-01T00:00:00{tz}").tzinfo
    except ValueError:
        raise InvalidInput(f"time zone {tz!r} is not Z, UTC or an offset such as +08:00", field="--tz") from None
    if not isinstance(zone, timezone):
        raise InvalidInput(f"time zone {tz!r} is not Z, UTC or an offset such as +08:00", field="--tz")
    text = text.strip()
    what = ("a date (2026-03-31) or an ISO time (e.g. 2026-03-01T00:00:00+08:00)" if dates else
            "an ISO time with a zone (e.g. 2026-03-01T00:00:00+08:00)")
    try:
        if len(text) == 10 and dates:
            when = datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone)
        else:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            if when.tzinfo is None:
                if not dates:
                    raise ValueError(text)
                when = when.replace(tzinfo=zone)
    except ValueError:
        raise InvalidInput(f"{text[:80]!r} is not {what}", field=field) from None
    except OverflowError:
        raise ValueOutOfRange(f"{text[:80]!r} is outside the supported range of times", field=field) from None
    check_time(when, field=field)
    return add_days(when, 1, field=field) if end_of_day and len(text) == 10 and dates else when


def time_option(text: str, flag: str, *, end_of_day: bool = False, tz: str = "Z", dates: bool = True) -> datetime:
    """A time option's value (:func:`parse_when`), or exit 2 with ``FLAG: 'text' is not ...``."""
    try:
        return parse_when(text, end_of_day=end_of_day, tz=tz, field=flag, dates=dates)
    except CpsError as exc:
        name = "--tz" if exc.field == "--tz" else flag
        fail(f"{name}: {exc.message}")


def events_source(path: Path) -> Path | list[str]:
    """An events option's file, or for ``-`` the lines of standard input (JSON Lines, read once)."""
    if str(path) != "-":
        return path
    return sys.stdin.read().splitlines(keepends=True)


#: top-level module -> the extra that installs it
EXTRAS: dict[str, str] = {
    "pandas": "analysis", "pyarrow": "analysis", "matplotlib": "analysis",
    "psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "MySQLdb": "mysql",
    "fastapi": "service", "uvicorn": "service", "httpx": "service", "starlette": "service",
    "polars": "polars", "dask": "dask", "distributed": "dask",
}


def missing_extra(exc: ImportError) -> str | None:
    """The one-sentence message for an import that failed for want of an optional extra (None: not one)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"{top} is not installed: install the {extra} extra: pip install 'cps-engine[{extra}]'"


class Steps:
    """What a long command reports as it goes: ``advance(n)`` after each piece of work, ``stage(name)``
    when the kind of work changes.  A no-op unless standard error is a terminal (so pipes, CI logs
    and tests see nothing)."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units of work done."""
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def stage(self, name: str, total: int | None = None) -> None:
        """Start a new stage called ``name`` with ``total`` units of work (``None``: unknown)."""
        if self._bar is not None:
            self._bar.update(self._task, description=safe(name), total=total, completed=0)


@contextmanager
def progress(what: str, total: int | None = None, *, err: Console | None = None,
             threshold: int = 0) -> Iterator[Steps]:
    """A progress bar on standard error for a long command: ``with progress("reading", n) as p:
    ... p.advance(k)``.  Shown only on a terminal and only when ``total`` is unknown or at least
    ``threshold``; transient (it leaves no trace in the terminal once done).

    >>> with progress("computing", 3) as p:
    ...     p.advance(3)
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = err if err is not None else console(stderr=True)
    if not err.is_terminal or (total is not None and total < threshold):
        yield Steps(None, None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        yield Steps(bar, bar.add_task(safe(what), total=total))
