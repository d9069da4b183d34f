"""The command line: compute (CSV / JSON Lines), validate, schema, demo; bad input exits 2 naming
the record and field."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cps_engine import compute_events, load_events, load_policy, policy_kinds
from cps_engine.cli import app, sample_path

runner = CliRunner()
CASES = Path(__file__).parent / "cases"
AT = "2026-03-01T{:02d}:00:00+08:00"

EVENTS = [
    {"type": "share", "id": "s1", "sharer": "amy", "at": AT.format(9)},
    {"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": AT.format(10)},
    {"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "199.99", "shipping": "10.00",
     "currency": "CNY", "at": AT.format(11)},
    {"type": "order", "id": "o2", "buyer": "dan", "share": "s1", "amount": "1000", "currency": "JPY",
     "at": AT.format(12)},
    {"type": "refund", "id": "r1", "order": "o2", "amount": "400", "at": AT.format(13)},
]
POLICY = 'kind = "capped_multilevel"\nname = "two levels"\nrates = ["10%", "5%"]\n'


def write_events(path: Path, records: list[dict[str, object] | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    events = write_events(tmp_path / "events.jsonl", list(EVENTS))  # type: ignore[arg-type]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    return events, policy


# ------------------------------------------------------------------ compute


def test_compute_csv_to_a_file(files: tuple[Path, Path], tmp_path: Path) -> None:
    events, policy = files
    out = tmp_path / "lines.csv"
    result = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy), "--format", "csv",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 commission lines for 2 orders" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:6] == ["order", "payee", "level", "amount", "currency", "rate"]
    # hand-checked: base 189.99 -> bob 10% = 18.99, amy 5% = 9.49; o2 net 600 JPY -> amy 10% = 60
    assert [(r["order"], r["payee"], r["level"], r["amount"], r["currency"], r["rate"]) for r in rows] == [
        ("o1", "bob", "1", "18.99", "CNY", "0.1"), ("o1", "amy", "2", "9.49", "CNY", "0.05"),
        ("o2", "amy", "1", "60", "JPY", "0.1")]
    assert rows[0]["policy"] == "two levels" and rows[0]["path"] == "s2" and rows[1]["path"] == "s2/s1"
    assert rows[0]["config_hash"] == load_policy(policy).config_hash and rows[2]["base"] == "600"


def test_compute_jsonl_to_stdout_matches_the_library(files: tuple[Path, Path]) -> None:
    events, policy = files
    result = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [ln.as_row() for s in compute_events(load_events(events), load_policy(policy)) for ln in s.lines]
    assert rows == json.loads(json.dumps(expected))
    assert {"order", "payee", "level", "amount", "currency", "rate"} <= set(rows[0])
    assert rows[0]["level"] == 1 and rows[0]["amount"] == "18.99"


def test_compute_with_a_json_policy_and_binding_mode(tmp_path: Path) -> None:
    case = CASES / "10_binding_overwrite.toml"
    data = tomllib.loads(case.read_text(encoding="utf-8"))
    events = tmp_path / "e.jsonl"
    events.write_text(data["events"].strip() + "\n", encoding="utf-8")
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps(data["policy"]), encoding="utf-8")
    args = ["compute", "--events", str(events), "--policy", str(policy), "--format", "jsonl"]
    over = runner.invoke(app, [*args, "--binding", "overwrite"])
    assert over.exit_code == 0, over.output
    assert [(r["order"], r["payee"]) for r in map(json.loads, over.stdout.splitlines())] == [
        ("o1", "amy"), ("o1", "zed"), ("o2", "bob")]
    first = runner.invoke(app, args)  # default first_wins: cat stays with amy
    assert [(r["order"], r["payee"]) for r in map(json.loads, first.stdout.splitlines())] == [
        ("o1", "amy"), ("o1", "zed"), ("o2", "amy"), ("o2", "zed")]
    # expiring after 3 days: b1 holds for o1 (day 2), b3 (day 3) is ignored while b1 holds, and b1 has
    # expired by o2 (day 4, 00:00): o2 pays nobody
    exp = runner.invoke(app, [*args, "--binding", "expiring", "--expire-days", "3"])
    assert exp.exit_code == 0, exp.output
    assert [(r["order"], r["payee"]) for r in map(json.loads, exp.stdout.splitlines())] == [
        ("o1", "amy"), ("o1", "zed")]
    for bad in (["--binding", "sticky"], ["--binding", "expiring"], ["--binding", "overwrite", "--expire-days", "3"]):
        result = runner.invoke(app, [*args, *bad])
        assert result.exit_code == 2 and "--binding" in result.stderr


def test_compute_refuses_an_unknown_format(files: tuple[Path, Path]) -> None:
    events, policy = files
    result = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy), "--format", "xml"])
    assert result.exit_code == 2 and "csv or jsonl" in result.stderr


@pytest.mark.parametrize(
    ("records", "needles"),
    [
        ([EVENTS[0], {**EVENTS[2], "amount": 199.99}], ["line 2", "'o1'", "'amount'", "float"]),
        ([EVENTS[0], {**EVENTS[1], "at": "2026-03-01T10:00:00"}], ["line 2", "'s2'", "'at'"]),
        (['{"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T09:00:00+08:00"',
          EVENTS[0]], ["line 1", "JSON"]),
        ([EVENTS[0], {**EVENTS[1], "parent": "s404"}], ["'s2'", "'parent'"]),
        ([{"type": "bind", "id": "b1", "user": "a", "upline": "b", "at": AT.format(1)},
          {"type": "bind", "id": "b2", "user": "b", "upline": "a", "at": AT.format(2)}], ["'b2'", "'upline'", "cycle"]),
        ([*EVENTS[:3], {"type": "refund", "id": "r9", "order": "o404", "at": AT.format(14)}], ["'r9'", "'order'"]),
        ([*EVENTS[:3], {"type": "refund", "id": "r9", "order": "o1", "amount": "500.00", "at": AT.format(14)}],
         ["'r9'", "'amount'", "exceed"]),
        ([*EVENTS[:2], {**EVENTS[2], "share": "s404"}], ["'o1'", "'share'"]),
    ],
)
def test_bad_events_exit_2_naming_record_and_field(tmp_path: Path, files: tuple[Path, Path],
                                                   records: list[dict[str, object] | str], needles: list[str]) -> None:
    _, policy = files
    events = write_events(tmp_path / "bad.jsonl", records)
    result = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:")
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "Traceback" not in result.output


def test_bad_policy_exits_2_naming_file_and_field(files: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = files
    for text, needles in (('kind = "first_sharer"\nrate = 0.1\n', ["bad.toml", "'rate'", "float"]),
                          ('kind = "compliant"\nprofile = "cn"\nrates = ["10%", "5%", "2%"]\ncap = "15%"\n',
                           ["CN-DEPTH", "'rates'"]),
                          ('kind = "nope"\n', ["'kind'", "unknown policy kind"]),
                          ("kind = \n", ["not valid"])):
        policy = tmp_path / "bad.toml"
        policy.write_text(text, encoding="utf-8")
        result = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy)])
        assert result.exit_code == 2, result.output
        for needle in needles:
            assert needle in result.stderr, (needle, result.stderr)


def test_missing_files_exit_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    events, policy = files
    for args in (["--events", str(tmp_path / "none.jsonl"), "--policy", str(policy)],
                 ["--events", str(events), "--policy", str(tmp_path / "none.toml")]):
        result = runner.invoke(app, ["compute", *args])
        assert result.exit_code == 2 and "none." in result.stderr


# ------------------------------------------------------------------ validate


def test_validate_lists_every_bad_line(tmp_path: Path) -> None:
    events = write_events(tmp_path / "bad.jsonl", [
        EVENTS[0],
        {**EVENTS[2], "amount": 1.5},                     # line 2
        {**EVENTS[1], "at": "2026-03-01T10:00:00"},       # line 3
        "not json",                                       # line 4
        {**EVENTS[0], "sharer": "zed"},                   # line 5: same id, different payload
        {**EVENTS[3], "currency": "XXX"},                 # line 6
    ])
    result = runner.invoke(app, ["validate", str(events)])
    assert result.exit_code == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    assert [p.split(",")[0].split(":")[0] for p in problems] == [f"- line {n}" for n in (2, 3, 4, 5, 6)]
    assert "'amount'" in problems[0] and "'at'" in problems[1] and "'id'" in problems[3]
    assert "'currency'" in problems[4] and "5 bad record(s)" in result.stderr


def test_validate_reports_graph_problems_all_at_once(tmp_path: Path) -> None:
    events = write_events(tmp_path / "graph.jsonl", [
        EVENTS[0],
        {"type": "share", "id": "s2", "sharer": "bob", "parent": "s2", "at": AT.format(10)},
        {"type": "bind", "id": "b1", "user": "a", "upline": "b", "at": AT.format(1)},
        {"type": "bind", "id": "b2", "user": "b", "upline": "a", "at": AT.format(2)},
        {"type": "bind", "id": "b3", "user": "c", "upline": "c", "at": AT.format(3)},
    ])
    result = runner.invoke(app, ["validate", str(events)])
    assert result.exit_code == 2
    for needle in ("'s2'", "'b2'", "'b3'", "3 bad record(s)"):
        assert needle in result.stderr


def test_validate_clean_file(files: tuple[Path, Path]) -> None:
    events, _ = files
    result = runner.invoke(app, ["validate", str(events)])
    assert result.exit_code == 0 and "ok" in result.stderr


# ------------------------------------------------------------------ schema and demo


def test_schema_prints_json_with_every_kind() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert set(schema["discriminator"]["mapping"]) == set(policy_kinds())
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "compute" in result.output and "validate" in result.output


def test_demo_with_a_given_events_file(files: tuple[Path, Path]) -> None:
    events, _ = files
    result = runner.invoke(app, ["demo", "--events", str(events)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for needle in ("first-sharer 10%", "three-level capped 15%", "cn compliant", "CNY", "JPY"):
        assert needle in result.stdout


@pytest.mark.skipif(not sample_path().exists(), reason="src/cps_engine/data/sample_events.jsonl is not there yet "
                                                         "(generated by another helper)")
def test_demo_on_the_bundled_sample() -> None:
    result = runner.invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Sample programme" in result.stdout and "total paid" in result.stdout
    assert "first-sharer 10%" in result.stdout and "cn compliant" in result.stdout
