"""``cps-engine audit compliance``: the verdict as exit status (0 compliant, 1 non-compliant, 3 review,
2 unusable input), thresholds from a file and from options, printed in the report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer
from typer.testing import CliRunner

from cps_engine.cli_audit import audit_app
from cps_engine.models import dump_events
from tests.audit.programmes import entry_package, first_sharer_deep, single_product_shop

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(audit_app, name="audit")
runner = CliRunner()


def _files(tmp_path: Path, build: object) -> list[str]:
    assert callable(build)
    p = build(random.Random(3))
    ev, pol = tmp_path / "events.jsonl", tmp_path / "policy.json"
    dump_events(p.events, ev)
    pol.write_text(json.dumps(p.policy), encoding="utf-8")
    return ["audit", "compliance", "--events", str(ev), "--policy", str(pol)]


def test_exit_status_is_the_verdict(tmp_path: Path) -> None:
    res = runner.invoke(app, _files(tmp_path, first_sharer_deep))
    assert res.exit_code == 0, res.output
    assert "Verdict: COMPLIANT" in res.stdout and "internal_fail" in res.stdout
    assert res.stdout.count("not legal advice") == 2
    res = runner.invoke(app, [*_files(tmp_path, entry_package), "--format", "json"])
    data = json.loads(res.stdout)
    assert res.exit_code == 1 and data["verdict"] == "non-compliant"
    assert any(e.startswith("CN-FEE") for e in data["evidence"])
    assert {t["name"] for t in data["thresholds"]} >= {"internal_fail", "org_people", "entry_window_hours"}
    assert all(f["how"] for f in data["findings"])
    res = runner.invoke(app, _files(tmp_path, single_product_shop))
    assert res.exit_code == 3 and "Verdict: REVIEW" in res.stdout


def test_thresholds_from_a_file_and_options(tmp_path: Path) -> None:
    base = _files(tmp_path, single_product_shop)
    assert runner.invoke(app, [*base, "--threshold", "internal_warn=20%"]).exit_code == 0
    toml = tmp_path / "limits.toml"
    toml.write_text('internal_warn = "20%"\ninternal_fail = "20%"\n', encoding="utf-8")
    assert runner.invoke(app, [*base, "--thresholds", str(toml)]).exit_code == 0
    # options apply after the file
    assert runner.invoke(app, [*base, "--thresholds", str(toml), "--threshold", "internal_warn=1%"]).exit_code == 3
    jsn = tmp_path / "limits.json"
    jsn.write_text('{"internal_fail": "1%"}', encoding="utf-8")
    res = runner.invoke(app, [*base, "--thresholds", str(jsn), "--format", "json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["verdict"] == "non-compliant"
    for bad in (["--threshold", "internal_fail=150%"], ["--threshold", "nonsense=1"], ["--threshold", "x"]):
        res = runner.invoke(app, [*base, *bad])
        assert res.exit_code == 2, (bad, res.output)
    toml.write_text("internal_fail = [", encoding="utf-8")
    assert runner.invoke(app, [*base, "--thresholds", str(toml)]).exit_code == 2
