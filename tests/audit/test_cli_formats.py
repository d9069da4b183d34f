"""The auditor's commands: ``--format`` as a listed choice, the statement period's zone, and CSV rates a
spreadsheet cannot turn into dates."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cps_engine import load_events, load_policy
from cps_engine.audit.statement import (
    Period,
    Statement,
    StatementLine,
    build_statement,
    excel_rate,
    rate_percent,
    read_statement,
    seal_lines,
    zone_of,
)
from cps_engine.audit.verify import verify_statement
from cps_engine.cli_audit import audit_app, statement
from cps_engine.money import Money

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(audit_app, name="audit")
app.command("statement")(statement)
runner = CliRunner()

# +08:00 data: o1 is paid at 02:00 on 1 March in Shanghai, which is still 28 February in UTC
EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-02-20T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-02-20T11:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-01T02:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","share":"s1","amount":"387.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00"}',
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ev = tmp_path / "events.jsonl"
    ev.write_text("\n".join(EVENTS) + "\n", encoding="utf-8")
    pol = tmp_path / "policy.toml"
    pol.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%"]\n', encoding="utf-8")
    return {"events": ev, "policy": pol, "dir": tmp_path / "out"}


# ------------------------------------------------------------------------------------------ --format
def _commands(files: dict[str, Path], tmp_path: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    out = files["dir"]
    assert runner.invoke(app, ["statement", "--events", str(files["events"]), "--policy", str(files["policy"]),
                               "--period", "2026-03", "-o", str(out)]).exit_code == 0
    js = out / "statement-2026-03.json"
    proof = tmp_path / "proof.json"
    assert runner.invoke(app, ["audit", "prove", str(js), "--payee", "amy", "-o", str(proof)]).exit_code == 0
    ev = ["--events", str(files["events"]), "--policy", str(files["policy"])]
    return {
        "statement": (["statement", *ev, "--period", "2026-03"], ("json", "csv")),
        "verify": (["audit", "verify", *ev, "--statement", str(js)], ("table", "json")),
        "explain": (["audit", "explain", *ev, "--order", "o1"], ("text", "json")),
        "check-integrity": (["audit", "check-integrity", str(js)], ("table", "json")),
        "verify-proof": (["audit", "verify-proof", str(proof)], ("table", "json")),
        "compliance": (["audit", "compliance", *ev], ("table", "json")),
        "abuse": (["audit", "abuse", *ev], ("table", "json")),
    }


def test_every_audit_command_takes_format_as_a_listed_choice(files: dict[str, Path], tmp_path: Path) -> None:
    for name, (args, choices) in _commands(files, tmp_path).items():
        listed = "|".join(choices)
        help_text = runner.invoke(app, [*args[: 2 if args[0] == "audit" else 1], "--help"]).stdout
        assert f"[{listed}]" in help_text, name
        bad = runner.invoke(app, [*args, "--format", "xml"])
        assert bad.exit_code == 2, name
        wanted = " or ".join(choices)
        assert "--format" in bad.stderr and f"'xml' is not {wanted}" in bad.stderr, (name, bad.stderr)
        for fmt in choices:
            res = runner.invoke(app, [*args, "--format", fmt])
            assert res.exit_code in (0, 1, 3), (name, fmt, res.output)
            if fmt == "json":
                json.loads(res.stdout)  # the whole of standard output is one JSON document


def test_verify_proof_json(files: dict[str, Path], tmp_path: Path) -> None:
    args, _ = _commands(files, tmp_path)["verify-proof"]
    doc = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    assert doc["ok"] is True and [x["line"]["payee"] for x in doc["lines"]] == ["amy", "amy"]
    assert all(x["included"] for x in doc["lines"])
    proof = Path(args[-1])
    data = json.loads(proof.read_text(encoding="utf-8"))
    data["proofs"][0]["line"]["amount"] = "99.00"
    proof.write_text(json.dumps(data), encoding="utf-8")
    res = runner.invoke(app, [*args, "--format", "json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False


# ------------------------------------------------------------------------------------------ --tz
def test_statement_period_is_read_in_the_zone_of_the_data(files: dict[str, Path]) -> None:
    args = ["statement", "--events", str(files["events"]), "--policy", str(files["policy"]), "--period", "2026-03"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # o1 (1 March 02:00 +08:00) is in March: before, the default UTC put it in February
    assert sorted({ln["order"] for ln in doc["lines"]}) == ["o1", "o2"]
    assert doc["manifest"]["tz"] == "+08:00"
    assert doc["manifest"]["period_start"] == "2026-03-01T00:00:00+08:00"
    assert "time zone +08:00 (the events' offset)" in res.stderr
    utc = runner.invoke(app, [*args, "--tz", "UTC"])
    assert {ln["order"] for ln in json.loads(utc.stdout)["lines"]} == {"o2"}
    assert json.loads(utc.stdout)["manifest"]["tz"] == "UTC" and "(--tz)" in utc.stderr
    named = runner.invoke(app, [*args, "--tz", "Asia/Shanghai"])
    assert json.loads(named.stdout)["lines"] == doc["lines"]
    assert json.loads(named.stdout)["manifest"]["tz"] == "Asia/Shanghai"
    bad = runner.invoke(app, [*args, "--tz", "Mars/Olympus"])
    assert bad.exit_code == 2 and "--tz" in bad.stderr and "Mars/Olympus" in bad.stderr


def test_the_directory_statement_header_names_its_zone(files: dict[str, Path]) -> None:
    res = runner.invoke(app, ["statement", "--events", str(files["events"]), "--policy", str(files["policy"]),
                              "--period", "2026-03", "-o", str(files["dir"])])
    assert res.exit_code == 0, res.output
    assert "Statement 2026-03 (+08:00)" in res.stderr
    manifest = json.loads((files["dir"] / "statement-2026-03.manifest.json").read_text(encoding="utf-8"))
    assert manifest["manifest"]["tz"] == "+08:00"


def test_verify_of_a_platform_file_reads_its_period_in_the_zone_of_the_data(files: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    evs = load_events(EVENTS)
    honest = build_statement(evs, load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"]}), "2026-03")
    platform = tmp_path / "platform.csv"
    platform.write_text(honest.to_csv(), encoding="utf-8")  # no manifest beside it
    base = ["audit", "verify", "--events", str(files["events"]), "--policy", str(files["policy"]),
            "--statement", str(platform), "--period", "2026-03"]
    assert runner.invoke(app, base).exit_code == 0
    res = runner.invoke(app, [*base, "--tz", "UTC"])  # in UTC o1 is February's: its lines are out of period
    assert res.exit_code == 1 and "Orders outside the period" in res.stdout


def test_zone_of() -> None:
    mixed = load_events([*EVENTS, '{"type":"share","id":"s9","sharer":"zed","at":"2026-03-01T00:00:00Z"}'])
    assert zone_of(load_events(EVENTS)) == ("+08:00", "the events' offset")
    assert zone_of(mixed) == ("UTC", "default: the events' offsets differ")
    assert zone_of(load_events(['{"type":"share","id":"s1","sharer":"a","at":"2026-03-01T00:00:00-05:30"}'])) == (
        "-05:30", "the events' offset")
    assert zone_of(load_events(['{"type":"share","id":"s1","sharer":"a","at":"2026-03-01T00:00:00Z"}']))[0] == "UTC"


# ------------------------------------------------------------------------------------------ CSV rates
def test_excel_rate_and_rate_percent() -> None:
    assert excel_rate(Fraction(3, 34)) == '="3/34"'  # Excel reads a bare 3/34 as March 1934
    assert excel_rate(Fraction(1, 3)) == '="1/3"'  # and 1/3 as 3 January
    assert excel_rate(Fraction(1, 10)) == "0.1" and excel_rate(Fraction(1, 8)) == "0.125"
    assert excel_rate(Fraction(0)) == "0" and excel_rate(Fraction(3, 2)) == "1.5"
    assert excel_rate(Fraction(123456789012345, 10**15)) == "0.123456789012345"  # 15 digits: a number
    sixteen = Fraction(1234567890123457, 10**16)  # 16 digits would be rounded by a spreadsheet: text
    assert excel_rate(sixteen) == f'="{sixteen.numerator}/{sixteen.denominator}"'
    assert rate_percent(Fraction(3, 34)) == "8.8235%" and rate_percent(Fraction(1, 3)) == "33.3333%"
    assert rate_percent(Fraction(1, 20)) == "5%"


def _lines(rate: Fraction) -> Statement:
    line = StatementLine("=amy", "o1", Money(3414, "CNY"), 1, Money(38700, "CNY"), rate, "accrued")
    return seal_lines([line, StatementLine("bob", "o2", Money(5, "CNY"))], "2026-03")


@pytest.mark.parametrize("rate", [Fraction(3, 34), Fraction(1, 3), Fraction(1, 10), Fraction(1, 2**60)])
def test_statement_csv_keeps_the_exact_rate_out_of_a_spreadsheets_reach(rate: Fraction, tmp_path: Path) -> None:
    st = _lines(rate)
    text = st.to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["payee", "order", "level", "currency", "base", "rate", "rate_percent", "amount",
                             "state"]
    assert rows[0]["rate"] == excel_rate(rate) and rows[0]["rate_percent"] == rate_percent(rate)
    assert "/" not in rows[0]["rate"] or rows[0]["rate"].startswith('="')  # never a bare p/q
    assert rows[0]["payee"] == "'=amy"  # user text is still neutralised; only our own rate formula is not
    assert rows[1]["rate"] == rows[1]["rate_percent"] == ""
    path = tmp_path / "statement-2026-03.csv"
    path.write_text(text, encoding="utf-8")
    back = read_statement(path)
    assert back.lines == st.lines and back.merkle_root() == st.manifest.merkle_root  # type: ignore[union-attr]


def test_statements_written_before_still_read(tmp_path: Path) -> None:
    """A CSV of the earlier layout (no rate_percent, the rate as a bare 3/34) reads to the same lines."""
    old = tmp_path / "old.csv"
    old.write_text("payee,order,level,currency,base,rate,amount,state\n"
                   "amy,o2,1,CNY,387.00,3/34,34.14,accrued\namy,o3,1,CNY,10.00,0.1,1.00,accrued\n", encoding="utf-8")
    lines = read_statement(old).lines
    assert [ln.rate for ln in lines] == [Fraction(3, 34), Fraction(1, 10)]


def test_verify_matches_a_written_csv_with_a_recurring_rate(tmp_path: Path) -> None:
    evs = load_events(EVENTS)
    pol = load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%",
                       "payee_rates": {"amy": "3/34"}})
    st = build_statement(evs, pol, "2026-03")
    assert Fraction(3, 34) in {ln.rate for ln in st.lines}
    paths = st.write(tmp_path)
    assert '"=""3/34"""' in paths["csv"].read_text(encoding="utf-8")
    assert verify_statement(read_statement(paths["csv"]), evs, pol).ok
    # a platform file that writes the text formula itself is read the same way
    platform = tmp_path / "platform.csv"
    platform.write_text("订单号,推广员,佣金比例,佣金金额\n" + "".join(
        f'{ln.order},{ln.payee},"=""{ln.rate}""",{ln.amount.amount}\n' for ln in st.lines), encoding="utf-8")
    assert verify_statement(read_statement(platform, currency_of=lambda o: "CNY"), evs, pol,
                            period=Period.parse("2026-03", "+08:00")).ok


def test_verify_prints_the_pattern_the_discrepancies_share(files: dict[str, Path], tmp_path: Path) -> None:
    odd = [e.replace('"100.00"', '"100.05"').replace('"387.00"', '"387.05"') for e in EVENTS]  # 10.005, 38.705
    files["events"].write_text("\n".join(odd) + "\n", encoding="utf-8")
    evs = load_events(odd)
    half_up = build_statement(evs, load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%"],
                                                "rounding": "half_up"}), "2026-03")
    platform = tmp_path / "platform.csv"
    platform.write_text(half_up.to_csv(), encoding="utf-8")
    base = ["audit", "verify", "--events", str(files["events"]), "--policy", str(files["policy"]),
            "--statement", str(platform), "--period", "2026-03"]
    res = runner.invoke(app, base)
    assert res.exit_code == 1, res.output
    assert "pattern: 2 one-unit differences (overpaid 0.02 CNY) consistent with half-up" in res.stdout
    doc = json.loads(runner.invoke(app, [*base, "--format", "json"]).stdout)
    assert [p["kind"] for p in doc["patterns"]][:1] == ["rounding"]
