"""Backups as one JSON document: ``nd73 export FILE`` and ``nd73 import FILE``.

The document holds every table of the schema except ``login_attempts`` (failed sign-ins
kept for 15 minutes to slow down guessing; worthless after a restore) and
``org_generation`` (the counter that tells caches the organisation changed: the restore
bumps the new database's own). That is everything
needed to restore the product: deployed definitions (every version with its sources,
settings, forms and templates as deployed), instances with their serialized state and all
their projections (human tasks and candidates, timers, message subscriptions, decisions),
the audit log with its hash chains and their heads, the organisation (units, users with
their password hashes, memberships, grants), notifications, the e-mail outbox and
attachments. Taking every table rather than a hand-picked list means a table added later
is backed up without anyone remembering to. Layout::

    {"format": "nd73-backup", "version": 1, "schema": "<alembic revision>",
     "exported_at": "<UTC ISO>",
     "tables": {"<table>": {"columns": ["id", ...], "rows": [[...], ...]}, ...}}

Values: datetimes as UTC ISO 8601 strings, binary as base64, JSON columns as JSON, the
rest as they are. A backup taken before migration 0009 or 0010 (candidacies without their
task's instance id, or without whether it is open) is read too: what is missing is filled
in from the backup's tasks. Rows are ordered by primary key (byte order of strings, the
same on SQLite and PostgreSQL), so two exports of the same data are identical documents.

Export reads one consistent snapshot (PostgreSQL: REPEATABLE READ) and streams rows in
batches, so it runs beside a live system. Import reads the document, checks all of it
(format, version, tables, columns, every value's type), refuses a database that is not
empty or not migrated, writes everything in one transaction, then verifies the audit
chains inside that transaction before committing: a backup whose audit log is broken is
not restored.
"""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (JSON, Boolean, DateTime, Integer, LargeBinary, String, func, select,
                        text)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import Table

from .audit import verify_session
from .clock import as_utc
from .errors import EngineError
from .org import bump_generation
from .store.models import Base, TaskStatus

FORMAT = "nd73-backup"
VERSION = 1
EXCLUDED = {"login_attempts", "org_generation"}
BATCH = 1000


class BackupError(EngineError):
    """A backup that cannot be read or restored; nothing was written."""


def backed_up_tables() -> list[Table]:
    """Tables in dependency order (parents first)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in EXCLUDED]


def _schema_revision(connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


# --- export ------------------------------------------------------------------------------
def _encode(column, value):
    if value is None:
        return None
    if isinstance(column.type, DateTime):
        return as_utc(value).isoformat()
    if isinstance(column.type, LargeBinary):
        return base64.b64encode(value).decode("ascii")
    return value


def _ordered(connection, table: Table):
    """Primary-key order that does not depend on the database's collation."""
    keys: list = []
    for column in table.primary_key.columns:
        if isinstance(column.type, String) and connection.dialect.name == "postgresql":
            keys.append(column.collate("C"))
        else:
            keys.append(column)
    return select(table).order_by(*keys)


def export(db, out: IO[str], *, now: datetime | None = None) -> dict[str, int]:
    """Write the backup document to ``out``; returns the number of rows per table."""
    counts: dict[str, int] = {}
    with db.reading() as session:
        # one snapshot for every table (SQLite's read transaction already is one)
        connection = session.connection(execution_options={
            "isolation_level": "REPEATABLE READ"} if not db.is_sqlite else None)
        exported_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        out.write('{"format": %s, "version": %d, "schema": %s, "exported_at": %s,\n'
                  ' "tables": {' % (json.dumps(FORMAT), VERSION,
                                    json.dumps(_schema_revision(connection)),
                                    json.dumps(exported_at.isoformat())))
        for n, table in enumerate(backed_up_tables()):
            columns = list(table.columns)
            out.write(("," if n else "") + "\n  %s: {\"columns\": %s, \"rows\": [" % (
                json.dumps(table.name), json.dumps([c.name for c in columns])))
            count = 0
            for row in connection.execution_options(yield_per=BATCH).execute(
                    _ordered(connection, table)):
                out.write(("," if count else "") + "\n   " + json.dumps(
                    [_encode(c, v) for c, v in zip(columns, row)], ensure_ascii=False,
                    separators=(",", ":")))
                count += 1
            out.write("]}")
            counts[table.name] = count
        out.write("\n }\n}\n")
    return counts


def export_file(db, path: Path) -> dict[str, int]:
    with open(path, "w", encoding="utf-8") as out:
        return export(db, out)


# --- import ------------------------------------------------------------------------------
def _decode(column, value, where: str):
    """The stored value of a document value, or BackupError naming where it is wrong."""
    if value is None:
        if not column.nullable:
            raise BackupError(f"{where}: must not be null")
        return None
    kind = column.type
    if isinstance(kind, DateTime):
        if not isinstance(value, str):
            raise BackupError(f"{where}: expected an ISO 8601 date and time, found {value!r}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BackupError(f"{where}: not an ISO 8601 date and time: {value!r}") from None
        return as_utc(parsed)
    if isinstance(kind, LargeBinary):
        try:
            return base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            raise BackupError(f"{where}: expected base64 text") from None
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise BackupError(f"{where}: expected true or false, found {value!r}")
        return value
    if isinstance(kind, Integer):
        if not isinstance(value, int) or isinstance(value, bool):
            raise BackupError(f"{where}: expected an integer, found {value!r}")
        return value
    if isinstance(kind, String):          # Text too
        if not isinstance(value, str):
            raise BackupError(f"{where}: expected text, found {value!r}")
        if kind.length and len(value) > kind.length:
            raise BackupError(f"{where}: longer than {kind.length} characters")
        if "\x00" in value:
            raise BackupError(f"{where}: contains a NUL character")
        return value
    if isinstance(kind, JSON):
        return value
    return value


def read_document(path: Path) -> dict:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BackupError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}") from None
    return document


def parse(document) -> dict[str, list[dict]]:
    """Check a whole document; the rows to write per table, as column -> stored value."""
    if not isinstance(document, dict):
        raise BackupError("the document is not a JSON object")
    for key in ("format", "version", "tables"):
        if key not in document:
            raise BackupError(f"the document has no '{key}' key (is it an nd73 backup?)")
    if document["format"] != FORMAT:
        raise BackupError(f"format: expected {FORMAT!r}, found {document['format']!r}")
    if document["version"] != VERSION:
        raise BackupError(f"version: this nd73 reads backup format version {VERSION}, the "
                          f"document is version {document['version']!r}")
    tables = document["tables"]
    if not isinstance(tables, dict):
        raise BackupError("tables: expected an object of tables")
    _complete_old_candidacies(tables)
    known = {t.name: t for t in Base.metadata.sorted_tables}
    parsed: dict[str, list[dict]] = {}
    for name, entry in tables.items():
        if name not in known:
            raise BackupError(f"tables.{name}: no such table in this version of the schema")
        if name in EXCLUDED:
            continue
        table = known[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("columns"), list) \
                or not isinstance(entry.get("rows"), list):
            raise BackupError(f"tables.{name}: expected an object with 'columns' (a list of "
                              f"names) and 'rows' (a list of rows)")
        names = entry["columns"]
        for column in names:
            if not isinstance(column, str) or column not in table.columns:
                raise BackupError(f"tables.{name}.columns: table {name} has no column "
                                  f"{column!r}")
        if len(set(names)) != len(names):
            raise BackupError(f"tables.{name}.columns: a column is named twice")
        for column in table.columns:
            if column.name not in names and not (column.nullable or column.server_default
                                                 is not None or column.default is not None):
                raise BackupError(f"tables.{name}.columns: column {column.name!r} is missing")
        columns = [table.columns[c] for c in names]
        rows = []
        for index, row in enumerate(entry["rows"]):
            where = f"tables.{name}.rows[{index}]"
            if not isinstance(row, list) or len(row) != len(columns):
                raise BackupError(f"{where}: expected a list of {len(columns)} values")
            rows.append({c.name: _decode(c, v, f"{where}.{c.name}")
                         for c, v in zip(columns, row)})
        parsed[name] = _parents_first(table, rows)
    return parsed


def _complete_old_candidacies(tables: dict) -> None:
    """Backups taken before migration 0009 have candidacies without their task's instance
    id, and before 0010 without whether their task is open: both are filled in from the
    backup's own tasks, as the migrations did in place."""
    candidacies, tasks = tables.get("task_candidates"), tables.get("human_tasks")
    if not isinstance(candidacies, dict) or not isinstance(candidacies.get("columns"), list) \
            or not isinstance(candidacies.get("rows"), list) \
            or "task_id" not in candidacies["columns"]:
        return                      # malformed: parse() names what is wrong
    missing = [column for column in ("instance_id", "task_open")
               if column not in candidacies["columns"]]
    if not missing:
        return
    task_of = {}
    if isinstance(tasks, dict) and isinstance(tasks.get("columns"), list) \
            and {"id", "instance_id", "status"} <= set(tasks["columns"]) \
            and isinstance(tasks.get("rows"), list):
        columns = tasks["columns"]
        id_at, instance_at, status_at = (columns.index(c) for c in ("id", "instance_id", "status"))
        task_of = {row[id_at]: {"instance_id": row[instance_at],
                                "task_open": row[status_at] == TaskStatus.OPEN}
                   for row in tasks["rows"] if isinstance(row, list) and len(row) == len(columns)}
    task_at = candidacies["columns"].index("task_id")
    for index, row in enumerate(candidacies["rows"]):
        if not isinstance(row, list) or len(row) != len(candidacies["columns"]):
            return                  # parse() names the row
        if row[task_at] not in task_of:
            raise BackupError(f"tables.task_candidates.rows[{index}]: task {row[task_at]!r} "
                              f"is not among tables.human_tasks (a candidacy needs its task)")
    candidacies["columns"] = [*candidacies["columns"], *missing]
    candidacies["rows"] = [[*row, *(task_of[row[task_at]][column] for column in missing)]
                           for row in candidacies["rows"]]


def _parents_first(table: Table, rows: list[dict]) -> list[dict]:
    """Rows of a table that references itself (units and their parent unit), each after
    the row it points to."""
    own = [fk for fk in table.foreign_keys if fk.column.table is table]
    if not own or not rows:
        return rows
    child, parent = own[0].parent.name, own[0].column.name
    placed: set = set()
    waiting: defaultdict = defaultdict(list)
    ordered: list[dict] = []

    def place(row):
        ordered.append(row)
        placed.add(row[parent])
        for later in waiting.pop(row[parent], []):
            place(later)

    for row in rows:
        if row.get(child) is None or row[child] in placed:
            place(row)
        else:
            waiting[row[child]].append(row)
    ordered += [r for group in waiting.values() for r in group]   # dangling: the FK says so
    return ordered


def _require_empty(session) -> None:
    for table in backed_up_tables():
        if session.execute(select(func.count()).select_from(table)).scalar():
            raise BackupError(f"the database is not empty (table {table.name} has rows): "
                              f"import only into a new, migrated database")


def import_document(db, document) -> dict[str, int]:
    """Restore a parsed-or-raw backup document into an empty, migrated database, all or
    nothing; returns rows written per table."""
    from .store.migrate import is_current
    rows_by_table = parse(document)
    if not is_current(db):
        raise BackupError("the database schema is not current: run 'nd73 db upgrade' first")
    counts: dict[str, int] = {}
    with db.transaction() as session:
        _require_empty(session)
        connection = session.connection()
        for table in backed_up_tables():
            rows = rows_by_table.get(table.name, [])
            for start in range(0, len(rows), BATCH):
                try:
                    connection.execute(table.insert(), rows[start:start + BATCH])
                except DBAPIError as exc:      # the database's own words, with the table
                    orig = getattr(exc, "orig", exc)
                    raise BackupError(f"tables.{table.name}: the database refused a row "
                                      f"({str(orig).splitlines()[0]}); nothing was "
                                      f"imported") from None
            counts[table.name] = len(rows)
        if connection.dialect.name == "postgresql":
            _move_sequences(connection)
        bump_generation(session)            # every process's cached tree is now stale
        report = verify_session(session)
        if not report.ok:
            raise BackupError(f"the backup's audit log is broken ({report.broken[0]}); "
                              f"nothing was imported")
    return counts


def _move_sequences(connection) -> None:
    """Explicit ids were written: the next generated id must come after them."""
    for table in backed_up_tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        column = keys[0].name
        sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": table.name, "c": column}).scalar()
        if sequence:
            connection.execute(text(
                f"SELECT setval(:s, COALESCE((SELECT MAX({column}) FROM {table.name}), 1), "
                f"(SELECT MAX({column}) FROM {table.name}) IS NOT NULL)"), {"s": sequence})


def import_file(db, path: Path) -> dict[str, int]:
    return import_document(db, read_document(path))
