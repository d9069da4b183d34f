"""Audit: verifiable statements, verification, explanation, tamper evidence and the compliance report.

- :mod:`~cps_engine.audit.statement`: statements built from events, their manifest (inputs hash,
  policy hash, version, rounding, Merkle root chained to the previous statement), CSV/JSON export,
  and import of platform CSVs with a configurable column map;
- :mod:`~cps_engine.audit.merkle`: RFC 6962 Merkle trees and inclusion proofs;
- :mod:`~cps_engine.audit.verify`: recompute every line and classify every discrepancy, with the
  money at stake; :mod:`~cps_engine.audit.report` renders it as a self-contained HTML page;
- :mod:`~cps_engine.audit.integrity`: detect and locate edits, check the chain, prove one line;
- :mod:`~cps_engine.audit.explain`: why a line is what it is;
- :mod:`~cps_engine.audit.compliance`: the programme against :data:`cps_engine.rules.RULES`;
- :mod:`~cps_engine.audit.abuse`: abuse signals (purchase rings, self-dealing fingerprint clusters,
  refunds after payout, share bursts) with their evidence and the money at stake.

>>> from cps_engine.models import load_events
>>> from cps_engine.policies import load_policy
>>> evs = load_events([
...   '{"type":"share","id":"s1","sharer":"amy","at":"2026-03-01T10:00:00+08:00"}',
...   '{"type":"order","id":"o1","buyer":"cat","share":"s1","amount":"100.00","currency":"CNY",'
...   '"at":"2026-03-01T12:00:00+08:00"}'])
>>> pol = load_policy({"kind": "first_sharer", "rate": "10%"})
>>> st = build_statement(evs, pol, "2026-03", tz="+08:00")
>>> verify_statement(st, evs, pol).ok, check_integrity(st).intact
(True, True)
"""

from cps_engine.audit.abuse import AbuseFinding, AbuseReport, AbuseThresholds, abuse_report
from cps_engine.audit.compliance import ComplianceReport, Finding, compliance_report
from cps_engine.audit.explain import Explanation, LineExplanation, explain_order
from cps_engine.audit.integrity import Change, IntegrityReport, ProofCheck, check_integrity, prove, verify_proof
from cps_engine.audit.merkle import inclusion_proof, leaf_hash, merkle_root, node_hash, root_of, verify_inclusion
from cps_engine.audit.report import render_verification_html
from cps_engine.audit.statement import (
    ColumnMap,
    InvalidStatement,
    Manifest,
    Period,
    Statement,
    StatementLine,
    build_statement,
    events_digest,
    read_statement,
    seal_lines,
    statement_from_ledger,
)
from cps_engine.audit.verify import Discrepancy, Kind, VerificationReport, verify_statement

__all__ = [
    "AbuseFinding",
    "AbuseReport",
    "AbuseThresholds",
    "Change",
    "ColumnMap",
    "ComplianceReport",
    "Discrepancy",
    "Explanation",
    "Finding",
    "IntegrityReport",
    "InvalidStatement",
    "Kind",
    "LineExplanation",
    "Manifest",
    "Period",
    "ProofCheck",
    "Statement",
    "StatementLine",
    "VerificationReport",
    "abuse_report",
    "build_statement",
    "check_integrity",
    "compliance_report",
    "events_digest",
    "explain_order",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "prove",
    "read_statement",
    "render_verification_html",
    "root_of",
    "seal_lines",
    "statement_from_ledger",
    "verify_inclusion",
    "verify_proof",
    "verify_statement",
]
