"""A self-contained HTML report of a verification: the verdict, hints when many discrepancies share
a cause, a chart of the money at stake, a per-payee rollup, the discrepancies grouped by kind, and
the evidence (what was verified against what).

- **Hints** (:func:`~cps_engine.audit.verify.find_patterns`): e.g. "2,600 one-unit differences
  consistent with half-up rounding", amounts at a constant ratio of the owed ones, all the missing
  lines on one level.
- **Per payee**: lines stated and owed, totals, over- and underpaid, per currency; the payees with
  the most at stake first.
- **Evidence**: the sha256 of the canonical events, the policy's config hash and rounding, the
  Merkle root of the lines as stated (and the manifest's), the period with its zone, the as-of
  time of the recomputation, when the report was generated and by which library version.

One file, no external assets, scripts, fonts or CDN: the styles are inline (with print styles: no
page break inside a row, table headers repeated, colours kept) and the chart is an inline SVG with
bar lengths computed in integer arithmetic from the exact amounts.  Every value taken from the
statement or the events is HTML-escaped; a zero amount is never shown as money at stake.

>>> from cps_engine.audit.verify import VerificationReport
>>> html = render_verification_html(VerificationReport("2026-03", "p", "0" * 64, "s.csv", 0, 0, {}, {}))
>>> "<svg" in html and "Statement matches" in html and "http" not in html.split("<body")[1]
True
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Final

from cps_engine.audit.statement import library_version
from cps_engine.audit.verify import KIND_TITLES, Discrepancy, Kind, PayeeRollup, VerificationReport
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
footer{margin-top:32px;color:#56606b;font-size:12px}.zero{color:#8b949e}
.hints{border-left:4px solid #e0a800;background:#fff8e1;padding:6px 12px;margin:8px 0}.hints li{margin:3px 0}
dl.evidence{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px}
dl.evidence dt{color:#56606b}dl.evidence dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
@media print{body{margin:12mm;font-size:11px}h2{break-after:avoid}h3{break-after:avoid}
table{font-size:10px;break-inside:auto}tr,.card,svg,dl.evidence{break-inside:avoid}thead{display:table-header-group}
.cards{gap:6px}.card{padding:4px 8px}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
svg{max-width:100%;height:auto}}
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


def _money_cell(minor: int, cur: str | None, cls: str) -> str:
    """A money-at-stake cell: coloured only when something is at stake (a zero is muted, never red)."""
    return f'<td class="num {cls if minor else "zero"}">{escape(_m(minor, cur) or "0")}</td>'


def _table(ds: list[Discrepancy]) -> str:
    head = ('<table class="discrepancies"><thead><tr><th>line</th><th>row</th><th>order</th><th>payee</th>'
            "<th>stated</th><th>owed</th><th>overpaid</th><th>underpaid</th><th>detail</th></tr></thead><tbody>")
    rows = []
    for d in ds[:MAX_ROWS]:
        rows.append(
            "<tr>"
            f'<td class="num">{d.line if d.line is not None else "—"}</td>'
            f'<td class="num">{d.row if d.row is not None else "—"}</td>'
            f"<td>{escape(d.order or '')}</td><td>{escape(d.payee or '')}</td>"
            f'<td class="num">{escape(_cell(d, "stated"))}</td><td class="num">{escape(_cell(d, "expected"))}</td>'
            f"{_money_cell(d.overpaid, d.currency, 'over')}{_money_cell(d.underpaid, d.currency, 'under')}"
            f"<td>{escape(d.detail)}</td></tr>")
    more = (f'<p class="note">… and {len(ds) - MAX_ROWS} more (the JSON output lists every one).</p>'
            if len(ds) > MAX_ROWS else "")
    return head + "".join(rows) + "</tbody></table>" + more


def _payees(rows: list[PayeeRollup]) -> str:
    """The per-payee rollup (the first :data:`MAX_ROWS`; the JSON form carries all of them)."""
    if not rows:
        return "<p>No lines stated or owed.</p>"
    head = ('<table class="payees"><thead><tr><th>payee</th><th>currency</th><th>lines stated</th>'
            "<th>lines owed</th><th>stated</th><th>owed</th><th>overpaid</th><th>underpaid</th>"
            "<th>discrepancies</th></tr></thead><tbody>")
    body = "".join(
        f"<tr><td>{escape(r.payee)}</td><td>{escape(r.currency)}</td>"
        f'<td class="num">{r.lines_stated:,}</td><td class="num">{r.lines_owed:,}</td>'
        f'<td class="num">{escape(_m(r.stated, r.currency) or "0")}</td>'
        f'<td class="num">{escape(_m(r.owed, r.currency) or "0")}</td>'
        f"{_money_cell(r.overpaid, r.currency, 'over')}{_money_cell(r.underpaid, r.currency, 'under')}"
        f'<td class="num">{r.discrepancies:,}</td></tr>' for r in rows[:MAX_ROWS])
    more = (f'<p class="note">… and {len(rows) - MAX_ROWS:,} more payees (the JSON output lists every one).</p>'
            if len(rows) > MAX_ROWS else "")
    return head + body + "</tbody></table>" + more


def _evidence(report: VerificationReport, generated_at: datetime) -> str:
    """What was verified against what: enough to reproduce the report."""
    period = report.period
    if report.period_start and report.period_end:
        period += f" ({report.period_start} to {report.period_end}, time zone {report.tz})"
    rows = [
        ("statement", report.source or "-"),
        ("period", period),
        ("events sha256", report.events_sha256 or "-"),
        ("policy", report.policy),
        ("policy config hash", report.config_hash),
        ("rounding", report.rounding or "-"),
        ("Merkle root of the lines stated", report.merkle_root or "-"),
        ("Merkle root in the manifest", report.manifest_merkle_root or "(no manifest)"),
        ("as of (events up to)", report.as_of or "-"),
        ("generated at", generated_at.isoformat()),
        ("library version", f"cps-engine {library_version()}"),
    ]
    return '<dl class="evidence">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


def render_verification_html(report: VerificationReport, *, title: str | None = None,
                             generated_at: datetime | None = None) -> str:
    """The whole report as one HTML document (UTF-8, no external resources).  ``generated_at``
    (default: now, UTC) is printed in the evidence block."""
    when = generated_at if generated_at is not None else datetime.now(UTC).replace(microsecond=0)
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
        over_cls = "over" if tot["overpaid"] else "zero"
        under_cls = "under" if tot["underpaid"] else "zero"
        cards.append(f'<div class="card"><b class="{over_cls}">{escape(_m(tot["overpaid"], cur))}</b>'
                     f'<span>overpaid, {escape(cur)}</span></div>')
        cards.append(f'<div class="card"><b class="{under_cls}">{escape(_m(tot["underpaid"], cur))}</b>'
                     f'<span>underpaid, {escape(cur)}</span></div>')
    charts = "".join(f"<h3>Money at stake, {escape(cur)}</h3>{svg_stake_chart(report, cur)}" for cur in currencies)
    if not currencies:
        charts = svg_stake_chart(report, "-")
    groups = []
    for kind, ds in report.by_kind().items():
        groups.append(f'<h3 id="{escape(kind.value)}">{escape(KIND_TITLES[kind])} ({len(ds)})</h3>{_table(ds)}')
    notes = "".join(f'<p class="note">{escape(x)}</p>' for x in report.notes)
    patterns = report.patterns()
    hints = ('<div class="hints"><b>Patterns</b><ul>' + "".join(f"<li>{escape(p.text)}</li>" for p in patterns)
             + "</ul></div>") if patterns else ""
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
{hints}
<div class="cards">{"".join(cards)}</div>
<h2>Money at stake</h2>
{charts}
<h2>Discrepancies</h2>
{"".join(groups) if groups else '<p>None: every stated line matches a recomputed line, and nothing is missing.</p>'}
{notes}
<h2>Per payee</h2>
{_payees(report.payees)}
<h2>Evidence</h2>
{_evidence(report, when)}
<footer>Generated by cps-engine {escape(library_version())} at {escape(when.isoformat())}. Amounts are exact, in
major units of their currency.
</footer>
</body></html>
"""
