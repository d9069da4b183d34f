"""A self-contained HTML report of a verification: discrepancies grouped by kind and a chart of the
money at stake.

One file, no external assets, scripts, fonts or CDN: the styles are inline and the chart is an inline
SVG with bar lengths computed in integer arithmetic from the exact amounts.  Every value taken from
the statement or the events is HTML-escaped.

>>> from cps_engine.audit.verify import VerificationReport
>>> html = render_verification_html(VerificationReport("2026-03", "p", "0" * 64, "s.csv", 0, 0, {}, {}))
>>> "<svg" in html and "Statement matches" in html and "http" not in html.split("<body")[1]
True
"""

from __future__ import annotations

from html import escape
from typing import Final

from cps_engine.audit.statement import library_version
from cps_engine.audit.verify import KIND_TITLES, Discrepancy, Kind, VerificationReport
from cps_engine.money import Money

__all__ = ["render_verification_html", "svg_stake_chart"]

#: Rows shown per kind; the JSON form carries all of them.
MAX_ROWS: Final = 500
OVER_COLOUR: Final = "#c0392b"
UNDER_COLOUR: Final = "#e0a800"

_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;margin:24px;
color:#1d232a;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:20px 0 6px}
.meta{color:#56606b;font-size:13px}.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;
margin:12px 0}.ok{background:#e3f6e8;color:#1e7b34}.bad{background:#fdecea;color:#a4281b}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d9dee3;border-radius:8px;padding:10px 14px;
min-width:150px}.card b{display:block;font-size:18px}.card span{color:#56606b;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}th,td{border-bottom:1px solid #e6e9ec;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f6f8}td.num{text-align:right;
font-variant-numeric:tabular-nums}.over{color:#a4281b}.under{color:#8a6500}.note{color:#56606b;font-size:13px}
footer{margin-top:32px;color:#56606b;font-size:12px}
"""


def _m(minor: int, cur: str | None) -> str:
    if not cur or cur == "-":
        return "" if not minor else str(minor)
    return format(Money(minor, cur).amount, "f")


def svg_stake_chart(report: VerificationReport, currency: str, width: int = 720) -> str:
    """Horizontal bars per kind: overpaid and underpaid money at stake in ``currency``.

    Bar lengths are ``amount × plot width // largest amount`` (integers), so the drawing is exact.
    """
    stake = report.at_stake().get(currency, {})
    kinds = [k for k in Kind if k.value in stake and stake[k.value]["overpaid"] + stake[k.value]["underpaid"]]
    label_w, bar_h, gap, top = 250, 14, 10, 34
    plot_w = width - label_w - 150
    largest = max((max(stake[k.value]["overpaid"], stake[k.value]["underpaid"]) for k in kinds), default=0)
    height = top + max(1, len(kinds)) * (2 * bar_h + gap) + 10
    out = [f'<svg role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" aria-label="Money at stake by kind, {escape(currency)}">',
           f'<title>Money at stake by kind ({escape(currency)})</title>',
           f'<rect x="{label_w}" y="8" width="12" height="12" fill="{OVER_COLOUR}"/>'
           f'<text x="{label_w + 18}" y="18" font-size="12">overpaid</text>'
           f'<rect x="{label_w + 100}" y="8" width="12" height="12" fill="{UNDER_COLOUR}"/>'
           f'<text x="{label_w + 118}" y="18" font-size="12">underpaid</text>']
    if not kinds:
        out.append(f'<text x="{label_w}" y="{top + 14}" font-size="13" fill="#1e7b34">nothing at stake</text>')
    y = top
    for k in kinds:
        row = stake[k.value]
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h + 4}" font-size="12" text-anchor="end">'
                   f'{escape(KIND_TITLES[k])} ({row["count"]})</text>')
        for value, colour, cls in ((row["overpaid"], OVER_COLOUR, "over"), (row["underpaid"], UNDER_COLOUR, "under")):
            length = value * plot_w // largest if largest else 0
            if value and length < 2:
                length = 2
            out.append(f'<rect class="{cls}" x="{label_w}" y="{y}" width="{length}" height="{bar_h}" '
                       f'fill="{colour}"><title>{escape(_m(value, currency))} {escape(currency)}</title></rect>')
            if value:
                out.append(f'<text x="{label_w + length + 6}" y="{y + bar_h - 3}" font-size="11">'
                           f'{escape(_m(value, currency))}</text>')
            y += bar_h
        y += gap
    out.append(f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{y}" stroke="#8b949e"/>')
    out.append("</svg>")
    return "\n".join(out)


def _cell(d: Discrepancy, which: str) -> str:
    line = d.stated if which == "stated" else d.expected
    return _m(line.amount.minor, line.currency) if line is not None else ""


def _table(ds: list[Discrepancy]) -> str:
    head = ("<table><thead><tr><th>line</th><th>row</th><th>order</th><th>payee</th><th>stated</th>"
            "<th>owed</th><th>overpaid</th><th>underpaid</th><th>detail</th></tr></thead><tbody>")
    rows = []
    for d in ds[:MAX_ROWS]:
        rows.append(
            "<tr>"
            f'<td class="num">{d.line if d.line is not None else "—"}</td>'
            f'<td class="num">{d.row if d.row is not None else "—"}</td>'
            f"<td>{escape(d.order or '')}</td><td>{escape(d.payee or '')}</td>"
            f'<td class="num">{escape(_cell(d, "stated"))}</td><td class="num">{escape(_cell(d, "expected"))}</td>'
            f'<td class="num over">{escape(_m(d.overpaid, d.currency))}</td>'
            f'<td class="num under">{escape(_m(d.underpaid, d.currency))}</td>'
            f"<td>{escape(d.detail)}</td></tr>")
    more = (f'<p class="note">… and {len(ds) - MAX_ROWS} more (the JSON output lists every one).</p>'
            if len(ds) > MAX_ROWS else "")
    return head + "".join(rows) + "</tbody></table>" + more


def render_verification_html(report: VerificationReport, *, title: str | None = None) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    n = len(report.discrepancies)
    verdict = ('<div class="verdict ok">Statement matches the recomputation</div>' if report.ok else
               f'<div class="verdict bad">{n} discrepanc{"y" if n == 1 else "ies"} found</div>')
    stake = report.at_stake()
    currencies = sorted(set(report.stated_totals) | set(report.expected_totals) | {c for c in stake if c != "-"})
    cards = [f'<div class="card"><b>{report.lines_stated}</b><span>lines stated</span></div>',
             f'<div class="card"><b>{report.lines_expected}</b><span>lines owed</span></div>']
    for cur in currencies:
        tot = stake.get(cur, {}).get("total", {"overpaid": 0, "underpaid": 0})
        cards.append(f'<div class="card"><b>{escape(_m(report.stated_totals.get(cur, 0), cur))}</b>'
                     f'<span>stated total, {escape(cur)}</span></div>')
        cards.append(f'<div class="card"><b>{escape(_m(report.expected_totals.get(cur, 0), cur))}</b>'
                     f'<span>owed total, {escape(cur)}</span></div>')
        cards.append(f'<div class="card"><b class="over">{escape(_m(tot["overpaid"], cur))}</b>'
                     f'<span>overpaid, {escape(cur)}</span></div>')
        cards.append(f'<div class="card"><b class="under">{escape(_m(tot["underpaid"], cur))}</b>'
                     f'<span>underpaid, {escape(cur)}</span></div>')
    charts = "".join(f"<h3>Money at stake, {escape(cur)}</h3>{svg_stake_chart(report, cur)}" for cur in currencies)
    if not currencies:
        charts = svg_stake_chart(report, "-")
    groups = []
    for kind, ds in report.by_kind().items():
        groups.append(f'<h3 id="{escape(kind.value)}">{escape(KIND_TITLES[kind])} ({len(ds)})</h3>{_table(ds)}')
    notes = "".join(f'<p class="note">{escape(x)}</p>' for x in report.notes)
    name = title or f"Statement verification — {report.period}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(name)}</title><style>{_CSS}</style></head>
<body>
<h1>{escape(name)}</h1>
<div class="meta">statement {escape(report.source or "-")} · policy {escape(report.policy)}
(config {escape(report.config_hash[:16])}…) · period {escape(report.period)}</div>
{verdict}
<div class="cards">{"".join(cards)}</div>
<h2>Money at stake</h2>
{charts}
<h2>Discrepancies</h2>
{"".join(groups) if groups else '<p>None: every stated line matches a recomputed line, and nothing is missing.</p>'}
{notes}
<footer>Generated by cps-engine {escape(library_version())}. Amounts are exact, in major units of their currency.
</footer>
</body></html>
"""
