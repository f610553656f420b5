"""The audit log as hash chains: append-only, tamper-evident, verifiable.

Every instance has its own chain; events tied to no instance (deployments) form the
``system`` chain. Entry *n* of a chain stores ``seq = n`` and ``hash = SHA-256(canonical
JSON of its fields + the hash of entry n-1)``; the chain's head (last ``seq`` and ``hash``)
is kept on the instance row (``instances.audit_seq``/``audit_head``), or in ``audit_heads``
for chains without an instance. So an edited entry breaks its own hash, a deleted or
reordered entry breaks the next one's, and a deleted tail (or a whole chain) no longer
matches its head.

Why one chain per instance and not one for the whole log: a global head would be a row
every transaction of every instance has to lock, serializing the whole engine. An
instance's writes are already serialized (the optimistic version check of its unit of
work, and the head row lock taken here), so its chain costs no extra contention.

Chaining happens in a ``before_flush`` hook, so every writer of ``AuditEvent`` rows (the
runtime, the task service, the repository, the scheduler, anything added later) is covered
without having to remember it. Database triggers (migration 0004) refuse UPDATE and DELETE
on ``audit_events`` and DELETE on ``instances``.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import (LargeBinary, bindparam, case, event, exists, func, inspect, insert,
                        null, select, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .clock import as_utc
from .errors import NotFound
from .store.db import attached, columns_of
from .store.models import (AuditEvent, AuditHead, HumanTask, Instance, InstanceStateDelta,
                           OrgGeneration)

SYSTEM_CHAIN = "system"
GENESIS = ""          # the "previous hash" of a chain's first entry


def utc_iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="microseconds")


def event_hash(previous: str | None, *, seq: int, instance_id: str | None,
               definition_id: int | None, at: datetime, actor: str, action: str,
               element_id: str | None, details) -> str:
    """SHA-256 over the sorted-key JSON of an entry's fields and the previous entry's hash.
    The row id is not hashed (the database assigns it after the hash is computed); the
    order is carried by ``seq`` and verified against the ids."""
    body = {"prev": previous or GENESIS, "seq": seq, "instance_id": instance_id,
            "definition_id": definition_id, "at": utc_iso(at), "actor": actor,
            "action": action, "element_id": element_id, "details": details}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def row_hash(previous: str | None, row) -> str:
    return event_hash(previous, seq=row.seq, instance_id=row.instance_id,
                      definition_id=row.definition_id, at=row.at, actor=row.actor,
                      action=row.action, element_id=row.element_id, details=row.details)


# --- chaining new entries ---------------------------------------------------------------
# session.info key: chain heads (seq, hash) of the instances this session has locked
LOCKED_HEADS = "nd73_locked_chain_heads"
# session.info key: the state deltas read with the instance rows this session has locked
LOCKED_DELTAS = "nd73_locked_state_deltas"


def lock_instance_chain(session: Session, instance_id: str) -> None:
    """Lock an instance's row (and so its chain head) before touching any other row of the
    instance. Every unit of work on an instance (the runtime's, a task claim) starts with
    it, so they all take locks in the same order and never deadlock, whatever order their
    flushes write the task, decision and instance rows in. SQLite needs none: its writers
    are serialized by BEGIN IMMEDIATE.

    The lock is FOR NO KEY UPDATE, the one an UPDATE of the instance row takes anyway: FOR
    UPDATE would also wait for the key-share locks that inserting a decision or a task of
    the instance takes. The chain head read under the lock is kept for the session, so
    chaining this unit's entries needs no second read."""
    if session.get_bind().dialect.name == "sqlite":
        return
    row = session.execute(select(Instance.audit_seq, Instance.audit_head)
                          .where(Instance.id == instance_id)
                          .with_for_update(key_share=True)).first()
    if row is not None:
        session.info.setdefault(LOCKED_HEADS, {})[instance_id] = (row.audit_seq or 0,
                                                                  row.audit_head)


# session.info key: the organisation's generation read by the statement that locked (or,
# SQLite, loaded) an instance with its state: the step's look-ups in the organisation use
# it instead of reading it again (engine.org.Org.known_generation)
LOCKED_GENERATION = "nd73_locked_org_generation"
_GENERATION = select(OrgGeneration.generation).where(OrgGeneration.id == 1).scalar_subquery()
# an instance, by its id or a task's, with the organisation's generation (SQLite, whose
# writers need no lock), built once; Core rows made the session's objects (engine.store.db)
_INSTANCE_COLUMNS = columns_of(Instance)
_INSTANCE_BY_ID = select(*_INSTANCE_COLUMNS, _GENERATION).where(
    Instance.id == bindparam("lock_id"))
_INSTANCE_OF_TASK = select(*_INSTANCE_COLUMNS, _GENERATION).where(
    Instance.id == select(HumanTask.instance_id).where(
        HumanTask.id == bindparam("lock_task")).scalar_subquery())


def _loaded(session: Session, statement, params: dict) -> Instance | None:
    row = session.connection().execute(statement, params).first()
    if row is None:
        return None
    session.info[LOCKED_GENERATION] = row[-1] or 0
    return attached(session, Instance, row[:-1])


def lock_instance(session: Session, instance_id: str | None = None, *,
                  task_id: str | None = None, deltas: bool = False,
                  cached: dict[str, int] | None = None) -> Instance | None:
    """:func:`lock_instance_chain` for a unit of work that reads the whole instance row:
    the row is loaded by the locking statement itself (one round trip instead of two).
    ``task_id`` instead of ``instance_id``: the instance of that task. ``deltas``: the same
    statement also reads the state's deltas (in order), kept for :func:`locked_deltas`, so
    loading the workflow needs no second round trip (PostgreSQL; SQLite reads them after,
    as does a load whose lock waited for another writer). ``cached``: the versions at
    which the caller holds instances' workflows in memory (instance id: version); the
    deltas of an instance whose locked row has that version are not read. With ``deltas``
    the statement also reads the organisation's generation (:data:`LOCKED_GENERATION`)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite and not deltas:
        if instance_id is not None:
            return session.get(Instance, instance_id)
        return session.scalars(select(Instance).where(Instance.id == select(
            HumanTask.instance_id).where(HumanTask.id == task_id).scalar_subquery())).first()
    if sqlite:
        if instance_id is not None:
            return _loaded(session, _INSTANCE_BY_ID, {"lock_id": instance_id})
        return _loaded(session, _INSTANCE_OF_TASK, {"lock_task": task_id})
    if not deltas:
        which = Instance.id == (instance_id if instance_id is not None else select(
            HumanTask.instance_id).where(HumanTask.id == task_id).scalar_subquery())
        instance = session.scalars(select(Instance).where(which).with_for_update(
            key_share=True, of=Instance)).first()
        if instance is not None:
            session.info.setdefault(LOCKED_HEADS, {})[instance.id] = (
                instance.audit_seq or 0, instance.audit_head)
        return instance
    by_task = instance_id is None
    params: dict[str, Any] = {"lock_task": task_id} if by_task else {"lock_id": instance_id}
    if cached:
        ((kept_id, kept_version),) = cached.items()
        params.update(kept_id=kept_id, kept_version=kept_version)
    # Core, on the unit's connection: the rows are made the session's objects below, so
    # the ORM's execution (its compile state and loading, every step) adds nothing
    found = _locked_rows(session, session.connection().execute(
        _one_lock_statement(by_task, bool(cached)), params).all(), cached)
    return found[0] if found else None


def lock_instances(session: Session, instance_ids: list[str],
                   cached: dict[str, int] | None = None) -> dict[str, Instance]:
    """:func:`lock_instance` with ``deltas`` for several instances in one statement (on
    SQLite, loaded one by one: its writers need no lock). Instances that do not exist are
    left out. The rows are locked in the order of their ids, so two units of work locking
    shared instances cannot wait for each other in a cycle."""
    if session.get_bind().dialect.name == "sqlite":
        loaded = {i: session.get(Instance, i) for i in dict.fromkeys(instance_ids)}
        return {i: instance for i, instance in loaded.items() if instance is not None}
    return {instance.id: instance
            for instance in _lock_with_deltas(session, Instance.id.in_(list(instance_ids)),
                                              cached)}


def _lock_with_deltas(session: Session, which,
                      cached: dict[str, int] | None = None) -> list[Instance]:
    kept = None
    if cached:
        # the workflow held in memory serves the step when the locked row (its newest
        # version) has the version it was kept at
        kept = Instance.version == case(cached, value=Instance.id, else_=null())
    return _locked_rows(session, session.execute(_lock_statement(which, kept)).all(), cached)


def _lock_statement(which, kept) -> Any:
    """The instance rows ``which``, locked, with their state deltas (in order) and the
    version the statement's snapshot sees; ``kept``: a condition on the row under which its
    deltas are not read (PostgreSQL evaluates a CASE's sub-select only for the branch it
    takes)."""
    state_deltas = InstanceStateDelta.__table__
    in_order: Any = func.array(select(state_deltas.c.data)
                          .where(state_deltas.c.instance_id == Instance.id)
                          .order_by(state_deltas.c.seq).scalar_subquery(),
                          type_=ARRAY(LargeBinary))
    if kept is not None:
        in_order = case((kept, null()), else_=in_order)
    # the sub-selects read the statement's snapshot, taken before a wait for the lock; the
    # locked row is the newest version. The deltas are kept only when the snapshot has that
    # version too (a step writes its deltas and the version together)
    seen = aliased(Instance)
    seen_version = select(seen.version).where(seen.id == Instance.id).scalar_subquery()
    return (select(*_INSTANCE_COLUMNS, in_order, seen_version, _GENERATION).where(which)
            .order_by(Instance.id).with_for_update(key_share=True, of=Instance.__table__))


# the statements locking one instance, by its id or by a task's, with or without a kept
# version: built once (building one and its cache key cost about 0.5 ms, every step)
_ONE_LOCK_STATEMENTS: dict[tuple[bool, bool], Any] = {}


def _one_lock_statement(by_task: bool, cached: bool) -> Any:
    statement = _ONE_LOCK_STATEMENTS.get((by_task, cached))
    if statement is None:
        which = Instance.id == (select(HumanTask.instance_id)
                                .where(HumanTask.id == bindparam("lock_task"))
                                .scalar_subquery() if by_task else bindparam("lock_id"))
        kept = ((Instance.id == bindparam("kept_id"))
                & (Instance.version == bindparam("kept_version"))) if cached else None
        statement = _ONE_LOCK_STATEMENTS[(by_task, cached)] = _lock_statement(which, kept)
    return statement


def _locked_rows(session: Session, found, cached: dict[str, int] | None) -> list[Instance]:
    """The locked instances of :func:`_lock_statement`'s rows (Core rows made the
    session's objects, engine.store.db.attached); their chain heads and the deltas read
    (see :func:`locked_deltas`) kept for the session."""
    heads = session.info.setdefault(LOCKED_HEADS, {})
    kept = session.info.setdefault(LOCKED_DELTAS, {})
    instances = []
    for row in found:
        instance = attached(session, Instance, row[:-3])
        read, version, generation = row[-3:]
        session.info[LOCKED_GENERATION] = generation or 0
        heads[instance.id] = (instance.audit_seq or 0, instance.audit_head)
        if version == instance.version and not (
                read is None and cached and cached.get(instance.id) == instance.version):
            kept[instance.id] = list(read or ())
        instances.append(instance)
    return instances


# session.info key: instances whose row the step writes itself (a Core UPDATE after the
# flush): their new chain heads are left here for it instead of being written
STEP_HEADS = "nd73_step_chain_heads"


# session.info key: instances whose new entries (chained, as rows) the next flush leaves
# for the step to write with that UPDATE
STEP_ENTRIES = "nd73_step_entries"


def defer_head(session: Session, instance_id: str, *, entries: bool = False) -> None:
    """The next flush leaves the instance's new chain head for :func:`deferred_head`: the
    caller writes it in the UPDATE of the instance row it makes after that flush.
    ``entries``: it also leaves the entries it chained, as rows (:func:`deferred_entries`),
    for the caller to insert with that UPDATE (before it, or in the same statement)."""
    session.info.setdefault(STEP_HEADS, {})[instance_id] = None
    if entries:
        session.info.setdefault(STEP_ENTRIES, {})[instance_id] = []


def deferred_head(session: Session, instance_id: str) -> tuple[int, str] | None:
    """(seq, hash) of the instance's chain head after the entries the flush chained (None:
    it chained none), taken once."""
    return session.info.get(STEP_HEADS, {}).pop(instance_id, None)


def deferred_entries(session: Session, instance_id: str) -> list[dict]:
    """The rows of the instance's entries the flush chained and left unwritten (see
    :func:`defer_head`), in order, taken once: the caller inserts them (:data:`INSERT_ENTRIES`)."""
    return session.info.get(STEP_ENTRIES, {}).pop(instance_id, None) or []


def locked_deltas(session: Session, instance_id: str) -> list[bytes] | None:
    """The state deltas :func:`lock_instance` read with the instance's row in this session,
    taken once (None: not read that way, or already taken: a later load reads them)."""
    return session.info.get(LOCKED_DELTAS, {}).pop(instance_id, None)


def entry(instance_id: str | None, definition_id: int | None, at: datetime, actor: str,
          action: str, element_id: str | None = None, details: dict | None = None) -> dict:
    """A new entry as a row (its columns but ``seq`` and ``hash``, which
    :func:`chain_step_entries` gives it): a step's entries are written by Core statements,
    never as objects through the session."""
    return {"instance_id": instance_id, "definition_id": definition_id, "at": at,
            "actor": actor, "action": action, "element_id": element_id, "details": details}


def chain_step_entries(session: Session, instance: Instance, rows: list[dict],
                       head: tuple[int, str] | None = None) -> tuple[int, str | None]:
    """Chain a step's entries (rows of :func:`entry`, in order) after the instance's chain
    head, in place (``at`` in UTC, ``seq``, ``hash``); returns the new head, which the
    caller writes in the instance's row with the rows (:data:`INSERT_ENTRIES`).

    ``head``: the head after what the step's flush chained (:func:`deferred_head`), or
    (0, None) for a new instance; else the head the instance's lock read (PostgreSQL), the
    loaded row's (SQLite, whose writers are serialized), or one read with the lock now."""
    if head is None:
        kind, head = _head(session, instance.id, {})
        assert kind == "instance", f"instance {instance.id} is not stored"
    seq, previous = head
    for row in rows:
        row["at"] = at = as_utc(row["at"])
        seq += 1
        row["seq"] = seq
        row["hash"] = previous = event_hash(
            previous, seq=seq, instance_id=row["instance_id"],
            definition_id=row["definition_id"], at=at, actor=row["actor"],
            action=row["action"], element_id=row["element_id"], details=row["details"])
    locked = session.info.get(LOCKED_HEADS)
    if locked is not None and instance.id in locked:
        locked[instance.id] = (seq, previous)     # a later flush chains after these
    return seq, previous


def _head(session: Session, instance_id: str | None, pending: dict) -> tuple[str, Any]:
    """(kind, handle) of the chain an event belongs to, with its head row locked."""
    if instance_id is not None:
        if instance_id in pending:
            return "pending", pending[instance_id]
        locked = session.info.get(LOCKED_HEADS, {}).get(instance_id)
        if locked is not None:
            return "instance", locked
        if session.get_bind().dialect.name == "sqlite":
            # SQLite's writers are serialized from BEGIN IMMEDIATE on, and a writing
            # session lives for one transaction: a loaded instance row is current (chaining
            # below keeps its head fields so)
            loaded = session.identity_map.get(identity_key(Instance, instance_id))
            if loaded is not None:
                return "instance", (loaded.audit_seq or 0, loaded.audit_head)
        row = session.execute(select(Instance.audit_seq, Instance.audit_head)
                              .where(Instance.id == instance_id)
                              .with_for_update(key_share=True)).first()
        if row is not None:
            return "instance", (row.audit_seq or 0, row.audit_head)
    chain = instance_id or SYSTEM_CHAIN
    row = session.execute(select(AuditHead.seq, AuditHead.head)
                          .where(AuditHead.chain == chain)
                          .with_for_update(key_share=True)).first()
    return "other", (row.seq, row.head) if row is not None else None


def _chain_new_events(session: Session, _flush_context, _instances) -> None:
    new = [o for o in session.new if isinstance(o, AuditEvent) and o.hash is None]
    if not new:
        return
    new.sort(key=lambda o: inspect(o).insert_order or 0)   # the order the rows get their ids
    pending = {o.id: o for o in session.new if isinstance(o, Instance)}
    # instance id -> its entries the step writes itself (defer_head), none taken yet
    left: dict[str, list[AuditEvent]] = {i: [] for i in session.info.get(STEP_ENTRIES, ())}
    chains: dict = {}
    for entry in new:
        chains.setdefault(entry.instance_id, []).append(entry)
    for instance_id, entries in chains.items():
        kind, handle = _head(session, instance_id, pending)
        if kind == "pending":
            seq, head = handle.audit_seq or 0, handle.audit_head
        else:
            seq, head = handle if handle is not None else (0, None)
        for entry in entries:
            entry.at = as_utc(entry.at)
            seq += 1
            entry.seq = seq
            entry.hash = head = row_hash(head, entry)
        if kind == "pending":
            handle.audit_seq, handle.audit_head = seq, head
        elif kind == "instance":
            if instance_id in session.info.get(LOCKED_HEADS, {}):
                session.info[LOCKED_HEADS][instance_id] = (seq, head)
            deferred = session.info.get(STEP_HEADS)
            if deferred is not None and instance_id in deferred:
                deferred[instance_id] = (seq, head)     # the step's UPDATE writes it
                if instance_id in left:                 # and its entries
                    left[instance_id].extend(entries)
                continue
            loaded = session.identity_map.get(identity_key(Instance, instance_id))
            if loaded is not None and inspect(loaded).modified:
                # a step that saves the instance: the head goes into that same UPDATE
                loaded.audit_seq, loaded.audit_head = seq, head
                continue
            # otherwise not through the ORM object: that would bump the instance's version
            # and make a task claim conflict with a concurrent completion of another task
            session.execute(update(Instance.__table__).where(Instance.id == instance_id)
                            .values(audit_seq=seq, audit_head=head))
            if loaded is not None:
                set_committed_value(loaded, "audit_seq", seq)
                set_committed_value(loaded, "audit_head", head)
        else:
            chain = instance_id or SYSTEM_CHAIN
            if handle is None:
                session.execute(insert(AuditHead.__table__).values(chain=chain, seq=seq,
                                                                   head=head))
            else:
                session.execute(update(AuditHead.__table__).where(AuditHead.chain == chain)
                                .values(seq=seq, head=head))
    # Written here, in order, as one multi-row statement, instead of by the flush: the ORM
    # would insert them one by one on SQLite to read each id back, and nothing reads the
    # ids of entries it has just written. They leave the session, as written rows do.
    # Entries a step writes itself are left for it, as rows, in order.
    step = session.info.get(STEP_ENTRIES, {})
    for instance_id, entries in left.items():
        if entries:
            step[instance_id].extend(_row_of(entry) for entry in entries)
    taken = {id(entry) for entries in left.values() for entry in entries}
    rows = [_row_of(entry) for entry in new if id(entry) not in taken]
    for entry in new:
        session.expunge(entry)
    if rows:
        session.execute(INSERT_ENTRIES, rows)


def _row_of(entry: AuditEvent) -> dict:
    return {column: getattr(entry, column) for column in ENTRY_COLUMNS}


# an entry's columns but its id, which the database assigns in the order entries are written
ENTRY_COLUMNS = [c.key for c in AuditEvent.__table__.columns if c.key != "id"]
INSERT_ENTRIES = insert(AuditEvent.__table__)


event.listen(Session, "before_flush", _chain_new_events)


# --- append-only triggers --------------------------------------------------------------
SQLITE_TRIGGERS = {
    "audit_events_no_update": "BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, "
                              "'audit_events is append-only: entries cannot be changed'); END",
    "audit_events_no_delete": "BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, "
                              "'audit_events is append-only: entries cannot be deleted'); END",
    "instances_no_delete": "BEFORE DELETE ON instances BEGIN SELECT RAISE(ABORT, "
                           "'instances cannot be deleted (their audit chain heads live "
                           "there)'); END",
}
POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION nd73_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_ARGV[0] || ': ' || TG_OP || ' refused';
END
$$ LANGUAGE plpgsql"""
POSTGRES_TRIGGERS = {
    "audit_events_append_only": ("audit_events", "BEFORE UPDATE OR DELETE", "ROW",
                                 "audit_events is append-only"),
    "audit_events_no_truncate": ("audit_events", "BEFORE TRUNCATE", "STATEMENT",
                                 "audit_events is append-only"),
    "instances_no_delete": ("instances", "BEFORE DELETE", "ROW",
                            "instances cannot be deleted"),
    "instances_no_truncate": ("instances", "BEFORE TRUNCATE", "STATEMENT",
                              "instances cannot be deleted"),
}


# issued official documents are immutable too (migration 0012)
SQLITE_DOCUMENT_TRIGGERS = {
    "documents_no_update": "BEFORE UPDATE ON documents BEGIN SELECT RAISE(ABORT, "
                           "'documents are immutable: an issued document cannot be changed "
                           "(issue a correction)'); END",
    "documents_no_delete": "BEFORE DELETE ON documents BEGIN SELECT RAISE(ABORT, "
                           "'documents are immutable: an issued document cannot be "
                           "deleted'); END",
}
POSTGRES_DOCUMENT_TRIGGERS = {
    "documents_immutable": ("documents", "BEFORE UPDATE OR DELETE", "ROW",
                            "documents are immutable"),
    "documents_no_truncate": ("documents", "BEFORE TRUNCATE", "STATEMENT",
                              "documents are immutable"),
}
# the groups of triggers, by the migration that made them: "audit" (0004), "documents" (0012)
TRIGGER_GROUPS = {"audit": (SQLITE_TRIGGERS, POSTGRES_TRIGGERS),
                  "documents": (SQLITE_DOCUMENT_TRIGGERS, POSTGRES_DOCUMENT_TRIGGERS)}
ALL_GROUPS = tuple(TRIGGER_GROUPS)


def create_triggers_sql(dialect: str, groups: tuple[str, ...] = ("audit",)) -> list[str]:
    sqlite = {k: v for g in groups for k, v in TRIGGER_GROUPS[g][0].items()}
    postgres = {k: v for g in groups for k, v in TRIGGER_GROUPS[g][1].items()}
    if dialect == "sqlite":
        return [f"CREATE TRIGGER {name} {body}" for name, body in sqlite.items()]
    if dialect == "postgresql":
        return [POSTGRES_FUNCTION] + [
            f"CREATE TRIGGER {name} {when} ON {table} FOR EACH {level} "
            f"EXECUTE FUNCTION nd73_refuse_change('{message}')"
            for name, (table, when, level, message) in postgres.items()]
    return []


def drop_triggers_sql(dialect: str, groups: tuple[str, ...] = ("audit",)) -> list[str]:
    sqlite = {k: v for g in groups for k, v in TRIGGER_GROUPS[g][0].items()}
    postgres = {k: v for g in groups for k, v in TRIGGER_GROUPS[g][1].items()}
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in sqlite]
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON {table}"
                for name, (table, *_rest) in postgres.items()]
    return []


@contextmanager
def triggers_lifted(connection) -> Iterator[None]:
    """Drop the append-only triggers for the rest of a transaction and put them back at its
    end (DDL is transactional on both databases, so other sessions never see them gone).
    For emptying a test database; it is also exactly what someone with the database owner's
    rights can do, which is why the chains exist."""
    dialect = connection.dialect.name
    for statement in drop_triggers_sql(dialect, ALL_GROUPS):
        connection.exec_driver_sql(statement)
    yield
    for statement in create_triggers_sql(dialect, ALL_GROUPS):
        connection.exec_driver_sql(statement)


# --- verification ------------------------------------------------------------------------
@dataclass
class BrokenLink:
    chain: str            # instance id or 'system'
    seq: int | None       # the sequence number where the chain stops being valid
    event_id: int | None
    expected: str | None
    found: str | None
    reason: str

    def __str__(self) -> str:
        where = "system chain" if self.chain == SYSTEM_CHAIN else f"instance {self.chain}"
        parts = [f"{where}: {self.reason}"]
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.event_id is not None:
            parts.append(f"event {self.event_id}")
        if self.expected is not None or self.found is not None:
            parts.append(f"expected {self.expected or '-'} found {self.found or '-'}")
        return "; ".join(parts)


@dataclass
class Report:
    chains: int = 0
    events: int = 0
    broken: list[BrokenLink] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


class _Chain:
    """Walks one chain entry by entry (in id order), remembering its first broken link."""

    def __init__(self, name: str):
        self.name = name
        self.seq = 0
        self.head: str | None = None
        self.broken: BrokenLink | None = None

    def add(self, row) -> None:
        if self.broken is not None:
            return
        expected = row_hash(self.head, row) if row.seq is not None else None
        if row.seq != self.seq + 1:
            reason = (f"entry {self.seq + 1} is missing or out of order "
                      f"(found seq {row.seq} after {self.seq})")
        elif expected != row.hash:
            reason = "entry does not match its hash (changed, or its predecessor was)"
        else:
            self.seq, self.head = row.seq, row.hash
            return
        self.broken = BrokenLink(self.name, self.seq + 1, row.id, expected, row.hash, reason)

    def close(self, head_seq: int | None, head_hash: str | None) -> None:
        if self.broken is None and ((head_seq or 0), head_hash) != (self.seq, self.head):
            self.broken = BrokenLink(
                self.name, self.seq + 1 if (head_seq or 0) > self.seq else head_seq, None,
                head_hash, self.head,
                f"chain ends at seq {self.seq} but its head records seq {head_seq or 0} "
                f"(entries at the end were deleted, or the head was changed)")


BATCH = 2000


def verify(db, instance_id: str | None = None) -> Report:
    """Recompute every chain (or one instance's) and compare it with its head."""
    with db.reading() as session:
        return verify_session(session, instance_id)


def verify_session(session: Session, instance_id: str | None = None) -> Report:
    """:func:`verify` inside a unit of work (an import checks what it wrote before it
    commits)."""
    report = Report()
    columns = (AuditEvent.id, AuditEvent.seq, AuditEvent.hash, AuditEvent.instance_id,
               AuditEvent.definition_id, AuditEvent.at, AuditEvent.actor, AuditEvent.action,
               AuditEvent.element_id, AuditEvent.details)
    other_heads = {h.chain: (h.seq, h.head) for h in session.scalars(select(AuditHead))}
    chain: _Chain | None
    if instance_id is None:
        chain = _Chain(SYSTEM_CHAIN)
        for row in session.execute(select(*columns).where(AuditEvent.instance_id.is_(None))
                                   .order_by(AuditEvent.id)
                                   .execution_options(yield_per=BATCH)):
            report.events += 1
            chain.add(row)
        if chain.seq or chain.broken or SYSTEM_CHAIN in other_heads:
            chain.close(*other_heads.get(SYSTEM_CHAIN, (0, None)))
            report.chains += 1
            if chain.broken:
                report.broken.append(chain.broken)
    query = (select(*columns, Instance.id.label("owner"), Instance.audit_seq,
                    Instance.audit_head)
             .outerjoin(Instance, Instance.id == AuditEvent.instance_id)
             .order_by(AuditEvent.instance_id, AuditEvent.id))
    query = (query.where(AuditEvent.instance_id == instance_id) if instance_id
             else query.where(AuditEvent.instance_id.is_not(None)))
    chain, head = None, None

    def finish():
        chain.close(*head)
        report.chains += 1
        if chain.broken:
            report.broken.append(chain.broken)

    for row in session.execute(query.execution_options(yield_per=BATCH)):
        report.events += 1
        if chain is None or row.instance_id != chain.name:
            if chain is not None:
                finish()
            chain = _Chain(row.instance_id)
            head = ((row.audit_seq, row.audit_head) if row.owner is not None
                    else other_heads.get(row.instance_id, (0, None)))
        chain.add(row)
    if chain is not None:
        finish()
    # a chain deleted as a whole: its instance (rows are never deleted) has no entries
    empty = (select(Instance.id, Instance.audit_seq, Instance.audit_head)
             .where(~exists().where(AuditEvent.instance_id == Instance.id)))
    if instance_id:
        empty = empty.where(Instance.id == instance_id)
    for row in session.execute(empty.order_by(Instance.id)):
        report.chains += 1
        report.broken.append(BrokenLink(
            row.id, 1, None, row.audit_head, None,
            f"the instance has no audit entries but its head records seq "
            f"{row.audit_seq or 0} (every instance has at least its start)"))
    if instance_id and report.chains == 0:
        raise NotFound(f"instance {instance_id} does not exist", code="instance.not_found",
                       instance_id=instance_id)
    return report
