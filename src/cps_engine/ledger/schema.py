"""The ledger's tables (SQLAlchemy Core), created by the library, with an upgrade path.

One schema for SQLite, PostgreSQL and MariaDB/MySQL.  Every table name starts with a ``prefix``
(default ``cps_``) so several ledgers, or a ledger and a backend's own tables, share one database.

=============  =============================================================================  =========
table          holds                                                                          writes
=============  =============================================================================  =========
``meta``       schema version, binding mode, creation info                                    insert (+ upgrade)
``terms``      policy versions and payout rules, each with the time it takes effect from      insert only
``events``     every distinct event received: key, time, canonical payload and its hash      insert only
``orders``     per applied order: the rate snapshot (awards), base, hold end; a new           insert only
               revision when a late share/bind changes the chain
``refunds``    applied refunds with their amount in minor units                               insert only
``entries``    the hash-chained double-entry log (one row per leg)                            insert only
``parked``     events that cannot be applied yet (or were rejected), with what they wait for  insert/delete
``lock``       one row: the per-ledger write lock (SQLite, MariaDB; PostgreSQL uses an        no-op update
               advisory lock)
=============  =============================================================================  =========

Append-only tables are protected by triggers that refuse ``UPDATE`` and ``DELETE`` (PostgreSQL
also refuses ``TRUNCATE``).  ``parked`` is an operational queue, not part of the ledger.

Upgrades: :data:`SCHEMA_VERSION` is stored in ``meta``; :data:`MIGRATIONS` maps a version ``n`` to
the function that upgrades a database from ``n`` to ``n + 1``.  Opening a database runs the missing
steps in one transaction; a database newer than the library is refused.

>>> t = LedgerTables("cps_")
>>> sorted(t.metadata.tables)[:3]
['cps_entries', 'cps_events', 'cps_lock']
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateIndex, CreateTable

from cps_engine.errors import CpsError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "LedgerSchemaError", "LedgerTables", "ensure_schema", "ledger_ddl",
           "ledger_metadata", "protect_statements", "schema_version"]

SCHEMA_VERSION: Final = 2

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
_APPEND_ONLY: Final = ("terms", "events", "orders", "refunds", "entries")


class LedgerSchemaError(CpsError, RuntimeError):
    """The database holds a ledger schema this library cannot use (too new, or damaged)."""


def _id(length: int = 256) -> sa.types.TypeEngine[str]:
    # MariaDB/MySQL compare strings case-insensitively by default: ids must be exact
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(collation="utf8mb4_bin"), "mysql", "mariadb")


class LedgerTables:
    """The tables of one ledger, named ``<prefix><table>`` (optionally inside a PostgreSQL ``schema``)."""

    def __init__(self, prefix: str = "cps_", schema: str | None = None) -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"table prefix {prefix!r} must match {_PREFIX.pattern}")
        self.prefix = prefix
        self.schema = schema
        md = self.metadata = sa.MetaData(schema=schema)
        p = prefix
        big = sa.BigInteger
        self.meta = sa.Table(f"{p}meta", md, sa.Column("key", sa.String(64), primary_key=True),
                             sa.Column("value", _text(), nullable=False))
        self.terms = sa.Table(
            f"{p}terms", md,
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("effective_us", big, nullable=False),
            sa.Column("config_hash", sa.String(64), nullable=False),
            sa.Column("policy", _text(), nullable=False),
            sa.Column("settings", _text(), nullable=False),
        )
        self.events = sa.Table(
            f"{p}events", md,
            sa.Column("seq", big, primary_key=True, autoincrement=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("event_id", _id(), nullable=False),
            sa.Column("at_us", big, nullable=False),
            sa.Column("payload", _text(), nullable=False),
            sa.Column("payload_hash", sa.String(64), nullable=False),
            sa.UniqueConstraint("kind", "event_id", name=f"{p}events_key"),
            sa.Index(f"{p}events_at", "at_us"),  # schema 2: the latest event time (the horizon) per write
        )
        self.parked = sa.Table(
            f"{p}parked", md,
            sa.Column("event_seq", big, primary_key=True, autoincrement=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("event_id", _id(), nullable=False),
            sa.Column("at_us", big, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("waits_for", _id(300), nullable=True),
            sa.Column("reason", _text(), nullable=False),
            sa.Index(f"{p}parked_waits", "waits_for"),
        )
        self.orders = sa.Table(
            f"{p}orders", md,
            sa.Column("order_id", _id(), primary_key=True),
            sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("event_seq", big, nullable=False),
            sa.Column("origin_seq", big, nullable=False),
            sa.Column("buyer", _id(), nullable=False),
            sa.Column("at_us", big, nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("amount_minor", big, nullable=False),
            sa.Column("gross_base", big, nullable=False),
            sa.Column("terms_version", sa.Integer, nullable=False),
            sa.Column("config_hash", sa.String(64), nullable=False),
            sa.Column("policy_label", _text(), nullable=False),
            sa.Column("rounding", sa.String(16), nullable=False),
            sa.Column("available_us", big, nullable=False),
            sa.Column("awards", _text(), nullable=False),
            sa.Index(f"{p}orders_at", "at_us"),
            sa.Index(f"{p}orders_buyer", "buyer"),
        )
        self.refunds = sa.Table(
            f"{p}refunds", md,
            sa.Column("event_seq", big, primary_key=True, autoincrement=False),
            sa.Column("refund_id", _id(), nullable=False),
            sa.Column("order_id", _id(), nullable=False),
            sa.Column("at_us", big, nullable=False),
            sa.Column("amount_minor", big, nullable=False),
            sa.Index(f"{p}refunds_order", "order_id"),
        )
        self.entries = sa.Table(
            f"{p}entries", md,
            sa.Column("seq", big, primary_key=True, autoincrement=False),
            sa.Column("event_seq", big, nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("account", sa.String(16), nullable=False),
            sa.Column("payee", _id(), nullable=True),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("amount", big, nullable=False),
            sa.Column("order_id", _id(), nullable=True),
            sa.Column("revision", sa.Integer, nullable=True),
            sa.Column("line", sa.Integer, nullable=True),
            sa.Column("level", sa.Integer, nullable=True),
            sa.Column("rate", _text(), nullable=True),  # exact p/q: can be long (time-decay weights)
            sa.Column("config_hash", sa.String(64), nullable=True),
            sa.Column("effective_us", big, nullable=False),
            sa.Column("available_us", big, nullable=True),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Index(f"{p}entries_payee", "payee", "currency"),
            sa.Index(f"{p}entries_order", "order_id"),
            sa.Index(f"{p}entries_event", "event_seq"),
        )
        self.lock = sa.Table(f"{p}lock", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                             sa.Column("n", big, nullable=False))

    def qualified(self, table: sa.Table) -> str:
        """The table's name as SQL text (quoted by the dialect is not needed: names are checked)."""
        return f"{self.schema}.{table.name}" if self.schema else table.name


def schema_version(conn: sa.Connection, t: LedgerTables) -> int | None:
    """The stored schema version, or ``None`` when the ledger's tables do not exist yet -- or their
    creation was cut short (a crash while creating them on MariaDB/MySQL, which commit each DDL
    statement at once): ``schema_version`` is written last, so a ledger without it whose events table
    is missing or empty is created again (:func:`ensure_schema` is restartable)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(t.meta.name, schema=t.schema):
        return None
    value = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version")).scalar()
    if value is None:
        if not inspector.has_table(t.events.name, schema=t.schema) or conn.execute(
                sa.select(t.events.c.seq).limit(1)).first() is None:
            return None  # an interrupted creation, holding nothing: create (the rest of) it again
        raise LedgerSchemaError(
            f"table {t.meta.name} exists but has no schema_version, and the ledger holds events: its meta table "
            "was damaged. Restore it from a backup, or, after checking the tables are those of this library, "
            f"insert the row (key 'schema_version', value '{SCHEMA_VERSION}') into {t.meta.name}")
    return int(value)


def _add_events_at_index(conn: sa.Connection, t: LedgerTables) -> None:
    """1 -> 2: an index on the events' time (each write reads the latest event time for the horizon)."""
    for index in t.events.indexes:
        if index.name == f"{t.prefix}events_at":
            index.create(conn, checkfirst=True)


#: ``n -> step`` upgrading a database from schema version ``n`` to ``n + 1``
MIGRATIONS: dict[int, Callable[[sa.Connection, LedgerTables], None]] = {1: _add_events_at_index}


def ensure_schema(conn: sa.Connection, t: LedgerTables, *, protect: bool = True) -> int:
    """Create the tables (first use) or upgrade them to :data:`SCHEMA_VERSION`; returns the version found
    before (0 for a new ledger)."""
    found = schema_version(conn, t)
    if found is None:  # new, or a creation cut short: every step below may have been done before
        t.metadata.create_all(conn, checkfirst=True)
        if conn.execute(sa.select(t.lock.c.id).where(t.lock.c.id == 1)).first() is None:
            conn.execute(t.lock.insert(), [{"id": 1, "n": 0}])
        if protect:
            _protect(conn, t)
        conn.execute(t.meta.delete().where(t.meta.c.key.in_(("binding", "chain", "postings"))))
        conn.execute(t.meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])  # last
        return 0
    if found > SCHEMA_VERSION:
        raise LedgerSchemaError(f"the ledger schema is version {found}; this library knows up to {SCHEMA_VERSION}: "
                                "upgrade cps-engine")
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise LedgerSchemaError(f"no migration from schema version {version} to {version + 1}")
        step(conn, t)
        conn.execute(t.meta.update().where(t.meta.c.key == "schema_version").values(value=str(version + 1)))
    return found


def protect_statements(dialect: str, t: LedgerTables) -> list[str]:
    """The SQL of the triggers refusing UPDATE and DELETE on the append-only tables (PostgreSQL: and
    TRUNCATE), for ``dialect`` (``sqlite``, ``postgresql``, ``mysql``/``mariadb``); plain SQL, one
    statement each (a ``%`` is a ``%``)."""
    tables = [getattr(t, name) for name in _APPEND_ONLY]
    out: list[str] = []
    if dialect == "sqlite":
        for table in tables:
            for op in ("UPDATE", "DELETE"):
                out.append(f"CREATE TRIGGER IF NOT EXISTS {table.name}_no_{op.lower()} BEFORE {op} ON {table.name} "
                           f"BEGIN SELECT RAISE(ABORT, 'cps ledger: {table.name} is append-only'); END")
    elif dialect == "postgresql":
        fn = f"{t.qualified(t.lock)}_append_only"
        out.append(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'cps ledger: % is append-only', TG_TABLE_NAME; END $$")
        for table in tables:
            name = t.qualified(table)
            out += [f"DROP TRIGGER IF EXISTS {table.name}_append_only ON {name}",
                    f"DROP TRIGGER IF EXISTS {table.name}_no_truncate ON {name}",
                    f"CREATE TRIGGER {table.name}_append_only BEFORE UPDATE OR DELETE ON {name} "
                    f"FOR EACH ROW EXECUTE FUNCTION {fn}()",
                    f"CREATE TRIGGER {table.name}_no_truncate BEFORE TRUNCATE ON {name} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"]
    elif dialect in ("mysql", "mariadb"):
        for table in tables:
            for op in ("UPDATE", "DELETE"):
                out += [f"DROP TRIGGER IF EXISTS {table.name}_no_{op.lower()}",
                        f"CREATE TRIGGER {table.name}_no_{op.lower()} BEFORE {op} ON {table.name} FOR EACH ROW "
                        f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'cps ledger: {table.name} is append-only'"]
    return out


def _protect(conn: sa.Connection, t: LedgerTables) -> None:
    """Triggers refusing UPDATE and DELETE on the append-only tables."""
    dialect = conn.dialect.name
    statements = protect_statements(dialect, t)
    if dialect == "postgresql":  # the driver reads % as a placeholder mark
        statements = [s.replace("%", "%%") for s in statements]
    try:
        for statement in statements:
            conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:  # e.g. no TRIGGER privilege: the ledger still never updates rows
        if dialect not in ("mysql", "mariadb"):
            raise
        warnings.warn(f"cps ledger: could not create append-only triggers ({exc.orig})", RuntimeWarning,
                      stacklevel=3)


def ledger_metadata(prefix: str = "cps_", schema: str | None = None) -> sa.MetaData:
    """The SQLAlchemy ``MetaData`` of a ledger's tables, for a backend's own migrations (Alembic:
    ``target_metadata = [Base.metadata, ledger_metadata()]``); the triggers and first rows the
    ledger also needs are :func:`ledger_ddl` with ``tables=False``.

    >>> sorted(ledger_metadata("shop_").tables)[:2]
    ['shop_entries', 'shop_events']
    """
    return LedgerTables(prefix, schema).metadata


def ledger_ddl(dialect: str | sa.Dialect, *, prefix: str = "cps_", schema: str | None = None, tables: bool = True,
               protect: bool = True) -> list[str]:
    """The SQL that creates a ledger, compiled for ``dialect`` (``sqlite``, ``postgresql``, ``mysql``,
    ``mariadb`` or a SQLAlchemy dialect; no database needed), one statement each, in order:
    ``CREATE TABLE`` and ``CREATE INDEX`` (``tables``), the append-only triggers (``protect``), the lock
    row and, last, ``schema_version``.  A ledger opened on the result finds its schema complete and
    creates nothing (with ``protect=False`` its tables are not protected: the ledger does not add
    triggers to a schema it finds complete).

    >>> ddl = ledger_ddl("postgresql", prefix="shop_")
    >>> for line in (ddl[0].splitlines()[0], ddl[1], ddl[-1]): print(line)
    CREATE TABLE shop_entries (
    CREATE INDEX shop_entries_event ON shop_entries (event_seq)
    INSERT INTO shop_meta (key, value) VALUES ('schema_version', '2')
    """
    if isinstance(dialect, str):
        from sqlalchemy.dialects import mysql as my
        from sqlalchemy.dialects import postgresql, sqlite

        makers: dict[str, Callable[[], sa.Dialect]] = {
            "sqlite": sqlite.dialect, "postgresql": postgresql.dialect, "mysql": my.dialect,
            "mariadb": lambda: my.dialect(is_mariadb=True)}
        if dialect not in makers:
            raise ValueError(f"dialect {dialect!r} is not one of {', '.join(makers)}")
        name, dialect = dialect, makers[dialect]()
    else:
        name = dialect.name
    t = LedgerTables(prefix, schema)
    out: list[str] = []

    def sql(clause: sa.ClauseElement) -> str:
        text = str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        return "\n".join(line.rstrip() for line in text.strip().splitlines())

    if tables:
        for table in t.metadata.sorted_tables:
            out.append(sql(CreateTable(table)))
            out += [sql(CreateIndex(index)) for index in sorted(table.indexes, key=lambda i: str(i.name))]
    if protect:
        out += protect_statements(name, t)
    out.append(sql(t.lock.insert().values(id=1, n=0)))
    out.append(sql(t.meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION))))
    return out
