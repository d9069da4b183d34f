"""What every face of the ``cps-engine`` command shares: the error console, exit status 2 on bad
input, the binding options.  The top layer: only the CLI modules import it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from cps_engine.errors import CpsError
from cps_engine.graph import BindingConfig, BindingMode

__all__ = ["BindingOpt", "ExpireOpt", "bad_input_exits", "binding_config", "err", "fail"]

#: messages and progress go to stderr; results to stdout
err = Console(stderr=True)

#: the exit status for unusable input (1 is kept for "the audit found discrepancies")
EXIT_UNUSABLE = 2

BindingOpt = Annotated[str, typer.Option("--binding", help="first_wins | overwrite | registration_only | expiring")]
ExpireOpt = Annotated[int | None, typer.Option("--expire-days", help="with --binding expiring")]


def fail(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def bad_input_exits(*also: type[Exception]) -> Iterator[None]:
    """Turn cps_engine's typed errors, unreadable files (and the ``also`` exception types, e.g. a
    ``ValueError`` from parsing an option) into exit status 2 with a message."""
    try:
        yield
    except CpsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror}" if exc.strerror else str(exc))
    except also as exc:
        fail(str(exc))


def binding_config(mode: str, expire_days: int | None) -> BindingConfig:
    """The ``--binding``/``--expire-days`` options as a :class:`BindingConfig` (exit 2 when wrong)."""
    try:
        return BindingConfig(mode=BindingMode(mode), expire_days=expire_days)
    except ValueError as exc:
        fail(f"--binding: {exc}")
