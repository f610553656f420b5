"""Who may see and do what: users, their units and grants, and the policy the API and the web
app both apply.

- An official sees the tasks they are a candidate for or assigned to, and their units'
  tasks; they act only on tasks they are a candidate for (or assigned to).
- An instance is visible to its proposer, to everyone who had a task in it, to whoever was
  notified about it (a superior head told of an overdue step), and to the administrators of
  its variant; to anyone else it does not exist. A task is visible to whoever was notified
  about it, too.
- Designers deploy only to the variants they are designers of; administrators of a variant
  see and repair all of its instances and assign its tasks.
- Who may act is checked by the engine's operations themselves, given the acting
  :class:`Principal`, inside the unit of work once the instance's row is locked (see
  "rights to act" below); the API and the web app only say who is signed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (and_, any_, bindparam, case, delete, exists, false, func, or_, select,
                        true, union, union_all)
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from .clock import Clock
from .errors import Forbidden, NotFound
from .org import in_force, local_today
from .store import (Database, Grant, HumanTask, Instance, Membership, OrgUnit,
                    TaskCandidate, TaskStatus, User)
from .store.db import attached, columns_of
from .store.models import LoginAttempt, Notification, OpenTaskRow

ALL_VARIANTS = "*"

# who calls: the user, their memberships and grants (Access.principal, at every request)
_PRINCIPAL_ROWS = (
    select(User.full_name, User.active, Membership.id, Membership.unit_id, Membership.position,
           Membership.valid_from, Membership.valid_to, Grant.grant, Grant.variant)
    .outerjoin(Membership, Membership.username == User.username)
    .outerjoin(Grant, Grant.username == User.username)
    .where(User.username == bindparam("username")))

# the statement of Access.task_and_open_rows by what it depends on in the caller
_OPEN_ROWS: dict = {}


@dataclass(frozen=True)
class Principal:
    """Who acts: a signed-in user (built by :meth:`Access.principal` from the user's records,
    memberships and grants), or a trusted part of the system (:meth:`system`)."""
    username: str
    full_name: str
    memberships: tuple[tuple[str, str], ...]          # (unit id, position)
    admin_of: frozenset[str]
    designer_of: frozenset[str]
    trusted: bool = False        # the scheduler, the command line, demo seeding: no checks

    @classmethod
    def system(cls, name: str) -> "Principal":
        """The engine itself acting as ``name`` (the audit log's actor): the scheduler firing
        timers and starting cycles, the command line, seeding. It may do anything."""
        return cls(username=name, full_name=name, memberships=(), admin_of=frozenset(),
                   designer_of=frozenset(), trusted=True)

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(unit for unit, _ in self.memberships))

    def is_admin(self, variant: str | None = None) -> bool:
        if variant is None:
            return bool(self.admin_of)
        return ALL_VARIANTS in self.admin_of or variant in self.admin_of

    def is_designer(self, variant: str) -> bool:
        return ALL_VARIANTS in self.designer_of or variant in self.designer_of

    def admin_variants_clause(self, column, kept: bool = False):
        """SQL condition: ``column`` is a variant this principal administers (``kept``: as
        equalities, see :meth:`Access.task_visible_clause`)."""
        if ALL_VARIANTS in self.admin_of:
            return column.isnot(None)
        if kept and self.admin_of:
            return or_(*(column == variant for variant in sorted(self.admin_of)))
        return column.in_(tuple(self.admin_of) or ("",))


class Access:
    def __init__(self, db: Database, clock: Clock, max_failures: int = 5,
                 max_failures_per_address: int = 50,
                 window: timedelta = timedelta(minutes=15)):
        self.db = db
        self.clock = clock
        self.max_failures = max_failures
        # an address may be a proxy in front of many users: it gets a larger allowance
        self.max_failures_per_address = max_failures_per_address
        self.window = window

    # --- identities ----------------------------------------------------------------------
    def principal(self, username: str) -> Principal | None:
        # every request asks this: the user, memberships and grants in one statement (a
        # user has a few of each, so their cross product stays small), read with Core
        # outside a transaction (Database.read_rows): the statement built once, below:
        # 0.5 ms of CPU instead of 1.4 (bench.request_profile)
        rows = self.db.read_rows(_PRINCIPAL_ROWS, {"username": username})
        if not rows or not rows[0].active:
            return None
        # a position outside its from–to dates gives nothing (engine.org.in_force)
        today = local_today(self.clock)
        memberships = {row.id: (row.unit_id, row.position)
                       for row in sorted(rows, key=lambda r: r.id or 0)
                       if row.id is not None and in_force(row.valid_from, row.valid_to, today)}
        grants = {(row.grant, row.variant) for row in rows if row.grant is not None}
        return Principal(
            username=username, full_name=rows[0].full_name,
            memberships=tuple(memberships.values()),
            admin_of=frozenset(v for g, v in grants if g == "admin"),
            designer_of=frozenset(v for g, v in grants if g == "designer"))

    def locked_out(self, username: str, address: str, device: str | None = None) -> bool:
        """Too many failed sign-ins lately. A trusted ``device`` (one that signed in as this
        user before) is locked by its own failures only; other clients by the failures of
        all untrusted clients for the name, or of their address. So whoever fails on
        purpose under someone's name locks out only clients the owner never used, and no
        longer than ``window`` after the last failure."""
        since = self.clock.now() - self.window
        recent = (LoginAttempt.at >= since,)
        with self.db.reading() as session:
            if device is not None:
                mine = session.scalar(select(func.count(LoginAttempt.id)).where(
                    LoginAttempt.device == device, LoginAttempt.username == username, *recent))
                return (mine or 0) >= self.max_failures
            by_name = session.scalar(select(func.count(LoginAttempt.id)).where(
                LoginAttempt.username == username, LoginAttempt.device.is_(None), *recent))
            by_address = session.scalar(select(func.count(LoginAttempt.id)).where(
                LoginAttempt.address == address, *recent))
        return (by_name or 0) >= self.max_failures \
            or (by_address or 0) >= self.max_failures_per_address

    def authenticate(self, username: str, password: str, address: str,
                     device: str | None = None) -> Principal | None:
        """The principal for valid credentials; failures are counted for rate limiting
        (with the trusted ``device`` they came from, if any), and a success forgets those
        of its own kind."""
        with self.db.reading() as session:
            user = session.get(User, username)
        valid = (user is not None and user.active
                 and check_password_hash(user.password_hash, password))
        with self.db.transaction() as session:
            if valid:
                same_kind = LoginAttempt.device == device if device is not None \
                    else LoginAttempt.device.is_(None)
                session.execute(delete(LoginAttempt).where(LoginAttempt.username == username,
                                                           same_kind))
            else:
                session.add(LoginAttempt(username=username[:128], address=address[:64],
                                         device=device, at=self.clock.now()))
        return self.principal(username) if valid else None

    # --- policy ------------------------------------------------------------------------------
    def involved_clause(self, principal: Principal):
        """SQL condition on Instance: the principal may see it (proposer, someone who had a
        task in it or whose unit had one, an administrator of its variant)."""
        if ALL_VARIANTS in principal.admin_of:
            return true()
        involved = Instance.id.in_(self._involved_ids_query(principal))
        if not principal.admin_of:
            return involved
        # the variant first: PostgreSQL tests OR's arms in order, so the administrator's
        # own involvement (a union over the whole history) is read only for instances of
        # variants they do not administer
        return or_(principal.admin_variants_clause(Instance.variant), involved)

    def involved_ids(self, principal: Principal, limit: int = 5000) -> list[str] | None:
        """The ids of the instances a principal (not an administrator) takes part in, or
        None when there are more than ``limit``. A search given these ids fetches its page
        by primary key; given the subquery, PostgreSQL overestimates it (its parts overlap)
        and reads the whole instances table instead."""
        if principal.admin_of:
            return None
        ids = self._involved_ids_query(principal).subquery()
        with self.db.reading() as session:
            found = list(session.scalars(select(ids.c[0]).limit(limit + 1)))
        return found if len(found) <= limit else None

    def _involved_ids_query(self, principal: Principal):
        # The ids of the principal's instances, each part read through its own index, so
        # the cost follows the principal's own history, not everyone's (an EXISTS tested
        # on every instance row reads the whole country's history).
        name = principal.username
        parts = [select(Instance.id).where(Instance.started_by == name),
                 select(HumanTask.instance_id).where(HumanTask.assignee == name),
                 select(HumanTask.instance_id).where(HumanTask.completed_by == name),
                 select(TaskCandidate.instance_id).where(TaskCandidate.username == name),
                 select(Notification.instance_id).where(Notification.username == name,
                                                        Notification.instance_id.isnot(None))]
        if principal.units:
            parts.append(select(HumanTask.instance_id)
                         .where(HumanTask.unit_id.in_(principal.units)))
        return union(*parts)

    def _involved_row_clause(self, principal: Principal):
        """The same condition as :meth:`involved_clause`, tested row by row: cheapest for
        one given instance."""
        involvement = [HumanTask.assignee == principal.username,
                       HumanTask.completed_by == principal.username,
                       exists().where(TaskCandidate.task_id == HumanTask.id,
                                      TaskCandidate.username == principal.username)]
        if principal.units:
            involvement.append(HumanTask.unit_id.in_(principal.units))
        mine = exists().where(HumanTask.instance_id == Instance.id, or_(*involvement))
        told = exists().where(Notification.instance_id == Instance.id,
                              Notification.username == principal.username)
        return or_(Instance.started_by == principal.username, mine, told,
                   principal.admin_variants_clause(Instance.variant))

    def can_see_instance(self, principal: Principal, instance_id: str,
                         session: Session | None = None) -> bool:
        """Whether the principal may see the instance (read in ``session`` if given)."""
        query = select(func.count(Instance.id)).where(Instance.id == instance_id,
                                                      self._involved_row_clause(principal))
        if session is not None:
            return (session.scalar(query) or 0) > 0
        with self.db.reading() as reader:
            return (reader.scalar(query) or 0) > 0

    def candidates(self, task_id: str) -> list[str]:
        return self.candidates_of([task_id]).get(task_id, [])

    def candidates_of(self, task_ids) -> dict[str, list[str]]:
        """Candidates of several tasks in one query (a page of an inbox)."""
        result: dict[str, list[str]] = {}
        if not task_ids:
            return result
        with self.db.reading() as session:
            rows = session.execute(select(TaskCandidate.task_id, TaskCandidate.username)
                                   .where(TaskCandidate.task_id.in_(list(task_ids)))
                                   .order_by(TaskCandidate.username))
            for task_id, username in rows:
                result.setdefault(task_id, []).append(username)
        return result

    def task_visible_clause(self, principal: Principal, kept: bool = False):
        """SQL condition on HumanTask: the principal may see it. ``kept``: for a statement
        built once and executed again and again, the units as equalities: SQLAlchemy renders
        an IN of a list again at every execution (a fifth of the CPU of a completion's
        check of who may act)."""
        admin = (exists().where(Instance.id == HumanTask.instance_id,
                                principal.admin_variants_clause(Instance.variant, kept))
                 if principal.admin_of else None)
        clauses = [HumanTask.assignee == principal.username,
                   HumanTask.completed_by == principal.username,
                   exists().where(TaskCandidate.task_id == HumanTask.id,
                                  TaskCandidate.username == principal.username)]
        if principal.units and kept:
            clauses += [HumanTask.unit_id == unit for unit in principal.units]
        elif principal.units:
            clauses.append(HumanTask.unit_id.in_(principal.units))
        if admin is not None:
            clauses.append(admin)
        clauses.append(exists().where(Notification.task_id == HumanTask.id,
                                      Notification.username == principal.username))
        return or_(*clauses)

    def visible_task(self, principal: Principal, task_id: str,
                     session: Session | None = None) -> tuple[HumanTask, bool] | None:
        """The task if the principal may see it (else None), with whether the principal
        is one of its candidates: one query for what a request on a task checks first
        (in ``session``, a unit of work that is about to act on the task, if given)."""
        candidate = exists().where(TaskCandidate.task_id == HumanTask.id,
                                   TaskCandidate.username == principal.username)
        query = select(HumanTask, candidate).where(HumanTask.id == task_id,
                                                   self.task_visible_clause(principal))
        if session is not None:
            # the row as it is now, under the unit's lock, not as the session loaded it
            found = session.execute(query.execution_options(populate_existing=True)).first()
        else:
            with self.db.reading() as reader:
                found = reader.execute(query).first()
        return (found[0], bool(found[1])) if found is not None else None

    def may_work_on(self, principal: Principal, task: HumanTask,
                    is_candidate: bool | None = None) -> bool:
        """Claim or complete: a candidate of an unclaimed task, or its assignee
        (``is_candidate``: already known, as :meth:`visible_task` tells)."""
        if task.assignee:
            return task.assignee == principal.username
        if is_candidate is None:
            is_candidate = principal.username in self.candidates(task.id)
        return is_candidate

    # --- rights to act ------------------------------------------------------------------
    # The engine's operations ask these inside their own unit of work, once the instance's
    # row is locked (where Camunda checks its authorizations too): what they read cannot
    # change before the step commits, so a claim made by someone else a moment earlier is
    # seen, and a refusal writes nothing. What the principal may not see does not exist for
    # them (NotFound); what they see but may not do is Forbidden, naming the rule.

    def task_to_act_on(self, session: Session, principal: Principal,
                       task_id: str) -> tuple[HumanTask, bool] | None:
        """The task and whether the principal is one of its candidates, read in the unit of
        work; None when the principal may not see it (the caller says it does not exist)."""
        if not principal.trusted:
            return self.visible_task(principal, task_id, session)
        task = session.execute(select(HumanTask).where(HumanTask.id == task_id)
                               .execution_options(populate_existing=True)).scalar()
        if task is None:
            return None
        return task, session.get(TaskCandidate, (task_id, principal.username)) is not None

    def task_and_open_rows(self, session: Session, principal: Principal, task_id: str,
                           instance_id: str) -> tuple[tuple[HumanTask, bool] | None,
                                                      list[HumanTask]]:
        """What :meth:`task_to_act_on` tells (None when the principal may not see the task),
        with the rows of the other open tasks of its instance (``instance_id``, locked): one
        statement, each row read as it is now. The task's row is the session's object
        (refreshed if it held it, engine.store.db.attached); the other open tasks, which
        the step's projection only compares with the workflow (and cancels, when it left
        them), are :class:`OpenTaskRow` s, without the rest of their row: a reporting
        cycle has tens of thousands of them, whose whole rows as objects were a sixth of
        a unit's report."""
        rows: list = []
        found = None
        for row in session.connection().execute(self._open_rows_statement(principal),
                                                {"task_id": task_id,
                                                 "instance_id": instance_id}):
            if row[0] != task_id:
                rows.append(OpenTaskRow(*row[:3]))
                continue
            task = attached(session, HumanTask, row[5:], refresh=True)
            rows.append(task)
            if row[4]:                       # the principal may see it
                found = (task, bool(row[3]))
        return found, rows

    def _open_rows_statement(self, principal: Principal):
        # built once per caller as they are (name, units, administered variants: all the
        # statement depends on), the task and instance as parameters: a completion spent
        # 0.3 ms building it again (bench.request_profile)
        key = (principal.trusted, principal.username, principal.units, principal.admin_of)
        statement = _OPEN_ROWS.get(key)
        if statement is None:
            # every row's id, element and status; for the task's row alone, whether the
            # principal is its candidate and may see it, and its whole row (an outer join
            # of the table with itself on that row only)
            is_task = HumanTask.id == bindparam("task_id")
            candidate = exists().where(TaskCandidate.task_id == HumanTask.id,
                                       TaskCandidate.username == principal.username)
            visible = (true() if principal.trusted
                       else self.task_visible_clause(principal, kept=True))
            whole = HumanTask.__table__.alias("acted_on")
            statement = (select(HumanTask.id, HumanTask.element_id, HumanTask.status,
                                case((is_task, candidate), else_=false()),
                                case((is_task, visible), else_=false()),
                                *[whole.c[column.element.name].label(column.name)
                                  for column in columns_of(HumanTask)])
                         .outerjoin(whole, and_(is_task, whole.c.id == HumanTask.id))
                         .where(HumanTask.instance_id == bindparam("instance_id"),
                                or_(HumanTask.status == "open", is_task)))
            if len(_OPEN_ROWS) >= 1024:
                _OPEN_ROWS.clear()
            _OPEN_ROWS[key] = statement
        return statement

    def require_candidate(self, principal: Principal, task: HumanTask, is_candidate: bool,
                          doing: str) -> None:
        if principal.trusted or is_candidate:
            return
        raise Forbidden(f"only a candidate of task '{task.name or task.element_id}' may "
                        f"{doing} it, and {principal.username} is not one",
                        rule="candidates_only", task_id=task.id)

    def require_may_work_on(self, principal: Principal, task: HumanTask, is_candidate: bool,
                            doing: str) -> None:
        """Complete: the assignee of a claimed task, a candidate of an unclaimed one (what
        :meth:`may_work_on` tells a page)."""
        if principal.trusted or task.assignee == principal.username:
            return
        if task.assignee:
            raise Forbidden(f"only the assignee may {doing} task "
                            f"'{task.name or task.element_id}': it is claimed by "
                            f"{task.assignee}", rule="claimed_by_another", task_id=task.id,
                            assignee=task.assignee)
        self.require_candidate(principal, task, is_candidate, doing)

    def require_may_unclaim(self, principal: Principal, task: HumanTask, variant: str) -> None:
        if principal.trusted or task.assignee == principal.username \
                or principal.is_admin(variant):
            return
        raise Forbidden(f"only the assignee of task '{task.name or task.element_id}' or an "
                        f"administrator of '{variant}' may give it back",
                        rule="assignee_or_administrators", task_id=task.id)

    def require_admin(self, principal: Principal, variant: str, doing: str) -> None:
        """Administrators' work (repairs, assigning, starting scheduled processes by hand)."""
        if principal.trusted or principal.is_admin(variant):
            return
        raise Forbidden(f"only administrators of '{variant}' may {doing}",
                        rule="administrators_only", variant=variant)

    def require_visible(self, principal: Principal, instance_id: str,
                        session: Session | None = None) -> None:
        """Reading an instance: to someone who may not see it, it does not exist."""
        if not self.can_see_instance(principal, instance_id, session):
            raise NotFound(f"instance {instance_id} does not exist", code="instance.not_found",
                           instance_id=instance_id)

    def require_manages(self, session: Session, principal: Principal, instance: Instance,
                        doing: str) -> None:
        """An administrator's repair of an instance; to someone who may not even see it, the
        instance does not exist."""
        if principal.trusted or principal.is_admin(instance.variant):
            return
        self.require_visible(principal, instance.id, session)
        self.require_admin(principal, instance.variant, doing)

    def require_involved(self, session: Session, principal: Principal,
                         instance: Instance) -> None:
        """Messages go to instances the sender takes part in or administers."""
        if not principal.trusted:
            self.require_visible(principal, instance.id, session)

    def starting_unit(self, principal: Principal, variant: str, unit_id: str | None,
                      scheduled: bool) -> str | None:
        """The unit an instance of ``variant`` is started for: ``unit_id`` if the principal
        may act for it (one of their own units there, or any unit of a variant they
        administer), else their first unit in the variant. ``scheduled``: the process has a
        timer start event, so only administrators start it by hand."""
        if scheduled:
            self.require_admin(principal, variant, "start a scheduled process by hand")
        asked = [*principal.units, *([unit_id] if unit_id is not None else [])]
        variants: dict[str, str] = {}
        if asked:
            with self.db.reading() as session:
                variants = dict(session.execute(select(OrgUnit.id, OrgUnit.variant)
                                                .where(OrgUnit.id.in_(asked))).all())
        own = [u for u in principal.units if variants.get(u) == variant]
        if unit_id is not None:
            if principal.trusted or unit_id in own or (principal.is_admin(variant)
                                                       and variants.get(unit_id) == variant):
                return unit_id
            raise Forbidden(f"{principal.username} cannot act for unit '{unit_id}': it is "
                            f"not one of their units in '{variant}'", rule="own_units_only",
                            unit_id=unit_id)
        if own:
            return own[0]
        if principal.trusted or principal.is_admin(variant):
            return None
        raise Forbidden(f"{principal.username} holds no position in a unit of '{variant}', "
                        f"so cannot start its processes", rule="members_only",
                        variant=variant)

    def inbox_clause(self, principal: Principal, scope: str | None):
        """SQL condition on open tasks: the principal's inbox (``scope``: all of it, or the
        tasks assigned to them, offered to them, or of their units).

        It starts from the ids of the tasks assigned to the principal and of their open
        candidacies, two small index ranges, so an inbox costs what the principal's open
        work costs, not what the whole database's open tasks or anyone's history do."""
        name = principal.username
        unclaimed = HumanTask.assignee.is_(None)
        offered = select(TaskCandidate.task_id).where(TaskCandidate.username == name,
                                                      TaskCandidate.task_open)
        if scope == "mine":
            return HumanTask.assignee == name
        if scope == "candidate":
            return and_(unclaimed, self._task_among(offered))
        if scope == "unit":
            return HumanTask.unit_id.in_(principal.units or ("",))
        assigned = select(HumanTask.id).where(HumanTask.assignee == name,
                                              HumanTask.status == TaskStatus.OPEN)
        return and_(or_(unclaimed, HumanTask.assignee == name),
                    self._task_among(union_all(assigned, offered)))

    def _task_among(self, ids):
        """HumanTask.id is among the ids a subquery gives. On PostgreSQL they are made into
        an array first and the tasks read by primary key: given the subquery, the planner
        may misjudge how few they are (an official's open candidacies among their many
        closed ones) and scan every task."""
        if self.db.is_sqlite:
            return HumanTask.id.in_(ids)
        return HumanTask.id == any_(func.array(ids.scalar_subquery()))

    @staticmethod
    def overdue_clause(now: datetime):
        return and_(HumanTask.due_at.isnot(None), HumanTask.due_at < now)
