"""Database fixtures for the ledger tests: the same tests run on SQLite, PostgreSQL and MariaDB.

PostgreSQL and MariaDB URLs come from ``CPS_TEST_POSTGRES_URL`` / ``CPS_TEST_MARIADB_URL``.  Each
test session creates its own database ``cps_test_<random>`` on each server and drops it at the end,
and every ledger in a session gets its own table prefix, so parallel runs never collide.  An
unreachable server skips its tests with the reason, unless ``CPS_REQUIRE_DB=1`` (CI), which turns
the skip into a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from cps_engine.ledger import Ledger

PG_URL = os.environ.get("CPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("CPS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_DB = os.environ.get("CPS_REQUIRE_DB") == "1"
BACKENDS = ("sqlite", "postgresql", "mariadb")

_prefixes = itertools.count(1)


def unavailable(what: str, exc: BaseException) -> None:
    """Skip (or, with CPS_REQUIRE_DB=1, fail) because a database server cannot be used."""
    reason = f"{what} is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    if REQUIRE_DB:
        pytest.fail(f"CPS_REQUIRE_DB=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Server:
    """A throwaway database on one server for this session (created lazily, dropped at the end)."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.admin_url = sa.make_url(url)
        self.name = f"cps_test_{secrets.token_hex(4)}"
        self.engine: sa.Engine | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> sa.URL:
        return self.admin_url.set(database=self.name)

    def get(self) -> sa.Engine:
        if self.engine is None and self.error is None:
            try:
                admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                                         connect_args={"connect_timeout": 10})
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
                admin.dispose()
                kw: dict[str, Any] = {"isolation_level": "READ COMMITTED"} if self.kind == "mariadb" else {}
                self.engine = sa.create_engine(self.url, pool_size=2, max_overflow=8, **kw)
            except Exception as exc:  # unreachable server, no rights, missing driver
                self.error = exc
        if self.engine is None:
            assert self.error is not None
            unavailable(f"{self.kind} at {self.admin_url.render_as_string(hide_password=True)}", self.error)
        assert self.engine is not None
        return self.engine

    def drop(self) -> None:
        if self.engine is None:
            return
        self.engine.dispose()
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            force = " WITH (FORCE)" if self.kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}{force}")
        admin.dispose()


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, Server]]:
    s = {"postgresql": Server("postgresql", PG_URL), "mariadb": Server("mariadb", MARIADB_URL)}
    yield s
    for server in s.values():
        server.drop()


def new_prefix() -> str:
    return f"t{next(_prefixes)}_{secrets.token_hex(2)}_"


MakeLedger = Callable[..., Ledger]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_ledger(backend: str, servers: dict[str, Server], tmp_path: Any) -> Iterator[MakeLedger]:
    """``make_ledger(policy, **terms)`` -> a fresh ledger on the backend under test."""
    made: list[Ledger] = []

    def make(policy: Any = None, **kw: Any) -> Ledger:
        if backend == "sqlite":
            led = Ledger.open(tmp_path / f"l{len(made)}.db", policy, synchronous="OFF", **kw)
        else:
            led = Ledger(servers[backend].get(), policy, prefix=kw.pop("prefix", new_prefix()), **kw)
        made.append(led)
        return led

    yield make
    for led in made:
        led.close()


@pytest.fixture
def engine_for(servers: dict[str, Server], tmp_path: Any) -> Callable[[str], sa.Engine]:
    """The engine of a backend (a new SQLite file for ``sqlite``)."""
    def get(kind: str) -> sa.Engine:
        if kind == "sqlite":
            from cps_engine.ledger import sqlite_engine
            return sqlite_engine(tmp_path / f"e{secrets.token_hex(3)}.db", synchronous="OFF")
        return servers[kind].get()
    return get
