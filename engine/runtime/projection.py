"""The projections of an instance's state that people and the scheduler query: its open
human tasks with their candidates, its pending timers and its message subscriptions.

After every step they are brought in line with the live tasks of the workflow by one
algorithm: what the store holds is compared with what the workflow has open or waiting;
rows of ended work are closed, rows of new work are added, and rows of work that came back
(a retry, a migration) are reopened. Every status a row gets here is written with its audit
entry (task_opened, task_cancelled, task_reopened; timer_scheduled, timer_cancelled,
timer_fired), which the step writes in its own flush.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, delete, inspect, or_, select, update
from sqlalchemy.orm import Session

from ..clock import as_utc
from ..deadlines import current_settings, due_at
from ..errors import InvalidData, NotFound, ScriptError
from ..org import Org
from ..scripting import parse_instant, timer_due
from ..store.db import fresh
from ..store import (HumanTask, Instance, MessageSubscription, TaskCandidate,
                     TaskStatus, Timer, TimerStatus, appends)
from ..store.models import OpenTaskRow
from .steps import element_of, properties_of

BATCH = 500      # ids per statement: a reporting cycle opens and waits on thousands

# the statements on an instance's rows of some tasks (parameters ``of_instance`` and
# ``of_tasks``) that a step known to start from the events waiting makes: built once
# (building one cost more than running it)
TIMERS, SUBSCRIPTIONS = Timer.__table__, MessageSubscription.__table__
_PENDING_OF_TASKS = (TIMERS.c.instance_id == bindparam("of_instance"),
                     TIMERS.c.status == TimerStatus.PENDING,
                     TIMERS.c.task_id.in_(bindparam("of_tasks", expanding=True)))
_END_TIMERS = update(TIMERS).where(*_PENDING_OF_TASKS).values(
    status=bindparam("new_status", type_=TIMERS.c.status.type))
_FIRE_TIMERS = update(TIMERS).where(*_PENDING_OF_TASKS).values(
    status=TimerStatus.FIRED, fired_at=bindparam("fired_at", type_=TIMERS.c.fired_at.type))
_MOVE_TIMERS = update(TIMERS).where(
    TIMERS.c.instance_id == bindparam("of_instance"),
    TIMERS.c.task_id.in_(bindparam("of_tasks", expanding=True))).values(
    due_at=bindparam("new_due_at", type_=TIMERS.c.due_at.type), attempts=0)
TASKS = HumanTask.__table__
_CANCEL_TASKS = update(TASKS).where(
    TASKS.c.instance_id == bindparam("of_instance"), TASKS.c.status == TaskStatus.OPEN,
    TASKS.c.id.in_(bindparam("of_tasks", expanding=True))).values(
    status=TaskStatus.CANCELLED,
    completed_at=bindparam("completed_at", type_=TASKS.c.completed_at.type))
_UNSUBSCRIBE = delete(SUBSCRIPTIONS).where(
    SUBSCRIPTIONS.c.instance_id == bindparam("of_instance"),
    SUBSCRIPTIONS.c.task_id.in_(bindparam("of_tasks", expanding=True)))


@dataclass
class WaitingEvents:
    """The waiting timers (task id -> (task, definition, due)) and message catches (task
    id -> (task, definition)) among an instance's live tasks."""
    timers: dict
    messages: dict

    @classmethod
    def of(cls, live) -> WaitingEvents:
        timers, messages = {}, {}
        for task in live:
            if not task.has_state(TaskState.WAITING):
                continue
            definition = getattr(task.task_spec, "event_definition", None)
            if isinstance(definition, TimerEventDefinition):
                due = timer_due(task)
                if due is not None:
                    timers[str(task.id)] = (task, definition, due)
            elif isinstance(definition, MessageEventDefinition):
                messages[str(task.id)] = (task, definition)
        return cls(timers, messages)


class EventRows:
    """An instance's timer and subscription rows as the projection compares them: the
    pending timers' due times and elements and the subscribed tasks, by task id.

    Either read from the store (:meth:`read`), or known without reading from the events
    that waited before a step (:meth:`waited_before`): every step leaves the pending rows
    equal to the events waiting, so a step that started from a known state need not read
    them. Read rows are changed as objects; known ones by statements on their task ids."""

    def __init__(self, session: Session, instance_id: str, pending: dict[str, datetime],
                 elements: dict[str, str | None], subscribed: set[str],
                 timer_rows: list[Timer] | None = None,
                 subscription_rows: list[MessageSubscription] | None = None):
        self.session, self.instance_id = session, instance_id
        self.pending, self.elements, self.subscribed = pending, elements, subscribed
        rows = timer_rows or []
        self._pending_rows = {r.task_id: r for r in rows if r.status == TimerStatus.PENDING}
        # fired, cancelled or failed rows (one per task), which a retry or a migration may
        # reopen
        self._ended_rows = {r.task_id: r for r in rows if r.status != TimerStatus.PENDING}
        self._subscription_rows = {r.task_id: r for r in subscription_rows or []}
        self._read = timer_rows is not None

    @classmethod
    def read(cls, session: Session, instance_id: str,
             timer_rows: list[Timer] | None = None,
             subscriptions: list[MessageSubscription] | None = None) -> EventRows:
        """``timer_rows`` and ``subscriptions``: every timer row and every subscription of
        the instance, when the caller has just read them."""
        with session.no_autoflush:      # pending audit rows cannot change what is found
            if timer_rows is None:
                timer_rows = list(session.scalars(select(Timer).where(
                    Timer.instance_id == instance_id)))
            if subscriptions is None:
                subscriptions = list(session.scalars(select(MessageSubscription).where(
                    MessageSubscription.instance_id == instance_id)))
        pending = [r for r in timer_rows if r.status == TimerStatus.PENDING]
        return cls(session, instance_id, {str(r.task_id): as_utc(r.due_at) for r in pending},
                   {str(r.task_id): r.element_id for r in pending},
                   {r.task_id for r in subscriptions}, timer_rows, subscriptions)

    @classmethod
    def waited_before(cls, session: Session, instance_id: str,
                      waited: WaitingEvents) -> EventRows:
        return cls(session, instance_id,
                   {task_id: entry[2] for task_id, entry in waited.timers.items()},
                   {task_id: element_of(entry[0]) for task_id, entry in waited.timers.items()},
                   set(waited.messages))

    def _statement(self, statement, task_ids: list[str], **params) -> None:
        """One of the statements below on the instance's rows of ``task_ids``, in batches;
        on rows no pending object touches: no autoflush before them."""
        connection = self.session.connection()
        params["of_instance"] = self.instance_id
        for first in range(0, len(task_ids), BATCH):
            connection.execute(statement, {**params,
                                           "of_tasks": task_ids[first:first + BATCH]})

    def end_timers(self, task_ids: list[str], status: TimerStatus, now: datetime) -> None:
        """Pending timers that wait no more: fired (at ``now``) or cancelled."""
        fired = status == TimerStatus.FIRED
        if self._read:
            for task_id in task_ids:
                row = self._pending_rows[task_id]
                row.status = status
                if fired:
                    row.fired_at = now
        elif task_ids:
            if fired:
                self._statement(_FIRE_TIMERS, task_ids, fired_at=now)
            else:
                self._statement(_END_TIMERS, task_ids, new_status=status)

    def move_timer(self, task_id: str, due: datetime) -> None:
        if self._read:
            row = self._pending_rows[task_id]
            row.due_at, row.attempts = due, 0
        else:
            self._statement(_MOVE_TIMERS, [task_id], new_due_at=due)

    def reopen_timer(self, task_id: str, due: datetime) -> TimerStatus | None:
        """Wait again on an ended timer row of the task; its status before, or None when it
        has none."""
        row = self._ended_rows.get(task_id)
        if row is None:
            return None
        was = row.status
        row.status, row.due_at, row.attempts = TimerStatus.PENDING, due, 0
        return was

    def unsubscribe(self, task_ids: list[str]) -> None:
        if self._read:
            for task_id in task_ids:
                self.session.delete(self._subscription_rows[task_id])
        elif task_ids:
            self._statement(_UNSUBSCRIBE, task_ids)


@dataclass
class _Audit:
    """The changes of status one step's projection made, recorded in the step's own audit
    entry (``details["changes"]``): for tasks, action → task id → element; for timers,
    action → the elements whose timers changed (a timer row is found by its element; its
    due time is on the row). One entry per step, not one per row: a proposal's
    steps open and close dozens of tasks and timers, and each entry of the chain carries an
    instance id and a hash, which would make the audit the largest part of a case."""
    changes: dict[str, Any]

    def add(self, action: str, element_id: str | None, details: dict) -> None:
        if action.startswith("timer_"):
            extra = {k: v for k, v in details.items() if k not in ("task_id", "due_at")}
            self.changes.setdefault(action, []).append(
                {"element": element_id, **extra} if extra else element_id)
            return
        task_id = details.pop("task_id")
        self.changes.setdefault(action, {})[task_id] = (
            {"element": element_id, **details} if details else element_id)


class Projection:
    """Brings an instance's projections in line with its workflow after a step."""

    def __init__(self, org: Org, script_engine):
        self.org = org
        self.script_engine = script_engine

    def refresh(self, session: Session, instance: Instance, live: list, now: datetime, *,
                changes: dict[str, Any], finished: bool,
                task_rows: list[HumanTask | OpenTaskRow] | None = None,
                events: EventRows | None = None, fired: frozenset[str] = frozenset(),
                waiting: WaitingEvents | None = None
                ) -> list[tuple[HumanTask, list[str], Any]]:
        """Refresh the projections from the live (ready, waiting, started) tasks; returns
        the human tasks it opened, with candidates and their Spiff task, and records the
        statuses it changed in ``changes`` (see :class:`_Audit`).

        ``task_rows``: the rows of the tasks open before a completion (the completed task's
        an object, the others :class:`OpenTaskRow` s or objects), and ``events``: its
        event rows as they were; a completion never reopens a task the way a retry or a
        migration may, so then none of these rows is read again. ``fired``: the task ids of
        the timers the step fired (the others that wait no more were cancelled)."""
        audit = _Audit(changes)
        if inspect(instance).pending:
            # a new instance, not written yet, has no rows to read (a reporting cycle's
            # opening looked for earlier rows of its thousands of tasks, 500 at a time)
            task_rows = [] if task_rows is None else task_rows
            events = EventRows.read(session, instance.id, [], []) if events is None else events
        created = self._tasks(session, instance, live, now, finished, task_rows, audit)
        if events is None:
            events = EventRows.read(session, instance.id)
        if waiting is None:
            waiting = WaitingEvents.of([] if finished else live)
        self._events(session, instance, events, waiting, now, fired, audit)
        return created

    def _tasks(self, session: Session, instance: Instance, live: list, now: datetime,
               finished: bool, task_rows: list[HumanTask | OpenTaskRow] | None,
               audit: _Audit) -> list:
        created = []
        ready = {} if finished else {
            str(t.id): t for t in live if t.task_spec.manual and t.has_state(TaskState.READY)}
        # read without autoflush: what is pending (the instance row, the task completed,
        # audit entries, rows added here) cannot change what these reads find
        with session.no_autoflush:
            # the open rows, with the rows of ready tasks that were closed before (reopened
            # by retry or migration)
            ready_ids = [] if task_rows is not None else list(ready)
            rows = task_rows if task_rows is not None else list(session.scalars(
                select(HumanTask).where(HumanTask.instance_id == instance.id, or_(
                    HumanTask.status == TaskStatus.OPEN,
                    HumanTask.id.in_(ready_ids[:BATCH])))))
            for first in range(BATCH, len(ready_ids), BATCH):
                rows += session.scalars(select(HumanTask).where(
                    HumanTask.instance_id == instance.id,
                    HumanTask.id.in_(ready_ids[first:first + BATCH]))).all()
        open_rows = list({r.id: r for r in rows if r.status == TaskStatus.OPEN}.values())
        earlier = {r.id: r for r in rows
                   if r.status != TaskStatus.OPEN and isinstance(r, HumanTask)}
        known = {r.id for r in open_rows}
        cancelled = []                  # of rows read without their objects (OpenTaskRow)
        for row in open_rows:
            if row.id not in ready:
                if isinstance(row, OpenTaskRow):
                    cancelled.append(row.id)
                else:
                    row.status = TaskStatus.CANCELLED
                    row.completed_at = now
                audit.add("task_cancelled", row.element_id, {"task_id": row.id})
        for first in range(0, len(cancelled), BATCH):
            session.connection().execute(_CANCEL_TASKS, {
                "of_instance": instance.id, "of_tasks": cancelled[first:first + BATCH],
                "completed_at": now})
        for task_id in [task_id for task_id in ready if task_id not in known]:
            task = ready[task_id]
            existing = earlier.get(task_id)
            if existing is not None:     # a task reopened by retry or migration
                audit.add("task_reopened", existing.element_id,
                          {"task_id": task_id, "was": str(existing.status)})
                existing.status, existing.completed_at, existing.completed_by = (
                    TaskStatus.OPEN, None, None)
                continue
            spec = task.task_spec
            properties = properties_of(spec)
            lane = getattr(spec, "lane", None)
            candidates, role_unit, positions = self._candidates(
                instance, lane, task.data, properties.get("assigneeFrom"))
            candidates = list(dict.fromkeys(candidates))
            values = appends.add(
                session, HumanTask.__table__, id=task_id, instance_id=instance.id,
                element_id=element_of(task), name=getattr(spec, "bpmn_name", None),
                lane=lane, role=lane, unit_id=role_unit, positions=positions,
                form=properties.get("form"),
                status=TaskStatus.OPEN, assignee=None, created_at=now,
                due_at=self._due(task, properties, now))
            audit.add("task_opened", values["element_id"], {"task_id": task_id})
            # the row as an object for the listeners (notifications) to read, not to write
            created.append((fresh(HumanTask, values), candidates, task))
            for username in candidates:
                appends.add(session, TaskCandidate.__table__, task_id=task_id,
                            instance_id=instance.id, username=username, task_open=True)
        return created

    @staticmethod
    def _events(session: Session, instance: Instance, known: EventRows,
                waiting: WaitingEvents, now: datetime, fired: frozenset[str],
                audit: _Audit) -> None:
        gone = [t for t in known.pending if t not in waiting.timers]
        for status, action, task_ids in (
                (TimerStatus.FIRED, "timer_fired", [t for t in gone if t in fired]),
                (TimerStatus.CANCELLED, "timer_cancelled", [t for t in gone if t not in fired])):
            known.end_timers(task_ids, status, now)
            for task_id in task_ids:
                audit.add(action, known.elements[task_id], {"task_id": task_id})
        for task_id, (task, definition, due) in waiting.timers.items():
            before = known.pending.get(task_id)
            if before is not None:
                if before != due:
                    known.move_timer(task_id, due)
                if task_id in fired:     # a cycle: it fired and waits for its next time
                    audit.add("timer_fired", element_of(task),
                              {"task_id": task_id, "next_due_at": as_utc(due).isoformat()})
                continue
            scheduled = {"task_id": task_id, "due_at": as_utc(due).isoformat()}
            was = known.reopen_timer(task_id, due)
            if was is not None:          # by a retry or a migration
                audit.add("timer_scheduled", element_of(task), {**scheduled, "was": str(was)})
                continue
            appends.add(session, Timer.__table__, instance_id=instance.id,
                        definition_id=instance.definition_id, task_id=task_id,
                        element_id=element_of(task), kind=type(definition).__name__,
                        due_at=due, status=TimerStatus.PENDING, attempts=0)
            audit.add("timer_scheduled", element_of(task), scheduled)
        known.unsubscribe([t for t in known.subscribed if t not in waiting.messages])
        for task_id, (task, definition) in waiting.messages.items():
            if task_id not in known.subscribed:
                appends.add(session, MessageSubscription.__table__, instance_id=instance.id,
                            task_id=task_id, element_id=element_of(task),
                            message_name=definition.name)

    def _due(self, task, properties: dict, now: datetime) -> datetime | None:
        """A task's due time: ``dueInWorkingDays`` (a number or a deadline name) or
        ``dueDate`` (an expression over the task data giving a date and time)."""
        if properties.get("dueInWorkingDays"):       # stored in UTC, as every time is
            return parse_instant(due_at(properties["dueInWorkingDays"], now))
        if properties.get("dueDate"):
            try:
                value = self.script_engine.environment.evaluate(properties["dueDate"],
                                                                task.data)
                return parse_instant(value) if value else None
            except (ScriptError, ValueError):
                return None
        return None

    def _candidates(self, instance: Instance, lane: str | None, data,
                    assignee_from: str | None) -> tuple[list, str | None, str]:
        """The candidates, the unit the lane's role found them in and the positions (comma
        separated) they hold there for it ("": named personally, or nobody)."""
        if not lane:
            return [], None, ""
        try:
            resolution = self.org.resolve(lane, proposer=instance.started_by,
                                          unit_id=data.get("proposer_unit") or instance.unit_id,
                                          settings=current_settings(), data=data,
                                          assignee_from=assignee_from)
        except (InvalidData, NotFound):
            return [], None, ""      # nobody can be named: administrators see and assign it
        return (resolution.usernames, resolution.unit_id,
                ",".join(resolution.positions)[:255])
