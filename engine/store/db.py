"""Database connections and units of work.

SQLite (the embedded default) runs in WAL mode and every writing transaction starts with
``BEGIN IMMEDIATE``: writers queue up instead of failing late on a stale snapshot, which keeps
the optimistic version check meaningful. PostgreSQL (production) uses psycopg 3.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import appends

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_READ_ONLY = "nd73_read_only"
_IDLE_SINCE = "nd73_idle_since"
_SINGLE = "nd73_single_statement"
PING_AFTER_IDLE_S = 1.0     # a pooled connection idle longer is tested before use


def default_database_url() -> str:
    """The SQLite file under the project's ``var/`` folder (``ND73_DATABASE_URL`` unset)."""
    return f"sqlite:///{PROJECT_ROOT / 'var' / 'nd73.sqlite3'}"


def _prepare_sqlite(engine: Engine) -> None:
    database = engine.url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None   # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        options = connection.get_execution_options()
        if options.get(_SINGLE, False):
            return      # one statement alone: SQLite runs it as its own transaction
        connection.exec_driver_sql("BEGIN" if options.get(_READ_ONLY, False)
                                   else "BEGIN IMMEDIATE")


def _ping_idle_connections(engine: Engine) -> None:
    """Test a pooled connection before use only when it has been idle for a while, the way
    HikariCP does: a busy server reuses its connections within milliseconds, and a ping
    before every transaction (SQLAlchemy's ``pool_pre_ping``) cost a round trip each, a
    tenth of a task completion. A connection the server dropped (a restart) is replaced
    here; one dropped while in use fails that request, and SQLAlchemy then discards every
    connection pooled before it."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection, record):
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:        # noqa: BLE001 - any failure: not usable
            # the pool discards it and checks out another (a new connection if need be)
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


class Database:
    """An engine plus session factories for writing and reading units of work."""

    def __init__(self, url: str | None = None, *, echo: bool = False):
        from .. import audit    # noqa: F401  (chains every audit entry a session writes)
        self.url = url or default_database_url()
        kwargs: dict = {"echo": echo, "future": True}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=10, max_overflow=20)
        self.engine = create_engine(self.url, **kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _prepare_sqlite(self.engine)
        else:
            _ping_idle_connections(self.engine)
        self._local = threading.local()     # the writing unit of work of each thread
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                    expire_on_commit=False)
        # one statement alone is its own snapshot: PostgreSQL runs it without BEGIN/COMMIT
        self._single = self.engine.execution_options(**{_READ_ONLY: True, _SINGLE: True}) \
            if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One writing unit of work: commits at the end, rolls back on any error."""
        outer = getattr(self._local, "writer", None)
        with self._writer() as session:
            with session.begin():
                self._local.writer = session
                try:
                    yield session
                    appends.write(session)      # the rows it added, before it commits
                finally:
                    self._local.writer = outer

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work (never takes SQLite's write lock).

        Inside a writing unit of work on the same thread (an organisation look-up while an
        instance is saved), it reads through that unit's connection: taking a second one
        while holding the first deadlocks once every pooled connection is held so, by
        requests that wait for the same instance's lock."""
        writer = getattr(self._local, "writer", None)
        if writer is not None:
            # joined to the writer's transaction: it never commits it, and closing it (the
            # only thing done to it here) leaves that transaction alone
            with Session(bind=writer.connection(), expire_on_commit=False) as session:
                yield session
            return
        with self._reader() as session:
            with session.begin():
                yield session
            session.rollback()

    def read_rows(self, statement, parameters: dict | None = None) -> list:
        """The rows of one read-only Core statement, without an ORM session: in autocommit
        (SQLite: without BEGIN), one round trip instead of three (BEGIN, the statement, the
        end of the transaction), for what every request asks (who calls). Inside a writing
        unit of work on the same thread it reads through that unit's connection, as
        :meth:`reading` does."""
        writer = getattr(self._local, "writer", None)
        if writer is not None:
            return list(writer.connection().execute(statement, parameters).all())
        with self._single.connect() as connection:
            return list(connection.execute(statement, parameters).all())

    def upgrade(self) -> None:
        from .migrate import upgrade
        upgrade(self)

    def dispose(self) -> None:
        self.engine.dispose()


# --- objects from Core rows -------------------------------------------------------------
_COLUMN_KEYS: dict[type, tuple[list, list[str], list[str]]] = {}


def columns_of(cls) -> list:
    """The columns of a mapped class, labelled with their attributes' names, for a Core
    select whose rows :func:`attached` makes objects of."""
    return _column_keys(cls)[0]


def _column_keys(cls):
    found = _COLUMN_KEYS.get(cls)
    if found is None:
        mapper = inspect(cls)
        attributes = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs]
        primary = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        found = _COLUMN_KEYS[cls] = ([column.label(key) for key, column in attributes],
                                     [key for key, _ in attributes], primary)
    return found


def attached(session: Session, cls, row, *, refresh: bool = False):
    """The session's persistent object of ``cls`` for a row read by a Core statement
    (the leading columns :func:`columns_of` gives), as a query would load it, for a
    fraction of what the ORM's loading costs a row or two. An object the session already
    holds is returned as it is, or with ``refresh`` given the row's values (as a query with
    ``populate_existing`` does)."""
    _, keys, primary = _column_keys(cls)
    values = dict(zip(keys, row))
    identity = identity_key(cls, tuple(values[key] for key in primary))
    existing = session.identity_map.get(identity)
    if existing is not None:
        if refresh:
            for key, value in values.items():
                set_committed_value(existing, key, value)
        return existing
    obj = detached(cls, values)
    session.add(obj)
    return obj


def detached(cls, values):
    """An object of ``cls`` with a row's values, as loaded by a session now closed: no
    history, nothing to write."""
    obj = fresh(cls, values)
    make_transient_to_detached(obj)
    return obj


def fresh(cls, values):
    """A new (transient) object of ``cls`` holding ``values``, made as the ORM makes the
    objects it loads: without the mapped constructor, whose attribute events and history
    cost about 50 µs an object. Its values have no history: for an object only read (a row
    read or written by a Core statement, :mod:`engine.store.appends`), or made detached
    (:func:`detached`); one the session is to insert goes through the constructor."""
    obj = cls._sa_class_manager.new_instance()
    obj.__dict__.update(values)
    return obj
