"""RFC 9457 problem details: every error the service returns is ``application/problem+json``.

A :class:`~cps_engine.errors.CpsError` keeps its own words: ``detail`` is exactly the message the CLI
prints (``record 'p1', field 'amount': ...``) and ``record`` / ``field`` name the record and field.

>>> from cps_engine.ledger import InsufficientBalance
>>> p = from_error(InsufficientBalance("12.00 CNY available, 20.00 CNY requested", record="p1", field="amount"))
>>> p["status"], p["type"], p["record"], p["field"]
(422, 'urn:cps-engine:problem:insufficient-balance', 'p1', 'amount')
>>> p["detail"]
"record 'p1', field 'amount': 12.00 CNY available, 20.00 CNY requested"
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse

from cps_engine.errors import CpsError, IdempotencyConflict

__all__ = ["MEDIA_TYPE", "Problem", "ProblemDetail", "from_error", "problem", "response"]

MEDIA_TYPE: Final = "application/problem+json"
_TITLES: Final = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
                  409: "Conflict", 413: "Content too large", 415: "Unsupported media type",
                  422: "Unprocessable content", 500: "Internal server error"}


class ProblemDetail(BaseModel):
    """An RFC 9457 problem (extension members: ``error``, ``record``, ``field``, ``index``, ``errors``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    error: str | None = None
    record: str | None = None
    field: str | None = None
    index: int | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """Raised inside the service to answer with a problem."""

    def __init__(self, status: int, slug: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail, self.headers, self.extra = status, slug, detail, headers, extra


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(status: int, slug: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"urn:cps-engine:problem:{slug}", "title": _TITLES.get(status, "Error"),
                            "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def status_of(exc: CpsError) -> int:
    return 409 if isinstance(exc, IdempotencyConflict) else 422


def from_error(exc: CpsError, **extra: Any) -> dict[str, Any]:
    """The problem of a typed error: its message, record and field (and ``extra`` members)."""
    return problem(status_of(exc), _slug(type(exc).__name__), str(exc), error=type(exc).__name__,
                   record=exc.record, field=exc.field, **extra)


def response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]), media_type=MEDIA_TYPE, headers=headers)
