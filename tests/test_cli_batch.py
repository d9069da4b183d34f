"""``cps-engine compute`` runs on the batch path and writes the bytes the per-order engine wrote.

The reference is the old command's body: ``write_lines(compute_events(...))``.  Compared on the
bundled sample under every built-in policy kind (options included), and on a history of hostile
ids (formula prefixes, separators, quotes, the path separator, bidi and CJK text).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cps_engine import compute_events, load_events, load_policy
from cps_engine.cli import app, sample_path, write_lines

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HALF = [f"u{i:04d}" for i in range(0, 3000, 2)]  # every other person of the sample

POLICIES: list[dict[str, Any]] = [
    {"kind": "first_sharer", "rate": "10%"},
    {"kind": "first_sharer", "rate": "3.00 CNY", "distributors": [*HALF, "=1+1"]},
    {"kind": "last_sharer", "rate": "8%", "self_purchase": True, "rounding": "half_even"},
    {"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"},
    {"kind": "capped_multilevel", "rates": ["1/3", "0.50 CNY/item"], "cap": "20%", "ineligible": "keep_level",
     "distributors": [*HALF, "u1366", "a,b", "@sum"], "payee_rates": {"u1366": "12%", "u00010": "1%"},
     "rounding": "up"},
    {"kind": "compliant", "profile": "cn", "rates": ["10%", "5%"], "cap": "12%", "self_purchase_rate": "3%"},
    {"kind": "linear", "rate": "9%", "max_depth": 5},
    {"kind": "position_based", "rate": "10%", "category_rates": {"food": "6%"}, "product_rates": {"A1": "1/7"}},
    {"kind": "time_decay", "rate": "10%", "half_life_days": "7", "self_purchase": True},
]


def _reference(events: Path, policy: dict[str, Any], fmt: str) -> str:
    out = io.StringIO()
    write_lines(compute_events(load_events(events), load_policy(policy)), fmt, out)
    return out.getvalue()


def _cli(tmp: Path, events: Path, policy: dict[str, Any], fmt: str) -> str:
    pol = tmp / "policy.json"
    pol.write_text(json.dumps(policy), encoding="utf-8")
    target = tmp / f"out.{fmt}"
    result = CliRunner().invoke(app, ["compute", "--events", str(events), "--policy", str(pol), "--format", fmt,
                                      "-o", str(target)])
    assert result.exit_code == 0, result.output
    return target.read_bytes().decode("utf-8")


def _hostile(tmp: Path) -> Path:
    ids = ["=1+1", "a,b", 'q"uote', "s/1", "名字", "x\u202ey", "@sum", "-2", "+3", " lead", "u00010"]
    recs: list[dict[str, Any]] = []
    prev: str | None = None
    for i, who in enumerate(ids):
        sid = f"{who}#{i}"
        recs.append({"type": "share", "id": sid, "sharer": who, "parent": prev,
                     "at": (T0 + timedelta(hours=i)).isoformat()})
        prev = sid if i % 4 != 3 else None
    recs.append({"type": "bind", "id": "=HYPERLINK(1)", "user": "buyer,1", "upline": "@sum",
                 "at": T0.isoformat()})
    for i in range(len(ids)):
        recs.append({"type": "order", "id": f"=o{i},\"x\"", "buyer": ids[(i * 3) % len(ids)],
                     "share": f"{ids[i]}#{i}", "amount": f"{(i + 1) * 37}.{i:02d}", "currency": "CNY",
                     "at": (T0 + timedelta(days=2, hours=i)).isoformat(),
                     "lines": [{"sku": "A1", "category": "food", "quantity": i + 1, "unit_price": "1.00"}]})
    recs.append({"type": "order", "id": "-bound", "buyer": "buyer,1", "amount": "10.00", "currency": "CNY",
                 "at": (T0 + timedelta(days=3)).isoformat()})
    recs.append({"type": "refund", "id": "r1", "order": "=o2,\"x\"", "amount": "5.00",
                 "at": (T0 + timedelta(days=4)).isoformat()})
    path = tmp / "hostile.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_compute_writes_the_per_order_bytes_on_the_sample(tmp_path: Path, policy: dict[str, Any], fmt: str) -> None:
    got = _cli(tmp_path, sample_path(), policy, fmt)
    assert got == _reference(sample_path(), policy, fmt)
    assert got.count("\n") > 100


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["kind"])
def test_compute_writes_the_per_order_bytes_on_hostile_ids(tmp_path: Path, policy: dict[str, Any]) -> None:
    events = _hostile(tmp_path)
    for fmt in ("csv", "jsonl"):
        got = _cli(tmp_path, events, policy, fmt)
        assert got == _reference(events, policy, fmt)
    assert "'=o" in _cli(tmp_path, events, POLICIES[0], "csv")  # formula cells neutralised


def test_the_comparison_catches_a_wrong_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a batch path that drops the links read before an ineligible payee differs."""
    from cps_engine.batch import _kernels

    monkeypatch.setattr(_kernels, "_paths", lambda pl, ga, cols: _kernels.Strings.of(["x"] * len(pl.pos)))
    policy = POLICIES[3]
    assert _cli(tmp_path, sample_path(), policy, "csv") != _reference(sample_path(), policy, "csv")


# ---------------------------------------------------------------------------- the columnar reader on the CLI
BAD_LINES = [
    '{"type":"order","id":"=1+1","buyer":"\\u001b[31mred","amount":5.0,"currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"share","id":"[bold]s[/bold]","sharer":"a","at":"2026-03-01T10:00:00"}',
    '{"type":"order","id":"o1","buyer":"b","amount":"1.001","currency":"CNY","at":"2026-03-02T10:00:00Z"}',
    '{"type":"bind","id":"b1","user":"u"}',
]


def _write(tmp: Path, lines: list[str], name: str = "e.jsonl") -> Path:
    path = tmp / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _policy(tmp: Path, policy: dict[str, Any] = POLICIES[3]) -> Path:
    pol = tmp / "policy.json"
    pol.write_text(json.dumps(policy), encoding="utf-8")
    return pol


def _old_error(events: Path, policy: dict[str, Any]) -> str:
    """What the per-order command refused this file with (its message, controls shown)."""
    from cps_engine.cli_common import clean
    from cps_engine.errors import CpsError

    try:
        compute_events(load_events(events), load_policy(policy))
    except CpsError as exc:
        return clean(str(exc), newlines=True)
    raise AssertionError("the per-order path accepted the file")


def test_compute_refuses_bad_lines_with_the_per_order_message(tmp_path: Path) -> None:
    sample = sample_path().read_text(encoding="utf-8").splitlines()
    events = _write(tmp_path, [*sample[:50], *BAD_LINES, *sample[50:60]])
    result = CliRunner().invoke(app, ["compute", "--events", str(events), "--policy", str(_policy(tmp_path))])
    assert result.exit_code == 2
    assert result.stdout == ""
    want = _old_error(events, POLICIES[3])
    assert want.startswith("4 bad record(s)")
    assert f"error: {want}" in result.stderr.replace("\\\\", "\\")
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize("extra", [
    '{"type":"order","id":"oX","buyer":"b","share":"ghost","amount":"1.00","currency":"CNY",'
    '"at":"2026-03-09T10:00:00Z"}',
    '{"type":"refund","id":"rX","order":"o99999","at":"2026-03-09T10:00:00Z"}',
    '{"type":"refund","id":"rX","order":"o1","amount":"100000.00","at":"2026-03-31T10:00:00Z"}',
    '{"type":"share","id":"sX","sharer":"zz","parent":"nope","at":"2026-03-09T10:00:00Z"}',
    '{"type":"bind","id":"bX","user":"zz","upline":"zz","at":"2026-03-09T10:00:00Z"}',
    '{"type":"share","id":"s1","sharer":"someone else","at":"2026-03-09T10:00:00Z"}',
])
def test_compute_refuses_what_the_per_order_path_refuses_with_its_message(tmp_path: Path, extra: str) -> None:
    events = _write(tmp_path, [*sample_path().read_text(encoding="utf-8").splitlines(), extra])
    result = CliRunner().invoke(app, ["compute", "--events", str(events), "--policy", str(_policy(tmp_path))])
    assert result.exit_code == 2, result.output
    assert f"error: {_old_error(events, POLICIES[3])}" in result.stderr


def test_validate_finds_everything_compute_refuses_at_once(tmp_path: Path) -> None:
    sample = sample_path().read_text(encoding="utf-8").splitlines()
    problems = [
        '{"type":"order","id":"oX","buyer":"b","share":"ghost","amount":"1.00","currency":"CNY",'
        '"at":"2026-03-09T10:00:00Z"}',
        '{"type":"refund","id":"rX","order":"o99999","at":"2026-03-09T10:00:00Z"}',
        '{"type":"refund","id":"rY","order":"o1","amount":"100000.00","at":"2026-03-31T10:00:00Z"}',
        '{"type":"share","id":"sX","sharer":"zz","parent":"sX","at":"2026-03-09T10:00:00Z"}',
        '{"type":"bind","id":"bX","user":"zz","upline":"zz","at":"2026-03-09T10:00:00Z"}',
        '{"type":"share","id":"s1","sharer":"someone else","at":"2026-03-09T10:00:00Z"}',
        *BAD_LINES,
    ]
    events = _write(tmp_path, [*sample, *problems])
    result = CliRunner().invoke(app, ["validate", str(events)])
    assert result.exit_code == 2
    reported = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    assert len(reported) == len(problems)
    assert [int(r.split("line ")[1].split(",")[0].split(":")[0]) for r in reported] == \
        list(range(len(sample) + 1, len(sample) + len(problems) + 1))
    assert f"{len(problems)} bad record(s)" in result.stderr
    for bit in ("ghost", "o99999", "exceed", "itself", "themselves", "line 1 with a different payload", "float"):
        assert bit in result.stderr
    ok = CliRunner().invoke(app, ["validate", str(sample_path())])
    assert ok.exit_code == 0 and "ok" in ok.stderr


def test_compute_reads_standard_input_as_a_file(tmp_path: Path) -> None:
    data = sample_path().read_bytes()
    pol = _policy(tmp_path)
    piped = CliRunner().invoke(app, ["compute", "--events", "-", "--policy", str(pol)], input=data)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes.decode("utf-8") == _reference(sample_path(), POLICIES[3], "csv")


def test_whatif_compares_what_compare_compares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cps_engine import cli_whatif
    from cps_engine.whatif import compare

    seen: list[Any] = []
    real = cli_whatif.render
    monkeypatch.setattr(cli_whatif, "render", lambda c, top=5: seen.append(c) or real(c, top=top))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(POLICIES[0]), encoding="utf-8")
    b.write_text(json.dumps(POLICIES[4]), encoding="utf-8")
    result = CliRunner().invoke(app, ["whatif", "--events", str(sample_path()), "--policy", str(a), "--policy",
                                      str(b)])
    assert result.exit_code == 0, result.output
    want = compare(load_events(sample_path()), [load_policy(POLICIES[0]), load_policy(POLICIES[4])])
    assert seen[0].metrics.equals(want.metrics)
    assert seen[0].deltas(*want.policies).equals(want.deltas(*want.policies))


@pytest.mark.parametrize("command", ["compute", "validate", "whatif"])
def test_progress_is_shown_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    import io

    from rich.console import Console

    from cps_engine import cli, cli_whatif

    pol = str(_policy(tmp_path))
    args = {"compute": ["compute", "--events", str(sample_path()), "--policy", pol, "-o", str(tmp_path / "o.csv")],
            "validate": ["validate", str(sample_path())],
            "whatif": ["whatif", "--events", str(sample_path()), "--policy", pol]}[command]
    for terminal in (True, False):
        screen = io.StringIO()
        fake = Console(file=screen, force_terminal=terminal, width=100)
        monkeypatch.setattr(cli, "err", fake)
        monkeypatch.setattr(cli_whatif, "err", fake)
        assert CliRunner().invoke(app, args).exit_code == 0
        assert ("reading events" in screen.getvalue()) is terminal


def test_money_text_in_columns_is_the_money_text() -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from cps_engine.cli import _money_text
    from cps_engine.money import Money

    values = np.array([0, 1, -1, 5, -5, 99, 100, 101, -12345, 10**15, -(10**15) - 7, 2**62], dtype=np.int64)
    for cur, exp in (("JPY", 0), ("CNY", 2), ("KWD", 3), ("CLF", 4)):
        got = _money_text(pa, pc, values, np.full(len(values), exp, dtype=np.int64)).to_pylist()
        assert got == [str(Money(int(v), cur).amount) for v in values]


def test_csv_rows_that_need_escaping_are_written_by_the_csv_writer(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a columnar writer that does not hand formula cells to CsvWriter differs."""
    from cps_engine import cli

    events = _hostile(tmp_path)
    assert _cli(tmp_path, events, POLICIES[0], "csv") == _reference(events, POLICIES[0], "csv")
    monkeypatch.setattr(cli, "_ESCAPED", "^$x")
    assert _cli(tmp_path, events, POLICIES[0], "csv") != _reference(events, POLICIES[0], "csv")


@pytest.mark.parametrize("command", ["compute", "validate"])
def test_without_pyarrow_one_sentence_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       command: str) -> None:
    import sys

    for name in ("pyarrow", "pyarrow.compute", "pyarrow.json"):
        monkeypatch.setitem(sys.modules, name, None)
    args = (["compute", "--events", str(sample_path()), "--policy", str(_policy(tmp_path))] if command == "compute"
            else ["validate", str(sample_path())])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "pyarrow is not installed: install the analysis extra: pip install 'cps-engine[analysis]'" in result.stderr
    assert "Traceback" not in result.output
