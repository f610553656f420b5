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
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Boolean, Date, DateTime, Enum, Integer, String, Table, bindparam,
                        func, insert, select)
from sqlalchemy import column as sql_column     # "column" names loop variables here
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .models import Base

_PENDING = "nd73_appended_rows"
# parents before children: a task before its candidates
_ORDER = {table: n for n, table in enumerate(Base.metadata.sorted_tables)}
# each table's INSERT, built once
_INSERTS = {table: insert(table) for table in Base.metadata.sorted_tables}
# tables whose rows hold large values (a document's DOCX and the data it was given: tens to
# hundreds of KB), inserted by a statement of their own on PostgreSQL: as elements of the
# arrays of the statement that inserts the others together, each value was quoted into the
# array's text, character by character (about 5 ms a document, where the INSERT takes 1)
_ALONE = frozenset({Base.metadata.tables["documents"]})


def add(session: Session, table: Table, **values) -> dict:
    """Queue one row of ``table``; every row of a table names the same columns (one
    statement writes them all). Returns the values."""
    session.info.setdefault(_PENDING, {}).setdefault(table, []).append(values)
    return values


def pending(session: Session, table: Table) -> list[dict]:
    """The rows of ``table`` queued in the session and not written yet, in order."""
    return session.info.get(_PENDING, {}).get(table, [])


@dataclass(frozen=True)
class Lead:
    """A caller's statement that goes out with the queued rows (:func:`write`): ``key``
    names its shape (one statement is built per key and set of tables and columns),
    ``statement`` is a SELECT that may carry data-modifying WITHs, ``params`` its values;
    no name of its parameters or WITHs may start with ``t<n>_`` or ``appended_``."""
    key: Hashable
    statement: Any
    params: dict


def write(session: Session, lead: Lead | None = None) -> CursorResult | None:
    """Insert every queued row, one statement per table (PostgreSQL: one statement for
    all of them but the tables of large values, :data:`_ALONE`), after the ORM's pending
    rows. ``lead``: a statement of the caller's to execute first, whose result is returned;
    on PostgreSQL the rows go in it, as its data-modifying WITHs (a step's row, state and
    audit entries and the rows it added: one round trip)."""
    queued = session.info.pop(_PENDING, None)
    if not queued:
        return None if lead is None else session.connection().execute(lead.statement,
                                                                        lead.params)
    session.flush()
    connection = session.connection()
    tables = sorted(queued, key=_ORDER.__getitem__)
    postgres = connection.dialect.name == "postgresql"
    copying = postgres and sum(len(queued[table]) for table in tables) >= COPY_ROWS and all(
        _copyable(table) for table in tables)
    together = [table for table in tables if table not in _ALONE] \
        if postgres and not copying else []
    if not (together and (lead is not None or len(together) > 1)):
        together = []
    for table in tables:
        before = _BEFORE.get(table)
        # a statement of several tables writes the e-mails' messages itself (_together)
        if before is not None and table not in together:
            before(connection, queued[table])
    result = None
    if copying:
        if lead is not None:
            result = connection.execute(lead.statement, lead.params)
        _copy(connection, [(table, queued[table]) for table in tables])
        return result
    if together:
        statement, params = _together([(table, queued[table]) for table in together], lead)
        result = connection.execute(statement, params)
        lead = None
        tables = [table for table in tables if table not in together]
    if lead is not None:
        result = connection.execute(lead.statement, lead.params)
    for table in tables:
        connection.execute(_INSERTS[table], queued[table])
    return result


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


def _together(batches: list[tuple[Table, list[dict]]], lead: Lead | None = None
              ) -> tuple[Any, dict]:
    """One PostgreSQL statement inserting every batch (a table and its rows): each table's
    rows as an INSERT … SELECT over the unnested arrays of its columns (one parameter per
    column, whatever the number of rows), the first ones as data-modifying WITHs, or all of
    them as WITHs of ``lead``'s statement. A statement's foreign keys are checked at its
    end, so a task and its candidates may go in the same one. Notifications come with the
    e-mails' messages they name (:func:`_notified`). Built once for each lead's key and set
    of tables and columns (a message's ``outbox``, queued with its notification by
    :mod:`engine.notifications`, is not a column)."""
    shape: list[Any] = [lead.key if lead is not None else None]
    params = dict(lead.params) if lead is not None else {}
    for n, (table, rows) in enumerate(batches):
        messages = [row["outbox"] for row in rows if row.get("outbox") is not None]
        if not messages:
            columns = [c for c in rows[0] if c != "outbox"]
            shape.append((table.name, tuple(columns), None))
            _arrays(params, f"t{n}_", table, columns, rows)
            continue
        # notifications sent as e-mails at once: their messages go in the statement too
        columns = [c for c in rows[0] if c not in ("outbox", "outbox_id")]
        shape.append((table.name, tuple(columns), tuple(messages[0])))
        _arrays(params, f"t{n}_", table, columns, rows)
        places, place = [], 0        # each notification's place among the messages, or None
        for row in rows:
            if row["outbox"] is not None:
                place += 1
            places.append(place if row["outbox"] is not None else None)
        params[f"t{n}_outbox_place"] = places
        params[f"t{n}_mail_count"] = len(messages)
        _arrays(params, f"t{n}_mail_", _OUTBOX, list(messages[0]), messages)
    key = tuple(shape)
    statement = _TOGETHER.get(key)
    if statement is None:
        inserts = []
        for n, ((table, _), (_, columns, message_columns)) in enumerate(
                zip(batches, shape[1:])):
            if message_columns:
                inserts += _notified(n, table, list(columns), list(message_columns))
            else:
                inserts.append(insert(table).from_select(list(columns), select(*[
                    _unnested(f"t{n}_", table, column).label(column) for column in columns])))
        if lead is None:
            statement, withs = inserts[-1], inserts[:-1]
        else:
            statement, withs = lead.statement, inserts
        for n, first in enumerate(withs):
            statement = statement.add_cte(first.cte(f"appended_{n}"))
        if len(_TOGETHER) >= 256:
            _TOGETHER.clear()
        _TOGETHER[key] = statement
    return statement, params


def _arrays(params: dict, prefix: str, table: Table, columns: list[str], rows: list[dict]
            ) -> None:
    """The parameters ``<prefix><column>``: the rows' values of each column, as an array."""
    for column in columns:
        values = [row[column] for row in rows]
        if isinstance(table.c[column].type, Enum):      # stored as their values
            values = [v.value if isinstance(v, enum.Enum) else v for v in values]
        params[prefix + column] = values


def _unnested(prefix: str, table: Table, column: str):
    return func.unnest(bindparam(prefix + column, type_=ARRAY(_unsized(table.c[column].type))))


def _notified(n: int, table: Table, columns: list[str], message_columns: list[str]) -> list:
    """The INSERTs of notifications (``columns``) that name the e-mails' messages sent with
    them (``message_columns``, parameters ``t<n>_mail_<column>``; ``t<n>_outbox_place``:
    each notification's message, by its place among them, or None): the messages' keys
    taken from the outbox's sequence in a WITH of their own (evaluated once, so both
    INSERTs read the same keys), the messages inserted with them, the notifications joined
    to them by place. One round trip, where the messages' INSERT … RETURNING went before."""
    keys_of = func.generate_series(1, bindparam(f"t{n}_mail_count", type_=Integer)
                                   ).table_valued(sql_column("place", Integer)).render_derived()
    keys = select(func.nextval(func.pg_get_serial_sequence(_OUTBOX.name, "id")).label("id"),
                  keys_of.c.place).cte(f"appended_{n}_keys")
    messages = func.unnest(*[bindparam(f"t{n}_mail_{c}", type_=ARRAY(
        _unsized(_OUTBOX.c[c].type))) for c in message_columns]).table_valued(
        *message_columns, with_ordinality="place").render_derived()
    notifications = func.unnest(*[bindparam(f"t{n}_{c}", type_=ARRAY(
        _unsized(table.c[c].type))) for c in columns],
        bindparam(f"t{n}_outbox_place", type_=ARRAY(Integer))).table_valued(
        *columns, "place").render_derived()
    return [insert(_OUTBOX).from_select(["id", *message_columns], select(
                keys.c.id, *[messages.c[c] for c in message_columns]).select_from(
                messages.join(keys, keys.c.place == messages.c.place))),
            insert(table).from_select([*columns, "outbox_id"], select(
                *[notifications.c[c] for c in columns], keys.c.id).select_from(
                notifications.outerjoin(keys, keys.c.place == notifications.c.place)))]


def _unsized(column_type):
    """The type of a column's array: a string without its length (a cast to VARCHAR(n)
    would cut a longer value short where the INSERT refuses it, as one row at a time did)."""
    return String() if isinstance(column_type, String) else column_type


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
