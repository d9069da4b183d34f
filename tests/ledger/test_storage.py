"""Storage: the backend's own transaction, plain engines, schema creation, upgrades and terms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cps_engine import InvalidPolicyConfig
from cps_engine.ledger import Ledger, Outcome, schema
from cps_engine.ledger.schema import LedgerSchemaError
from tests.ledger.conftest import new_prefix
from tests.ledger.helpers import POLICY, bal, day, order, share

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


class Rollback(Exception):
    pass


def test_records_inside_the_callers_transaction(backend: str, engine_for: Callable[[str], sa.Engine]) -> None:
    engine = engine_for(backend)
    prefix = new_prefix()
    Ledger(engine, POLICY, prefix=prefix)  # the library creates its schema
    with pytest.raises(Rollback), engine.begin() as conn:  # the backend's order transaction fails
        led = Ledger(conn, prefix=prefix)
        led.record_many([share("s1", "amy"), order("o1", "s1", "10.00", at=1)])
        assert bal(led, "amy", 2) == ("1.00", "0.00", "0.00", "0.00")  # visible inside the transaction
        raise Rollback
    assert Ledger(engine, prefix=prefix).event_count() == 0  # nothing of it survived
    with engine.begin() as conn:  # the order transaction commits: so do the commissions
        led = Ledger(conn, prefix=prefix)
        assert led.record(share("s1", "amy")).outcome is Outcome.APPLIED
        led.record(order("o1", "s1", "10.00", at=1))
    after = Ledger(engine, prefix=prefix)
    assert after.event_count() == 2
    assert bal(after, "amy", 2) == ("1.00", "0.00", "0.00", "0.00")
    assert after.verify().ok


def test_a_ledger_object_survives_a_rolled_back_transaction(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")  # a plain engine, not sqlite_engine()
    Ledger(engine, POLICY)
    with engine.connect() as conn:
        led = Ledger(conn)
        led.record(share("s1", "amy"))
        conn.rollback()  # the share is gone, but the ledger object had seen it
        led.record(share("s2", "bob"))
        assert led.record(order("o1", "s1", "10.00", at=1)).outcome is Outcome.PARKED
        conn.commit()
    led = Ledger(engine)
    assert [p.waits_for for p in led.parked()] == ["share:s1"]
    assert led.record(share("s1", "amy")).released == (("order", "o1"),)


def test_schema_version_newer_than_the_library_is_refused(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "v.db", POLICY)
    assert led._engine is not None
    with led._engine.begin() as conn:
        conn.execute(led.tables.meta.update().where(led.tables.meta.c.key == "schema_version").values(value="99"))
    with pytest.raises(LedgerSchemaError, match="version 99"):
        Ledger.open(tmp_path / "v.db")


def test_upgrade_path_runs_each_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Ledger.open(tmp_path / "u.db", POLICY).record(share("s1", "amy"))
    ran: list[int] = []

    def step(conn: sa.Connection, t: schema.LedgerTables) -> None:
        ran.append(1)
        conn.exec_driver_sql(f"CREATE INDEX {t.prefix}events_kind ON {t.events.name} (kind)")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(schema, "MIGRATIONS", {**schema.MIGRATIONS, 2: step})
    led = Ledger.open(tmp_path / "u.db")
    led2 = Ledger.open(tmp_path / "u.db")
    assert ran == [1]
    assert led2.event_count() == 1
    assert led.tables.metadata is not None
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 4)
    with pytest.raises(LedgerSchemaError, match="no migration from schema version 3"):
        Ledger.open(tmp_path / "u.db")


def test_a_schema_1_ledger_is_upgraded_and_keeps_verifying(backend: str,
                                                            engine_for: Callable[[str], sa.Engine]) -> None:
    engine = engine_for(backend)
    prefix = new_prefix()
    led = Ledger(engine, POLICY, prefix=prefix)
    led.record_many([share("s1", "amy"), order("o1", "s1", "10.00", at=1)])
    t = led.tables
    with engine.begin() as conn:  # what schema 1 looked like: no index on the events' time
        sa.Index(f"{prefix}events_at", t.events.c.at_us).drop(conn)
        conn.execute(t.meta.update().where(t.meta.c.key == "schema_version").values(value="1"))
    from cps_engine.ledger import ledger as ledger_module

    ledger_module._SETUPS.pop(engine, None)
    again = Ledger(engine, prefix=prefix)
    with engine.connect() as conn:
        assert schema.schema_version(conn, t) == 2
        assert f"{prefix}events_at" in {ix["name"] for ix in sa.inspect(conn).get_indexes(t.events.name)}
    again.record(order("o2", "s1", "10.00", at=2))
    assert again.verify().ok


def test_terms_rules(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicyConfig, match="needs a policy"):
        Ledger.open(tmp_path / "t.db")
    led = Ledger.open(tmp_path / "t.db", POLICY, hold_days=3, min_payout="1.00 CNY", payout_fee=["1%", "0.10 CNY"])
    led.record_many([share("s1", "amy", at=0), order("o1", "s1", "10.00", at=5)])
    assert Ledger.open(tmp_path / "t.db").terms == led.terms  # reopening with nothing new adds no version
    assert len(Ledger.open(tmp_path / "t.db", POLICY, hold_days=3).terms) == 1
    with pytest.raises(InvalidPolicyConfig, match="before events already recorded"):
        Ledger.open(tmp_path / "t.db", hold_days=1, effective_from=day(1))
    with pytest.raises(InvalidPolicyConfig, match="binding"):
        Ledger.open(tmp_path / "t.db", binding="overwrite")
    led2 = Ledger.open(tmp_path / "t.db", hold_days=1, effective_from=day(10))
    assert [(t.version, t.rules.hold_days, t.rules.minimum("CNY"), t.rules.fee(1000, "CNY")) for t in led2.terms] == [
        (1, 3, 100, 20), (2, 1, 100, 20)]
    led2.record(order("o2", "s1", "10.00", at=11))
    assert bal(led2, "amy", 7.9) == ("1.00", "0.00", "0.00", "0.00")  # o1 (version 1) is held 3 days
    assert bal(led2, "amy", 11.5) == ("1.00", "1.00", "0.00", "0.00")
    assert bal(led2, "amy", 12) == ("0.00", "2.00", "0.00", "0.00")  # o2 (version 2) is held 1 day
