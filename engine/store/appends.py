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

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from .models import Base

_PENDING = "nd73_appended_rows"
# parents before children: a task before its candidates
_ORDER = {table: n for n, table in enumerate(Base.metadata.sorted_tables)}
# each table's INSERT, built once
_INSERTS = {table: insert(table) for table in Base.metadata.sorted_tables}


def add(session: Session, table: Table, **values) -> dict:
    """Queue one row of ``table``; every row of a table names the same columns (one
    statement writes them all). Returns the values."""
    session.info.setdefault(_PENDING, {}).setdefault(table, []).append(values)
    return values


def write(session: Session) -> None:
    """Insert every queued row, one statement per table, after the ORM's pending rows."""
    queued = session.info.pop(_PENDING, None)
    if not queued:
        return
    session.flush()
    connection = session.connection()
    for table in sorted(queued, key=_ORDER.__getitem__):
        rows = queued[table]
        before = _BEFORE.get(table)
        if before is not None:
            before(connection, rows)
        connection.execute(_INSERTS[table], rows)


def _write_outbox_first(connection, notifications: list[dict]) -> None:
    """A notification sent as an e-mail at once names its outbox message (``outbox``, the
    message's values): the messages go first, their ids read back in the order given."""
    messages = [row["outbox"] for row in notifications if row["outbox"] is not None]
    if messages:
        ids = iter(connection.execute(_INSERT_OUTBOX, messages).scalars().all())
    for row in notifications:
        if row.pop("outbox") is not None:
            row["outbox_id"] = next(ids)


_OUTBOX = Base.metadata.tables["outbox"]
_INSERT_OUTBOX = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_BEFORE = {Base.metadata.tables["notifications"]: _write_outbox_first}
