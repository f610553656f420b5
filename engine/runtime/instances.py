"""Running instances: start, complete tasks, messages, timers, suspend/resume/terminate,
incidents and retry, migration to a newer definition version.

Every operation is one unit of work: load the instance (spec from the repository cache, state
from the store), let SpiffWorkflow run, then save the state with an optimistic version check
and refresh the projections and the audit log in the same transaction. A conflicting writer
gets :class:`~engine.errors.Conflict`; nothing is written when anything fails.

Every operation is given the :class:`~engine.access.Principal` who acts and checks, in its
unit of work once the instance's row is locked, that they may (:mod:`engine.access`); the
audit log records their username.

The runtime is the one writer of statuses (of instances, human tasks and timers): each
change is made here, in :mod:`.management` or in :mod:`.projection`, with the audit entry
that records it, in the same transaction.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from .. import policy
from ..access import Access, Principal
from ..audit import (INSERT_ENTRIES, LOCKED_GENERATION, chain_step_entries, defer_head,
                     deferred_entries, deferred_head, lock_instance, locked_deltas)
from ..clock import LOCAL_TZ, Clock
from ..deadlines import current_settings, variant_settings
from ..errors import N_, Conflict, Forbidden, InvalidData, NotFound, ScriptError
from ..forms import (date_order_errors, form_errors, person_values, unit_values,
                     unknown_people_errors, unknown_units_errors)
from ..listeners import DecisionRecorder, Notifier, Step, StepListener
from ..logs import note
from ..multi_instance import BpmnWorkflow as EngineWorkflow
from ..multi_instance import all_tasks, data_copy, do_engine_steps, step_scope
from ..org import Org
from ..repository import Repository
from ..scripting import EngineScriptEngine, one_step, start_timers
from ..serialization import (STATE_FORMAT, Codec, StoredState, UnreadableState,
                             set_stored_state, stored_state)
from ..store.db import detached
from ..store.models import OpenTaskRow
from ..store import (Database, Definition, HumanTask, Instance,
                     InstanceStateDelta, MessageSubscription, OrgUnit, TaskStatus)
from ..workflow_cache import (WorkflowCache, note_open_tasks, note_waiting_events,
                              waiting_events_noted)
from .management import InstanceManagement
from .projection import EventRows, Projection, WaitingEvents
from .schedules import Schedules
from .steps import (ACTIVE_STATUSES, COMPLETED, ENDED_STATUSES, RUNNING, Incident,
                    StateRows, audit_entry, clean_data, element_of, element_of_spec,
                    incident_from, instance_row_writer, properties_of, stage_after,
                    task_row_update)


# A step stores what it changed in the state (a delta); after this many deltas, and when the
# instance ends, it stores the whole state again (a snapshot) and drops the deltas, so a load
# reads the instance's row and at most this many delta rows. A default of the engine (no
# source sets it): each delta is about a tenth of a snapshot on the national proposal.
STATE_SNAPSHOT_EVERY = 8
DELTAS = InstanceStateDelta.__table__
# a task's instance, its version and definition: one Core statement, built once (a form's
# data is read at every task opened)
_TASK_INSTANCE = (select(HumanTask.instance_id, Instance.version, Instance.definition_id)
                  .join(Instance, Instance.id == HumanTask.instance_id)
                  .where(HumanTask.id == bindparam("task_id")))
# an instance's open tasks, oldest first (Runtime.open_tasks)
_OPEN_TASKS = (select(HumanTask.__table__)
               .where(HumanTask.instance_id == bindparam("instance_id"),
                      HumanTask.status == TaskStatus.OPEN)
               .order_by(HumanTask.created_at, HumanTask.id))


class Runtime(InstanceManagement, Schedules):
    state_snapshot_every = STATE_SNAPSHOT_EVERY

    def __init__(self, db: Database, repository: Repository, codec: Codec, clock: Clock,
                 script_engine: EngineScriptEngine, max_data_bytes: int, org: Org,
                 access: Access, notifications=None,
                 listeners: list[StepListener] | None = None):
        self.db = db
        self.org = org
        self.access = access                 # who may act: asked inside each unit of work
        self.notifications = notifications   # told of tasks, deadlines and decisions
        self.repository = repository
        self.codec = codec
        self.clock = clock
        self.script_engine = script_engine
        self.max_data_bytes = max_data_bytes
        self._workflows = WorkflowCache()
        # bytes of state written (snapshots and deltas) and how many of each, for the bench
        self.state_writes = {"snapshots": 0, "deltas": 0, "bytes": 0, "parts": 0,
                             "parts_serialized": 0}
        self.projection = Projection(org, script_engine)
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
            # one look at the organisation's generation per step (engine.org)
            with step_scope(), self.org.consistent(), self.db.transaction() as session:
                yield session
        except StaleDataError:
            raise Conflict("the instance was changed by someone else at the same time; "
                           "reload and try again", code="instance.changed") from None
        except IntegrityError as exc:
            raise Conflict(f"a concurrent change collided with this one: {exc.orig}",
                           code="instance.changed") from None
        except OperationalError as exc:
            text = str(exc.orig).lower()
            if "deadlock" in text or "could not serialize" in text or "locked" in text:
                raise Conflict("the instance is busy with another change; try again",
                               code="instance.busy") from None
            raise

    def _load(self, session: Session, instance_id: str,
              cached: bool = False) -> tuple[Instance, BpmnWorkflow]:
        instance = session.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"instance {instance_id} does not exist", code="instance.not_found",
                           instance_id=instance_id)
        # read with the row's lock (PostgreSQL), taken here even when the cache serves
        deltas = locked_deltas(session, instance_id)
        if cached:          # only for a unit of work that holds the instance's row lock
            workflow = self._workflows.take(instance_id, instance.version,
                                            instance.definition_id)
            if workflow is not None:
                return instance, workflow
        definition = self.repository.get(instance.definition_id, session)
        spec, subprocess_specs = self.repository.specs(definition)
        if deltas is None:
            deltas = []
            if instance.state_deltas:   # the row counts them: none, nothing to read
                deltas = session.execute(select(DELTAS.c.data)
                                         .where(DELTAS.c.instance_id == instance_id)
                                         .order_by(DELTAS.c.seq)).scalars().all()
        if len(deltas) != instance.state_deltas:
            raise UnreadableState(f"instance {instance_id} counts {instance.state_deltas} "
                                  f"state deltas and has {len(deltas)}")
        workflow = self.codec.load_state(instance.state, spec, subprocess_specs,
                                         self.script_engine, deltas)
        return instance, workflow

    @contextmanager
    def _instance(self, instance_id: str | None, *, task_id: str | None = None
                  ) -> Iterator[tuple[Session, Instance, BpmnWorkflow]]:
        """A unit of work on one instance (``task_id``: the instance of that task), with its
        variant's settings (calendar, deadlines) in force for every script and timer."""
        saved: list = []
        with self._unit_of_work() as session:
            with self._instance_in(session, instance_id, saved, task_id=task_id) as (
                    instance, workflow):
                yield session, instance, workflow
        self._keep_workflows(saved)

    @contextmanager
    def _instance_in(self, session: Session, instance_id: str | None, saved: list, *,
                     task_id: str | None = None, locked: Instance | None = None
                     ) -> Iterator[tuple[Instance, BpmnWorkflow]]:
        """One instance locked and loaded in a unit of work (see :meth:`_instance`); what it
        saved is added to ``saved``, for :meth:`_keep_workflows` once the unit commits.
        ``locked``: the instance, already locked in this unit (engine.audit.lock_instances)."""
        # the instance row first, before any of its other rows (see lock_instance_chain);
        # held here, as the session keeps loaded rows only while they are referenced
        if locked is None:
            locked = lock_instance(session, instance_id, task_id=task_id, deltas=True,
                                   cached=self._cached_version(instance_id, task_id))
        generation = session.info.pop(LOCKED_GENERATION, None)
        if generation is not None:     # read by the lock: the step's look-ups need not
            self.org.known_generation(generation)
        if instance_id is None:
            if locked is None:       # said as for a task the caller may not see
                raise NotFound(f"task {task_id} does not exist", code="task.not_found")
            instance_id = locked.id
        note(instance_id=instance_id)          # on the log lines of the work in hand
        instance, workflow = self._load(session, instance_id, cached=True)
        assert locked is None or locked is instance
        loaded_version = instance.version
        definition = self.repository.get(instance.definition_id, session)
        with variant_settings(self.repository.settings(definition)):
            yield instance, workflow
        saved.append((instance, loaded_version, workflow))

    def _cached_version(self, instance_id: str | None, task_id: str | None
                        ) -> dict[str, int] | None:
        """{instance id: version} of the workflow kept in memory for the instance (or the
        instance of ``task_id``), for the lock to skip reading its state deltas."""
        if instance_id is not None:
            version = self._workflows.version_of(instance_id)
            return {instance_id: version} if version is not None else None
        try:
            held = self._workflows.holding(uuid.UUID(task_id))
        except (TypeError, ValueError):
            return None
        return dict([held]) if held is not None else None

    def _keep_workflows(self, saved: list) -> None:
        """Committed: keep each workflow for its instance's next step when this unit saved
        it (a unit of work that saved nothing may have touched it without writing; it is
        dropped)."""
        for instance, loaded_version, workflow in saved:
            if instance.version != loaded_version:
                self._workflows.put(instance.id, instance.version, instance.definition_id,
                                    workflow)

    def _advance(self, workflow: BpmnWorkflow, completed: list) -> Incident | None:
        """Run engine steps; a failing script or expression becomes an incident."""
        def did_complete(task):
            if getattr(task.task_spec, "bpmn_id", None):
                completed.append(task)
        try:
            with one_step():
                workflow.refresh_timers()
                do_engine_steps(workflow, did_complete_task=did_complete)
        except (WorkflowException, ScriptError) as exc:
            return incident_from(exc)
        return None

    def _save(self, session: Session, instance: Instance, workflow: BpmnWorkflow, *,
              actor: str, action: str, element_id: str | None = None,
              details: dict | None = None, incident: Incident | None = None,
              completed: list = (), status: str | None = None,
              task_rows: list[HumanTask | OpenTaskRow] | None = None,
              event_rows: EventRows | None = None, user_task=None,
              task_row: HumanTask | None = None, submitted: dict | None = None,
              fired: frozenset[str] = frozenset(), changes: list[dict] = ()) -> None:
        """Save the state and refresh projections, audit and the step's listeners.
        ``status``: the instance's new status, which the step's own entry (``action``)
        records. ``task_rows`` and ``event_rows``: the instance's rows of the tasks open
        and of its events, when the caller knows them (see :meth:`Projection.refresh`);
        ``user_task``, ``task_row`` and ``submitted``: the task a person completed, its
        row and data; ``fired``: the task ids of the timers the step fired; ``changes``:
        the entries (rows, engine.audit.entry) of other changes of status the operation
        made (written after the step's own)."""
        now = self.clock.now()
        instance.updated_at = now
        # the elements the engine passed (gateways, scripts, events) are listed in the step's
        # own entry, as are the tasks and timers it opened and closed (see Projection)
        passed = [element_of(t) for t in completed if not t.task_spec.manual]
        if passed:
            details = {**(details or {}), "passed": passed}
        events = [audit_entry(instance, now, actor, action, element_id, details), *changes]
        if incident is not None:
            events.append(self._mark_incident(instance, incident, now, actor))
        elif status is not None:
            instance.status = status
        elif workflow.is_completed() and instance.status in ACTIVE_STATUSES:
            instance.status = COMPLETED
            events.append(audit_entry(instance, now, actor, "instance_completed"))
        if instance.status in ENDED_STATUSES:
            instance.ended_at = instance.ended_at or now
        # before anything below reads (and so flushes): a new instance's row is inserted
        # with its state
        store_state = self._state_writer(instance, workflow)
        previous_stage = instance.stage
        # one walk of the task tree for the stage and the projections
        live = all_tasks(workflow, state=TaskState.READY | TaskState.WAITING | TaskState.STARTED)
        note_open_tasks(workflow, [t.id for t in live
                                   if t.state == TaskState.READY and t.task_spec.manual])
        instance.stage = stage_after(live, completed, instance.stage)
        step = Step(session, instance, self.repository.get(instance.definition_id, session),
                    actor, now, previous_stage, completed, user_task, task_row,
                    submitted or {})
        for listener in self.listeners:
            listener.step_saving(step)
        # the projections' changes are recorded in the step's own entry
        projected: dict[str, Any] = {}
        finished = instance.status in ENDED_STATUSES
        waiting = WaitingEvents.of([] if finished else live)
        note_waiting_events(workflow, waiting)
        step.opened = self.projection.refresh(
            session, instance, live, now, changes=projected, task_rows=task_rows,
            events=event_rows, fired=fired, finished=finished, waiting=waiting)
        if projected:            # recorded in the step's own entry
            events[0]["details"] = {**(events[0]["details"] or {}), "changes": projected}
        entries = events + step.audit          # rows, chained and written below
        if inspect(instance).persistent:
            # the instance row as one Core UPDATE after the flush, with the version check
            # and the chain head of the step's entries, chained after any the flush chained
            # (objects others added); on PostgreSQL the entries, the state's delta rows and
            # the completed task's row are written by the same statement
            write_row = instance_row_writer(instance)
            task_update = task_row_update(task_row) if task_row is not None else None
            defer_head(session, instance.id, entries=True)
            session.flush()
            head = chain_step_entries(session, instance, entries,
                                      deferred_head(session, instance.id))
            if not write_row(session, head,
                             store_state if isinstance(store_state, StateRows) else None,
                             [task_update] if task_update is not None else [],
                             deferred_entries(session, instance.id) + entries):
                store_state(session)
        else:
            # a new instance: inserted with its chain head, its entries after it
            instance.audit_seq, instance.audit_head = chain_step_entries(
                session, instance, entries, (0, None))
            session.flush()
            session.connection().execute(INSERT_ENTRIES, entries)
            store_state(session)
        for listener in self.listeners:
            listener.step_saved(step)

    def _state_writer(self, instance: Instance, workflow: BpmnWorkflow
                      ) -> Callable[[Session], object]:
        """Store the workflow's state: a snapshot in the instance's row (set here, written
        by the step's flush) or a delta, written after that flush (and its version check)
        by what this returns. A delta's ``seq`` is its place after the snapshot (1 to K):
        two writers that started from the same state collide on it even where the version
        check did not stop them."""
        stored = stored_state(workflow)
        writes = self.state_writes
        whole = stored is None or stored.deltas >= self.state_snapshot_every \
            or instance.status in ENDED_STATUSES
        # only the tasks that may have changed since the last save are serialized (the
        # frozen ones and the unchanged ones with empty data keep their digests and texts,
        # engine.serialization.Frozen); a snapshot takes every part's text, kept or new
        parts, parts_digests, frozen, serialized = self.codec.changed_parts(
            workflow, stored, whole=whole)
        writes["parts"] += len(parts_digests)
        writes["parts_serialized"] += serialized
        if whole:
            instance.state = self.codec.snapshot(parts)
            instance.state_format = STATE_FORMAT
            instance.state_deltas = 0
            set_stored_state(workflow, StoredState(parts_digests, 0, frozen))
            writes["snapshots"] += 1
            writes["bytes"] += len(instance.state)
            if stored is not None and stored.deltas:
                return StateRows(instance.id)           # the deltas removed
            return lambda session: None
        delta = self.codec.delta(stored.parts, parts, parts_digests)
        if delta is None:                   # the step changed nothing in the state
            stored.frozen = frozen
            return lambda session: None
        set_stored_state(workflow, StoredState(parts_digests, stored.deltas + 1, frozen))
        # the row counts the deltas (a load reads them only when there are some); its
        # UPDATE, with the version check and the new version, goes out with the step's flush
        instance.state_deltas = stored.deltas + 1
        flag_modified(instance, "updated_at")
        writes["deltas"] += 1
        writes["bytes"] += len(delta)
        return StateRows(instance.id, stored.deltas + 1, delta)

    # --- operations ----------------------------------------------------------------------
    def start(self, variant: str, key: str, *, principal: Principal,
              data: dict | None = None, business_key: str | None = None,
              definition_id: int | None = None,
              in_transaction: Callable[[Session, Instance], None] | None = None) -> Instance:
        """Start an instance of the newest version (or ``definition_id``) of a process, for
        the unit ``data["proposer_unit"]`` names (else the principal's own unit there).

        ``in_transaction`` runs inside the unit of work that creates the instance (a
        scheduler moves its schedule there, so a start happens exactly once)."""
        data = clean_data(data, self.max_data_bytes)
        definition = (self.repository.get(definition_id) if definition_id
                      else self.repository.latest(variant, key))
        spec, subprocess_specs = self.repository.specs(definition)
        # no instance exists yet to lock: whom the principal may start for is read here
        requested = data.get("proposer_unit")
        unit_id = self.access.starting_unit(principal, definition.variant,
                                            str(requested) if requested else None,
                                            scheduled=bool(start_timers(spec)))
        unit_id = self._starting_unit(definition, spec, unit_id)
        self._check_start_rules(definition, principal.username, unit_id)
        start_event = _start_event(spec)
        if start_event is not None:
            self._check_form(definition, start_event, {}, {
                k: v for k, v in data.items() if k != "proposer_unit"})
        started_by = principal.username
        workflow = EngineWorkflow(spec, subprocess_specs, script_engine=self.script_engine)
        workflow.data.update({"started_by": started_by})
        start_task = all_tasks(workflow, state=TaskState.READY)[0]
        start_task.data.update(data)
        start_task.data.update({"started_by": started_by, "proposer": started_by,
                                "proposer_unit": unit_id, "business_key": business_key})
        completed: list = []
        now = self.clock.now()
        with step_scope(), variant_settings(self.repository.settings(definition)):
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

    def _starting_unit(self, definition: Definition, spec, unit_id: str | None) -> str | None:
        """The unit an instance starts for, when the starter named none and has none: a
        process with a timer start event started by hand runs for its schedule's unit. A
        process that declares ``startUnit`` required is refused without one."""
        if unit_id is None and start_timers(spec):
            unit_id = self.schedule_unit(definition)
        if unit_id is not None:
            self.org.unit(str(unit_id))          # an unknown unit is refused here, by name
        elif policy.start_unit_required(definition):
            raise InvalidData(
                f"{definition.variant}/{definition.key} is started for a unit: give unit_id",
                code="start.unit_required",
                errors=[{"field": "unit_id", "code": N_("start.unit_required"), "params": {},
                         "message": "This process is started for a unit: give unit_id."}])
        return unit_id

    def _check_start_rules(self, definition: Definition, username: str,
                           unit_id: str | None) -> None:
        """Who may start the process, as its ``nd73:startRule`` declarations say (a rule
        of the procedure, e.g. the positions that may propose, read from the variant's
        settings): the first rule whose condition holds refuses the start (403 naming the
        rule), before anything is written."""
        rules = policy.start_rules(definition)
        if not rules:
            return
        context = {"started_by": username, "proposer": username, "proposer_unit": unit_id}
        with variant_settings(self.repository.settings(definition)), self.org.consistent():
            for rule in rules:
                try:
                    refused = self.evaluate_declared(rule.when, context)
                except ScriptError as exc:
                    raise InvalidData(f"the start rule '{rule.name}' of {definition.key} "
                                      f"cannot be checked: {exc}",
                                      code="form.rule_unchecked",
                                      params={"field": rule.name}) from None
                if refused:
                    reason = self._message(rule.message, context)
                    reason_en = self._message(rule.message_en or rule.message, context)
                    raise Forbidden(f"{username} may not start {definition.key}: "
                                    f"{rule.name}: {reason_en}", rule="start_rule",
                                    name=rule.name, reason=reason, reason_en=reason_en)

    def schedule_unit(self, definition: Definition) -> str | None:
        """The unit a scheduled process runs for: ``[schedules.<process>] unit`` in the
        variant's settings, else the variant's province (its top unit)."""
        settings = self.repository.settings(definition)
        configured = settings.get("schedules", {}).get(definition.key, {}).get("unit")
        if configured:
            return configured
        with self.db.reading() as session:
            return session.scalars(select(OrgUnit.id).where(
                OrgUnit.variant == definition.variant, OrgUnit.parent_id.is_(None))
                .order_by(OrgUnit.id)).first()

    def get(self, instance_id: str) -> Instance:
        with self.db.reading() as session:
            instance = session.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"instance {instance_id} does not exist", code="instance.not_found",
                           instance_id=instance_id)
        return instance

    def workflow(self, instance_id: str) -> BpmnWorkflow:
        """The live SpiffWorkflow object of an instance (read-only use)."""
        with self.db.reading() as session:
            return self._load(session, instance_id)[1]

    def open_tasks(self, instance_id: str) -> list[HumanTask]:
        """The instance's open tasks, oldest first, as detached rows (read with one Core
        statement built once: an ORM query cost three times as much, at every step a
        client takes)."""
        return [detached(HumanTask, row._mapping)
                for row in self.db.read_rows(_OPEN_TASKS, {"instance_id": instance_id})]

    def task_data(self, task_id: str) -> dict:
        """A task's data (a copy), for its form: from the workflow its instance's last
        step left in memory when the instance still has that version, else from the
        stored state (deserializing a whole workflow to read one task's data cost as much
        as a step's own work)."""
        found = next(iter(self.db.read_rows(_TASK_INSTANCE, {"task_id": task_id})), None)
        if found is None:
            raise NotFound(f"task {task_id} does not exist", code="task.not_found",
                           task_id=task_id)
        task_uuid = uuid.UUID(task_id)

        def data_of(workflow: BpmnWorkflow) -> dict:
            # dicts and lists copied by a plain walk (deepcopy's memo of every object took
            # most of a form read of a workflow kept in memory)
            return data_copy(dict(workflow.get_task_from_id(task_uuid).data))
        cached = self._workflows.peek(found.instance_id, found.version,
                                      found.definition_id, data_of)
        if cached is not None:
            return cached
        return data_of(self.workflow(found.instance_id))

    def complete_task(self, task_id: str, data: dict | None, *,
                      principal: Principal) -> Instance:
        """Complete a task with its form data, as its assignee or (unclaimed) a candidate."""
        with self._instance(None, task_id=task_id) as (session, instance, workflow):
            # with the instance locked: a claim committed before this step is seen here. The
            # task's row (its instance was found through it), whether the principal may act on
            # it, and the instance's other open tasks, which the projection refreshes after
            # the step: one statement
            found, rows = self.access.task_and_open_rows(session, principal, task_id,
                                                         instance.id)
            if found is None:                    # said as for a task that does not exist
                raise NotFound(f"task {task_id} does not exist", code="task.not_found")
            row, is_candidate = found
            if row.status == "open":
                self.access.require_may_work_on(principal, row, is_candidate, "complete")
            actor = principal.username
            data = clean_data(data, self.max_data_bytes)
            if row.status == TaskStatus.COMPLETED:
                raise Conflict(f"task '{row.name or row.element_id}' was already completed by "
                               f"{row.completed_by}", code="task.completed_by",
                               params={"task": row.name or row.element_id,
                                       "user": row.completed_by}, task_id=task_id)
            self._require(instance, RUNNING, "complete a task of")
            try:
                task = workflow.get_task_from_id(uuid.UUID(task_id))
            except (WorkflowException, KeyError):
                task = None
            if task is None or not task.has_state(TaskState.READY) or not task.task_spec.manual:
                raise Conflict(f"task {task_id} is no longer open", code="task.not_open",
                               task_id=task_id)
            definition = self.repository.get(instance.definition_id, session)
            self._check_form(definition, task.task_spec, task.data, data)
            # the events waiting before the step: as the workflow's last save found them when
            # it is that save's workflow, kept in memory
            waited = waiting_events_noted(workflow)
            if not isinstance(waited, WaitingEvents):
                waited = WaitingEvents.of(all_tasks(workflow, state=TaskState.WAITING))
            before = dict(task.data)
            task.data.update(data)
            changed = {k: {"before": before.get(k), "after": v} for k, v in data.items()
                       if before.get(k) != v}
            completed: list = []
            try:
                task.run()
            except (WorkflowException, ScriptError) as exc:
                incident = incident_from(exc)
            else:
                incident = self._advance(workflow, completed)
            now = self.clock.now()
            # the step's own entry (task_completed) records it
            row.status, row.completed_at, row.completed_by = TaskStatus.COMPLETED, now, actor
            self._save(session, instance, workflow, actor=actor, action="task_completed",
                       element_id=row.element_id, details={"task_id": task_id,
                                                           "changed": changed},
                       incident=incident, completed=completed, task_rows=rows,
                       event_rows=EventRows.waited_before(session, instance.id, waited),
                       user_task=task, task_row=row, submitted=data)
        return instance

    def _check_form(self, definition: Definition, task_spec, task_data: dict,
                    data: dict) -> None:
        """What an element declares its data must be: its form's schema (``form``), then
        its rules (``nd73:validation``: a condition over the element's data and the
        submitted fields that names a field). A user task's form, a start event's start
        data, a message catch event's payload."""
        label = getattr(task_spec, "bpmn_name", None) or element_of_spec(task_spec)
        form = properties_of(task_spec).get("form")
        errors = []
        schema = self.repository.form(definition, form) if form else None
        if schema is not None:
            errors = form_errors(schema, data)
            known = {e["field"] for e in errors}
            today = self.clock.now().astimezone(LOCAL_TZ).date()
            errors += [e for e in date_order_errors(schema, data, task_data, today)
                       if e["field"] not in known]
            named = person_values(schema, data)
            if named:
                people = self.org.people(definition.variant, {u for _, u in named})
                errors += [e for e in unknown_people_errors(named, people)
                           if e["field"] not in known]
            units = unit_values(schema, data)
            if units:
                found = self.org.units_named(definition.variant, {u for _, u in units})
                errors += [e for e in unknown_units_errors(units, found)
                           if e["field"] not in known]
        rules = policy.validations(task_spec)
        if rules:
            known = {e["field"] for e in errors}
            fields = dict.fromkeys((schema or {}).get("properties") or {})
            context = {**task_data, **fields, **data}
            for rule in rules:
                if rule.field in known:
                    continue
                try:
                    broken = self.evaluate_declared(rule.when, context)
                except ScriptError as exc:
                    raise InvalidData(f"the rule on field '{rule.field}' of the form "
                                      f"'{label}' cannot be checked: "
                                      f"{exc}", code="form.rule_unchecked",
                                      params={"field": rule.field}) from None
                if broken:
                    known.add(rule.field)
                    errors.append({"field": rule.field,
                                   "message": self._message(rule.message, context),
                                   "message_en": self._message(
                                       rule.message_en or rule.message, context)})
        if errors:
            raise InvalidData(f"the form '{label}' has "
                              f"{len(errors)} invalid field(s): "
                              + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                              code="form.invalid", params={"count": len(errors)},
                              errors=errors)

    def send_message(self, name: str, payload: dict | None = None, *, principal: Principal,
                     instance_id: str | None = None,
                     correlation_key: str | None = None) -> Instance:
        """Deliver a message to the one instance waiting for it (by id or business key), as
        someone who takes part in the instance or administers it."""
        payload = clean_data(payload, self.max_data_bytes)
        if not instance_id:
            instance_id = self._correlate(name, correlation_key)
        with self._instance(instance_id) as (session, instance, workflow):
            self.access.require_involved(session, principal, instance)
            actor = principal.username
            self._require(instance, RUNNING, "deliver a message to")
            waiting = [t for t in all_tasks(workflow, state=TaskState.WAITING)
                       if isinstance(getattr(t.task_spec, "event_definition", None),
                                     MessageEventDefinition)
                       and t.task_spec.event_definition.name == name]
            if not waiting:
                raise NotFound(f"instance {instance_id} is not waiting for message '{name}'",
                               message_name=name, instance_id=instance_id)
            catcher = waiting[0]
            self._require_sender(principal, instance, catcher, name)
            self._check_form(self.repository.get(instance.definition_id, session),
                             catcher.task_spec, catcher.data, payload)
            definition = catcher.task_spec.event_definition
            workflow.send_event(BpmnEvent(definition, payload))
            if getattr(definition, "message_var", None) is None:
                catcher.data.update(payload)
            completed: list = []
            incident = self._advance(workflow, completed)
            self._save(session, instance, workflow, actor=actor, action="message_received",
                       element_id=element_of(catcher),
                       details={"message": name, "payload": payload},
                       incident=incident, completed=completed)
        return instance

    def _require_sender(self, principal: Principal, instance: Instance, catcher,
                        name: str) -> None:
        """A message whose catch event declares ``senderRole`` is a decision of those roles'
        people (resolved for this case as its lanes are): anyone else is refused, naming the
        rule; the engine itself (a trusted principal) is not asked."""
        roles = policy.sender_roles(catcher.task_spec)
        if not roles or principal.trusted:
            return
        settings = current_settings()
        for role in roles:
            try:
                people = self.org.resolve(
                    role, proposer=instance.started_by,
                    unit_id=catcher.data.get("proposer_unit") or instance.unit_id,
                    settings=settings, data=catcher.data).usernames
            except (InvalidData, NotFound):
                continue                 # a role nobody holds here sends nothing
            if principal.username in people:
                return
        declared = settings.get("roles") or {}
        labels = ", ".join((declared.get(role) or {}).get("label") or role for role in roles)
        basis = policy.legal_basis(catcher.task_spec) or "senderRole"
        raise Forbidden(f"only {', '.join(roles)} may send '{name}' ({basis})",
                        rule="message_sender", message_name=name, roles=labels, basis=basis)

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


def _start_event(spec):
    """The none start event a person starts the process from (None when it has only
    event start events, or several start events)."""
    events = [s for s in spec.start.outputs
              if getattr(s, "event_definition", None) is None
              or type(s.event_definition).__name__ == "NoneEventDefinition"]
    return events[0] if len(events) == 1 else None
