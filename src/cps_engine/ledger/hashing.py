"""Canonical encodings and the sha256 hash chain of the ledger log.

Every entry (one leg of a posting) is encoded as canonical JSON — keys sorted, no whitespace,
UTF-8, ``None`` fields left out, amounts as integer minor units, rates as exact text, times as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC — and chained::

    hash[n] = sha256(bytes.fromhex(hash[n-1]) + canonical(entry[n]).encode("utf-8"))
    hash[0] = "00" * 32  (the genesis value; the first entry is n = 1)

The encoding carries a format version ``"v"``; the golden vectors in ``tests/ledger`` freeze it, so a
change to this module that alters any byte of the encoding fails the tests instead of silently
breaking every stored chain.

>>> e = {"seq": 1, "event": "order:o1", "kind": "accrual", "account": "commission", "payee": "bob",
...      "currency": "CNY", "amount": 1899, "effective_us": 0}
>>> encode_entry(e)
'{"account":"commission","amount":1899,"currency":"CNY","effective":"1970-01-01T00:00:00.000000Z",\
"event":"order:o1","kind":"accrual","payee":"bob","seq":1,"v":1}'
>>> chain_hash(GENESIS, e)[:16]
'0a8fcc76d4792406'
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from cps_engine import merkle
from cps_engine.errors import ValueOutOfRange
from cps_engine.models import event_to_json

if TYPE_CHECKING:
    from cps_engine.ledger.holds import LedgerEvent as Event  # the programme's events and the ledger's holds

__all__ = [
    "ENCODING_VERSION",
    "GENESIS",
    "canonical_json",
    "chain_hash",
    "encode_entry",
    "fold_chain",
    "iso_us",
    "key_check",
    "merkle_root",
    "payload_hash",
]

ENCODING_VERSION: Final = 1
GENESIS: Final = "00" * 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: entry fields in the encoding; ``*_us`` times are rendered as ISO text under the name without ``_us``
_FIELDS: Final = ("seq", "event", "kind", "account", "payee", "currency", "amount", "order", "revision",
                  "line", "level", "rate", "config_hash", "effective_us", "available_us")


@lru_cache(maxsize=65536)
def iso_us(micros: int) -> str:
    """Microseconds since the epoch as fixed-width UTC ISO text; a time ``datetime`` cannot hold (years
    1..9999) is a typed :class:`~cps_engine.errors.ValueOutOfRange`, never an ``OverflowError``.

    >>> iso_us(1_772_330_400_000_000)
    '2026-03-01T02:00:00.000000Z'
    >>> iso_us(10**20)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cps_engine.errors.ValueOutOfRange: ... µs is outside the times a date can hold ...
    """
    try:
        return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        raise ValueOutOfRange(f"{micros} µs is outside the times a date can hold (years 1 to 9999)",
                              field="time") from None


def canonical_json(data: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 text kept as is; ``None`` values are left out.

    >>> canonical_json({"b": 1, "a": None, "c": "é"})
    '{"b":1,"c":"é"}'
    """
    return merkle.canonical_json({k: v for k, v in data.items() if v is not None}).decode("utf-8")


#: (output key, entry field, is a time) in the sorted order of the output keys
_LAYOUT: Final = tuple(sorted(((name[:-3] if name.endswith("_us") else name, name, name.endswith("_us"))
                               for name in _FIELDS), key=lambda f: f[0]))
_quote = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept (as ensure_ascii=False)


def encode_entry(entry: Mapping[str, Any]) -> str:
    """The canonical text of one entry (see the module docstring).

    A fixed-format encoder: the keys are known and sorted once, so the text is built directly
    instead of through a dict and the JSON encoder (the bytes are the same: the golden vectors in
    ``tests/ledger`` and a property test against the JSON encoder hold it to that).
    """
    parts = []
    get = entry.get
    for key, name, is_time in _LAYOUT:
        value = get(name)
        if value is None:
            continue
        kind = type(value)
        if kind is int:
            parts.append(f'"{key}":"{iso_us(value)}"' if is_time else f'"{key}":{value}')
        elif kind is str and not is_time:
            parts.append(f'"{key}":{_quote(value)}')
        else:
            raise TypeError(f"entry field {name!r} must be int or str, not {kind.__name__}")
    parts.append(f'"v":{ENCODING_VERSION}')
    return "{" + ",".join(parts) + "}"


def encode_entry_reference(entry: Mapping[str, Any]) -> str:
    """The same text through the JSON encoder (the definition the fast encoder is tested against)."""
    out: dict[str, Any] = {"v": ENCODING_VERSION}
    for name in _FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        kind = type(value)
        if kind is not int and kind is not str:
            raise TypeError(f"entry field {name!r} must be int or str, not {kind.__name__}")
        out[name[:-3] if name.endswith("_us") else name] = iso_us(value) if name.endswith("_us") else value
    return merkle.canonical_json(out).decode("utf-8")


def chain_hash(prev: str, entry: Mapping[str, Any], key: bytes | None = None) -> str:
    """``sha256(prev_hash_bytes + canonical(entry))`` as hex; with ``key``, a keyed chain:
    ``HMAC-SHA256(key, prev_hash_bytes + canonical(entry))`` (same encoding, same genesis).

    >>> e = {"seq": 1, "event": "order:o1", "kind": "accrual", "account": "commission", "currency": "CNY",
    ...      "amount": 1, "effective_us": 0}
    >>> chain_hash(GENESIS, e, b"k") != chain_hash(GENESIS, e)
    True
    """
    data = bytes.fromhex(prev) + encode_entry(entry).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


#: the text whose HMAC a keyed ledger stores, to tell a wrong key from a tampered log
KEY_CHECK_TEXT: Final = b"cps_engine.ledger chain key check v1"


def key_check(key: bytes) -> str:
    """``HMAC-SHA256(key, KEY_CHECK_TEXT)`` as hex: stored in a keyed ledger's meta (it does not reveal
    the key) so :meth:`Ledger.verify` can say the key is wrong rather than that every entry changed."""
    return hmac.new(key, KEY_CHECK_TEXT, hashlib.sha256).hexdigest()


def fold_chain(entries: Iterable[Mapping[str, Any]], prev: str = GENESIS) -> str:
    """The head after chaining ``entries`` in order from ``prev``.

    >>> fold_chain([]) == GENESIS
    True
    """
    for entry in entries:
        prev = chain_hash(prev, entry)
    return prev


def _norm(value: Any) -> Any:
    """Amounts as minimal decimal text, times as UTC microsecond text, recursively.

    Dispatches on the exact type (the values come from ``model_dump``: str, int, bool, None,
    Decimal, datetime, dict, list); any other type goes through the general branch.

    >>> _norm({"a": [Decimal("5.10"), Decimal("-0.00")], "t": datetime(2026, 3, 1, tzinfo=UTC)})
    {'a': ['5.1', '0'], 't': '2026-03-01T00:00:00.000000Z'}
    """
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if kind is Decimal:
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if kind is datetime:
        u = value.astimezone(UTC)
        if u.year >= 1000:  # isoformat's fixed width equals strftime's here, at a third of the cost
            return u.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if kind is dict:
        return {k: _norm(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_norm(v) for v in value]
    return _norm_general(value)


def _norm_general(value: Any) -> Any:
    """:func:`_norm` for subclasses of the types it dispatches on exactly."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, Decimal):
        return _norm(Decimal(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def payload_hash(event: Event) -> str:
    """sha256 of the event's canonical payload: the idempotency fingerprint.

    Two deliveries carry "the same payload" when they mean the same thing: amounts are compared as
    numbers (``"5.0"`` equals ``"5.00"``) and times as instants (``+08:00`` equals the same moment in
    ``Z``); every other field is compared exactly.

    >>> from cps_engine.models import parse_event
    >>> a = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.0",
    ...                  "at": "2026-03-01T10:00:00+08:00"})
    >>> b = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.00",
    ...                  "at": "2026-03-01T02:00:00Z"})
    >>> payload_hash(a) == payload_hash(b), payload_hash(a)[:12]
    (True, '844474a07910')
    """
    data = _norm(event.model_dump(exclude_none=True))
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


#: how :func:`cps_engine.models.event_to_json` writes an event (sorted keys, compact, UTF-8 kept)
_PAYLOAD_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _Unlisted(Exception):
    """A value :func:`_jsonable` does not know: fall back to the pydantic serialiser."""


def _jsonable(value: Any) -> Any:
    """``model_dump`` values as pydantic's JSON mode writes them: Decimal as its text, datetimes in
    ISO form with ``Z`` for UTC, tuples as lists."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if kind is Decimal:
        return str(value)
    if kind is datetime:
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if kind is dict:
        return {k: _jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_jsonable(v) for v in value]
    raise _Unlisted(kind.__name__)


def payload_and_hash(event: Event) -> tuple[str, str]:
    """:func:`event_payload` and :func:`payload_hash` from one ``model_dump`` of the event (the ledger
    serialises each event once).  Equal to calling both: a property test holds them to it.

    >>> from cps_engine.models import parse_event
    >>> ev = parse_event({"type": "refund", "id": "r1", "order": "o1", "amount": "5.0",
    ...                   "at": "2026-03-01T10:00:00+08:00"})
    >>> payload_and_hash(ev) == (event_payload(ev), payload_hash(ev))
    True
    """
    data = event.model_dump(exclude_none=True)
    try:
        payload = _PAYLOAD_JSON.encode(_jsonable(data))
    except _Unlisted:
        payload = event_payload(event)
    return payload, hashlib.sha256(canonical_json(_norm(data)).encode("utf-8")).hexdigest()


def event_payload(event: Event) -> str:
    """The stored payload of an event: :func:`cps_engine.models.event_to_json` (original values)."""
    return event_to_json(event)  # type: ignore[arg-type]  # any event model: model_dump, sorted JSON


def merkle_root(leaves: Iterable[str]) -> str:
    """RFC 6962 Merkle root (sha256, hex) over leaf texts (UTF-8), by :mod:`cps_engine.merkle`: the same
    tree as the audit statements.  An odd node is carried up, never paired with itself, so ``[a, b, c]``
    and ``[a, b, c, c]`` differ (CVE-2012-2459); no leaves -> ``sha256()`` of nothing.

    (Until cps-engine 0.x the ledger statement root paired an odd node with itself and gave
    :data:`GENESIS` for no lines; roots of statements written before differ for 3, 5, 6, 7, ... lines.)

    >>> merkle_root(["a"]) == hashlib.sha256(b"\\x00a").hexdigest()
    True
    >>> merkle_root(["a", "b", "c"]) != merkle_root(["a", "b", "c", "c"])
    True
    """
    return merkle.merkle_root(leaf.encode("utf-8") for leaf in leaves).hex()
