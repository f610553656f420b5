"""What every step of an instance shares: its statuses, how a failure becomes an incident,
the data a caller may put in, and the business stage after the step."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import (Integer, LargeBinary, bindparam, delete, func, insert, inspect, select,
                        union_all, update)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import (PASSIVE_NO_INITIALIZE, get_state_history,
                                        set_committed_value)
from sqlalchemy.orm.exc import StaleDataError

from .. import policy
from ..audit import ENTRY_COLUMNS, INSERT_ENTRIES, entry
from ..errors import InvalidData, ScriptError
from ..scripting import data_size
from ..store import AuditEvent, HumanTask, Instance, InstanceStateDelta, InstanceStatus

RUNNING, SUSPENDED, INCIDENT = (InstanceStatus.RUNNING, InstanceStatus.SUSPENDED,
                                InstanceStatus.INCIDENT)
COMPLETED, TERMINATED = InstanceStatus.COMPLETED, InstanceStatus.TERMINATED
ACTIVE_STATUSES = (RUNNING, SUSPENDED, INCIDENT)
ENDED_STATUSES = (COMPLETED, TERMINATED)
properties_of = policy.element_properties


INSTANCES = Instance.__table__
AUDIT = AuditEvent.__table__
DELTAS = InstanceStateDelta.__table__


class StateRows:
    """The rows of ``instance_state_deltas`` a step's save writes after the instance row:
    its delta (``seq``, ``data``), or, with neither, the removal of the instance's deltas
    (a snapshot replaced them). Called with the session, it writes them on its own."""

    def __init__(self, instance_id: str, seq: int | None = None, data: bytes | None = None):
        self.instance_id, self.seq, self.data = instance_id, seq, data

    def __call__(self, session: Session) -> None:
        if self.seq is None:
            session.execute(delete(DELTAS).where(DELTAS.c.instance_id == self.instance_id))
        else:
            session.execute(insert(DELTAS), {"instance_id": self.instance_id,
                                              "seq": self.seq, "data": self.data})

    def after(self, updated) -> Any:
        """The same write as a statement over ``updated`` (a CTE of the instance row's
        UPDATE … RETURNING id), done only when the UPDATE matched the row; its values are
        the parameters ``delta_seq`` and ``delta_data`` (:meth:`params`)."""
        if self.seq is None:
            return delete(DELTAS).where(DELTAS.c.instance_id.in_(select(updated.c.id)))
        return insert(DELTAS).from_select(
            ["instance_id", "seq", "data"],
            select(updated.c.id, bindparam("delta_seq", type_=Integer),
                   bindparam("delta_data", type_=LargeBinary)))

    def params(self) -> dict:
        return {} if self.seq is None else {"delta_seq": self.seq, "delta_data": self.data}


_COLUMNS = {prop.key: prop.columns[0] for prop in Instance.__mapper__.column_attrs}
TASKS = HumanTask.__table__
_TASK_COLUMNS = {prop.key: prop.columns[0] for prop in HumanTask.__mapper__.column_attrs}
# the statements a step writes its rows with, built once for each set of columns (building
# and hashing a statement cost more than executing it)
_STATEMENTS: dict[tuple, Any] = {}


def _update_of(table, columns: dict, keys: tuple[str, ...], prefix: str, versioned: bool):
    """UPDATE ``table`` of the attributes ``keys`` (parameters ``prefix`` + key) where its
    id is ``<prefix>id`` (and, ``versioned``, its version ``<prefix>version``, then set to
    ``<prefix>new_version``)."""
    row = {columns[key]: bindparam(prefix + key, type_=columns[key].type) for key in keys}
    which = table.c.id == bindparam(prefix + "id")
    if versioned:
        row[table.c.version] = bindparam(prefix + "new_version", type_=Integer)
        which = which & (table.c.version == bindparam(prefix + "version", type_=Integer))
    return update(table).where(which).values(row)


def _taken_changes(obj) -> dict[str, Any]:
    """The changed column attributes of a loaded ORM object, taken out of the session's
    unit of work (recorded as committed: the flush leaves its row alone)."""
    state = inspect(obj)
    values = {}
    for key in list(state.committed_state):
        # each attribute's history as AttributeState.history reads it, without state.attrs
        # (an AttributeState made for every attribute of the object, at every step)
        if get_state_history(state, key, PASSIVE_NO_INITIALIZE).has_changes():
            values[key] = getattr(obj, key)
    for key, value in values.items():
        set_committed_value(obj, key, value)
    # nothing is left to write (its attributes are columns only, each now as committed):
    # the object is clean again, so the flush does not sort, compare and skip it (a
    # step's flush otherwise spent more on these two objects than on its audit entries)
    state._commit_all(state.dict, state._instance_dict())
    return values


class TaskRowUpdate:
    """What a step changed in a task's row (its completion), taken out of the ORM's unit
    of work: an UPDATE by the row's id for :func:`instance_row_writer`'s statement."""

    def __init__(self, row: HumanTask, values: dict):
        self.keys = tuple(sorted(values))
        self.values = {"task_" + key: value for key, value in values.items()}
        self.values["task_id"] = row.id

    def statement(self):
        key = ("task", self.keys)
        if key not in _STATEMENTS:
            _STATEMENTS[key] = _update_of(TASKS, _TASK_COLUMNS, self.keys, "task_", False)
        return _STATEMENTS[key]


def task_row_update(row: HumanTask) -> TaskRowUpdate | None:
    """:class:`TaskRowUpdate` of a task's row (None: nothing to write)."""
    if not inspect(row).persistent:
        return None
    values = _taken_changes(row)
    return TaskRowUpdate(row, values) if values else None


def instance_row_writer(instance: Instance
                        ) -> Callable[[Session, Any, StateRows | None, list, list], bool]:
    """Take the changes a step made to a loaded instance out of the ORM's unit of work
    (the flush leaves the row alone) and return what writes them: one Core UPDATE with
    the optimistic version check (``WHERE version = <the version loaded>``, the new version
    set), and the audit chain's new head (``head``: (seq, hash), or None) in the same
    statement. No row matched: another writer changed the instance, StaleDataError as the
    ORM raises it. Nothing changed and no new head: the row is not written (the version is
    not bumped), as the ORM would. ``then``: the step's state rows, and ``extra``: other
    rows of the step (:func:`task_row_update`), and ``entries``: the rows of the audit
    entries the step's flush chained and left to it (engine.audit.deferred_entries),
    written by the same statement on PostgreSQL (data-modifying WITHs), else each after it
    (the entries before it); returns whether ``then`` was."""
    values = _taken_changes(instance)
    loaded = instance.version

    def write(session: Session, head, then: StateRows | None = None,
              extra: list[TaskRowUpdate] = (), entries: list[dict] = ()) -> bool:
        row = dict(values)
        if head is not None:
            row["audit_seq"], row["audit_head"] = head
        connection = session.connection()
        together = bool(then is not None or extra or entries) and bool(row) and \
            connection.dialect.name == "postgresql"
        if entries and not together:
            connection.execute(INSERT_ENTRIES, list(entries))
        if not row:
            for other in extra:
                connection.execute(other.statement(), other.values)
            return False
        keys = tuple(sorted(row))
        params = {"row_" + key: value for key, value in row.items()}
        params["row_id"] = instance.id
        versioned = bool(values)
        if versioned:
            params["row_version"], params["row_new_version"] = loaded, loaded + 1
        # not through the ORM object: its version is moved below, once the row has it
        if together:
            shape = ("together", keys, versioned, then is not None and then.seq is None,
                     then is None, tuple(other.keys for other in extra), len(entries))
            if shape not in _STATEMENTS:
                updated = (_update_of(INSTANCES, _COLUMNS, keys, "row_", versioned)
                           .returning(INSTANCES.c.id).cte("step_row"))
                query = select(func.count()).select_from(updated)
                if then is not None:
                    query = query.add_cte(then.after(updated).cte("step_state"))
                for n, other in enumerate(extra):
                    query = query.add_cte(other.statement().cte(f"step_also_{n}"))
                if entries:
                    query = query.add_cte(_entries_insert(len(entries)).cte("step_entries"))
                _STATEMENTS[shape] = query
            if then is not None:
                params.update(then.params())
            for other in extra:
                params.update(other.values)
            for n, entry in enumerate(entries):
                for column, value in entry.items():
                    params[f"entry{n}_{column}"] = value
            matched = connection.execute(_STATEMENTS[shape], params).scalar_one()
        else:
            shape = ("row", keys, versioned)
            if shape not in _STATEMENTS:
                _STATEMENTS[shape] = _update_of(INSTANCES, _COLUMNS, keys, "row_", versioned)
            matched = connection.execute(_STATEMENTS[shape], params).rowcount
        if matched != 1:
            raise StaleDataError(f"UPDATE statement on table 'instances' expected to update "
                                 f"1 row(s); {matched} were matched.")
        if not together:
            for other in extra:
                connection.execute(other.statement(), other.values)
        if versioned:
            set_committed_value(instance, "version", loaded + 1)
        if head is not None:
            set_committed_value(instance, "audit_seq", head[0])
            set_committed_value(instance, "audit_head", head[1])
        return together and then is not None
    return write


def _entries_insert(count: int):
    """INSERT of ``count`` audit entries, in order (parameters ``entry<n>_<column>``): an
    INSERT … SELECT of their rows one after another (a multi-row VALUES has no cache key,
    and the step's whole statement would be compiled again at every step)."""
    rows = [select(*[bindparam(f"entry{n}_{column}", type_=AUDIT.c[column].type)
                     .label(column) for column in ENTRY_COLUMNS]) for n in range(count)]
    return insert(AUDIT).from_select(ENTRY_COLUMNS, rows[0] if count == 1 else union_all(*rows))


@dataclass
class Incident:
    message: str
    element_id: str | None


def audit_entry(instance: Instance, at: datetime, actor: str, action: str,
                element_id: str | None = None, details: dict | None = None) -> dict:
    """An entry of the instance's audit chain, as a row (engine.audit.entry): the step
    chains and writes it with the instance's row."""
    return entry(instance.id, instance.definition_id, at, actor, action, element_id, details)


def element_of(task) -> str | None:
    return element_of_spec(task.task_spec)


def element_of_spec(spec) -> str | None:
    return getattr(spec, "bpmn_id", None) or spec.name


def incident_from(exc: Exception) -> Incident:
    task = getattr(exc, "task", None)
    element = element_of(task) if task is not None else None
    # SpiffWorkflow keeps the reason an expression failed only as the exception's context
    inner = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    message = str(exc.args[0]) if exc.args else str(exc)
    if inner is not None and str(inner) not in message:
        message = f"{message}: {inner}"
    return Incident(message, element)


def clean_data(data: Any, max_bytes: int) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidData("data must be a JSON object", code="data.not_object")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("_")]
    if bad:
        raise InvalidData(f"data field names must not start with '_': {bad[:5]}",
                          code="data.reserved_names",
                          params={"names": ", ".join(map(str, bad[:5]))})
    try:
        size = data_size(data, max_bytes)
    except ScriptError as exc:
        raise InvalidData(str(exc), code="data.unreadable",
                          params={"detail": str(exc)}) from None
    if size > max_bytes:
        raise InvalidData(f"data is larger than the limit of {max_bytes:,} bytes",
                          code="data.too_large", params={"limit": max_bytes})
    return data


def stage_after(live: list, completed: list, current: str | None) -> str | None:
    """The business stage: that of the open steps (``stage`` property) among the live
    (ready, waiting, started) tasks, else of the last finished element that names one (an
    end event, say), else unchanged."""
    for task in live:
        stage = properties_of(task.task_spec).get("stage")
        if stage and (task.task_spec.manual or task.has_state(TaskState.WAITING)):
            return stage
    for task in reversed(completed):
        stage = properties_of(task.task_spec).get("stage")
        if stage:
            return stage
    return current
