"""The columnar reader (``cps_engine.columnar``) keeps, drops and refuses exactly what the event models
(``load_events``) do, with the same messages, and gives every kept event the models' values.

Each hostile line below is put in a file among good ones; the reader's events (as columns) and errors
are compared with ``load_events``/``validate_events`` on the same file.  Mutation checks at the end
show the comparison fails when the reader is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow")

from cps_engine import columnar
from cps_engine.cli import sample_path
from cps_engine.columnar import problems, read_events
from cps_engine.models import OrderEvent, RefundEvent, load_events, validate_events

GOOD = [
    '{"type":"share","id":"s1","sharer":"amy","parent":null,"at":"2026-03-01T10:00:00+08:00","campaign":"c"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T11:00:00.5+08:00"}',
    '{"type":"bind","id":"b1","user":"cat","upline":"bob","at":"2026-03-01T12:00:00Z","registration":true}',
    '{"type":"order","id":"o1","buyer":"cat","share":"s2","amount":"199.90","currency":"CNY",'
    '"at":"2026-03-02T10:00:00Z","shipping":"10.00","lines":[{"sku":"A1","category":"food","quantity":2,'
    '"unit_price":"90.00"}]}',
    '{"type":"order","id":"o2","buyer":"cat","amount":"5","currency":"JPY","at":"2026-03-02T11:00:00-05:30"}',
    '{"type":"refund","id":"r1","order":"o1","amount":"5.5","at":"2026-03-03T10:00:00Z"}',
    '{"type":"payout","id":"p1","payee":"bob","amount":"1.00","currency":"CNY","at":"2026-03-04T10:00:00Z"}',
    '{"type":"role","id":"x1","person":"bob","role":"distributor","via":"autoship","at":"2026-03-04T10:00:00Z"}',
]

#: lines the models accept in an unusual form, or refuse: each must come out as the models say
HOSTILE = [
    '{"type":"share","id":" s9 ","sharer":"amy","at":"2026-03-01T10:00:00Z"}',  # stripped by the model
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z","amount":null}',  # extra key, null
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z","x":1}',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z","id":"s10"}',  # duplicate key
    '{"type":"share","id":"s9","sharer":null,"at":"2026-03-01T10:00:00Z"}',
    '{"type":"share","id":"","sharer":"amy","at":"2026-03-01T10:00:00Z"}',
    '{"type":"share","id":"' + "x" * 257 + '","sharer":"amy","at":"2026-03-01T10:00:00Z"}',
    '{"type":"share","id":"s9","sharer":"amy\\u3000","at":"2026-03-01T10:00:00Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00"}',  # no zone
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-02-29T10:00:00Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"1969-12-31T23:59:59Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"9000-01-01T00:00:00Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01 10:00:00+08:00"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00.1234567Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":1772330000}',
    '{"type":"share","id":5,"sharer":"amy","at":"2026-03-01T10:00:00Z"}',
    '{"type":"bind","id":"b9","user":"u","upline":"v","at":"2026-03-01T10:00:00Z","registration":"yes"}',
    '{"type":"bind","id":"b9","user":"u","upline":"v","at":"2026-03-01T10:00:00Z","registration":null}',
    '{"type":"order","id":"o9","buyer":"b","amount":5.0,"currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":500,"currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.001","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.000","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"1e2","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"-5","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"NaN","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"10000000000000.01","currency":"CNY",'
    '"at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"cny","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"XXQ","at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"shipping":"4","tax":"2"}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"lines":[{"sku":"A","quantity":0,"unit_price":"1"}]}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"lines":[{"sku":"A","quantity":1,"unit_price":"1.001"}]}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"lines":[{"sku":"A","quantity":1,"unit_price":"1","sku":"B"}]}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"lines":[{"sku":"A","quantity":1,"unit_price":"1","x":null}]}',
    '{"type":"order","id":"o9","buyer":"b","amount":"5.00","currency":"CNY","at":"2026-03-02T10:00:00Z",'
    '"lines":[]}',
    '{"type":"order","id":"=HYPERLINK(\\"x\\")","buyer":"\\u001b[31mred","amount":"5.00","currency":"CNY",'
    '"at":"2026-03-02T10:00:00Z"}',
    '{"type":"order","id":"[bold]o[/bold]","buyer":"b\\u202e","amount":"5.00","currency":"CNY",'
    '"at":"2026-03-02T10:00:00Z"}',
    '{"type":"refund","id":"r9","order":"o1","amount":"0","at":"2026-03-03T10:00:00Z"}',
    '{"type":"refund","id":"r9","order":"o1","kind":"oops","at":"2026-03-03T10:00:00Z"}',
    '{"type":"refund","id":"r9","order":"o1","amount":"99999999999999999","at":"2026-03-03T10:00:00Z"}',
    '{"type":"payout","id":"p9","payee":"bob","amount":"0.00","currency":"CNY","at":"2026-03-04T10:00:00Z"}',
    '{"type":"role","id":"x9","person":"bob","role":"boss","at":"2026-03-04T10:00:00Z"}',
    '{"type":"gift","id":"g1","at":"2026-03-04T10:00:00Z"}',
    '{"type":"share","id":"s1","sharer":"amy","parent":null,"at":"2026-03-01T10:00:00+08:00","campaign":"c"}',
    '{"type":"share","id":"s1","sharer":"zed","at":"2026-03-01T10:00:00+08:00"}',  # same id, other payload
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-03-01T03:00:00.500Z"}',  # same instant
    '[1, 2]',
    '{"type":"share"} {"type":"bind"}',
    '{"type":"share",',
    '   ',
    '\u3000',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z"}\r',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z"}' + "[" * 70,
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00Z","campaign":"' + "[" * 70 + '"}',
    '{"type":"share","id":"s9","sharer":"a\tb","at":"2026-03-01T10:00:00Z"}',
    '{"type":"share","id":"s9","sharer":"amy","at":"2026-03-01T10:00:00+24:00"}',
    '{"type" : "share", "id" : "s11", "sharer" : "名字", "parent" : null, "at" : "2026-03-01T10:00:00+08:00"}',
]


def _columns_as_models(cols: columnar.EventColumns) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for kind in columnar.TYPES:
        t = cols.tables[kind]
        rows = []
        for ev in cols.events(kind):
            rows.append((ev.id, ev.at.isoformat(), ev.model_dump(mode="json")))
        out[kind] = rows
        assert t.num_rows == len(rows)
    orders = cols.tables["order"].to_pylist()
    out["order_minor"] = [(o["id"], o["amount_minor"], o["shipping_minor"], o["tax_minor"], o["items"],
                           o["has_lines"], o["at_us"]) for o in orders]
    return out


def _models(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    from cps_engine.columnar import _us

    evs = load_events(path)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for kind in columnar.TYPES:
        out[kind] = [(e.id, e.at.isoformat(), e.model_dump(mode="json")) for e in evs if e.type == kind]
    out["order_minor"] = [(o.id, o.amount_minor, o.shipping_minor, o.tax_minor,
                           sum(x.quantity for x in o.lines) if o.lines else 1, bool(o.lines), _us(o.at))
                          for o in evs if isinstance(o, OrderEvent)]
    return out


def _check(path: Path) -> None:
    cols = read_events(path)
    expected = [str(e) for e in validate_events(path)]
    assert [str(e) for e in cols.errors] == expected
    if not expected:
        assert _columns_as_models(cols) == _models(path)


def _write(tmp: Path, lines: list[str], name: str = "e.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_good_lines_are_read_in_columns_with_the_models_values(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    cols = read_events(path)
    assert not cols.models  # every line took the columnar path
    _check(path)
    order = cols.tables["order"].to_pylist()
    assert [(o["amount_minor"], o["items"]) for o in order] == [(19990, 2), (5, 1)]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_line_comes_out_as_the_models_say(tmp_path: Path, line: str) -> None:
    _check(_write(tmp_path, [*GOOD, line, GOOD[0].replace('"s1"', '"s77"', 1)]))


def test_every_bad_line_at_once_with_line_record_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, [*GOOD, *HOSTILE])
    cols = read_events(path)
    assert len(cols.errors) > 30
    assert [str(e) for e in cols.errors] == [str(e) for e in validate_events(path)]
    assert all(e.line is not None for e in cols.errors)


def test_bom_crlf_blank_lines_and_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    body = ("\r\n".join(GOOD) + "\r\n\r\n").encode()
    path.write_bytes(b"\xef\xbb\xbf" + body + b'{"type":"share","id":"\xff"}\n' + GOOD[1].encode())
    _check(path)
    assert "byte offset" in str(read_events(path).errors[0])
    clean = tmp_path / "c.jsonl"
    clean.write_bytes(b"\xef\xbb\xbf" + body)
    _check(clean)


def test_the_bundled_sample(tmp_path: Path) -> None:
    _check(sample_path())


def test_stdin_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    data = ("\n".join(GOOD) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert read_events("-").count("order") == read_events(data).count("order") == 2


# ---------------------------------------------------------------------------------------- problems
def test_problems_finds_all_compute_would_refuse_with_lines(tmp_path: Path) -> None:
    lines = [
        *GOOD,
        '{"type":"share","id":"s3","sharer":"dan","parent":"nope","at":"2026-03-01T10:00:00Z"}',      # 9
        '{"type":"share","id":"s4","sharer":"eve","parent":"s4","at":"2026-03-01T10:00:00Z"}',        # 10
        '{"type":"share","id":"s5","sharer":"fay","parent":"s1","at":"2026-02-01T10:00:00Z"}',        # 11
        '{"type":"bind","id":"b2","user":"gus","upline":"gus","at":"2026-03-01T10:00:00Z"}',          # 12
        '{"type":"bind","id":"b3","user":"bob","upline":"cat","at":"2026-03-01T13:00:00Z"}',          # 13 loop
        '{"type":"order","id":"o3","buyer":"x","share":"ghost","amount":"1.00","currency":"CNY",'
        '"at":"2026-03-05T10:00:00Z"}',                                                                # 14
        '{"type":"refund","id":"r2","order":"o404","at":"2026-03-05T10:00:00Z"}',                     # 15
        '{"type":"refund","id":"r3","order":"o1","amount":"500.00","at":"2026-03-05T10:00:00Z"}',     # 16
        '{"type":"refund","id":"r4","order":"o2","currency":"CNY","at":"2026-03-05T10:00:00Z"}',      # 17
        '{"type":"order","id":"o1","buyer":"cat","amount":"1.00","currency":"CNY",'
        '"at":"2026-03-02T10:00:00Z"}',                                                                # 18 dup
    ]
    found = problems(read_events(_write(tmp_path, lines)))
    assert [e.line for e in found] == [9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    text = "\n".join(str(e) for e in found)
    for bit in ("'nope'", "itself", "before its parent", "themselves", "ghost", "o404", "exceed", "in CNY",
                "line 4"):
        assert bit in text
    assert problems(read_events(_write(tmp_path, GOOD, "ok.jsonl"))) == []


def test_each_refund_problem_is_the_engines_message(tmp_path: Path) -> None:
    from cps_engine.engine import orders_by_id, refunds_by_order

    for extra in ('{"type":"refund","id":"r2","order":"o404","at":"2026-03-05T10:00:00Z"}',
                  '{"type":"refund","id":"r3","order":"o1","amount":"500.00","at":"2026-03-05T10:00:00Z"}',
                  '{"type":"refund","id":"r3","order":"o1","amount":"5.001","at":"2026-03-05T10:00:00Z"}',
                  '{"type":"refund","id":"r4","order":"o2","currency":"CNY","at":"2026-03-05T10:00:00Z"}'):
        path = _write(tmp_path, [*GOOD, extra])
        evs = load_events(path)
        with pytest.raises(Exception) as want:
            refunds_by_order(evs, orders_by_id(evs))
        with pytest.raises(Exception) as got:
            columnar.refunded(read_events(path))
        assert str(got.value) == str(want.value)
        assert isinstance(evs[-1], RefundEvent)


# ---------------------------------------------------------------------------------------- mutations
def test_the_comparison_catches_a_reader_that_trusts_edge_spaces(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "_EDGE_SPACE", "[\\x{1}]")  # no white space is seen at the edges
    with pytest.raises(AssertionError):
        _check(_write(tmp_path, [*GOOD, json.dumps({"type": "share", "id": "s9 ", "sharer": "a",
                                                    "at": "2026-03-01T10:00:00Z"})]))


def test_the_comparison_catches_a_reader_that_does_not_count_keys(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "_keys_differ", lambda keys, expected: keys != keys)
    with pytest.raises(AssertionError):
        _check(_write(tmp_path, [*GOOD, HOSTILE[1]]))  # a share with "amount": null would be taken
