"""``cps-engine serve`` admin commands, and the CLI starting without the service's extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cps_engine.cli import app
from cps_engine.ledger import Ledger
from cps_engine.service import Admin, ledger_prefix, make_engine

runner = CliRunner()


def test_cli_does_not_import_the_service_stack() -> None:
    code = "import sys, cps_engine.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_admin_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "svc.db")
    policy = tmp_path / "p.toml"
    policy.write_text('kind = "first_sharer"\nrate = "10%"\n')
    r = runner.invoke(app, ["serve", "tenant", "add", "acme", "--db", db, "--policy", str(policy), "--hold-days", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["serve", "tenant", "add", "Bad-Id", "--db", db, "--policy", str(policy)])
    assert r.exit_code == 2 and "tenant" in r.output
    key = runner.invoke(app, ["serve", "key", "add", "acme", "--db", db, "--label", "ci"]).stdout.strip()
    assert key.startswith("cpsk_")
    admin = Admin(make_engine(db))
    assert admin.authenticate(key) == "acme"
    listed = [json.loads(x) for x in runner.invoke(app, ["serve", "key", "list", "--db", db]).stdout.splitlines()]
    assert listed == [{"key_id": key.split("_")[1], "tenant": "acme", "label": "ci", "active": True}]
    assert key.split("_", 2)[2] not in json.dumps(listed)
    assert runner.invoke(app, ["serve", "key", "revoke", key.split("_")[1], "--db", db]).exit_code == 0
    assert admin.authenticate(key) is None
    hook = json.loads(runner.invoke(app, ["serve", "webhook", "add", "acme", "--db", db, "--url",
                                          "http://127.0.0.1:9/x"]).stdout)
    assert hook["secret"].startswith("whsec_")
    r = runner.invoke(app, ["serve", "webhook", "add", "acme", "--db", db, "--url", "file:///etc/passwd"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["serve", "deliver", "--db", db])
    assert r.exit_code == 0 and "delivered 0" in r.output
    Ledger(admin.engine, prefix=ledger_prefix("acme")).record(
        {"type": "share", "id": "s1", "sharer": "amy", "at": "2026-03-01T10:00:00Z"})
    r = runner.invoke(app, ["serve", "tenant", "terms", "acme", "--db", db, "--hold-days", "5"])
    assert r.exit_code == 0 and "terms version 2" in r.output
    assert runner.invoke(app, ["serve", "tenant", "list", "--db", db]).stdout == "acme\n"
    assert runner.invoke(app, ["serve"]).exit_code == 2  # running needs --db
