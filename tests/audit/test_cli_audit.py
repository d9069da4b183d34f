"""``cps-engine statement`` and ``cps-engine audit ...``: outputs and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cps_engine.cli_audit import audit_app, statement

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(audit_app, name="audit")
app.command("statement")(statement)
runner = CliRunner()

EVENTS = [
    '{"type":"share","id":"s1","sharer":"amy","at":"2026-02-20T10:00:00+08:00"}',
    '{"type":"share","id":"s2","sharer":"bob","parent":"s1","at":"2026-02-20T11:00:00+08:00"}',
    '{"type":"order","id":"o0","buyer":"cat","share":"s2","amount":"40.00","currency":"CNY",'
    '"at":"2026-02-21T12:00:00+08:00"}',
    '{"type":"order","id":"o1","buyer":"dan","share":"s2","amount":"100.00","currency":"CNY",'
    '"at":"2026-03-02T12:00:00+08:00"}',
    '{"type":"order","id":"o2","buyer":"eve","share":"s1","amount":"200.00","currency":"CNY",'
    '"at":"2026-03-03T12:00:00+08:00"}',
    '{"type":"refund","id":"r2","order":"o2","amount":"50.00","at":"2026-03-04T12:00:00+08:00"}',
    '{"type":"payout","id":"p1","payee":"amy","amount":"900.00","currency":"CNY","at":"2026-03-31T12:00:00+08:00"}',
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ev = tmp_path / "events.jsonl"
    ev.write_text("\n".join(EVENTS) + "\n", encoding="utf-8")
    pol = tmp_path / "policy.toml"
    pol.write_text('kind = "capped_multilevel"\nrates = ["10%", "5%"]\n', encoding="utf-8")
    compliant = tmp_path / "compliant.toml"
    compliant.write_text('kind = "compliant"\nprofile = "cn"\nrates = ["10%", "5%"]\ncap = "15%"\n', encoding="utf-8")
    return {"events": ev, "policy": pol, "compliant": compliant, "dir": tmp_path / "out"}


def _statement(files: dict[str, Path], period: str = "2026-03") -> Path:
    res = runner.invoke(app, ["statement", "--events", str(files["events"]), "--policy", str(files["policy"]),
                              "--period", period, "--tz", "+08:00", "--hold-days", "7", "-o", str(files["dir"])])
    assert res.exit_code == 0, res.output
    return files["dir"] / f"statement-{period}.csv"


def test_statement_to_directory_chains_to_the_previous_one(files: dict[str, Path]) -> None:
    _statement(files, "2026-02")
    csv_path = _statement(files, "2026-03")
    assert sorted(p.name for p in files["dir"].iterdir()) == [
        "statement-2026-02.csv", "statement-2026-02.json", "statement-2026-02.manifest.json",
        "statement-2026-03.csv", "statement-2026-03.json", "statement-2026-03.manifest.json"]
    assert csv_path.read_text(encoding="utf-8").splitlines()[0] == (
        "payee,order,level,currency,base,rate,rate_percent,amount,state")
    feb = json.loads((files["dir"] / "statement-2026-02.json").read_text(encoding="utf-8"))
    mar = json.loads((files["dir"] / "statement-2026-03.manifest.json").read_text(encoding="utf-8"))
    assert mar["manifest"]["previous_root"] == feb["manifest"]["chain_root"]
    assert mar["totals"]["CNY"]["amount"] == "30.00"  # o1: bob 10.00 + amy 5.00; o2 on 150.00 net: amy 15.00


def test_statement_to_stdout(files: dict[str, Path]) -> None:
    args = ["statement", "--events", str(files["events"]), "--policy", str(files["policy"]), "--period", "2026-03",
            "--tz", "+08:00"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert [(ln["payee"], ln["order"], ln["amount"]) for ln in doc["lines"]] == [
        ("amy", "o1", "5.00"), ("amy", "o2", "15.00"), ("bob", "o1", "10.00")]
    res = runner.invoke(app, [*args, "--format", "csv"])
    assert res.exit_code == 0 and res.stdout.startswith("payee,order,level")
    assert runner.invoke(app, [*args, "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, [*args[:-2], "--period", "March"]).exit_code == 2


def test_verify_exit_codes_and_formats(files: dict[str, Path], tmp_path: Path) -> None:
    csv_path = _statement(files, "2026-03")
    base = ["audit", "verify", "--events", str(files["events"]), "--policy", str(files["policy"])]
    res = runner.invoke(app, [*base, "--statement", str(csv_path)])
    assert res.exit_code == 0, res.output
    assert "OK" in res.stdout
    # a platform-style copy (no manifest next to it) with one amount raised by 1.00
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace(",5.00,", ",6.00,")
    platform = tmp_path / "platform.csv"
    platform.write_text("\n".join(lines) + "\n", encoding="utf-8")
    html = tmp_path / "r.html"
    args = [*base, "--statement", str(platform), "--period", "2026-03", "--tz", "+08:00"]
    res = runner.invoke(app, [*args, "--format", "json", "--html", str(html)])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["ok"] is False and list(report["groups"]) == ["amount_mismatch"]
    assert report["groups"]["amount_mismatch"][0]["line"] == 1
    assert report["at_stake"]["CNY"]["total"]["overpaid"] == "1.00"
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "Amount mismatches" in res.stdout
    # unusable input: 2, with the reason
    assert runner.invoke(app, [*base, "--statement", str(platform)]).exit_code == 2  # no period known
    assert runner.invoke(app, [*base, "--statement", str(tmp_path / "nope.csv"), "--period", "2026-03"]).exit_code == 2
    odd = tmp_path / "odd.csv"
    odd.write_text("ref,who,value\no1,bob,10.00\n", encoding="utf-8")
    res = runner.invoke(app, [*base, "--statement", str(odd), "--period", "2026-03"])
    assert res.exit_code == 2 and "--map" in res.stderr
    res = runner.invoke(app, [*base, "--statement", str(odd), "--period", "2026-03", "--tz", "+08:00",
                              "--map", "order=ref", "--map", "payee=who", "--map", "amount=value"])
    assert res.exit_code == 1  # readable now; bob's line is there but amy's are missing
    bad_events = tmp_path / "bad.jsonl"
    bad_events.write_text('{"type":"order","id":"x"}\n', encoding="utf-8")
    res = runner.invoke(app, ["audit", "verify", "--events", str(bad_events), "--policy", str(files["policy"]),
                              "--statement", str(csv_path)])
    assert res.exit_code == 2 and "record 'x'" in res.stderr


def test_verify_currency_option_is_the_currency_of_a_file_without_that_column(files: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    """``--currency CNY`` was read as ``--map currency=CNY`` (a column named 'CNY') and failed with exit 2."""
    base = ["audit", "verify", "--events", str(files["events"]), "--policy", str(files["policy"])]
    odd = tmp_path / "odd.csv"
    odd.write_text("ref,who,value\no1,bob,10.00\n", encoding="utf-8")
    maps = ["--map", "order=ref", "--map", "payee=who", "--map", "amount=value"]
    args = [*base, "--statement", str(odd), "--period", "2026-03", "--tz", "+08:00", *maps]
    res = runner.invoke(app, [*args, "--currency", "CNY"])
    assert res.exit_code == 1, res.output  # read and compared: amy's lines are missing
    assert "header 'CNY'" not in res.output
    res = runner.invoke(app, [*args, "--currency", "XYZ"])
    assert res.exit_code == 2 and "XYZ" in res.stderr


def test_check_integrity_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    _statement(files, "2026-02")
    csv_path = _statement(files, "2026-03")
    res = runner.invoke(app, ["audit", "check-integrity", str(csv_path)])
    assert res.exit_code == 0 and "INTACT" in res.stdout and "ok (2026-02)" in res.stdout
    text = csv_path.read_text(encoding="utf-8").replace(",15.00,", ",15.01,")
    csv_path.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["audit", "check-integrity", str(csv_path), "--format", "json"])
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert [(c["kind"], c["line"], c["row"]) for c in report["changes"]] == [("edited", 2, 3)]
    lone = tmp_path / "lone.csv"
    lone.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["audit", "check-integrity", str(lone)])
    assert res.exit_code == 2 and "manifest" in res.stderr


def test_prove_and_verify_proof(files: dict[str, Path], tmp_path: Path) -> None:
    _statement(files, "2026-03")
    js = files["dir"] / "statement-2026-03.json"
    root = json.loads(js.read_text(encoding="utf-8"))["manifest"]["chain_root"]
    proof = tmp_path / "amy.json"
    assert runner.invoke(app, ["audit", "prove", str(js), "--payee", "amy", "-o", str(proof)]).exit_code == 0
    res = runner.invoke(app, ["audit", "verify-proof", str(proof), "--root", root])
    assert res.exit_code == 0 and "in the statement" in res.stdout
    doc = json.loads(proof.read_text(encoding="utf-8"))
    doc["proofs"][0]["line"]["amount"] = "50.00"
    proof.write_text(json.dumps(doc), encoding="utf-8")
    assert runner.invoke(app, ["audit", "verify-proof", str(proof)]).exit_code == 1
    proof.write_text("{not json", encoding="utf-8")
    assert runner.invoke(app, ["audit", "verify-proof", str(proof)]).exit_code == 2
    assert runner.invoke(app, ["audit", "prove", str(js), "--payee", "nobody"]).exit_code == 2


def test_explain(files: dict[str, Path]) -> None:
    base = ["audit", "explain", "--events", str(files["events"]), "--policy", str(files["policy"])]
    res = runner.invoke(app, [*base, "--order", "o2"])
    assert res.exit_code == 0, res.output
    assert "amy [L1 via s1] → eve (buyer, order o2)" in res.stdout and "net base 150.00 CNY" in res.stdout
    res = runner.invoke(app, [*base, "--order", "o1", "--payee", "zed", "--format", "json"])
    assert res.exit_code == 0 and "not on the chain" in json.loads(res.stdout)["payee_reason"]
    res = runner.invoke(app, [*base, "--order", "o404"])
    assert res.exit_code == 2 and "o404" in res.stderr


def test_compliance(files: dict[str, Path]) -> None:
    res = runner.invoke(app, ["audit", "compliance", "--events", str(files["events"]), "--policy",
                              str(files["policy"]), "--format", "json"])
    assert res.exit_code == 1  # amy was paid 900.00 that no order explains
    data = json.loads(res.stdout)
    assert "not legal advice" in data["disclaimer"] and data["worst"] == "fail"
    res = runner.invoke(app, ["audit", "compliance", "--events", str(files["events"]), "--policy",
                              str(files["compliant"]), "--jurisdiction", "US"])
    assert res.exit_code == 1 and "US-RETAIL" in res.stdout and "CN-DEPTH" not in res.stdout
    no_payout = files["events"].with_name("no_payout.jsonl")
    no_payout.write_text("\n".join(EVENTS[:-1]) + "\n", encoding="utf-8")
    res = runner.invoke(app, ["audit", "compliance", "--events", str(no_payout), "--policy", str(files["compliant"])])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("not legal advice") == 2
    assert runner.invoke(app, ["audit", "compliance", "--events", str(files["events"]), "--policy",
                               str(files["policy"]), "--jurisdiction", "XX"]).exit_code == 2
