"""The HTML verification report: self-contained, escaped, and rendered by headless Chromium.

The browser test skips when no Chromium is installed, unless ``CPS_REQUIRE_BROWSER=1`` (CI), where a
missing browser is a failure.  Install it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cps_engine import Money, load_events, load_policy
from cps_engine.audit.report import OVER_COLOUR, UNDER_COLOUR, render_verification_html, svg_stake_chart
from cps_engine.audit.statement import Statement, StatementLine, build_statement, events_digest, library_version
from cps_engine.audit.verify import VerificationReport, verify_statement

EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"<b>bob</b>","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","share":"s2","amount":"900.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00"}',
]


def _stated() -> list[StatementLine]:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    lines = list(build_statement(evs, pol, "2026-03", tz="+08:00").lines)
    lines[0] = replace(lines[0], amount=Money(lines[0].amount.minor + 2500, "CNY"))
    lines.pop()
    lines.append(StatementLine("<script>alert(1)</script>", "o1", Money(1000, "CNY"), 3))
    return lines


def _report() -> VerificationReport:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    honest = build_statement(evs, pol, "2026-03", tz="+08:00")
    lines = list(honest.lines)
    lines[0] = replace(lines[0], amount=Money(lines[0].amount.minor + 2500, "CNY"))   # overpaid 25.00
    dropped = lines.pop()                                                              # underpaid
    lines.append(StatementLine("<script>alert(1)</script>", "o1", Money(1000, "CNY"), 3))
    assert dropped.amount.minor > 0
    return verify_statement(Statement(tuple(lines), source="x.csv"), evs, pol, period="2026-03", tz="+08:00")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escaped() -> None:
    report = _report()
    html = render_verification_html(report)
    parser = _Collect()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    assert not any(k in ("src", "href") for _, attrs in parser.tags for k in attrs)
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bob&lt;/b&gt;" in html
    assert tags.count("svg") == 1
    tables = [attrs.get("class") for t, attrs in parser.tags if t == "table"]
    assert tables == ["discrepancies"] * len(report.by_kind()) + ["payees"]
    text = " ".join(parser.text)
    assert "3 discrepancies found" in text and "Money at stake" in text


def test_chart_bars_are_proportional_to_the_money_at_stake() -> None:
    report = _report()
    svg = svg_stake_chart(report, "CNY")
    bars = [(m.group(1), int(m.group(2))) for m in re.finditer(r'<rect class="(over|under)"[^>]* width="(\d+)"', svg)]
    stake = report.at_stake()["CNY"]
    values = [(cls, stake[k][f"{cls}paid"]) for k in ("missing", "extra", "amount_mismatch") if k in stake
              for cls in ("over", "under")]
    assert len(bars) == len(values) == 6
    largest = max(v for _, v in values)
    widest = max(w for _, w in bars)
    for (cls, width), (cls2, value) in zip(bars, values, strict=True):
        assert cls == cls2
        assert width == (value * widest // largest if value * widest // largest >= 2 or not value else 2)


def test_a_clean_report_says_so() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    st_ = build_statement(evs, pol, "2026-03", tz="+08:00")
    html = render_verification_html(verify_statement(st_, evs, pol))
    assert "Statement matches the recomputation" in html and "nothing at stake" in html


# ------------------------------------------------------------------------------------------ evidence, rollup, hints
def _rounded(mode: str, n: int = 40) -> tuple[list[Any], Any, Statement]:
    """A history of ``n`` orders whose 10% commissions all have a fraction, stated rounded ``mode``."""
    recs = ['{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}']
    for i in range(n):
        amount = f"{100 + i}.{(7 * i) % 100:02d}"
        recs.append(f'{{"type":"order","id":"o{i}","buyer":"b{i}","share":"s1","amount":"{amount}",'
                    f'"currency":"CNY","at":"2026-03-02T12:{i % 60:02d}:00+08:00"}}')
    evs = load_events(recs)
    pol = load_policy({"kind": "last_sharer", "rate": "10%"})
    other = load_policy({"kind": "last_sharer", "rate": "10%", "rounding": mode})
    return evs, pol, build_statement(evs, other, "2026-03")


def test_one_unit_differences_are_named_by_the_rounding_that_explains_them() -> None:
    for mode, words in (("half_up", "half-up"), ("half_even", "half-even"), ("up", "up")):
        evs, pol, stated = _rounded(mode)
        report = verify_statement(stated, evs, pol)
        ones = [d for d in report.discrepancies if d.kind.value == "amount_mismatch"]
        assert ones and all(d.stated.amount.minor - d.expected.amount.minor == 1 for d in ones)  # type: ignore[union-attr]
        hints = [p for p in report.patterns() if p.kind == "rounding"]
        assert len(hints) == 1, report.patterns()
        assert hints[0].count == len(ones)
        assert f"{len(ones)} one-unit differences" in hints[0].text
        assert f"consistent with {words} rounding (the policy rounds down)" in hints[0].text
        html = render_verification_html(report)
        assert escape(hints[0].text) in html


def test_one_unit_differences_no_rounding_explains() -> None:
    evs, pol, honest = _rounded("down")
    lines = [replace(ln, amount=Money(ln.amount.minor + 1, "CNY")) if i % 3 == 0 else ln
             for i, ln in enumerate(honest.lines)]
    report = verify_statement(Statement(tuple(lines)), evs, pol, period="2026-03")
    kinds = [p.kind for p in report.patterns()]
    assert "one_unit" in kinds and "rounding" not in kinds


def test_a_constant_rate_ratio_is_named() -> None:
    evs, pol, _ = _rounded("down")
    high = build_statement(evs, load_policy({"kind": "last_sharer", "rate": "12%"}), "2026-03")
    report = verify_statement(Statement(high.lines), evs, pol, period="2026-03")
    ratio = [p for p in report.patterns() if p.kind == "rate_ratio"]
    assert len(ratio) == 1 and "stated at 1.2 × the amount owed" in ratio[0].text
    # a platform file without rates: the ratio is found from the amounts
    bare = tuple(replace(ln, rate=None, base=None, level=None) for ln in high.lines)
    ratio = [p for p in verify_statement(Statement(bare), evs, pol, period="2026-03").patterns()
             if p.kind == "rate_ratio"]
    assert len(ratio) == 1 and "stated at 1.2 × the amount owed" in ratio[0].text


def test_missing_lines_on_one_level_are_named() -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]})
    honest = build_statement(evs, pol, "2026-03", tz="+08:00")
    report = verify_statement(Statement(tuple(ln for ln in honest.lines if ln.level != 2)), evs, pol,
                              period="2026-03", tz="+08:00")
    assert [p.text for p in report.patterns() if p.kind == "level"] == [
        "all 2 missing lines (owed, not stated) are at level 2 (underpaid 50.00 CNY)"]


def test_evidence_block_and_payee_rollup() -> None:
    report = _report()
    when = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
    html = render_verification_html(report, generated_at=when)
    evidence = html.split('<dl class="evidence">')[1].split("</dl>")[0]
    evs = load_events(EVENTS)
    for value in (events_digest(evs), report.config_hash, report.merkle_root, "2026-03-01T00:00:00+08:00",
                  "2026-04-01T00:00:00+08:00", "+08:00", "2026-03-03T12:00:00+08:00", "2026-04-02T09:30:00+00:00",
                  library_version(), "down", "(no manifest)"):
        assert value and str(value) in evidence, value
    assert report.merkle_root == Statement(tuple(_stated())).merkle_root()
    payees = html.split('<table class="payees">')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>CNY</td>(.*?)</tr>", payees)
    # the most at stake first: amy's missing 45.00, bob's extra 25.00, the unknown payee's 10.00
    assert [r[0] for r in rows] == ["amy", "&lt;b&gt;bob&lt;/b&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"]
    rollup = {r.payee: r for r in report.payees}
    assert rollup["<b>bob</b>"].overpaid == 2500 and rollup["amy"].underpaid == 4500
    assert rollup["<script>alert(1)</script>"].lines_owed == 0
    assert json.loads(report.to_json())["evidence"]["merkle_root"] == report.merkle_root


def test_zero_amounts_are_not_red_and_print_styles_exist() -> None:
    html = render_verification_html(_report())
    assert not re.search(r'class="num (over|under)">0(\.00)?<', html)
    assert re.search(r'class="num zero">0\.00<', html)
    assert re.search(r'class="num over">25\.00<', html)
    assert "@media print" in html and "thead{display:table-header-group}" in html
    clean = render_verification_html(VerificationReport("2026-03", "p", "0" * 64, "s.csv", 1, 1, {"CNY": 5},
                                                        {"CNY": 5}))
    assert '<b class="over">' not in clean and '<b class="zero">0.00</b>' in clean


def test_hostile_strings_are_escaped_everywhere() -> None:
    evil = '<img src=x onerror=alert(1)>"\'&'
    evs = load_events([
        json.dumps({"type": "share", "id": evil, "sharer": evil, "at": "2026-03-01T10:00:00+08:00"}),
        *(json.dumps({"type": "order", "id": f"o{i}{evil}", "buyer": "b", "share": evil, "amount": "100.00",
                      "currency": "CNY", "at": "2026-03-02T12:00:00+08:00"}) for i in range(2))])
    pol = load_policy({"kind": "last_sharer", "rate": "10%"})
    honest = build_statement(evs, pol, "2026-03")
    lines = [replace(ln, amount=Money(ln.amount.minor + 1, "CNY")) for ln in honest.lines]
    report = verify_statement(Statement(tuple(lines), source=f"{evil}.csv"), evs, pol, period="2026-03")
    assert any(p.kind == "payee" for p in report.patterns())  # the hint quotes the hostile payee
    html = render_verification_html(report, title=evil)
    parser = _Collect()
    parser.feed(html)
    assert "img" not in [t for t, _ in parser.tags]
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# ------------------------------------------------------------------------------------------ browser
def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG: (width, height, channels, raw pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            channels = 4 if colour == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b = prev[i]
            if ftype == 1:
                row[i] = (row[i] + a) & 255
            elif ftype == 2:
                row[i] = (row[i] + b) & 255
            elif ftype == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif ftype == 4:
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += row
        prev = row
    return width, height, channels, bytes(out)


def _count(pixels: bytes, channels: int, colour: str) -> int:
    want = bytes.fromhex(colour.lstrip("#"))
    return sum(1 for i in range(0, len(pixels), channels) if pixels[i:i + 3] == want)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        if os.environ.get("CPS_REQUIRE_BROWSER") == "1":
            pytest.fail("CPS_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)")
        pytest.skip("no headless Chromium on PATH (apt-get install -y chromium); set CPS_REQUIRE_BROWSER=1 to "
                    "make this a failure")
    page = tmp_path / "report.html"
    page.write_text(render_verification_html(_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,620",
           f"--screenshot={shot}", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0 and shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    width, height, channels, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (900, 620)
    # the chart's bars were drawn: both bar colours are on screen, in bar-sized areas
    assert _count(pixels, channels, OVER_COLOUR) > 300
    assert _count(pixels, channels, UNDER_COLOUR) > 300
