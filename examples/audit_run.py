"""An auditor's view: state a month, tamper with one line, and let the tools find it.

Runs the ``cps-engine`` command exactly as an auditor would in a shell, and prints each command, its
report and its exit status (0 clean, 1 discrepancies found, 2 unusable input)::

    python examples/audit_run.py               # works in a scratch directory of the current one
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVENTS = Path(str(files("cps_engine") / "data" / "sample_events.jsonl"))   # the bundled month
POLICY = HERE / "policies" / "capped_multilevel.toml"
OUT = Path("audit-run")


def cps(*args: object) -> int:
    """Run ``cps-engine ARGS`` (this interpreter's copy), print what it says and its exit status."""
    argv = [str(a) for a in args]
    print(f"\n$ cps-engine {shlex.join(argv)}")
    env = {**os.environ, "COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "cps_engine.cli", *argv], capture_output=True, text=True,
                          env=env, check=False)
    print((proc.stdout + proc.stderr).rstrip())
    print(f"[exit status {proc.returncode}]")
    return proc.returncode


def main() -> None:
    OUT.mkdir(exist_ok=True)

    # 1. The platform's statement for March, with its manifest (Merkle root over the lines)
    assert cps("statement", "--events", EVENTS, "--policy", POLICY, "--period", "2026-03", "-o", OUT) == 0
    stated = OUT / "statement-2026-03.csv"
    manifest = OUT / "statement-2026-03.manifest.json"

    # 2. Someone raises one payee's commission by 9.00 in the CSV after it was stated
    with stated.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    victim = rows[0]
    print(f"\ntampering: {victim['payee']} on {victim['order']}: {victim['amount']} -> ", end="")
    victim["amount"] = str(Decimal(victim["amount"]) + Decimal("9.00"))
    print(victim["amount"])
    tampered = OUT / "tampered-2026-03.csv"
    with tampered.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    # 3. The untouched statement verifies; the tampered one does not (exit 1, the money at stake)
    clean = cps("audit", "verify", "--events", EVENTS, "--policy", POLICY, "--statement", stated,
                "--manifest", manifest)
    found = cps("audit", "verify", "--events", EVENTS, "--policy", POLICY, "--statement", tampered,
                "--manifest", manifest)

    # 4. Without the events: the Merkle root in the manifest locates the edited line
    integrity = cps("audit", "check-integrity", tampered, "--manifest", manifest)

    # 5. Why is that line owed what it is owed? The chain, rule, rate, base and rounding
    cps("audit", "explain", "--events", EVENTS, "--policy", POLICY, "--order", victim["order"],
        "--payee", victim["payee"])

    # 6. A platform's own export, read through a column map (Chinese headers, amounts in fen)
    platform = cps("audit", "verify", "--events", HERE / "events" / "small.jsonl", "--policy", POLICY,
                   "--statement", HERE / "audit" / "platform_statement.csv",
                   "--columns", HERE / "audit" / "platform_columns.toml", "--period", "2026-03")

    print(f"\nsummary: verify clean={clean} tampered={found}; check-integrity={integrity}; platform={platform}")


if __name__ == "__main__":
    main()
