"""The operations that administrators and the scheduler apply to running instances:
firing timers (and a timer's last failure, which raises an incident), suspending, resuming
and terminating, retrying an incident, migrating to another version of the process. Mixed
into :class:`~engine.runtime.instances.Runtime`, whose units of work and save they use;
every change of status is written here with its audit entry. Each is given the principal
who acts and checks, once the instance is locked, that they administer its variant (the
scheduler acts as a trusted system principal)."""
from __future__ import annotations

import uuid
from datetime import datetime

from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..access import Principal
from ..audit import lock_instance, lock_instances
from ..clock import as_utc
from ..errors import InvalidState, MigrationRefused
from ..multi_instance import all_tasks
from ..scripting import timer_due
from ..store import (AuditEvent, HumanTask, Instance, MessageSubscription, TaskStatus, Timer,
                     TimerStatus)
from .projection import EventRows
from .steps import (ACTIVE_STATUSES, INCIDENT, RUNNING, SUSPENDED, TERMINATED, Incident,
                    audit_entry, clean_data, element_of)


VERBS = {"instance_suspended": "suspend", "instance_resumed": "resume",
         "instance_terminated": "terminate"}


class InstanceManagement:
    def fire_timers(self, instance_id: str, *, principal: Principal,
                    claimed_by: str | None = None) -> Instance | None:
        """Let the instance's timers that are due on the engine clock fire; None when none
        is due (nothing is written then). The audit log records how late each one fired."""
        with self._instance(instance_id) as (session, instance, workflow):
            return self._fire_due(session, instance, workflow, principal, claimed_by)

    def fire_timers_together(self, instance_ids: list[str], *, principal: Principal,
                             claimed_by: str) -> set[str]:
        """:meth:`fire_timers` for several instances in one transaction (one BEGIN and one
        COMMIT for all of them); returns the ids of the instances whose timers fired. All or
        nothing: when one of them raises, none is written (the caller may then fire them
        one by one). Claims of ``claimed_by`` on the timers of an instance where nothing
        fired are given back in the same transaction."""
        fired: set[str] = set()
        saved: list = []
        ids = list(dict.fromkeys(instance_ids))
        with self._unit_of_work() as session:
            # the instance rows first, in one statement (see lock_instance_chain), then
            # their timers, subscriptions and open tasks, each in one statement for all of
            # them
            kept = {i: self._workflows.version_of(i) for i in ids}
            locked = lock_instances(session, ids, cached={
                i: version for i, version in kept.items() if version is not None})
            timer_rows: dict[str, list[Timer]] = {i: [] for i in locked}
            subscriptions: dict[str, list[MessageSubscription]] = {i: [] for i in locked}
            open_tasks: dict[str, list[HumanTask]] = {i: [] for i in locked}
            with session.no_autoflush:
                for timer in session.scalars(select(Timer).where(
                        Timer.instance_id.in_(list(locked)))):
                    timer_rows[timer.instance_id].append(timer)
                for subscription in session.scalars(select(MessageSubscription).where(
                        MessageSubscription.instance_id.in_(list(locked)))):
                    subscriptions[subscription.instance_id].append(subscription)
                # a timer never reopens a closed task (only a retry or a migration does),
                # so the open rows are all the projection needs (see Projection.refresh)
                for row in session.scalars(select(HumanTask).where(
                        HumanTask.instance_id.in_(list(locked)),
                        HumanTask.status == TaskStatus.OPEN)):
                    open_tasks[row.instance_id].append(row)
            # in the order given (the timers' due order)
            for instance_id in [i for i in ids if i in locked]:
                with self._instance_in(session, instance_id, saved,
                                       locked=locked[instance_id]) as (instance, workflow):
                    if self._fire_due(session, instance, workflow, principal, claimed_by,
                                      timer_rows[instance_id], subscriptions[instance_id],
                                      open_tasks[instance_id]) is not None:
                        fired.add(instance_id)
            idle = [i for i in ids if i not in fired]
            if idle:
                session.execute(update(Timer).where(
                    Timer.instance_id.in_(idle), Timer.lock_owner == claimed_by)
                    .values(lock_owner=None, lock_expires_at=None)
                    .execution_options(synchronize_session=False))
        self._keep_workflows(saved)
        return fired

    def _fire_due(self, session: Session, instance: Instance, workflow, principal: Principal,
                  claimed_by: str | None, timer_rows: list[Timer] | None = None,
                  subscriptions: list[MessageSubscription] | None = None,
                  task_rows: list[HumanTask] | None = None) -> Instance | None:
        """``timer_rows``, ``subscriptions`` and ``task_rows`` (its open tasks): the
        instance's rows, read with its lock held (else read here or by the projection)."""
        instance_id = instance.id
        self.access.require_manages(session, principal, instance, "fire its timers")
        actor = principal.username
        if instance.status != RUNNING:
            return None
        now = self.clock.now()
        if timer_rows is None:
            timer_rows = list(session.scalars(select(Timer).where(
                Timer.instance_id == instance_id)))
        pending = [t for t in timer_rows if t.status == TimerStatus.PENDING]
        due = [t for t in pending if as_utc(t.due_at) <= now]
        if not due:
            return None
        delays = {t.element_id: (now - as_utc(t.due_at)).total_seconds() for t in due}
        completed: list = []
        incident = self._advance(workflow, completed)
        for timer in due:
            timer.fired_at = now
        for timer in pending:             # claims of this scheduler end with the step
            if timer in due or (claimed_by and timer.lock_owner == claimed_by):
                timer.lock_owner = timer.lock_expires_at = None
        # the projection marks the due timers fired, or moves a cycle on
        self._save(session, instance, workflow, actor=actor, action="timers_fired",
                   details={"elements": sorted(delays), "delay_seconds": delays,
                            **({"scheduler": claimed_by} if claimed_by else {})},
                   incident=incident, completed=completed, task_rows=task_rows,
                   event_rows=EventRows.read(session, instance_id, timer_rows, subscriptions),
                   fired=frozenset(t.task_id for t in due))
        return instance

    def fire_timer_now(self, instance_id: str, task_id: str, *,
                       principal: Principal) -> Instance | None:
        """Make one waiting timer of an instance due now (an administrator's "fire now"): a
        failed timer waits again (timer_rearmed), and an incident its failure raised is
        resolved (incident_resolved); then it fires unless the instance is not running."""
        with self._instance(instance_id) as (session, instance, workflow):
            self.access.require_manages(session, principal, instance, "fire its timers")
            actor = principal.username
            try:
                task = workflow.get_task_from_id(uuid.UUID(task_id))
            except (WorkflowException, KeyError, ValueError):
                task = None
            if task is None or timer_due(task) is None:
                raise InvalidState(f"element of timer {task_id} is not waiting",
                                   code="timer.not_waiting")
            now = self.clock.now()
            value = task._get_internal_data("event_value")
            if isinstance(value, dict):
                value["next"] = now.isoformat()
            else:
                value = now.isoformat()
            task._set_internal_data(event_value=value)
            element = element_of(task)
            changes = []
            row = session.scalars(select(Timer).where(Timer.instance_id == instance_id,
                                                      Timer.task_id == task_id)).first()
            if row is not None:
                if row.status == TimerStatus.FAILED:
                    changes.append(audit_entry(instance, now, actor, "timer_rearmed", element,
                                               {"task_id": task_id, "attempts": row.attempts,
                                                "last_error": row.last_error}))
                    row.status = TimerStatus.PENDING
                row.due_at, row.attempts, row.last_error = now, 0, None
                row.lock_owner = row.lock_expires_at = None
            if instance.status == INCIDENT and instance.incident_element == element:
                changes.append(audit_entry(instance, now, actor, "incident_resolved", element,
                                           {"message": instance.incident_message}))
                self._resolve_incident(instance)
            self._save(session, instance, workflow, actor=actor, action="timer_moved",
                       element_id=element, details={"due_at": now.isoformat()},
                       changes=changes)
        return self.fire_timers(instance_id, principal=principal)

    def timer_failed(self, session: Session, row: Timer, error: str, *, actor: str) -> None:
        """A timer (or schedule) failed its last attempt, in the transaction that records
        the failure (the scheduler's lease queue gives up on it): it is failed, and the
        running instance whose timer it is goes into incident, each with its audit entry."""
        now = self.clock.now()
        row.status = TimerStatus.FAILED
        session.add(AuditEvent(instance_id=row.instance_id, definition_id=row.definition_id,
                               at=now, actor=actor, action="timer_failed",
                               element_id=row.element_id,
                               details={"timer_id": row.id, "task_id": row.task_id,
                                        "attempts": row.attempts, "error": row.last_error}))
        instance = lock_instance(session, row.instance_id) if row.instance_id else None
        if instance is not None and instance.status == RUNNING:
            instance.updated_at = now
            # an object the session's flush chains (engine.audit), as the entry above
            session.add(AuditEvent(**self._mark_incident(instance, Incident(
                f"timer failed {row.attempts} times: {error}", row.element_id), now, actor)))

    def due_timers(self) -> list[Timer]:
        with self.db.reading() as session:
            return list(session.scalars(select(Timer).where(
                Timer.status == TimerStatus.PENDING, Timer.due_at <= self.clock.now())
                .order_by(Timer.due_at)))

    @staticmethod
    def _mark_incident(instance: Instance, incident: Incident, now: datetime,
                       actor: str) -> dict:
        """Put the instance into incident; returns the entry that records it (a row)."""
        instance.status = INCIDENT
        instance.incident_message = incident.message
        instance.incident_element = incident.element_id
        instance.incident_at = now
        return audit_entry(instance, now, actor, "incident", incident.element_id,
                           {"message": incident.message})

    @staticmethod
    def _resolve_incident(instance: Instance) -> None:
        """The instance runs again (the caller writes the entry saying why)."""
        instance.status = RUNNING
        instance.incident_message = instance.incident_element = instance.incident_at = None

    def _require(self, instance: Instance, status: str, verb: str) -> None:
        if instance.status != status:
            raise InvalidState(f"cannot {verb} instance {instance.id}: it is {instance.status}",
                               code="instance.wrong_status", instance_status=instance.status,
                               params={"instance_status": instance.status})

    def _set_status(self, instance_id: str, *, principal: Principal, allowed: tuple,
                    status: str, action: str, reason: str | None = None) -> Instance:
        with self._instance(instance_id) as (session, instance, workflow):
            self.access.require_manages(session, principal, instance,
                                        f"{VERBS[action]} an instance")
            actor = principal.username
            if instance.status not in allowed:
                raise InvalidState(f"cannot {action.split('_')[-1]} instance {instance_id}: "
                                   f"it is {instance.status}", instance_status=instance.status,
                                   code="instance.wrong_status",
                                   params={"instance_status": instance.status})
            if status == TERMINATED:
                workflow.cancel()
            self._save(session, instance, workflow, actor=actor, action=action,
                       details={"reason": reason} if reason else None, status=status)
        return instance

    def suspend(self, instance_id: str, *, principal: Principal,
                reason: str | None = None) -> Instance:
        return self._set_status(instance_id, principal=principal, allowed=(RUNNING,),
                                status=SUSPENDED, action="instance_suspended", reason=reason)

    def resume(self, instance_id: str, *, principal: Principal) -> Instance:
        return self._set_status(instance_id, principal=principal, allowed=(SUSPENDED,),
                                status=RUNNING, action="instance_resumed")

    def terminate(self, instance_id: str, *, principal: Principal,
                  reason: str | None = None) -> Instance:
        return self._set_status(instance_id, principal=principal, allowed=ACTIVE_STATUSES,
                                status=TERMINATED, action="instance_terminated", reason=reason)

    def retry(self, instance_id: str, *, principal: Principal,
              data: dict | None = None) -> Instance:
        """Run the failed element of an instance in incident again (after a fix)."""
        data = clean_data(data, self.max_data_bytes)
        with self._instance(instance_id) as (session, instance, workflow):
            self.access.require_manages(session, principal, instance, "retry an instance")
            actor = principal.username
            self._require(instance, INCIDENT, "retry")
            failed = all_tasks(workflow, state=TaskState.ERROR)
            for task in failed:
                task.data.update(data)
                task._set_state(TaskState.READY)
            self._resolve_incident(instance)      # instance_retried records it
            completed: list = []
            incident = self._advance(workflow, completed)
            self._save(session, instance, workflow, actor=actor, action="instance_retried",
                       element_id=element_of(failed[0]) if failed else None,
                       details={"data": data} if data else None, incident=incident,
                       completed=completed)
        return instance

    def migrate(self, instance_id: str, target_definition_id: int, *,
                principal: Principal) -> Instance:
        """Move an instance to another version of its process, refusing unsafe moves."""
        with self._instance(instance_id) as (session, instance, workflow):
            self.access.require_manages(session, principal, instance, "migrate an instance")
            actor = principal.username
            target = self.repository.get(target_definition_id, session)
            if instance.status not in ACTIVE_STATUSES:
                raise InvalidState(f"cannot migrate instance {instance_id}: it is "
                                   f"{instance.status}", instance_status=instance.status,
                                   code="instance.wrong_status",
                                   params={"instance_status": instance.status})
            if (target.variant, target.key) != (instance.variant, instance.definition_key):
                raise MigrationRefused("cannot migrate", [
                    f"version {target.id} belongs to {target.variant}/{target.key}, not "
                    f"{instance.variant}/{instance.definition_key}"])
            if target.id == instance.definition_id:
                raise MigrationRefused("cannot migrate", ["the instance already runs this version"])
            spec, subprocess_specs = self.repository.specs(target)
            top_diff, sub_diffs = diff_workflow(self.codec.registry, workflow, spec,
                                                subprocess_specs)
            reasons = unsafe_migration(workflow, top_diff, sub_diffs)
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


def unsafe_migration(workflow, top_diff, sub_diffs) -> list[str]:
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
                reasons.append(f"active element '{element_of(task)}'{where} does not exist in "
                               f"the new version")
        for task in diff.changed:
            new_spec = diff.alignment.get(task)
            if not task.has_state(live) or new_spec is None:
                continue
            old_id, new_id = element_of(task), getattr(new_spec, "bpmn_id", None) or new_spec.name
            if old_id != new_id:
                reasons.append(f"active element '{old_id}'{where} would become '{new_id}'")
            elif type(new_spec) is not type(task.task_spec):
                reasons.append(f"active element '{old_id}'{where} changes its type")
    return reasons
