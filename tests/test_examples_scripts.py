"""The scripts in examples/ run as a user would run them (a subprocess, a scratch working directory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(script: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_backend_handler(tmp_path: Path) -> None:
    out = run("backend_handler.py", tmp_path)
    # 199.00 - 10.00 shipping = 189.00 base; 10% / 5% / 2% down the chain s3 -> s2 -> s1
    assert "o1: applied" in out
    assert "level 1  cy      18.90 CNY  at  10%  via s3" in out
    assert "level 3  amy      3.78 CNY  at   2%  via s3/s2/s1" in out
    assert "retry o1: duplicate" in out
    assert "o2 rolled back" in out and "orders in the shop table: ['o1']" in out
    assert "balance cy: pending 0.00 CNY, available 18.90 CNY" in out
    assert (tmp_path / "shop.db").exists()


def test_whatif(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    out = run("whatif.py", tmp_path)
    assert "4000 orders" in out and "first sharer 10%" in out and "3 levels, cap 15%" in out
    assert "payees gain" in out and "lines by level" in out
    assert (tmp_path / "whatif.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_run(tmp_path: Path) -> None:
    out = run("audit_run.py", tmp_path)
    assert "summary: verify clean=0 tampered=1; check-integrity=1; platform=0" in out
    assert "amount_mismatch" in out and "TAMPERED" in out
    assert (tmp_path / "audit-run" / "statement-2026-03.manifest.json").exists()


def test_platform_column_map_is_a_valid_map() -> None:
    from cps_engine import ColumnMap

    cmap = ColumnMap.load(EXAMPLES / "audit" / "platform_columns.toml")
    assert cmap.amount_unit == "minor" and cmap.columns["amount"] == "佣金(分)"
