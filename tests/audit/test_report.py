"""The HTML verification report: self-contained, escaped, and rendered by headless Chromium.

The browser test skips when no Chromium is installed, unless ``CPS_REQUIRE_BROWSER=1`` (CI), where a
missing browser is a failure.  Install it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cps_engine import Money, load_events, load_policy
from cps_engine.audit.report import OVER_COLOUR, UNDER_COLOUR, render_verification_html, svg_stake_chart
from cps_engine.audit.statement import Statement, StatementLine, build_statement
from cps_engine.audit.verify import VerificationReport, verify_statement

EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"<b>bob</b>","parent":"s1","at":"2026-03-01T11:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","share":"s2","amount":"900.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00"}',
]


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
    assert tags.count("svg") == 1 and tags.count("table") == len(report.by_kind())
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
