"""The library's version, from one place: the installed distribution's metadata (``pyproject.toml``)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

__all__ = ["library_version"]


@cache
def library_version() -> str:
    """``cps-engine``'s version as installed; ``0.0.0`` when running from a bare source tree.

    >>> library_version().count(".") >= 2
    True
    """
    try:
        return version("cps-engine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
