"""Schedules: timer rows without an instance, one per timer start event of the newest
version of each process. The scheduler decides when they are due and fires them; their
rows change status only here, each change with its audit entry (in the ``system`` chain,
or, for a firing, in the chain of the instance it starts). Mixed into
:class:`~engine.runtime.instances.Runtime`."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..access import Principal
from ..clock import as_utc
from ..errors import Conflict, InvalidState, NotFound
from ..store import AuditEvent, Definition, Instance, Timer, TimerStatus

SCHEDULE_KINDS = ("StartCycle", "StartTimeDate", "StartDuration")


def _system_entry(row: Timer, at: datetime, actor: str, action: str,
                  details: dict) -> AuditEvent:
    return AuditEvent(instance_id=None, definition_id=row.definition_id, at=at, actor=actor,
                      action=action, element_id=row.element_id,
                      details={"timer_id": row.id, **details})


class Schedules:
    def schedule(self, definition: Definition, start_timers: list[tuple[str, str, str]],
                 first_due: Callable[[str, str], datetime], *, actor: str) -> int:
        """Give ``definition`` (the newest version of its process) one pending schedule
        per timer start event (``(element id, kind, expression)``; ``first_due(kind,
        expression)`` is asked only for those it has none of yet) and cancel the pending
        schedules of its process's other versions. Returns the schedules created."""
        created = 0
        with self._unit_of_work() as session:
            now = self.clock.now()
            stale = session.scalars(select(Timer).where(
                Timer.instance_id.is_(None), Timer.status == TimerStatus.PENDING,
                Timer.kind.in_(SCHEDULE_KINDS), Timer.definition_id != definition.id,
                Timer.definition_id.in_(select(Definition.id).where(
                    Definition.variant == definition.variant,
                    Definition.key == definition.key))))
            for row in stale:
                row.status = TimerStatus.CANCELLED
                session.add(_system_entry(row, now, actor, "timer_cancelled",
                                          {"replaced_by": definition.id}))
            for element_id, kind, expression in start_timers:
                exists = session.scalars(select(Timer.id).where(
                    Timer.instance_id.is_(None), Timer.definition_id == definition.id,
                    Timer.element_id == element_id)).first()
                if exists is not None:
                    continue
                row = Timer(instance_id=None, definition_id=definition.id, task_id=None,
                            element_id=element_id, kind=kind, due_at=first_due(kind, expression),
                            status=TimerStatus.PENDING, attempts=0)
                session.add(row)
                session.flush()          # its id, which its audit entry names
                session.add(_system_entry(row, now, actor, "timer_scheduled",
                                          {"kind": kind, "due_at": as_utc(row.due_at)
                                           .isoformat()}))
                created += 1
        return created

    def start_scheduled(self, row: Timer, definition: Definition, next_due: datetime | None,
                        *, owner: str, principal: Principal, data: dict) -> Instance:
        """Start the instance a schedule claimed by ``owner`` is due for, and in the same
        transaction move the schedule to ``next_due`` (None: it has fired for good), on
        condition that the claim still holds: so it starts exactly once."""
        due = as_utc(row.due_at)
        now = self.clock.now()

        def move_schedule(session: Session, instance: Instance) -> None:
            moved = session.execute(
                update(Timer).where(Timer.id == row.id, Timer.lock_owner == owner,
                                    Timer.status == TimerStatus.PENDING,
                                    Timer.due_at == row.due_at)
                .values(status=TimerStatus.PENDING if next_due else TimerStatus.FIRED,
                        due_at=next_due or row.due_at, fired_at=now, lock_owner=None,
                        lock_expires_at=None, attempts=0, last_error=None)).rowcount
            if not moved:
                raise Conflict("the schedule was fired by another scheduler")
            session.add(AuditEvent(instance_id=instance.id, definition_id=definition.id,
                                   at=now, actor=principal.username,
                                   action="schedule_fired",
                                   element_id=row.element_id,
                                   details={"due_at": due.isoformat(),
                                            "delay_seconds": (now - due).total_seconds(),
                                            "next_due_at": next_due.isoformat()
                                            if next_due else None}))

        return self.start(definition.variant, definition.key, principal=principal,
                          data=data, definition_id=definition.id,
                          in_transaction=move_schedule)

    def rearm_schedule(self, timer_id: int, *, principal: Principal) -> Timer:
        """Make a pending or failed schedule due now (an administrator's "fire now")."""
        with self._unit_of_work() as session:
            row = session.get(Timer, timer_id, with_for_update=True)
            if row is None or row.instance_id is not None:
                raise NotFound(f"schedule {timer_id} does not exist")
            variant = self.repository.get(row.definition_id, session).variant
            self.access.require_admin(principal, variant, "fire its schedules")
            actor = principal.username
            if row.status not in (TimerStatus.PENDING, TimerStatus.FAILED):
                raise InvalidState(f"cannot fire schedule {timer_id}: it is {row.status}")
            now = self.clock.now()
            session.add(_system_entry(row, now, actor, "timer_rearmed", {
                "was": str(row.status), "attempts": row.attempts,
                "last_error": row.last_error, "due_at": as_utc(row.due_at).isoformat()}))
            row.status, row.due_at, row.attempts, row.last_error = (
                TimerStatus.PENDING, now, 0, None)
            row.lock_owner = row.lock_expires_at = None
        return row
