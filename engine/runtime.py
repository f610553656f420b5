"""Running instances: start, complete tasks, messages, timers, suspend/resume/terminate,
incidents and retry, migration to a newer definition version.

Every operation is one unit of work: load the instance (spec from the repository cache, state
from the store), let SpiffWorkflow run, then save the state with an optimistic version check
and refresh the projections and the audit log in the same transaction. A conflicting writer
gets :class:`~engine.errors.Conflict`; nothing is written when anything fails.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .audit import lock_instance
from .clock import Clock, as_utc
from .deadlines import due_at, variant_settings
from .errors import (Conflict, InvalidData, InvalidState, MigrationRefused,
                     NotFound, ScriptError)
from . import policy
from .forms import form_errors
from .listeners import DecisionRecorder, Notifier, Step, StepListener
from .logs import note
from .org import Org
from .repository import Repository
from .scripting import EngineScriptEngine, data_size, one_step, parse_instant, timer_due
from .serialization import STATE_FORMAT, Codec
from .store import (AuditEvent, Database, Definition, HumanTask, Instance,
                    MessageSubscription, TaskCandidate, Timer, appends)
from .workflow_cache import WorkflowCache

RUNNING, SUSPENDED, INCIDENT = "running", "suspended", "incident"
COMPLETED, TERMINATED = "completed", "terminated"
ACTIVE_STATUSES = (RUNNING, SUSPENDED, INCIDENT)
_properties = policy.element_properties


@dataclass
class Incident:
    message: str
    element_id: str | None


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


def _element_id(task) -> str | None:
    spec = task.task_spec
    return getattr(spec, "bpmn_id", None) or spec.name


def _incident_from(exc: Exception) -> Incident:
    task = getattr(exc, "task", None)
    element = _element_id(task) if task is not None else None
    # SpiffWorkflow keeps the reason an expression failed only as the exception's context
    inner = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    message = str(exc.args[0]) if exc.args else str(exc)
    if inner is not None and str(inner) not in message:
        message = f"{message}: {inner}"
    return Incident(message, element)


def _clean_data(data: Any, max_bytes: int) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidData("data must be a JSON object")
    bad = [k for k in data if not isinstance(k, str) or k.startswith("_")]
    if bad:
        raise InvalidData(f"data field names must not start with '_': {bad[:5]}")
    try:
        size = data_size(data, max_bytes)
    except ScriptError as exc:
        raise InvalidData(str(exc)) from None
    if size > max_bytes:
        raise InvalidData(f"data is larger than the limit of {max_bytes:,} bytes")
    return data


class Runtime:
    def __init__(self, db: Database, repository: Repository, codec: Codec, clock: Clock,
                 script_engine: EngineScriptEngine, max_data_bytes: int, org: Org,
                 notifications=None, listeners: list[StepListener] | None = None):
        self.db = db
        self.org = org
        self.notifications = notifications   # told of tasks, deadlines and decisions
        self.repository = repository
        self.codec = codec
        self.clock = clock
        self.script_engine = script_engine
        self.max_data_bytes = max_data_bytes
        self._workflows = WorkflowCache()
        # what the definitions declare around each step: decisions, then notifications
        self.listeners: list[StepListener] = [DecisionRecorder()]
        if notifications is not None:
            self.listeners.append(Notifier(notifications, org, self.evaluate_declared))
        self.listeners += listeners or []

    def evaluate_declared(self, expression: str, data: dict):
        """A condition a definition declares (a notification's ``when``, a form rule) over
        ``data``, in the sandbox; names absent from the data read as None."""
        environment = self.script_engine.environment
        known = environment.sandbox.builtins
        context = dict(data)
        for name in policy.free_names(expression):
            if name not in context and name not in known:
                context[name] = None
        return environment.evaluate(expression, context)

    def _message(self, message: str, data: dict) -> str:
        """A declared message with its ``{{ expression }}`` placeholders filled in."""
        def value(match):
            try:
                return str(self.evaluate_declared(match.group(1).strip(), data))
            except ScriptError:
                return "…"
        return policy.PLACEHOLDER.sub(value, message)

    # --- units of work -----------------------------------------------------------------
    @contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        try:
            with self.db.transaction() as session:
                yield session
        except StaleDataError:
            raise Conflict("the instance was changed by someone else at the same time; "
                           "reload and try again") from None
        except IntegrityError as exc:
            raise Conflict(f"a concurrent change collided with this one: {exc.orig}") from None
        except OperationalError as exc:
            text = str(exc.orig).lower()
            if "deadlock" in text or "could not serialize" in text or "locked" in text:
                raise Conflict("the instance is busy with another change; try again") from None
            raise

    def _load(self, session: Session, instance_id: str,
              cached: bool = False) -> tuple[Instance, BpmnWorkflow]:
        instance = session.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"instance {instance_id} does not exist", instance_id=instance_id)
        if cached:          # only for a unit of work that holds the instance's row lock
            workflow = self._workflows.take(instance_id, instance.version,
                                            instance.definition_id)
            if workflow is not None:
                return instance, workflow
        definition = self.repository.get(instance.definition_id, session)
        spec, subprocess_specs = self.repository.specs(definition)
        workflow = self.codec.load_state(instance.state, spec, subprocess_specs,
                                         self.script_engine)
        return instance, workflow

    @contextmanager
    def _instance(self, instance_id: str | None, *, task_id: str | None = None
                  ) -> Iterator[tuple[Session, Instance, BpmnWorkflow]]:
        """A unit of work on one instance (``task_id``: the instance of that task), with its
        variant's settings (calendar, deadlines) in force for every script and timer."""
        with self._unit_of_work() as session:
            # the instance row first, before any of its other rows (see lock_instance_chain);
            # held here, as the session keeps loaded rows only while they are referenced
            locked = lock_instance(session, instance_id, task_id=task_id)
            if instance_id is None:
                if locked is None:       # said as for a task the caller may not see
                    raise NotFound(f"task {task_id} does not exist")
                instance_id = locked.id
            note(instance_id=instance_id)          # on the log lines of the work in hand
            instance, workflow = self._load(session, instance_id, cached=True)
            assert locked is None or locked is instance
            loaded_version = instance.version
            definition = self.repository.get(instance.definition_id, session)
            with variant_settings(self.repository.settings(definition)):
                yield session, instance, workflow
        # committed: keep the workflow for the next step when this one saved it (a unit of
        # work that saved nothing may have touched it without writing; it is dropped)
        if instance.version != loaded_version:
            self._workflows.put(instance_id, instance.version, instance.definition_id,
                                workflow)

    def _advance(self, workflow: BpmnWorkflow, completed: list) -> Incident | None:
        """Run engine steps; a failing script or expression becomes an incident."""
        def did_complete(task):
            if getattr(task.task_spec, "bpmn_id", None):
                completed.append(task)
        try:
            with one_step():
                workflow.refresh_timers()
                workflow.do_engine_steps(did_complete_task=did_complete)
        except (WorkflowException, ScriptError) as exc:
            return _incident_from(exc)
        return None

    def _save(self, session: Session, instance: Instance, workflow: BpmnWorkflow, *,
              actor: str, action: str, element_id: str | None = None,
              details: dict | None = None, incident: Incident | None = None,
              completed: list = (), status: str | None = None,
              timer_rows: list[Timer] | None = None,
              task_rows: list[HumanTask] | None = None,
              waited: WaitingEvents | None = None, user_task=None,
              task_row: HumanTask | None = None, submitted: dict | None = None) -> None:
        """Save the state and refresh projections, audit and the step's listeners.
        ``timer_rows``: every timer row of the instance, when the caller has just read
        them; ``task_rows`` and ``waited``: its rows of the tasks open, and its events
        waiting, before a task was completed (see :meth:`_project`); ``user_task``,
        ``task_row`` and ``submitted``: the task a person completed, its row and data."""
        now = self.clock.now()
        instance.state = self.codec.dump_state(workflow)
        instance.state_format = STATE_FORMAT
        instance.updated_at = now
        if incident is not None:
            instance.status = INCIDENT
            instance.incident_message = incident.message
            instance.incident_element = incident.element_id
            instance.incident_at = now
        elif status is not None:
            instance.status = status
        elif workflow.is_completed() and instance.status in ACTIVE_STATUSES:
            instance.status = COMPLETED
        if instance.status in (COMPLETED, TERMINATED):
            instance.ended_at = instance.ended_at or now
        previous_stage = instance.stage
        # one walk of the task tree for the stage and the projections
        live = workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED)
        instance.stage = _stage(live, completed, instance.stage)
        events = [AuditEvent(instance_id=instance.id, definition_id=instance.definition_id,
                             at=now, actor=actor, action=action, element_id=element_id,
                             details=details)]
        events += [AuditEvent(instance_id=instance.id, definition_id=instance.definition_id,
                              at=now, actor=actor, action="element_completed",
                              element_id=_element_id(t),
                              details={"type": type(t.task_spec).__name__})
                   for t in completed if not t.task_spec.manual]
        if incident is not None:
            events.append(AuditEvent(instance_id=instance.id,
                                     definition_id=instance.definition_id, at=now,
                                     actor=actor, action="incident",
                                     element_id=incident.element_id,
                                     details={"message": incident.message}))
        step = Step(session, instance, self.repository.get(instance.definition_id, session),
                    actor, now, previous_stage, completed, user_task, task_row,
                    submitted or {})
        for listener in self.listeners:
            listener.step_saving(step)
        session.add_all(events + step.audit)
        # the version check happens here, before any projection is written; the audit
        # entries' chain head goes into the same UPDATE of the instance row
        session.flush()
        step.opened = self._project(session, instance, live, now, timer_rows, task_rows,
                                    waited)
        for listener in self.listeners:
            listener.step_saved(step)

    # --- projections -------------------------------------------------------------------
    def _project(self, session: Session, instance: Instance, live: list, now: datetime,
                 timer_rows: list[Timer] | None = None,
                 task_rows: list[HumanTask] | None = None,
                 waited: WaitingEvents | None = None) -> list[tuple[HumanTask, list[str], Any]]:
        """Refresh the projections from the live (ready, waiting, started) tasks; returns
        the human tasks it opened, with candidates and their Spiff task.

        A completion passes the rows of the tasks open before it (``task_rows``) and the
        events that were waiting (``waited``): the tasks and events this step readied are
        new ones, as a completion never reopens a task the way a retry or a migration may,
        and the pending timer and subscription rows are those of the events that waited,
        as every step keeps them so. Then none of these rows is read again."""
        created = []
        finished = instance.status in (COMPLETED, TERMINATED)
        ready = {} if finished else {
            str(t.id): t for t in live if t.task_spec.manual and t.has_state(TaskState.READY)}
        # The projections' rows are read first and without autoflush: the instance and the
        # task rows changed before were flushed by _save, and what is pending (audit
        # entries, rows added here) cannot change what these reads find.
        with session.no_autoflush:
            # the open rows, with the rows of ready tasks that were closed before (reopened
            # by retry or migration); a reporting cycle readies thousands: 500 ids a query
            ready_ids = [] if task_rows is not None else list(ready)
            rows = task_rows if task_rows is not None else session.scalars(
                select(HumanTask).where(HumanTask.instance_id == instance.id, or_(
                    HumanTask.status == "open", HumanTask.id.in_(ready_ids[:500])))).all()
            for first in range(500, len(ready_ids), 500):
                rows += session.scalars(select(HumanTask).where(
                    HumanTask.instance_id == instance.id,
                    HumanTask.id.in_(ready_ids[first:first + 500]))).all()
            open_rows = list({r.id: r for r in rows if r.status == "open"}.values())
            earlier = {r.id: r for r in rows if r.status != "open"}
            if timer_rows is None and waited is None:
                timer_rows = session.scalars(select(Timer).where(
                    Timer.instance_id == instance.id)).all()
            subscription_rows = [] if waited is not None else session.scalars(
                select(MessageSubscription).where(
                    MessageSubscription.instance_id == instance.id)).all()
        known = {r.id for r in open_rows}
        new_ids = [task_id for task_id in ready if task_id not in known]
        for row in open_rows:
            if row.id not in ready:
                row.status = "cancelled"
                row.completed_at = now
        for task_id in new_ids:
            task = ready[task_id]
            existing = earlier.get(task_id)
            if existing is not None:     # a task reopened by retry or migration
                existing.status, existing.completed_at, existing.completed_by = "open", None, None
                continue
            spec = task.task_spec
            properties = _properties(spec)
            lane = getattr(spec, "lane", None)
            candidates, role_unit = self._candidates(instance, lane, task.data,
                                                     properties.get("assigneeFrom"))
            candidates = list(dict.fromkeys(candidates))
            values = appends.add(
                session, HumanTask.__table__, id=task_id, instance_id=instance.id,
                element_id=_element_id(task), name=getattr(spec, "bpmn_name", None),
                lane=lane, role=lane, unit_id=role_unit, form=properties.get("form"),
                status="open", assignee=None, created_at=now,
                due_at=self._due(task, properties, now))
            created.append((HumanTask(**values), candidates, task))
            for username in candidates:
                appends.add(session, TaskCandidate.__table__, task_id=task_id,
                            instance_id=instance.id, username=username, task_open=True)

        waiting = WaitingEvents.of([] if finished else live)
        if waited is not None:
            self._project_events_since(session, instance, waited, waiting)
            return created
        timers, messages = waiting.timers, waiting.messages
        earlier_timers = {}              # fired or cancelled rows, by task (one each)
        for row in timer_rows:
            if row.status != "pending":
                earlier_timers[row.task_id] = row
                continue
            entry = timers.pop(row.task_id, None)
            if entry is None:
                row.status = "cancelled"
            elif as_utc(row.due_at) != entry[2]:
                row.due_at, row.attempts = entry[2], 0
        for task_id, (task, definition, due) in timers.items():
            existing = earlier_timers.get(task_id)
            if existing is not None:
                existing.status, existing.due_at, existing.attempts = "pending", due, 0
                continue
            self._schedule(session, instance, task_id, task, definition, due)
        for row in subscription_rows:
            if messages.pop(row.task_id, None) is None:
                session.delete(row)
        for task_id, (task, definition) in messages.items():
            self._subscribe(session, instance, task_id, task, definition)
        return created

    def _project_events_since(self, session: Session, instance: Instance,
                              waited: WaitingEvents, waiting: WaitingEvents) -> None:
        """Timer and subscription rows from what waited before a step and waits after."""
        # statements on rows no pending object touches: no autoflush before them
        connection = session.connection()
        gone = [task_id for task_id in waited.timers if task_id not in waiting.timers]
        for first in range(0, len(gone), 500):          # a reporting cycle waits on thousands
            connection.execute(update(Timer.__table__).where(
                Timer.instance_id == instance.id, Timer.task_id.in_(gone[first:first + 500]),
                Timer.status == "pending").values(status="cancelled"))
        for task_id, (task, definition, due) in waiting.timers.items():
            before = waited.timers.get(task_id)
            if before is None:
                self._schedule(session, instance, task_id, task, definition, due)
            elif before[2] != due:
                connection.execute(update(Timer.__table__).where(
                    Timer.instance_id == instance.id, Timer.task_id == task_id)
                    .values(due_at=due, attempts=0))
        gone = [task_id for task_id in waited.messages if task_id not in waiting.messages]
        for first in range(0, len(gone), 500):
            connection.execute(delete(MessageSubscription.__table__).where(
                MessageSubscription.instance_id == instance.id,
                MessageSubscription.task_id.in_(gone[first:first + 500])))
        for task_id, (task, definition) in waiting.messages.items():
            if task_id not in waited.messages:
                self._subscribe(session, instance, task_id, task, definition)

    @staticmethod
    def _schedule(session: Session, instance: Instance, task_id: str, task, definition,
                  due: datetime) -> None:
        appends.add(session, Timer.__table__, instance_id=instance.id,
                    definition_id=instance.definition_id, task_id=task_id,
                    element_id=_element_id(task), kind=type(definition).__name__, due_at=due,
                    status="pending", attempts=0)

    @staticmethod
    def _subscribe(session: Session, instance: Instance, task_id: str, task,
                   definition) -> None:
        appends.add(session, MessageSubscription.__table__, instance_id=instance.id,
                    task_id=task_id, element_id=_element_id(task),
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
                                          data=data, assignee_from=assignee_from)
        except (InvalidData, NotFound):
            return [], None          # nobody can be named: administrators see and assign it
        return resolution.usernames, resolution.unit_id

    # --- operations ----------------------------------------------------------------------
    def start(self, variant: str, key: str, *, started_by: str, data: dict | None = None,
              business_key: str | None = None, definition_id: int | None = None,
              in_transaction: Callable[[Session, Instance], None] | None = None) -> Instance:
        """Start an instance of the newest version (or ``definition_id``) of a process.

        ``in_transaction`` runs inside the unit of work that creates the instance (a
        scheduler moves its schedule there, so a start happens exactly once)."""
        data = _clean_data(data, self.max_data_bytes)
        definition = (self.repository.get(definition_id) if definition_id
                      else self.repository.latest(variant, key))
        spec, subprocess_specs = self.repository.specs(definition)
        unit_id = data.get("proposer_unit") or next(iter(self.org.units_of(started_by)), None)
        if unit_id is not None:
            self.org.unit(str(unit_id))          # an unknown unit is refused here, by name
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=self.script_engine)
        workflow.data.update({"started_by": started_by})
        start_task = workflow.get_tasks(state=TaskState.READY)[0]
        start_task.data.update(data)
        start_task.data.update({"started_by": started_by, "proposer": started_by,
                                "proposer_unit": unit_id, "business_key": business_key})
        completed: list = []
        now = self.clock.now()
        with variant_settings(self.repository.settings(definition)):
            incident = self._advance(workflow, completed)
            with self._unit_of_work() as session:
                instance = Instance(
                    id=str(uuid.uuid4()), definition_id=definition.id,
                    variant=definition.variant, definition_key=definition.key,
                    business_key=business_key, status=RUNNING, state=b"",
                    state_format=STATE_FORMAT, started_by=started_by, started_at=now,
                    updated_at=now, unit_id=unit_id)
                session.add(instance)
                note(instance_id=instance.id)
                self._save(session, instance, workflow, actor=started_by,
                           action="instance_started", details={"data": data,
                                                               "version": definition.version},
                           incident=incident, completed=completed)
                if in_transaction is not None:
                    in_transaction(session, instance)
        self._workflows.put(instance.id, instance.version, instance.definition_id, workflow)
        return instance

    def get(self, instance_id: str) -> Instance:
        with self.db.reading() as session:
            instance = session.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"instance {instance_id} does not exist", instance_id=instance_id)
        return instance

    def workflow(self, instance_id: str) -> BpmnWorkflow:
        """The live SpiffWorkflow object of an instance (read-only use)."""
        with self.db.reading() as session:
            return self._load(session, instance_id)[1]

    def open_tasks(self, instance_id: str) -> list[HumanTask]:
        with self.db.reading() as session:
            return list(session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance_id, HumanTask.status == "open")
                .order_by(HumanTask.created_at, HumanTask.id)))

    def task_data(self, task_id: str) -> dict:
        task = self._human_task(task_id)
        workflow = self.workflow(task.instance_id)
        spiff_task = workflow.get_task_from_id(uuid.UUID(task_id))
        return dict(spiff_task.data)

    def _human_task(self, task_id: str) -> HumanTask:
        with self.db.reading() as session:
            task = session.get(HumanTask, task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist", task_id=task_id)
        return task

    def complete_task(self, task_id: str, data: dict | None, *, actor: str,
                      check: Callable[[Session], None] | None = None) -> Instance:
        """Complete a task with its form data. ``check`` runs first in the same transaction,
        once the task's instance is locked (whether the caller may complete the task): what
        it raises is raised, with nothing written."""
        with self._instance(None, task_id=task_id) as (session, instance, workflow):
            if check is not None:
                check(session)
            data = _clean_data(data, self.max_data_bytes)
            # the task's row (its instance was found through it) with the instance's other
            # open ones, which the projection refreshes after the step: one query for both
            rows = session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance.id,
                or_(HumanTask.status == "open", HumanTask.id == task_id))).all()
            [row] = [r for r in rows if r.id == task_id]
            if row.status == "completed":
                raise Conflict(f"task '{row.name or row.element_id}' was already completed by "
                               f"{row.completed_by}", task_id=task_id)
            self._require(instance, RUNNING, "complete a task of")
            try:
                task = workflow.get_task_from_id(uuid.UUID(task_id))
            except (WorkflowException, KeyError):
                task = None
            if task is None or not task.has_state(TaskState.READY) or not task.task_spec.manual:
                raise Conflict(f"task {task_id} is no longer open", task_id=task_id)
            definition = self.repository.get(instance.definition_id, session)
            self._check_form(definition, row, task, data)
            waited = WaitingEvents.of(workflow.get_tasks(state=TaskState.WAITING))
            before = dict(task.data)
            task.data.update(data)
            changed = {k: {"before": before.get(k), "after": v} for k, v in data.items()
                       if before.get(k) != v}
            completed: list = []
            try:
                task.run()
            except (WorkflowException, ScriptError) as exc:
                incident = _incident_from(exc)
            else:
                incident = self._advance(workflow, completed)
            now = self.clock.now()
            row.status, row.completed_at, row.completed_by = "completed", now, actor
            self._save(session, instance, workflow, actor=actor, action="task_completed",
                       element_id=row.element_id, details={"task_id": task_id,
                                                           "changed": changed},
                       incident=incident, completed=completed, task_rows=rows,
                       waited=waited, user_task=task, task_row=row, submitted=data)
        return instance

    def _check_form(self, definition: Definition, row: HumanTask, task, data) -> None:
        """The form's schema, then the rules the task declares (``nd73:validation``: a
        condition over the task data and the submitted fields that names a field)."""
        errors = []
        schema = self.repository.form(definition, row.form)
        if schema is not None:
            errors = form_errors(schema, data)
        rules = policy.validations(task.task_spec)
        if rules:
            known = {e["field"] for e in errors}
            fields = dict.fromkeys((schema or {}).get("properties") or {})
            context = {**task.data, **fields, **data}
            for rule in rules:
                if rule.field in known:
                    continue
                try:
                    broken = self.evaluate_declared(rule.when, context)
                except ScriptError as exc:
                    raise InvalidData(f"the rule on field '{rule.field}' of the form "
                                      f"'{row.name or row.element_id}' cannot be checked: "
                                      f"{exc}") from None
                if broken:
                    known.add(rule.field)
                    errors.append({"field": rule.field,
                                   "message": self._message(rule.message, context),
                                   "message_en": self._message(
                                       rule.message_en or rule.message, context)})
        if errors:
            raise InvalidData(f"the form '{row.name or row.element_id}' has "
                              f"{len(errors)} invalid field(s): "
                              + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                              errors=errors)

    def send_message(self, name: str, payload: dict | None = None, *, actor: str,
                     instance_id: str | None = None,
                     correlation_key: str | None = None) -> Instance:
        """Deliver a message to the one instance waiting for it (by id or business key)."""
        payload = _clean_data(payload, self.max_data_bytes)
        if not instance_id:
            instance_id = self._correlate(name, correlation_key)
        with self._instance(instance_id) as (session, instance, workflow):
            self._require(instance, RUNNING, "deliver a message to")
            waiting = [t for t in workflow.get_tasks(state=TaskState.WAITING)
                       if isinstance(getattr(t.task_spec, "event_definition", None),
                                     MessageEventDefinition)
                       and t.task_spec.event_definition.name == name]
            if not waiting:
                raise NotFound(f"instance {instance_id} is not waiting for message '{name}'",
                               message_name=name, instance_id=instance_id)
            catcher = waiting[0]
            definition = catcher.task_spec.event_definition
            workflow.send_event(BpmnEvent(definition, payload))
            if getattr(definition, "message_var", None) is None:
                catcher.data.update(payload)
            completed: list = []
            incident = self._advance(workflow, completed)
            self._save(session, instance, workflow, actor=actor, action="message_received",
                       element_id=_element_id(catcher),
                       details={"message": name, "payload": payload},
                       incident=incident, completed=completed)
        return instance

    def _correlate(self, name: str, correlation_key: str | None) -> str:
        if not correlation_key:
            raise InvalidData("a message needs an instance id or a correlation key")
        with self.db.reading() as session:
            ids = list(session.scalars(
                select(Instance.id).join(MessageSubscription,
                                         MessageSubscription.instance_id == Instance.id)
                .where(Instance.business_key == correlation_key,
                       MessageSubscription.message_name == name).distinct()))
        if not ids:
            raise NotFound(f"no instance with key '{correlation_key}' waits for message "
                           f"'{name}'", message_name=name, correlation_key=correlation_key)
        if len(ids) > 1:
            raise Conflict(f"{len(ids)} instances with key '{correlation_key}' wait for "
                           f"message '{name}'; send it by instance id")
        return ids[0]

    def fire_timers(self, instance_id: str, *, actor: str = "scheduler",
                    claimed_by: str | None = None) -> Instance | None:
        """Let the instance's timers that are due on the engine clock fire; None when none
        is due (nothing is written then). The audit log records how late each one fired."""
        with self._instance(instance_id) as (session, instance, workflow):
            if instance.status != RUNNING:
                return None
            now = self.clock.now()
            timer_rows = session.scalars(select(Timer).where(
                Timer.instance_id == instance_id)).all()
            pending = [t for t in timer_rows if t.status == "pending"]
            due = [t for t in pending if as_utc(t.due_at) <= now]
            if not due:
                return None
            delays = {t.element_id: (now - as_utc(t.due_at)).total_seconds() for t in due}
            completed: list = []
            incident = self._advance(workflow, completed)
            self._save(session, instance, workflow, actor=actor, action="timers_fired",
                       details={"elements": sorted(delays), "delay_seconds": delays,
                                **({"scheduler": claimed_by} if claimed_by else {})},
                       incident=incident, completed=completed, timer_rows=timer_rows)
            for timer in due:                 # the projection cancelled or moved them on
                if timer.status == "cancelled":
                    timer.status = "fired"
                timer.fired_at = now
            for timer in pending:             # claims of this scheduler end with the step
                if timer in due or (claimed_by and timer.lock_owner == claimed_by):
                    timer.lock_owner = timer.lock_expires_at = None
        return instance

    def fire_timer_now(self, instance_id: str, task_id: str, *, actor: str) -> Instance | None:
        """Make one waiting timer of an instance due now (an administrator's "fire now")."""
        with self._instance(instance_id) as (session, instance, workflow):
            try:
                task = workflow.get_task_from_id(uuid.UUID(task_id))
            except (WorkflowException, KeyError, ValueError):
                task = None
            if task is None or timer_due(task) is None:
                raise InvalidState(f"element of timer {task_id} is not waiting")
            now = self.clock.now()
            value = task._get_internal_data("event_value")
            if isinstance(value, dict):
                value["next"] = now.isoformat()
            else:
                value = now.isoformat()
            task._set_internal_data(event_value=value)
            row = session.scalars(select(Timer).where(Timer.instance_id == instance_id,
                                                      Timer.task_id == task_id)).first()
            if row is not None:
                row.due_at = now
            self._save(session, instance, workflow, actor=actor, action="timer_moved",
                       element_id=_element_id(task), details={"due_at": now.isoformat()})
        return self.fire_timers(instance_id, actor=actor)

    def due_timers(self) -> list[Timer]:
        with self.db.reading() as session:
            return list(session.scalars(select(Timer).where(
                Timer.status == "pending", Timer.due_at <= self.clock.now())
                .order_by(Timer.due_at)))

    def _require(self, instance: Instance, status: str, verb: str) -> None:
        if instance.status != status:
            raise InvalidState(f"cannot {verb} instance {instance.id}: it is {instance.status}",
                               instance_status=instance.status)

    def _set_status(self, instance_id: str, *, actor: str, allowed: tuple, status: str,
                    action: str, reason: str | None = None) -> Instance:
        with self._instance(instance_id) as (session, instance, workflow):
            if instance.status not in allowed:
                raise InvalidState(f"cannot {action.split('_')[-1]} instance {instance_id}: "
                                   f"it is {instance.status}", instance_status=instance.status)
            if status == TERMINATED:
                workflow.cancel()
            self._save(session, instance, workflow, actor=actor, action=action,
                       details={"reason": reason} if reason else None, status=status)
        return instance

    def suspend(self, instance_id: str, *, actor: str, reason: str | None = None) -> Instance:
        return self._set_status(instance_id, actor=actor, allowed=(RUNNING,), status=SUSPENDED,
                                action="instance_suspended", reason=reason)

    def resume(self, instance_id: str, *, actor: str) -> Instance:
        return self._set_status(instance_id, actor=actor, allowed=(SUSPENDED,), status=RUNNING,
                                action="instance_resumed")

    def terminate(self, instance_id: str, *, actor: str, reason: str | None = None) -> Instance:
        return self._set_status(instance_id, actor=actor, allowed=ACTIVE_STATUSES,
                                status=TERMINATED, action="instance_terminated", reason=reason)

    def retry(self, instance_id: str, *, actor: str, data: dict | None = None) -> Instance:
        """Run the failed element of an instance in incident again (after a fix)."""
        data = _clean_data(data, self.max_data_bytes)
        with self._instance(instance_id) as (session, instance, workflow):
            self._require(instance, INCIDENT, "retry")
            failed = workflow.get_tasks(state=TaskState.ERROR)
            for task in failed:
                task.data.update(data)
                task._set_state(TaskState.READY)
            instance.status = RUNNING
            instance.incident_message = instance.incident_element = instance.incident_at = None
            completed: list = []
            incident = self._advance(workflow, completed)
            self._save(session, instance, workflow, actor=actor, action="instance_retried",
                       element_id=_element_id(failed[0]) if failed else None,
                       details={"data": data} if data else None, incident=incident,
                       completed=completed)
        return instance

    def migrate(self, instance_id: str, target_definition_id: int, *, actor: str) -> Instance:
        """Move an instance to another version of its process, refusing unsafe moves."""
        target = self.repository.get(target_definition_id)
        with self._instance(instance_id) as (session, instance, workflow):
            if instance.status not in ACTIVE_STATUSES:
                raise InvalidState(f"cannot migrate instance {instance_id}: it is "
                                   f"{instance.status}", instance_status=instance.status)
            if (target.variant, target.key) != (instance.variant, instance.definition_key):
                raise MigrationRefused("cannot migrate", [
                    f"version {target.id} belongs to {target.variant}/{target.key}, not "
                    f"{instance.variant}/{instance.definition_key}"])
            if target.id == instance.definition_id:
                raise MigrationRefused("cannot migrate", ["the instance already runs this version"])
            spec, subprocess_specs = self.repository.specs(target)
            top_diff, sub_diffs = diff_workflow(self.codec.registry, workflow, spec,
                                                subprocess_specs)
            reasons = _unsafe_migration(workflow, top_diff, sub_diffs)
            if reasons:
                raise MigrationRefused(f"cannot migrate instance {instance_id} to version "
                                       f"{target.version}", reasons)
            previous = instance.definition_id
            migrate_workflow(top_diff, workflow, spec)
            for sp_id, sp_diff in sub_diffs.items():
                subprocess = workflow.subprocesses[sp_id]
                migrate_workflow(sp_diff, subprocess, subprocess_specs[subprocess.spec.name])
            workflow.subprocess_specs = subprocess_specs
            instance.definition_id = target.id
            completed: list = []
            incident = self._advance(workflow, completed) if instance.status == RUNNING else None
            self._save(session, instance, workflow, actor=actor, action="instance_migrated",
                       details={"from_definition": previous, "to_definition": target.id,
                                "to_version": target.version},
                       incident=incident, completed=completed)
        return instance


def _unsafe_migration(workflow, top_diff, sub_diffs) -> list[str]:
    """Reasons a migration would lose or corrupt work (empty when it is safe).

    SpiffWorkflow aligns old and new tasks by their place in the graph; a live task (ready,
    waiting, running or failed) must keep its element id and type, or open work would
    silently turn into something else.
    """
    live = TaskState.READY | TaskState.WAITING | TaskState.STARTED | TaskState.ERROR
    diffs = [(None, top_diff)] + [(workflow.subprocesses[sp_id].spec.name, d)
                                  for sp_id, d in sub_diffs.items()]
    reasons = []
    for subprocess, diff in diffs:
        where = f" of subprocess '{subprocess}'" if subprocess else ""
        if diff is None:
            reasons.append(f"running subprocess '{subprocess}' does not exist in the new version")
            continue
        for task in diff.removed:
            if task.has_state(live):
                reasons.append(f"active element '{_element_id(task)}'{where} does not exist in "
                               f"the new version")
        for task in diff.changed:
            new_spec = diff.alignment.get(task)
            if not task.has_state(live) or new_spec is None:
                continue
            old_id, new_id = _element_id(task), getattr(new_spec, "bpmn_id", None) or new_spec.name
            if old_id != new_id:
                reasons.append(f"active element '{old_id}'{where} would become '{new_id}'")
            elif type(new_spec) is not type(task.task_spec):
                reasons.append(f"active element '{old_id}'{where} changes its type")
    return reasons


def _stage(live: list, completed: list, current: str | None) -> str | None:
    """The business stage: that of the open steps (``stage`` property) among the live
    (ready, waiting, started) tasks, else of the last finished element that names one (an
    end event, say), else unchanged."""
    for task in live:
        stage = _properties(task.task_spec).get("stage")
        if stage and (task.task_spec.manual or task.has_state(TaskState.WAITING)):
            return stage
    for task in reversed(completed):
        stage = _properties(task.task_spec).get("stage")
        if stage:
            return stage
    return current
