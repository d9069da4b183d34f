"""The public namespace: every name in ``__all__`` resolves, and the core path imports no heavy
dependency (names load on first use, PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import cps_engine

HEAVY = ("sqlalchemy", "networkx", "pandas", "pyarrow", "polars", "matplotlib", "rich", "dask")


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in cps_engine.__all__:
        assert getattr(cps_engine, name) is not None, name
    assert set(cps_engine.__all__) <= set(dir(cps_engine))


def test_the_core_path_loads_no_database_dataframe_or_terminal_library() -> None:
    loaded = modules_after("from cps_engine import Money, ShareGraph, compute, compute_events, load_events, "
                           "load_policy, parse_event")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_the_ledger_loads_when_it_is_asked_for() -> None:
    loaded = modules_after("import sys\nimport cps_engine\nassert 'sqlalchemy' not in sys.modules\ncps_engine.Ledger")
    assert "sqlalchemy" in loaded


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        cps_engine.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_each_name_once_and_the_0x_spellings_warn_where_they_went() -> None:
    import pytest

    assert not {"Statement", "StatementLine", "LedgerStatement", "Award", "settle"} & set(cps_engine.__all__)
    assert cps_engine.PayoutStatement is cps_engine.audit.statement.Statement or \
        cps_engine.PayoutStatement.__module__ == "cps_engine.audit.statement"
    assert cps_engine.AccountStatement.__module__ == "cps_engine.ledger.statement"
    assert cps_engine.PayoutStatement is not cps_engine.AccountStatement
    for old, new in (("Statement", "PayoutStatement"), ("LedgerStatement", "AccountStatement")):
        with pytest.warns(DeprecationWarning, match=new):
            assert getattr(cps_engine, old) is getattr(cps_engine, new)
    from cps_engine.policies import Award

    with pytest.warns(DeprecationWarning, match="cps_engine.policies"):
        assert cps_engine.Award is Award
    assert len(cps_engine.__all__) < 90
