"""Events: the only input cps_engine reads.

Six frozen pydantic models with a ``type`` discriminator — :class:`ShareEvent`, :class:`BindEvent`,
:class:`OrderEvent`, :class:`RefundEvent`, :class:`PayoutEvent` and the optional :class:`RoleEvent`
(what a person is in the programme: read by the compliance report only) — read from and written to
JSON Lines.  Attributes carry the JSON field names (``order.share``, ``share.parent``).  Amounts are
exact ``Decimal`` in major units, validated against the currency's exponent; floats are refused.
Timestamps must carry a zone.

>>> ev = parse_event({"type": "order", "id": "o1", "buyer": "dave", "share": "s2",
...                   "amount": "199.00", "currency": "CNY", "at": "2026-03-01T10:00:00+08:00",
...                   "shipping": "10.00"})
>>> ev.amount, ev.money, ev.share
(Decimal('199.00'), Money(minor=19900, currency='CNY'), 's2')
>>> parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": 5.0,  # doctest: +ELLIPSIS
...              "at": "2026-03-02T00:00:00Z"})
Traceback (most recent call last):
...
cps_engine.errors.InvalidEvent: record 'r1', field 'amount': amount 5.0 is a float; give it as a string ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from cps_engine.errors import CpsError, DuplicateEvent, EventValidationError, InvalidEvent, brief
from cps_engine.limits import MAX_ID_LENGTH, check_time
from cps_engine.money import CURRENCIES, MAX_EVENT_MINOR, Money, _to_decimal, parse_amount
from cps_engine.textio import iter_lines, loads_json

__all__ = [
    "BindEvent",
    "Event",
    "EventsLike",
    "OrderEvent",
    "OrderLine",
    "PayoutEvent",
    "RefundEvent",
    "RoleEvent",
    "ShareEvent",
    "as_events",
    "dump_events",
    "iter_events",
    "load_events",
    "parse_event",
    "validate_events",
]

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)]
#: free text on an event (campaign, product, category): as long as an id at most
Text = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)]
#: an event time: aware, within the supported range (cps_engine.limits)
Time = Annotated[AwareDatetime, AfterValidator(lambda at: check_time(at, field=None))]


def _exact(value: Any) -> Any:
    if value is None:
        return None
    return _to_decimal(value, "amount")


def _currency(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().upper()
        if value not in CURRENCIES:
            raise ValueError(f"unknown currency {brief(value)} (expected an ISO-4217 code such as 'CNY')")
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact)]
Currency = Annotated[str, BeforeValidator(_currency)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: Id
    at: Time

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the event: ``(type, id)``.  Idempotency and duplicate checks use it."""
        return (self.type, self.id)  # type: ignore[attr-defined]


class ShareEvent(_Event):
    """Someone shared a link; ``parent`` is the share it was re-shared from (or ``None``)."""

    type: Literal["share"] = "share"
    sharer: Id
    parent: Id | None = None
    campaign: Text | None = None
    product: Text | None = None


class BindEvent(_Event):
    """``user`` becomes a downline of ``upline``; ``registration`` marks a bind made at sign-up."""

    type: Literal["bind"] = "bind"
    user: Id
    upline: Id
    registration: bool = False


class OrderLine(BaseModel):
    """One line of an order: ``quantity`` × ``unit_price`` of ``sku``."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    sku: Id
    category: Text | None = None
    quantity: int = Field(default=1, ge=1, le=10**9, strict=True)
    unit_price: ExactDecimal


class OrderEvent(_Event):
    """A paid order.  ``amount`` is what the buyer paid (after discounts, including shipping and tax).

    ``share`` names the share link it was bought through (the share path decides the payees); when
    absent the buyer's binding uplines do.

    ``device``, ``phone_hash`` and ``payment_hash`` are optional buyer fingerprints: opaque hashes the
    merchant supplies (never a phone number or card in clear), at most 256 characters each.  Only the
    abuse report (:mod:`cps_engine.audit.abuse`) reads them, to cluster buyers who share one; the
    engine, the batch path, the share graph and the ledger ignore them.
    """

    type: Literal["order"] = "order"
    buyer: Id
    share: Id | None = None
    amount: ExactDecimal
    currency: Currency
    shipping: ExactDecimal | None = None
    tax: ExactDecimal | None = None
    lines: tuple[OrderLine, ...] | None = None
    device: Id | None = None
    phone_hash: Id | None = None
    payment_hash: Id | None = None

    _minor: tuple[int, int, int] = PrivateAttr(default=(0, 0, 0))

    @model_validator(mode="after")
    def _check_amounts(self) -> OrderEvent:
        def minor(value: Any, field: str) -> int:
            try:
                parsed = parse_amount(value, self.currency, limit=MAX_EVENT_MINOR)
            except CpsError as exc:
                raise InvalidEvent(exc.message, record=self.id, field=field) from None
            if parsed < 0:
                raise InvalidEvent(f"{field} must not be negative", record=self.id, field=field)
            return parsed

        amount = minor(self.amount, "amount")
        shipping = minor(self.shipping, "shipping") if self.shipping is not None else 0
        tax = minor(self.tax, "tax") if self.tax is not None else 0
        for i, line in enumerate(self.lines or ()):
            minor(line.unit_price, f"lines.{i}.unit_price")
        if shipping + tax > amount:
            raise InvalidEvent("shipping + tax exceed the amount paid", record=self.id, field="amount")
        self._minor = (amount, shipping, tax)
        return self

    @property
    def money(self) -> Money:
        """The amount paid as :class:`Money`."""
        return Money(self._minor[0], self.currency)

    @property
    def amount_minor(self) -> int:
        return self._minor[0]

    @property
    def shipping_minor(self) -> int:
        return self._minor[1]

    @property
    def tax_minor(self) -> int:
        return self._minor[2]


class RefundEvent(_Event):
    """Money returned to the buyer of ``order``.  ``amount`` ``None`` refunds all that is not yet refunded.

    ``kind`` distinguishes an ordinary refund, a chargeback and a cancellation; all three reduce
    the order's net paid amount the same way.
    """

    type: Literal["refund"] = "refund"
    order: Id
    amount: ExactDecimal | None = None
    currency: Currency | None = None
    kind: Literal["refund", "chargeback", "cancel"] = "refund"

    @model_validator(mode="after")
    def _check_amount(self) -> RefundEvent:
        if self.amount is not None and self.amount <= 0:
            raise InvalidEvent("a refund amount must be positive (omit it for a full refund)",
                               record=self.id, field="amount")
        if self.amount is not None:  # bounded now (exactly once the order's currency is known)
            try:
                if self.currency is not None:
                    parse_amount(self.amount, self.currency, limit=MAX_EVENT_MINOR)
                elif self.amount > MAX_EVENT_MINOR:
                    raise InvalidEvent(f"amount {self.amount} is too large (limit {MAX_EVENT_MINOR} minor units)")
            except CpsError as exc:
                raise InvalidEvent(exc.message, record=self.id, field="amount") from None
        return self

    def amount_minor(self, currency: str) -> int | None:
        """The refunded amount in minor units of the order's ``currency`` (``None``: all of it)."""
        if self.currency is not None and self.currency != currency:
            raise InvalidEvent(f"refund in {self.currency} for an order in {currency}",
                               record=self.id, field="currency")
        if self.amount is None:
            return None
        try:
            return parse_amount(self.amount, currency, limit=MAX_EVENT_MINOR)
        except CpsError as exc:
            raise InvalidEvent(exc.message, record=self.id, field="amount") from None


class PayoutEvent(_Event):
    """Money paid out to ``payee``."""

    type: Literal["payout"] = "payout"
    payee: Id
    amount: ExactDecimal
    currency: Currency

    @model_validator(mode="after")
    def _check_amount(self) -> PayoutEvent:
        try:
            minor = parse_amount(self.amount, self.currency, limit=MAX_EVENT_MINOR)
        except CpsError as exc:
            raise InvalidEvent(exc.message, record=self.id, field="amount") from None
        if minor <= 0:
            raise InvalidEvent("a payout amount must be positive", record=self.id, field="amount")
        return self

    @property
    def money(self) -> Money:
        return Money.of(self.amount, self.currency)


class RoleEvent(_Event):
    """From ``at`` on, ``person`` holds ``role`` in the programme, until their next role event.

    ``distributor``: a member with the right to earn or recruit (signed up, qualified, or holding an
    auto-ship subscription: ``via``); ``customer``: a buyer outside the programme (also the way to
    record that a distributor left it).  Commissions never read roles: the engine, the batch path
    and the share graph ignore these events; the compliance report uses them to tell a bound
    customer from a distributor when it measures the retail ratio.

    >>> parse_event({"type": "role", "id": "r1", "person": "bob", "role": "distributor",
    ...              "via": "autoship", "at": "2026-03-01T10:00:00+08:00"}).via
    'autoship'
    >>> parse_event({"type": "role", "id": "r2", "person": "bob", "role": "boss",  # doctest: +ELLIPSIS
    ...              "at": "2026-03-01T10:00:00+08:00"})
    Traceback (most recent call last):
    ...
    cps_engine.errors.InvalidEvent: record 'r2', field 'role': Input should be 'distributor' or 'customer'
    """

    type: Literal["role"] = "role"
    person: Id
    role: Literal["distributor", "customer"]
    via: Literal["signup", "qualification", "autoship"] | None = None


Event: TypeAlias = Annotated[
    ShareEvent | BindEvent | OrderEvent | RefundEvent | PayoutEvent | RoleEvent, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_TYPES = ("share", "bind", "order", "refund", "payout", "role")


def _as_invalid(exc: ValidationError, raw: Any, line: int | None) -> InvalidEvent:
    record = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    err = exc.errors()[0]
    parts = list(err["loc"])
    if parts and parts[0] in _TYPES:  # the discriminated union's tag, not a field
        parts = parts[1:]
    field = ".".join(str(p) for p in parts) or None
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, CpsError) and cause.field is not None:
        field = cause.field if field is None else f"{field}.{cause.field}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
        field = "type"
        msg = f"type must be one of {', '.join(_TYPES)}"
    if isinstance(cause, CpsError):
        msg = cause.message
    return InvalidEvent(msg, record=record, field=field, line=line)


def parse_event(raw: dict[str, Any] | Event, *, line: int | None = None) -> Event:
    """Validate one record (a dict as decoded from JSON) into its event model."""
    if isinstance(raw, _Event):
        return raw
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise _as_invalid(exc, raw, line) from None
    except CpsError as exc:  # raised by a validator outside pydantic's wrapping
        raise exc.located(line=line) from None


def _decode(text: str | CpsError, line: int) -> dict[str, Any]:
    if isinstance(text, CpsError):  # the line is not UTF-8
        raise text
    raw = loads_json(text, line=line, error=InvalidEvent)  # strict: no duplicate keys, bounded nesting
    if not isinstance(raw, dict):
        raise InvalidEvent("each line must be a JSON object", line=line)
    return raw


def _lines(source: str | Path | IO[str] | Iterable[str]) -> Iterator[tuple[int, str | CpsError]]:
    """Non-blank lines, numbered; UTF-8 (a BOM dropped), a line that is not yields its error."""
    for n, text in iter_lines(source, error=InvalidEvent):
        if isinstance(text, CpsError) or text.strip():
            yield n, text


def iter_events(source: str | Path | IO[str] | Iterable[str]) -> Iterator[Event]:
    """Stream events from a JSON Lines file, raising at the first bad line."""
    for n, text in _lines(source):
        yield parse_event(_decode(text, n), line=n)


def _scan(source: str | Path | IO[str] | Iterable[str]) -> tuple[list[Event], list[CpsError]]:
    events: list[Event] = []
    errors: list[CpsError] = []
    seen: dict[tuple[str, str], tuple[int, Event]] = {}
    for n, text in _lines(source):
        try:
            ev = parse_event(_decode(text, n), line=n)
        except CpsError as exc:
            errors.append(exc)
            continue
        first = seen.get(ev.key)
        if first is None:
            seen[ev.key] = (n, ev)
            events.append(ev)
        elif first[1] != ev:
            errors.append(DuplicateEvent(f"{ev.type} id already used on line {first[0]} with a different "
                                         "payload", record=ev.id, field="id", line=n))
    return events, errors


def validate_events(source: str | Path | IO[str] | Iterable[str]) -> list[CpsError]:
    """Every problem in a JSON Lines file, all at once (an empty list when it is clean)."""
    return _scan(source)[1]


def load_events(source: str | Path | IO[str] | Iterable[str]) -> list[Event]:
    """Read a JSON Lines file (or an iterable of lines) into events, in file order.

    An exact repeat of an event (same type, id and payload, as an at-least-once pipeline delivers)
    is kept once.  If any line is bad, :class:`EventValidationError` lists every bad line.

    >>> evs = load_events(['{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}'])
    >>> evs[0].sharer
    'amy'
    """
    events, errors = _scan(source)
    if errors:
        raise EventValidationError(errors)
    return events


def event_to_json(event: Event) -> str:
    """Canonical one-line JSON of an event (keys sorted, ``None`` fields left out)."""
    return json.dumps(event.model_dump(mode="json", exclude_none=True), sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))


def dump_events(events: Iterable[Event], target: str | Path | IO[str]) -> None:
    """Write events as JSON Lines, one canonical JSON object per line."""
    if isinstance(target, (str, Path)):
        with open(target, "w", encoding="utf-8") as fh:
            dump_events(events, fh)
        return
    for ev in events:
        target.write(event_to_json(ev) + "\n")


def event_time(event: Event) -> datetime:
    return event.at


#: what every entry point accepts as a history: events, or the path of a JSON Lines file of them
EventsLike: TypeAlias = Iterable[Event] | str | Path


def as_events(source: EventsLike) -> list[Event]:
    """The events of ``source``: a JSON Lines file path is read with :func:`load_events` (every bad
    line reported at once), an iterable of events is listed as it is.

    >>> as_events([]) == []
    True
    """
    if isinstance(source, (str, Path)):
        return load_events(Path(source))
    return list(source)
