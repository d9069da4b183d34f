"""``ledger schema``: the printed DDL, run by a backend's own tooling, gives a ledger that works unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cps_engine.cli_ledger import ledger_app
from cps_engine.ledger import Ledger, sqlite_engine
from cps_engine.ledger.schema import ledger_ddl, ledger_metadata
from tests.ledger.conftest import Server, new_prefix
from tests.ledger.helpers import POLICY, bal, order, payout, refund, share

runner = CliRunner()
EVENTS = [share("s1", "amy"), share("s2", "bob", "s1", at=0.01), order("o1", "s2", "100.00", at=1),
          refund("r1", "o1", "40.00", at=2), payout("p1", "bob", "5.00", at=10)]
DDL = ("CREATE", "DROP", "ALTER", "TRUNCATE")


def printed(dialect: str, prefix: str, *more: str) -> str:
    r = runner.invoke(ledger_app, ["schema", "--dialect", dialect, "--prefix", prefix, *more])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("-- cps-engine ledger schema ")
    return r.stdout


def run_script(kind: str, engine: sa.Engine, script: str, path: Path | None = None) -> None:
    """Run the printed SQL the way a backend's tooling would: sqlite3's executescript, psycopg's
    multi-statement execute (no parameters: % is plain text), statement by statement on MariaDB."""
    if kind == "sqlite":
        assert path is not None
        with sqlite3.connect(path) as db:
            db.executescript(script)
        return
    raw: Any = engine.raw_connection()
    try:
        cur = raw.cursor()
        if kind == "postgresql":
            cur.execute(script)
        else:
            for chunk in script.split(";\n"):
                statement = "\n".join(line for line in chunk.splitlines() if not line.startswith("--"))
                if statement.strip():
                    cur.execute(statement)
        raw.commit()
    finally:
        raw.close()


@contextmanager
def no_ddl(engine: sa.Engine) -> Iterator[list[str]]:
    """Every statement the engine runs inside the block; the test asserts none is DDL."""
    seen: list[str] = []

    def spy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", spy)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", spy)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_printed_ddl_gives_a_working_protected_ledger(kind: str, servers: dict[str, Server], tmp_path: Path) -> None:
    prefix = new_prefix()
    path = tmp_path / "ddl.db"
    engine = sqlite_engine(path) if kind == "sqlite" else servers[kind].get()
    run_script(kind, engine, printed("mysql" if kind == "mariadb" else kind, prefix), path)

    inspector = sa.inspect(engine)
    md = ledger_metadata(prefix)
    assert {n for n in inspector.get_table_names() if n.startswith(prefix)} == set(md.tables)
    for table in md.tables.values():
        assert {i["name"] for i in inspector.get_indexes(table.name)} >= {str(i.name) for i in table.indexes}
    with engine.connect() as conn:  # the write lock's row (MariaDB locks it; a missing row would lock nothing)
        assert conn.execute(sa.select(md.tables[f"{prefix}lock"])).all() == [(1, 0)]

    with no_ddl(engine) as seen:
        led = Ledger(engine, POLICY, prefix=prefix, hold_days=7, payout_fee="0.50 CNY")
        led.record_many(EVENTS)
    assert [s for s in seen if s.lstrip().upper().startswith(DDL)] == []  # the schema was complete
    assert bal(led, "bob", 20) == ("0.00", "1.00", "4.50", "0.50")
    assert led.verify().ok
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:  # the triggers came too
        conn.execute(sa.text(f"UPDATE {prefix}entries SET amount = amount + 1"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {prefix}events"))
    led.close()


def test_without_protect_the_tables_are_not_protected(tmp_path: Path) -> None:
    """What --no-protect means (and that the protection above comes from the printed triggers)."""
    path = tmp_path / "ddl.db"
    run_script("sqlite", sa.create_engine("sqlite://"), printed("sqlite", "cps_", "--no-protect"), path)
    with Ledger.open(path, POLICY) as led:
        led.record_many(EVENTS)
    with sqlite3.connect(path) as db:
        assert db.execute("UPDATE cps_entries SET amount = amount + 1").rowcount > 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_alembic_recipe(kind: str, servers: dict[str, Server], tmp_path: Path) -> None:
    """What docs/tutorials/backend.md tells an Alembic user: the tables from ``ledger_metadata()`` (what
    autogenerate writes), then each statement of ``ledger_ddl(dialect, tables=False)`` through
    ``op.execute`` (a ``sqlalchemy.text``), in one transaction."""
    prefix = new_prefix()
    engine = sqlite_engine(tmp_path / "alembic.db") if kind == "sqlite" else servers[kind].get()
    with engine.begin() as conn:
        ledger_metadata(prefix).create_all(conn)
        for statement in ledger_ddl(conn.dialect, prefix=prefix, tables=False):
            conn.execute(sa.text(statement))
    rest = printed(kind, prefix, "--no-tables")
    assert "CREATE TABLE" not in rest and "CREATE TRIGGER" in rest
    with no_ddl(engine) as seen:
        led = Ledger(engine, POLICY, prefix=prefix)
        led.record_many(EVENTS)
    assert [s for s in seen if s.lstrip().upper().startswith(DDL)] == []
    assert led.verify().ok
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {prefix}entries"))
    led.close()


def test_dialects_compile_without_a_database() -> None:
    pg = ledger_ddl("postgresql", schema="books")
    assert any(s.startswith("CREATE TABLE books.cps_events") for s in pg)
    assert any("'cps ledger: % is append-only'" in s for s in pg)  # plain SQL: one %
    my = "\n".join(ledger_ddl("mysql"))
    assert "COLLATE utf8mb4_bin" in my and "`key`" in my
    r = runner.invoke(ledger_app, ["schema", "--dialect", "oracle"])
    assert r.exit_code == 2
    r = runner.invoke(ledger_app, ["schema", "--dialect", "sqlite", "--prefix", "bad prefix"])
    assert r.exit_code == 2 and "prefix" in r.output
