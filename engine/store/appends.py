"""Rows a unit of work only adds (a step's new tasks and their candidates, timers, message
subscriptions, decisions, notifications and e-mails), written as one multi-row INSERT per
table instead of through the ORM's unit of work.

Nothing in the unit reads these rows back as objects, and the ORM's bookkeeping for each
new object (identity map, attribute history, dependency sort, reading generated ids back)
cost more than the statements themselves. :func:`add` collects plain column values on the
session; :func:`write` inserts them, parents first, after flushing the ORM's own pending
rows (which they may refer to). A writing session writes what is left before it commits
(see :mod:`engine.store.db`), so a row added is never lost, and never written when the
unit of work rolls back.
"""
from __future__ import annotations

import enum
import functools
from typing import Any

import orjson
from sqlalchemy import Boolean, Date, DateTime, Enum, Integer, String, Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .models import Base

_PENDING = "nd73_appended_rows"
# parents before children: a task before its candidates
_ORDER = {table: n for n, table in enumerate(Base.metadata.sorted_tables)}
# each table's INSERT, built once
_INSERTS = {table: insert(table) for table in Base.metadata.sorted_tables}
# tables whose rows hold large values (a document's DOCX and the data it was given: tens to
# hundreds of KB), inserted by a statement of their own on PostgreSQL: in the statement that
# inserts the others together, each value was quoted into a parameter's text (as an array's
# element, about 5 ms a document where the INSERT takes 1), and JSON holds no bytes
_ALONE = frozenset({Base.metadata.tables["documents"]})


def add(session: Session, table: Table, **values) -> dict:
    """Queue one row of ``table``; every row of a table names the same columns (one
    statement writes them all). Returns the values."""
    session.info.setdefault(_PENDING, {}).setdefault(table, []).append(values)
    return values


def pending(session: Session, table: Table) -> list[dict]:
    """The rows of ``table`` queued in the session and not written yet, in order."""
    return session.info.get(_PENDING, {}).get(table, [])


def write(session: Session) -> None:
    """Insert every queued row, one statement per table (PostgreSQL: one statement for
    all of them but the tables of large values, :data:`_ALONE`), after the ORM's pending
    rows."""
    queued = session.info.pop(_PENDING, None)
    if not queued:
        return
    session.flush()
    connection = session.connection()
    tables = sorted(queued, key=_ORDER.__getitem__)
    for table in tables:
        before = _BEFORE.get(table)
        if before is not None:
            before(connection, queued[table])
    if connection.dialect.name == "postgresql":
        if sum(len(queued[table]) for table in tables) >= COPY_ROWS and all(
                _copyable(table) for table in tables):
            _copy(connection, [(table, queued[table]) for table in tables])
            return
        together = [table for table in tables if table not in _ALONE]
        if len(together) > 1:
            made = _together(connection, [(table, queued[table]) for table in together])
            if made is not None:
                connection.execute(*made)
                tables = [table for table in tables if table in _ALONE]
    for table in tables:
        connection.execute(_INSERTS[table], queued[table])


# PostgreSQL: this many rows or more (a reporting cycle's tasks, candidates, timers and
# notifications, one of each per unit) are written with COPY, a table at a time, when
# their tables' columns all hold plain values (strings, numbers, booleans, times)
COPY_ROWS = 1000
_PLAIN = (String, Integer, Boolean, DateTime, Date, Enum)


@functools.cache
def _copyable(table: Table) -> bool:
    return all(isinstance(column.type, _PLAIN) for column in table.columns)


def _copy(connection, batches: list[tuple[Table, list[dict]]]) -> None:
    """Write each batch (a table and its rows, parents first) with ``COPY … FROM STDIN``:
    the driver formats the rows in C, where the multi-row INSERT had it turn every column
    into an array's text item by item (most of a large step's writing). The values are
    the ones the INSERT would send (enums as their values); an error is SQLAlchemy's, as
    the INSERT's would be, and leaves the transaction to roll back."""
    preparer = connection.dialect.identifier_preparer
    cursor = connection.connection.driver_connection.cursor()
    statement = None
    try:
        for table, rows in batches:
            columns = list(rows[0])
            statement = (f"COPY {preparer.format_table(table)} ("
                         + ", ".join(preparer.quote(column) for column in columns)
                         + ") FROM STDIN")
            enums = [n for n, column in enumerate(columns)
                     if isinstance(table.c[column].type, Enum)]
            with cursor.copy(statement) as copy:
                write = copy.write_row
                for row in rows:
                    values = [row[column] for column in columns]
                    for n in enums:
                        if isinstance(values[n], enum.Enum):
                            values[n] = values[n].value
                    write(values)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc,
                                  connection.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


# the statements inserting the rows of several tables at once, by their tables and columns
_TOGETHER: dict[tuple, Any] = {}


def _together(connection, batches: list[tuple[Table, list[dict]]]) -> tuple[Any, dict] | None:
    """One PostgreSQL statement inserting every batch (a table and its rows): each table's
    rows as one JSON array, made records of the table's type by
    ``jsonb_populate_recordset`` (one parameter per table, whatever the number of rows),
    the first ones as data-modifying WITHs. A statement's foreign keys are checked at its
    end, so a task and its candidates may go in the same one. The text of the rows is
    orjson's, made in C, where arrays of each column went through SQLAlchemy's and the
    driver's conversions item by item (a sixth of a REST completion's CPU outside
    SpiffWorkflow); PostgreSQL reads each value with its column type's own input, as it
    reads the text of a parameter. Built once for each set of tables and columns; None
    for rows orjson does not write (an integer over 64 bits), which the caller writes a
    table at a time."""
    shape = tuple((table.name, tuple(rows[0])) for table, rows in batches)
    try:
        # (orjson writes an enum as its value, as the columns store it)
        params = {f"t{n}": orjson.dumps(rows).decode() for n, (_, rows) in enumerate(batches)}
    except orjson.JSONEncodeError:
        return None
    statement = _TOGETHER.get(shape)
    if statement is None:
        preparer = connection.dialect.identifier_preparer
        inserts = []
        for n, (table, rows) in enumerate(batches):
            columns = ", ".join(preparer.quote(column) for column in rows[0])
            name = preparer.format_table(table)
            inserts.append(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM "
                           f"jsonb_populate_recordset(CAST(NULL AS {name}), CAST(:t{n} AS jsonb))")
        withs = ", ".join(f"appended_{n} AS ({first})" for n, first in enumerate(inserts[:-1]))
        statement = text((f"WITH {withs} " if withs else "") + inserts[-1])
        if len(_TOGETHER) >= 256:
            _TOGETHER.clear()
        _TOGETHER[shape] = statement
    return statement, params


def _write_outbox_first(connection, notifications: list[dict]) -> None:
    """A notification sent as an e-mail at once names its outbox message (``outbox``, the
    message's values): the messages go first, their ids read back in the order given."""
    messages = [row["outbox"] for row in notifications if row["outbox"] is not None]
    if messages:
        if connection.dialect.name == "sqlite":
            # SQLAlchemy cannot tell SQLite's RETURNING order, and so inserted the rows
            # one statement each (a reporting cycle: one per unit); SQLite gives each new
            # row of an integer key the largest key so far plus one, in the order the
            # rows are inserted, so the keys in ascending order are the messages' order
            keys = sorted(connection.execute(_INSERT_OUTBOX_ANY_ORDER, messages)
                          .scalars().all())
            if keys[-1] - keys[0] != len(keys) - 1:     # a key at SQLite's largest integer
                raise RuntimeError("the outbox's new keys are not in the order of its rows")
            ids = iter(keys)
        else:
            ids = iter(connection.execute(_INSERT_OUTBOX, messages).scalars().all())
    for row in notifications:
        if row.pop("outbox") is not None:
            row["outbox_id"] = next(ids)


_OUTBOX = Base.metadata.tables["outbox"]
_INSERT_OUTBOX = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_INSERT_OUTBOX_ANY_ORDER = insert(_OUTBOX).returning(_OUTBOX.c.id)
_BEFORE = {Base.metadata.tables["notifications"]: _write_outbox_first}
