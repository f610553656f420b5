"""The inbox and task assignment (Camunda's TaskService): claim, unclaim, assign, and the
task lists each official sees. Completing a task is the runtime's job.

Claim, unclaim and assign are given the principal who acts and check, once the task's
instance is locked, that they may (:mod:`engine.access`)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from .access import Access, Principal
from .audit import lock_instance_chain
from .clock import Clock
from .errors import N_, Conflict, InvalidData, NotFound
from .store import AuditEvent, Database, HumanTask, Instance, TaskCandidate, TaskStatus, User


@dataclass
class Page:
    items: list
    total: int
    page: int
    page_size: int


def page_of(session, query, order_by: tuple, page: int, page_size: int) -> Page:
    """One page of ``query``'s rows with the number of all of them, in one statement (a
    window count over the matching rows, which the sort reads anyway); only a page past the
    end needs the count asked for separately."""
    rows = session.execute(query.add_columns(func.count().over()).order_by(*order_by)
                           .offset((page - 1) * page_size).limit(page_size)).all()
    if rows:
        total = rows[0][1]
    elif page > 1:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
    else:
        total = 0
    return Page([row[0] for row in rows], total, page, page_size)


class TaskService:
    def __init__(self, db: Database, clock: Clock, access: Access, notifications=None):
        self.db = db
        self.clock = clock
        self.access = access
        self.notifications = notifications

    def get(self, task_id: str) -> HumanTask:
        with self.db.reading() as session:
            task = session.get(HumanTask, task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist", code="task.not_found",
                           task_id=task_id)
        return task

    def inbox(self, principal: Principal, *, scope: str | None = None,
              instance_id: str | None = None, overdue: bool | None = None,
              page: int = 1, page_size: int = 50) -> Page:
        query = select(HumanTask).where(HumanTask.status == TaskStatus.OPEN,
                                        self.access.inbox_clause(principal, scope))
        if instance_id:
            query = query.where(HumanTask.instance_id == instance_id)
        if overdue is not None:
            late = self.access.overdue_clause(self.clock.now())
            query = query.where(late if overdue else ~late)
        with self.db.reading() as session:
            return page_of(session, query, (HumanTask.due_at.is_(None), HumanTask.due_at,
                                            HumanTask.created_at, HumanTask.id),
                           page, page_size)

    @staticmethod
    def _variant(session, task: HumanTask) -> str:
        return session.scalar(select(Instance.variant).where(Instance.id == task.instance_id))

    def _audit(self, session, task: HumanTask, actor: str, action: str, details: dict):
        instance = session.get(Instance, task.instance_id)
        session.add(AuditEvent(instance_id=task.instance_id,
                               definition_id=instance.definition_id if instance else None,
                               at=self.clock.now(), actor=actor, action=action,
                               element_id=task.element_id,
                               details={"task_id": task.id, **details}))

    def _locked_task(self, session, task_id: str,
                     principal: Principal) -> tuple[HumanTask, bool]:
        """The task with its instance locked, and whether the principal is a candidate; a
        task the principal may not see does not exist, a closed one is a conflict."""
        task = session.get(HumanTask, task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist", code="task.not_found",
                           task_id=task_id)
        # the instance row first, then the task row: the runtime's order
        lock_instance_chain(session, task.instance_id)
        found = self.access.task_to_act_on(session, principal, task_id)
        if found is None:
            raise NotFound(f"task {task_id} does not exist", code="task.not_found",
                           task_id=task_id)
        if found[0].status != "open":
            raise Conflict("the task is no longer open", code="task.not_open",
                           task_id=task_id)
        return found

    def claim(self, task_id: str, principal: Principal) -> HumanTask:
        """Take an unclaimed task one is a candidate for; a race has one winner."""
        username = principal.username
        with self.db.transaction() as session:
            task, is_candidate = self._locked_task(session, task_id, principal)
            self.access.require_candidate(principal, task, is_candidate, "claim")
            changed = session.execute(
                update(HumanTask).where(HumanTask.id == task_id,
                                        HumanTask.status == TaskStatus.OPEN,
                                        HumanTask.assignee.is_(None))
                .values(assignee=username)).rowcount  # type: ignore[attr-defined]
            if not changed:
                session.refresh(task)
                if task.status != TaskStatus.OPEN:
                    raise Conflict("the task is no longer open", code="task.not_open",
                                   task_id=task_id)
                if task.assignee != username:
                    raise Conflict(f"the task is already claimed by {task.assignee}",
                                   code="task.claimed_by", params={"user": task.assignee},
                                   task_id=task_id)
            self._audit(session, task, username, "task_claimed", {})
        return self.get(task_id)

    def unclaim(self, task_id: str, principal: Principal) -> HumanTask:
        """Give a claimed task back (its assignee, or an administrator of its variant)."""
        with self.db.transaction() as session:
            task, _ = self._locked_task(session, task_id, principal)
            self.access.require_may_unclaim(principal, task, self._variant(session, task))
            previous = task.assignee
            task.assignee = None
            self._audit(session, task, principal.username, "task_unclaimed",
                        {"previous": previous})
        return self.get(task_id)

    def assign(self, task_id: str, username: str, principal: Principal) -> HumanTask:
        """Give an open task to a user (an administrator's repair); they become a candidate."""
        actor = principal.username
        with self.db.transaction() as session:
            task, _ = self._locked_task(session, task_id, principal)
            self.access.require_admin(principal, self._variant(session, task),
                                      "assign its tasks")
            user = session.get(User, username)
            if user is None or not user.active:
                raise InvalidData(f"user '{username}' does not exist", code="user.not_found",
                                  params={"user": username},
                                  errors=[{"field": "username", "code": N_("user.not_found"),
                                           "params": {"user": username},
                                           "message": "No such user"}])
            if session.get(TaskCandidate, (task_id, username)) is None:
                session.add(TaskCandidate(task_id=task_id, instance_id=task.instance_id,
                                          username=username))
            previous = task.assignee
            task.assignee = username
            self._audit(session, task, actor, "task_assigned",
                        {"assignee": username, "previous": previous})
            if self.notifications is not None and previous != username:
                self.notifications.notify(session, [username], "task_assigned",
                                          instance=session.get(Instance, task.instance_id),
                                          task=task, actor=actor)
        return self.get(task_id)
