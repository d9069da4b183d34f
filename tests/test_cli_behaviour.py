"""The command line behaves like the best ones (issue 12): ``--version``; choices listed in help and
in the error; time options named in their errors; ``--events -`` reads standard input and ``-o -``
writes standard output; a missing extra is one sentence; ``ledger balance --format csv``; completion."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cps_engine._version import library_version
from cps_engine.cli import app
from cps_engine.cli_common import BINDING_MODES, EXTRAS, missing_extra

runner = CliRunner()
AT = "2026-03-01T{:02d}:00:00+08:00"
EVENTS = [
    {"type": "share", "id": "s1", "sharer": "amy", "at": AT.format(9)},
    {"type": "share", "id": "s2", "sharer": "bob", "parent": "s1", "at": AT.format(10)},
    {"type": "order", "id": "o1", "buyer": "cat", "share": "s2", "amount": "199.99", "currency": "CNY",
     "at": AT.format(11)},
    {"type": "order", "id": "o2", "buyer": "dan", "share": "s1", "amount": "1000", "currency": "CNY",
     "at": AT.format(12)},
]
JSONL = "".join(json.dumps(e) + "\n" for e in EVENTS)
POLICY = 'kind = "capped_multilevel"\nname = "two levels"\nrates = ["10%", "5%"]\n'


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    events, policy = tmp_path / "events.jsonl", tmp_path / "policy.toml"
    events.write_text(JSONL, encoding="utf-8")
    policy.write_text(POLICY, encoding="utf-8")
    return events, policy


# ------------------------------------------------------------------ 1. --version


def test_version_prints_the_library_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"cps-engine {library_version()}"


# ------------------------------------------------------------------ 2. choices


@pytest.mark.parametrize("args", [
    ["compute", "--events", "E", "--policy", "P"],
    ["validate", "E"],
    ["whatif", "--events", "E", "--policy", "P"],
    ["statement", "--events", "E", "--policy", "P", "--period", "2026-03"],
    ["audit", "verify", "--events", "E", "--policy", "P", "--statement", "S"],
    ["ledger", "record", "E", "--db", "D"],
])
def test_binding_modes_are_listed_in_help_and_in_the_error(args: list[str]) -> None:
    command = args[:2] if args[0] in ("audit", "ledger") else args[:1]
    shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert "[" + "|".join(BINDING_MODES) + "]" in shown.stdout
    r = runner.invoke(app, [*args, "--binding", "bogus"])
    assert r.exit_code == 2
    assert "'--binding'" in r.stderr and "'bogus' is not one of first_wins, overwrite," in r.stderr
    assert "registration_only or expiring" in r.stderr


@pytest.mark.parametrize(("args", "listed"), [
    (["compute", "--events", "E", "--policy", "P"], "csv or jsonl"),
    (["ledger", "balance", "--db", "D"], "one of table, json or csv"),
    (["ledger", "statement", "--db", "D", "--payee", "x", "--from", "2026-03-01", "--to", "2026-03-31"],
     "csv or json"),
    (["statement", "--events", "E", "--policy", "P", "--period", "2026-03"], "json or csv"),
    (["audit", "verify", "--events", "E", "--policy", "P", "--statement", "S"], "table or json"),
])
def test_formats_are_choices_named_in_the_error(args: list[str], listed: str) -> None:
    r = runner.invoke(app, [*args, "--format", "xml"])
    assert r.exit_code == 2
    assert "'--format'" in r.stderr and f"'xml' is not {listed}" in r.stderr


# ------------------------------------------------------------------ 3. time options name their flag


@pytest.mark.parametrize(("args", "flag"), [
    (["ledger", "balance", "--db", "D", "--as-of", "yesterday"], "--as-of"),
    (["ledger", "statement", "--db", "D", "--payee", "x", "--from", "yesterday", "--to", "2026-03-31"], "--from"),
    (["ledger", "statement", "--db", "D", "--payee", "x", "--from", "2026-03-01", "--to", "yesterday"], "--to"),
    (["statement", "--events", "E", "--policy", "P", "--period", "2026-03", "--as-of", "yesterday"], "--as-of"),
    (["audit", "verify", "--events", "E", "--policy", "P", "--statement", "S", "--as-of", "yesterday"], "--as-of"),
    (["audit", "explain", "--events", "E", "--policy", "P", "--order", "o1", "--as-of", "yesterday"], "--as-of"),
])
def test_time_option_errors_name_the_flag(args: list[str], flag: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert f"{flag}: 'yesterday' is not" in r.stderr and "e.g. 2026-03-01T00:00:00+08:00" in r.stderr


def test_as_of_of_the_audit_needs_a_zone() -> None:
    r = runner.invoke(app, ["audit", "verify", "--events", "E", "--policy", "P", "--statement", "S",
                            "--as-of", "2026-03-01T00:00:00"])
    assert r.exit_code == 2
    assert "--as-of: '2026-03-01T00:00:00' is not an ISO time with a zone" in r.stderr


# ------------------------------------------------------------------ 4. standard input and output


def test_compute_reads_events_from_stdin_and_writes_dash_to_stdout(files: tuple[Path, Path]) -> None:
    events, policy = files
    from_file = runner.invoke(app, ["compute", "--events", str(events), "--policy", str(policy)])
    r = runner.invoke(app, ["compute", "--events", "-", "--policy", str(policy), "-o", "-"], input=JSONL)
    assert r.exit_code == 0, r.output
    assert r.stdout == from_file.stdout and len(r.stdout.splitlines()) == 4
    assert not Path("-").exists()


def test_validate_reads_stdin() -> None:
    r = runner.invoke(app, ["validate", "-"], input=JSONL)
    assert r.exit_code == 0, r.output
    assert "standard input: ok" in r.stderr
    bad = runner.invoke(app, ["validate", "-"], input=JSONL + '{"type": "order"}\n')
    assert bad.exit_code == 2 and "line 5" in bad.stderr


def test_whatif_reads_stdin(files: tuple[Path, Path]) -> None:
    _, policy = files
    r = runner.invoke(app, ["whatif", "--events", "-", "--policy", str(policy)], input=JSONL)
    assert r.exit_code == 0, r.output
    assert "two levels" in r.stdout


def test_ledger_record_reads_stdin(files: tuple[Path, Path], tmp_path: Path) -> None:
    _, policy = files
    db = tmp_path / "l.db"
    r = runner.invoke(app, ["ledger", "record", "-", "--db", str(db), "--policy", str(policy)], input=JSONL)
    assert r.exit_code == 0, r.output
    assert "4 events" in r.stderr


def test_statement_and_audit_verify_read_stdin(files: tuple[Path, Path], tmp_path: Path) -> None:
    events, policy = files
    st = runner.invoke(app, ["statement", "--events", "-", "--policy", str(policy), "--period", "2026-03",
                             "--tz", "+08:00"], input=JSONL)
    assert st.exit_code == 0, st.output
    issued = runner.invoke(app, ["statement", "--events", str(events), "--policy", str(policy),
                                 "--period", "2026-03", "--tz", "+08:00"])
    assert st.stdout == issued.stdout
    path = tmp_path / "st.json"
    path.write_text(st.stdout, encoding="utf-8")
    r = runner.invoke(app, ["audit", "verify", "--events", "-", "--policy", str(policy), "--statement", str(path)],
                      input=JSONL)
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------ 5. a missing extra: one sentence, exit 2


def _without(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    blocked = ("pandas", "pyarrow") if module == "pandas" else (module,)  # pyarrow's shim needs a real pandas
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r}))\n"
            "from cps_engine.cli import main\n"
            f"sys.argv = ['cps-engine', *{argv!r}]\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("pandas", ["whatif", "--events", "{events}", "--policy", "{policy}"], "analysis"),
    ("psycopg", ["ledger", "record", "{events}", "--policy", "{policy}", "--db",
                 "postgresql+psycopg://u:p@127.0.0.1:1/x"], "postgres"),
    ("pymysql", ["ledger", "record", "{events}", "--policy", "{policy}", "--db",
                 "mysql+pymysql://u:p@127.0.0.1:1/x"], "mysql"),
    ("uvicorn", ["serve", "--db", "{tmp}/s.db"], "service"),
])
def test_a_missing_extra_is_one_sentence(files: tuple[Path, Path], tmp_path: Path, module: str, argv: list[str],
                                         extra: str) -> None:
    events, policy = files
    args = [a.format(events=events, policy=policy, tmp=tmp_path) for a in argv]
    r = _without(module, args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"pip install 'cps-engine[{extra}]'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_extras_map_names_the_extra() -> None:
    assert EXTRAS["matplotlib"] == "analysis" and EXTRAS["fastapi"] == "service"
    exc = ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot")
    assert missing_extra(exc) == ("matplotlib is not installed: install the analysis extra: "
                                  "pip install 'cps-engine[analysis]'")
    assert missing_extra(ModuleNotFoundError("x", name="yaml")) is None


# ------------------------------------------------------------------ 6. ledger balance --format csv, explicit as-of


def test_ledger_balance_csv_and_the_as_of_used(tmp_path: Path) -> None:
    events, policy, db = tmp_path / "e.jsonl", tmp_path / "p.toml", tmp_path / "l.db"
    evil = [dict(EVENTS[0], sharer="=HYPERLINK(1)"), *EVENTS[1:]]
    events.write_text("".join(json.dumps(e) + "\n" for e in evil), encoding="utf-8")
    policy.write_text(POLICY, encoding="utf-8")
    recorded = runner.invoke(app, ["ledger", "record", str(events), "--db", str(db), "--policy", str(policy)])
    assert recorded.exit_code == 0, recorded.output
    r = runner.invoke(app, ["ledger", "balance", "--db", str(db), "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["payee", "currency", "pending", "available", "paid", "fee"]
    assert {row["payee"] for row in rows} == {"'=HYPERLINK(1)", "bob"}  # the formula cell is neutralised
    table = runner.invoke(app, ["ledger", "balance", "--db", str(db)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "Balances as of 20" in table.stdout and "(now, UTC)" in table.stdout
    helped = runner.invoke(app, ["ledger", "balance", "--help"], env={"COLUMNS": "200"})
    assert "default: now (UTC)" in helped.stdout


# ------------------------------------------------------------------ 7. shell completion


def test_shell_completion_options_exist() -> None:
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
