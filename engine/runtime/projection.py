"""The projections of an instance's state that people and the scheduler query: its open
human tasks with their candidates, its pending timers and its message subscriptions.

After every step they are brought in line with the live tasks of the workflow by one
algorithm: what the store holds is compared with what the workflow has open or waiting;
rows of ended work are closed, rows of new work are added, and rows of work that came back
(a retry, a migration) are reopened.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ..clock import as_utc
from ..deadlines import current_settings, due_at
from ..errors import InvalidData, NotFound, ScriptError
from ..org import Org
from ..scripting import parse_instant, timer_due
from ..store import HumanTask, Instance, MessageSubscription, TaskCandidate, Timer, appends
from .steps import element_of, properties_of

BATCH = 500      # ids per statement: a reporting cycle opens and waits on thousands


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
    pending timers' due times and the subscribed tasks, by task id.

    Either read from the store (:meth:`read`), or known without reading from the events
    that waited before a step (:meth:`waited_before`): every step leaves the pending rows
    equal to the events waiting, so a step that started from a known state need not read
    them. Read rows are changed as objects; known ones by statements on their task ids."""

    def __init__(self, session: Session, instance_id: str, pending: dict[str, datetime],
                 subscribed: set[str], timer_rows: list[Timer] | None = None,
                 subscription_rows: list[MessageSubscription] | None = None):
        self.session, self.instance_id = session, instance_id
        self.pending, self.subscribed = pending, subscribed
        rows = timer_rows or []
        self._pending_rows = {r.task_id: r for r in rows if r.status == "pending"}
        # fired or cancelled rows (one per task), which a retry or a migration may reopen
        self._ended_rows = {r.task_id: r for r in rows if r.status != "pending"}
        self._subscription_rows = {r.task_id: r for r in subscription_rows or []}
        self._read = timer_rows is not None

    @classmethod
    def read(cls, session: Session, instance_id: str,
             timer_rows: list[Timer] | None = None) -> EventRows:
        """``timer_rows``: every timer row of the instance, when the caller has just read
        them."""
        with session.no_autoflush:      # pending audit rows cannot change what is found
            if timer_rows is None:
                timer_rows = list(session.scalars(select(Timer).where(
                    Timer.instance_id == instance_id)))
            subscriptions = list(session.scalars(select(MessageSubscription).where(
                MessageSubscription.instance_id == instance_id)))
        return cls(session, instance_id,
                   {str(r.task_id): as_utc(r.due_at) for r in timer_rows
                    if r.status == "pending"},
                   {r.task_id for r in subscriptions}, timer_rows, subscriptions)

    @classmethod
    def waited_before(cls, session: Session, instance_id: str,
                      waited: WaitingEvents) -> EventRows:
        return cls(session, instance_id,
                   {task_id: entry[2] for task_id, entry in waited.timers.items()},
                   set(waited.messages))

    def _statement(self, statement, column, task_ids: list[str]) -> None:
        # statements on rows no pending object touches: no autoflush before them
        connection = self.session.connection()
        for first in range(0, len(task_ids), BATCH):
            connection.execute(statement.where(column.in_(task_ids[first:first + BATCH])))

    def cancel_timers(self, task_ids: list[str]) -> None:
        if self._read:
            for task_id in task_ids:
                self._pending_rows[task_id].status = "cancelled"
        elif task_ids:
            self._statement(update(Timer.__table__).where(
                Timer.instance_id == self.instance_id, Timer.status == "pending")
                .values(status="cancelled"), Timer.task_id, task_ids)

    def move_timer(self, task_id: str, due: datetime) -> None:
        if self._read:
            row = self._pending_rows[task_id]
            row.due_at, row.attempts = due, 0
        else:
            self._statement(update(Timer.__table__).where(
                Timer.instance_id == self.instance_id).values(due_at=due, attempts=0),
                Timer.task_id, [task_id])

    def reopen_timer(self, task_id: str, due: datetime) -> bool:
        """Wait again on an ended timer row of the task; False when it has none."""
        row = self._ended_rows.get(task_id)
        if row is None:
            return False
        row.status, row.due_at, row.attempts = "pending", due, 0
        return True

    def unsubscribe(self, task_ids: list[str]) -> None:
        if self._read:
            for task_id in task_ids:
                self.session.delete(self._subscription_rows[task_id])
        elif task_ids:
            self._statement(delete(MessageSubscription.__table__).where(
                MessageSubscription.instance_id == self.instance_id),
                MessageSubscription.task_id, task_ids)


class Projection:
    """Brings an instance's projections in line with its workflow after a step."""

    def __init__(self, org: Org, script_engine):
        self.org = org
        self.script_engine = script_engine

    def refresh(self, session: Session, instance: Instance, live: list, now: datetime, *,
                finished: bool, task_rows: list[HumanTask] | None = None,
                events: EventRows | None = None) -> list[tuple[HumanTask, list[str], Any]]:
        """Refresh the projections from the live (ready, waiting, started) tasks; returns
        the human tasks it opened, with candidates and their Spiff task.

        ``task_rows``: the rows of the tasks open before a completion, and ``events``: its
        event rows as they were; a completion never reopens a task the way a retry or a
        migration may, so then none of these rows is read again."""
        created = self._tasks(session, instance, live, now, finished, task_rows)
        if events is None:
            events = EventRows.read(session, instance.id)
        self._events(session, instance, events, WaitingEvents.of([] if finished else live))
        return created

    def _tasks(self, session: Session, instance: Instance, live: list, now: datetime,
               finished: bool, task_rows: list[HumanTask] | None) -> list:
        created = []
        ready = {} if finished else {
            str(t.id): t for t in live if t.task_spec.manual and t.has_state(TaskState.READY)}
        # read without autoflush: the instance and the task rows changed before were
        # flushed by the step, and what is pending (audit entries, rows added here) cannot
        # change what these reads find
        with session.no_autoflush:
            # the open rows, with the rows of ready tasks that were closed before (reopened
            # by retry or migration)
            ready_ids = [] if task_rows is not None else list(ready)
            rows = task_rows if task_rows is not None else list(session.scalars(
                select(HumanTask).where(HumanTask.instance_id == instance.id, or_(
                    HumanTask.status == "open", HumanTask.id.in_(ready_ids[:BATCH])))))
            for first in range(BATCH, len(ready_ids), BATCH):
                rows += session.scalars(select(HumanTask).where(
                    HumanTask.instance_id == instance.id,
                    HumanTask.id.in_(ready_ids[first:first + BATCH]))).all()
        open_rows = list({r.id: r for r in rows if r.status == "open"}.values())
        earlier = {r.id: r for r in rows if r.status != "open"}
        known = {r.id for r in open_rows}
        for row in open_rows:
            if row.id not in ready:
                row.status = "cancelled"
                row.completed_at = now
        for task_id in [task_id for task_id in ready if task_id not in known]:
            task = ready[task_id]
            existing = earlier.get(task_id)
            if existing is not None:     # a task reopened by retry or migration
                existing.status, existing.completed_at, existing.completed_by = "open", None, None
                continue
            spec = task.task_spec
            properties = properties_of(spec)
            lane = getattr(spec, "lane", None)
            candidates, role_unit = self._candidates(instance, lane, task.data,
                                                     properties.get("assigneeFrom"))
            candidates = list(dict.fromkeys(candidates))
            values = appends.add(
                session, HumanTask.__table__, id=task_id, instance_id=instance.id,
                element_id=element_of(task), name=getattr(spec, "bpmn_name", None),
                lane=lane, role=lane, unit_id=role_unit, form=properties.get("form"),
                status="open", assignee=None, created_at=now,
                due_at=self._due(task, properties, now))
            created.append((HumanTask(**values), candidates, task))
            for username in candidates:
                appends.add(session, TaskCandidate.__table__, task_id=task_id,
                            instance_id=instance.id, username=username, task_open=True)
        return created

    @staticmethod
    def _events(session: Session, instance: Instance, known: EventRows,
                waiting: WaitingEvents) -> None:
        known.cancel_timers([t for t in known.pending if t not in waiting.timers])
        for task_id, (task, definition, due) in waiting.timers.items():
            before = known.pending.get(task_id)
            if before is not None:
                if before != due:
                    known.move_timer(task_id, due)
            elif not known.reopen_timer(task_id, due):
                appends.add(session, Timer.__table__, instance_id=instance.id,
                            definition_id=instance.definition_id, task_id=task_id,
                            element_id=element_of(task), kind=type(definition).__name__,
                            due_at=due, status="pending", attempts=0)
        known.unsubscribe([t for t in known.subscribed if t not in waiting.messages])
        for task_id, (task, definition) in waiting.messages.items():
            if task_id not in known.subscribed:
                appends.add(session, MessageSubscription.__table__, instance_id=instance.id,
                            task_id=task_id, element_id=element_of(task),
                            message_name=definition.name)

    def _due(self, task, properties: dict, now: datetime) -> datetime | None:
        """A task's due time: ``dueInWorkingDays`` (a number or a deadline name) or
        ``dueDate`` (an expression over the task data giving a date and time)."""
        if properties.get("dueInWorkingDays"):
            return due_at(properties["dueInWorkingDays"], now)
        if properties.get("dueDate"):
            try:
                value = self.script_engine.environment.evaluate(properties["dueDate"],
                                                                task.data)
                return parse_instant(value) if value else None
            except (ScriptError, ValueError):
                return None
        return None

    def _candidates(self, instance: Instance, lane: str | None, data,
                    assignee_from: str | None) -> tuple[list, str | None]:
        if not lane:
            return [], None
        try:
            resolution = self.org.resolve(lane, proposer=instance.started_by,
                                          unit_id=data.get("proposer_unit") or instance.unit_id,
                                          settings=current_settings(), data=data,
                                          assignee_from=assignee_from)
        except (InvalidData, NotFound):
            return [], None          # nobody can be named: administrators see and assign it
        return resolution.usernames, resolution.unit_id
