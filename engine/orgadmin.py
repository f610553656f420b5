"""Administration of a variant's organisation: units, officials and their positions, the
spreadsheet an HR office keeps, and the open work of people who leave or move.

Only administrators of the variant may change it (checked here, with the principal). Every
change is one transaction that also writes its audit entry (the system chain, action
``org_*``, the variant in its details) and bumps the organisation's generation, so every
process's cached tree sees it at once (:func:`engine.org.bump_generation`).

Tasks *follow a position*: an open task whose candidates were computed from a role has the
unit the role resolved to (``HumanTask.unit_id``) and the positions it looked for there
(``HumanTask.positions``). When someone stops holding such a position in that unit, their
candidacy (and their claim) passes to whoever holds the position there after the change, in
the same transaction; with nobody to take it, the other candidates keep the task and an
administrator assigns it. A task that named its people personally (the proposer, people
listed in the case's data, one member's ballot) stays theirs.

A *handover* is a head (or acting head) passing the position to the one appointed after
them: at once for an appointment from today; for one from a later day, on that day, when the
scheduler's round on the engine's clock first sees it due (:meth:`OrgAdmin.run_handovers`).
Each task moved is in its case's log (``task_reassigned``, reason ``org_handover``) and its
new holder is notified as for a new task.
"""
from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Iterator

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .access import Access, Principal
from .audit import lock_instance_chain
from .clock import Clock
from .errors import N_, Conflict, InvalidData, NotFound
from .org import POSITIONS, UNIT_KINDS, Org, Unit, bump_generation, in_force, local_today
from .store import (AuditEvent, Database, Handover, HumanTask, IdentityLink, Instance,
                    Membership, OrgUnit, TaskCandidate, TaskStatus, User)

# one row per membership: the columns of the spreadsheet, in its order
COLUMNS = ("username", "full_name", "email", "phone", "unit_id", "position", "valid_from",
           "valid_to", "active")
# optional: the official's account at the identity provider (single sign-on deployments)
IDENTITY_COLUMN = "sso_subject"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME = re.compile(r"^[A-Za-z0-9._-]{2,128}$")
# a position one person holds in a unit at a time: appointing someone ends the holder's
SINGLE_HOLDER = ("head", "acting_head")
UNUSABLE_PASSWORD = "!"     # no hash matches it: signs in once a password is set (or SSO)
HANDOVER_ACTOR = "scheduler"   # who carries out a handover that fell due


def follows(task: HumanTask, position: str, still: Iterable[str]) -> bool:
    """Whether ``task`` passes on when its holder stops holding ``position`` in the task's
    unit while still holding the positions ``still`` there: only a task whose people came
    from that position (not one naming them personally, nor one another position they keep
    gives them). A task opened before the positions were recorded follows the unit."""
    kept = set(still)
    if task.positions is None:
        return not kept
    came_from = {p for p in task.positions.split(",") if p}
    return position in came_from and not came_from & kept


@dataclass
class RowError:
    row: int
    column: str
    code: str
    message: str
    value: str = ""

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "code": self.code,
                "message": self.message, "value": self.value}


@dataclass
class ImportPlan:
    """What an import would change (or changed): officials added and updated, memberships
    added and ended, open tasks that pass to someone else, and the rows' errors."""
    rows: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[dict] = field(default_factory=list)
    memberships_added: list[dict] = field(default_factory=list)
    memberships_ended: list[dict] = field(default_factory=list)
    reassigned: list[dict] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)     # officials linked to the provider

    def as_dict(self) -> dict:
        return {"rows": self.rows, "added": self.added, "updated": self.updated,
                "memberships_added": self.memberships_added,
                "memberships_ended": self.memberships_ended,
                "reassigned": self.reassigned, "linked": self.linked,
                "errors": [e.as_dict() for e in self.errors]}


def _date(value: Any) -> date | None:
    """A date as a spreadsheet gives it: a date cell, dd/mm/yyyy or yyyy-mm-dd."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for pattern in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError(text)


def _active(value: Any) -> bool:
    text = str(value if value is not None else "").strip().lower()
    return text not in ("0", "false", "no", "không", "khong", "inactive")


def read_rows(content: bytes, filename: str) -> list[dict]:
    """The rows of an xlsx or CSV file as dicts of the columns (header row first)."""
    if filename.lower().endswith(".xlsx"):
        from openpyxl import load_workbook
        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).active
        except Exception as exc:        # a corrupt or foreign file: named, not a traceback
            raise InvalidData(f"{filename} is not a readable xlsx workbook",
                              code="org.import_unreadable", params={"file": filename}) \
                from exc
        table = [list(r) for r in sheet.iter_rows(values_only=True)] if sheet else []
    else:
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidData(f"{filename} is not UTF-8 CSV", code="org.import_unreadable",
                              params={"file": filename}) from exc
        try:
            table = [list(r) for r in csv.reader(io.StringIO(text, newline=""))]
        except csv.Error as exc:
            raise InvalidData(f"{filename} is not readable CSV: {exc}",
                              code="org.import_unreadable", params={"file": filename}) \
                from exc
    if not table:
        return []
    header = [str(h or "").strip().lower() for h in table[0]]
    missing = [c for c in ("username", "full_name", "unit_id", "position") if c not in header]
    if missing:
        raise InvalidData(f"the header row lacks the columns {', '.join(missing)}",
                          code="org.import_columns", params={"columns": ", ".join(missing)})
    rows = []
    for cells in table[1:]:
        if all(c in (None, "") for c in cells):
            continue
        rows.append({name: cells[i] if i < len(cells) else None
                     for i, name in enumerate(header)
                     if name in COLUMNS or name == IDENTITY_COLUMN})
    return rows


def subjects_of(rows: list[dict]) -> dict[str, str]:
    """username → the ``sso_subject`` its rows give (checked alike by the plan)."""
    found: dict[str, str] = {}
    for row in rows:
        subject = str(row.get(IDENTITY_COLUMN) or "").strip()
        if subject:
            found.setdefault(str(row.get("username") or "").strip(), subject)
    return found


class OrgAdmin:
    def __init__(self, db: Database, clock: Clock, access: Access, org: Org,
                 notifications=None):
        self.db = db
        self.clock = clock
        self.access = access
        self.org = org
        self.notifications = notifications      # tells whoever a task passes to

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A unit of work of the organisation's; the cached tree is forgotten after it: the
        notifications of tasks passed on read it mid-change (unit names), and what they
        read must not outlive the transaction."""
        try:
            with self.db.transaction() as session:
                yield session
        finally:
            self.org.invalidate()

    # --- reading ---------------------------------------------------------------------------
    def units(self, variant: str) -> list[OrgUnit]:
        with self.db.reading() as session:
            return list(session.scalars(select(OrgUnit).where(OrgUnit.variant == variant)
                                        .order_by(OrgUnit.id)))

    def officials(self, variant: str) -> list[tuple[User, list[Membership]]]:
        """The officials holding a position in the variant (or who held one and were
        deactivated: they keep no membership, their audit entries name the variant), with
        their memberships there."""
        with self.db.reading() as session:
            held: dict[str, list[Membership]] = {}
            for membership in session.scalars(
                    select(Membership).join(OrgUnit, OrgUnit.id == Membership.unit_id)
                    .where(OrgUnit.variant == variant).order_by(Membership.id)):
                held.setdefault(membership.username, []).append(membership)
            names = set(held) | set(self._named_in_log(session, variant))
            users = list(session.scalars(select(User).where(User.username.in_(names))
                                         .order_by(User.username))) if names else []
        return [(u, held.get(u.username, [])) for u in users]

    def official(self, variant: str, username: str) -> tuple[User, list[Membership]]:
        """An official with their memberships in the variant."""
        with self.db.reading() as session:
            user = self._user(session, username)
            return user, list(session.scalars(
                select(Membership).join(OrgUnit, OrgUnit.id == Membership.unit_id)
                .where(OrgUnit.variant == variant, Membership.username == username)
                .order_by(Membership.id)))

    def _named_in_log(self, session: Session, variant: str) -> list[str]:
        return [str((e.details or {})["username"]) for e in self._log(session, variant)
                if (e.details or {}).get("username")]

    @staticmethod
    def _log(session: Session, variant: str) -> list[AuditEvent]:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id.is_(None), AuditEvent.action.like("org_%"))
            .order_by(AuditEvent.id.desc()))
        return [e for e in events if (e.details or {}).get("variant") == variant]

    def audit_log(self, principal: Principal, variant: str) -> list[AuditEvent]:
        """The variant's organisation changes, newest first."""
        self.access.require_admin(principal, variant, "read the organisation's log")
        with self.db.reading() as session:
            return self._log(session, variant)

    def open_work(self, principal: Principal, variant: str, username: str,
                  unit_id: str | None = None) -> list[dict]:
        """The open tasks of the variant ``username`` is assigned to or a candidate for (of
        ``unit_id`` only, if given), each with whom it passes to by default."""
        self.access.require_admin(principal, variant, "see an official's open work")
        with self.db.reading() as session:
            tasks = self._open_tasks(session, variant, username, unit_id)
            memberships = list(session.scalars(select(Membership).where(
                Membership.username == username)))
            return [{"task": t, "claimed": t.assignee == username,
                     "successor": self._successor(session, t, username, memberships, (),
                                                  local_today(self.clock))}
                    for t in tasks]

    @staticmethod
    def _open_tasks(session: Session, variant: str, username: str,
                    unit_id: str | None = None) -> list[HumanTask]:
        candidate = select(TaskCandidate.task_id).where(TaskCandidate.username == username,
                                                        TaskCandidate.task_open)
        query = (select(HumanTask).join(Instance, Instance.id == HumanTask.instance_id)
                 .where(Instance.variant == variant, HumanTask.status == TaskStatus.OPEN,
                        (HumanTask.assignee == username) | HumanTask.id.in_(candidate))
                 .order_by(HumanTask.created_at, HumanTask.id))
        if unit_id is not None:
            query = query.where(HumanTask.unit_id == unit_id)
        return list(session.scalars(query))

    @staticmethod
    def _successor(session: Session, task: HumanTask, username: str,
                   held: Iterable[Membership], leaving: Iterable[tuple[str, str]],
                   today: date) -> str | None:
        """Who takes ``task`` from ``username`` by default: the one other holder of a
        position ``username`` holds (held) in the task's unit, after the change, whose
        position counts ``today``. ``leaving``: (unit, position) memberships the change
        ends."""
        positions = {m.position for m in held if m.unit_id == task.unit_id}
        positions |= {p for u, p in leaving if u == task.unit_id}
        if not task.unit_id or not positions:
            return None
        heads = positions & set(SINGLE_HOLDER)
        # only those whose position counts today: one starting later cannot act yet
        current = [(name, position) for name, position, start, end in session.execute(
            select(Membership.username, Membership.position, Membership.valid_from,
                   Membership.valid_to).where(
                Membership.unit_id == task.unit_id,
                Membership.position.in_(positions | (set(SINGLE_HOLDER) if heads else set())),
                Membership.username != username).order_by(Membership.id))
            if in_force(start, end, today)]
        holders = list(dict.fromkeys(name for name, position in current
                                     if position in positions))
        # a head's work goes to the (other) head, else to the acting head
        if heads:
            for position in SINGLE_HOLDER:
                first = next((name for name, held_as in current if held_as == position), None)
                if first:
                    return first
        return holders[0] if len(holders) == 1 else None

    # --- checks ----------------------------------------------------------------------------
    def _unit(self, session: Session, variant: str, unit_id: str) -> OrgUnit:
        unit = session.get(OrgUnit, unit_id)
        if unit is None or unit.variant != variant:
            raise NotFound(f"unit '{unit_id}' does not exist in {variant}",
                           code="unit.not_found", params={"unit": unit_id})
        return unit

    def _user(self, session: Session, username: str) -> User:
        user = session.get(User, username)
        if user is None:
            raise NotFound(f"official '{username}' does not exist", code="user.not_found",
                           params={"user": username})
        return user

    @staticmethod
    def _position(position: str) -> None:
        if position not in POSITIONS:
            raise InvalidData(f"unknown position '{position}'", code="org.unknown_position",
                              params={"value": position})

    def _audit(self, session: Session, principal: Principal, variant: str, action: str,
               **details) -> None:
        session.add(AuditEvent(instance_id=None, definition_id=None, at=self.clock.now(),
                               actor=principal.username, action=action,
                               details={"variant": variant, **details}))

    def _changing(self, session: Session, principal: Principal, variant: str) -> None:
        self.access.require_admin(principal, variant, "change the organisation")
        bump_generation(session)

    # --- units -----------------------------------------------------------------------------
    def save_unit(self, principal: Principal, variant: str, unit_id: str, *, name: str,
                  kind: str, parent_id: str | None, tags: Iterable[str] = ()) -> Unit:
        """Create a unit, or change its name, kind, place in the tree or tags."""
        if not USERNAME.match(unit_id or "") or len(unit_id) > 64:
            raise InvalidData(f"'{unit_id}' is not a unit id (letters, digits, . _ -)",
                              code="org.bad_unit_id", params={"value": unit_id})
        with self._transaction() as session:
            self._changing(session, principal, variant)
            unit = session.get(OrgUnit, unit_id)
            if unit is not None and unit.variant != variant:
                raise Conflict(f"unit id '{unit_id}' is taken by {unit.variant}",
                               code="org.unit_id_taken", params={"unit": unit_id})
            if kind not in UNIT_KINDS and (unit is None or unit.kind != kind):
                raise InvalidData(f"unknown unit kind '{kind}'", code="org.unknown_kind",
                                  params={"value": kind})
            if parent_id:
                parent: OrgUnit | None = self._unit(session, variant, parent_id)
                while parent is not None:           # no unit below itself
                    if parent.id == unit_id:
                        raise InvalidData(f"unit '{unit_id}' cannot be placed under its own "
                                          f"subunit '{parent_id}'", code="org.unit_cycle",
                                          params={"unit": unit_id})
                    parent = session.get(OrgUnit, parent.parent_id) \
                        if parent.parent_id else None
            before = None if unit is None else {"name": unit.name, "kind": unit.kind,
                                                "parent_id": unit.parent_id}
            if unit is None:
                unit = OrgUnit(id=unit_id, variant=variant)
                session.add(unit)
            unit.name, unit.kind, unit.parent_id = name, kind, parent_id or None
            unit.tags = list(tags)
            self._audit(session, principal, variant,
                        "org_unit_created" if before is None else "org_unit_changed",
                        unit_id=unit_id, name=name, kind=kind, parent_id=parent_id,
                        before=before)
        return self.org.unit(unit_id)

    # --- officials -------------------------------------------------------------------------
    def save_official(self, principal: Principal, variant: str, username: str, *,
                      full_name: str, email: str | None = None, phone: str | None = None,
                      password: str | None = None,
                      identity: tuple[str, str] | None = None) -> User:
        """Create an official, or change their name, e-mail, phone (or password).
        ``identity`` (issuer, value of the provider's claim) links the official to their
        account at the OpenID Connect provider; an empty value removes the link."""
        if not USERNAME.match(username or ""):
            raise InvalidData(f"'{username}' is not a username (letters, digits, . _ -)",
                              code="org.bad_username", params={"value": username})
        if email and not EMAIL.match(email):
            raise InvalidData(f"'{email}' is not an e-mail address", code="org.bad_email",
                              params={"value": email})
        from werkzeug.security import generate_password_hash
        with self._transaction() as session:
            self._changing(session, principal, variant)
            user = session.get(User, username)
            before = None if user is None else {"full_name": user.full_name,
                                                "email": user.email, "phone": user.phone}
            if user is None:
                user = User(username=username, password_hash=UNUSABLE_PASSWORD, active=True,
                            notification_mode="immediate")
                session.add(user)
            user.full_name, user.email, user.phone = full_name, email or None, phone or None
            if password:
                user.password_hash = generate_password_hash(password)
            session.flush()
            linked = self._link(session, username, identity) if identity else None
            self._audit(session, principal, variant,
                        "org_official_created" if before is None else "org_official_changed",
                        username=username, full_name=full_name, email=email, phone=phone,
                        password_set=bool(password), before=before,
                        **({"identity": linked} if identity else {}))
        with self.db.reading() as session:
            return self._user(session, username)

    def _link(self, session: Session, username: str, identity: tuple[str, str]) -> str | None:
        """Link ``username`` to the provider's ``identity`` (issuer, value), replacing a
        link they had; an empty value unlinks them. The value linked (or None)."""
        issuer, subject = identity[0], identity[1].strip()
        if len(subject) > 255:
            raise InvalidData("the identity at the provider is longer than 255 characters",
                              code="org.bad_identity", params={"value": subject[:40]})
        if subject:
            holder = session.get(IdentityLink, (issuer, subject))
            if holder is not None and holder.username != username:
                raise InvalidData(f"the identity '{subject}' is linked to {holder.username}",
                               code="org.identity_taken",
                               params={"value": subject, "username": holder.username})
        session.execute(delete(IdentityLink).where(IdentityLink.issuer == issuer,
                                                   IdentityLink.username == username))
        if subject:
            session.add(IdentityLink(issuer=issuer, subject=subject, username=username,
                                     linked_at=self.clock.now()))
        return subject or None

    def add_membership(self, principal: Principal, variant: str, username: str,
                       unit_id: str, position: str, valid_from: date | None = None,
                       valid_to: date | None = None) -> dict:
        """Give an official a position in a unit; for a head (or acting head), the one who
        held it stops, and their open tasks of the unit pass to the new holder. Appointed
        from a later day, the holder stays until the day before it."""
        self._position(position)
        if valid_from is not None and valid_to is not None and valid_to < valid_from:
            raise InvalidData(
                f"the position cannot end ({valid_to.strftime('%d/%m/%Y')}) before it starts "
                f"({valid_from.strftime('%d/%m/%Y')})", code="org.ends_before_start",
                params={"start": valid_from.strftime("%d/%m/%Y"),
                        "end": valid_to.strftime("%d/%m/%Y")},
                errors=[{"field": "valid_to", "code": N_("org.ends_before_start"),
                         "params": {"start": valid_from.strftime("%d/%m/%Y"),
                                    "end": valid_to.strftime("%d/%m/%Y")}}])
        with self._transaction() as session:
            self._changing(session, principal, variant)
            user = self._user(session, username)
            if not user.active:
                raise Conflict(f"official '{username}' is deactivated",
                               code="org.inactive_official", params={"user": username})
            self._unit(session, variant, unit_id)
            moved = self._appoint(session, principal, variant, username, unit_id, position,
                                  valid_from or local_today(self.clock), valid_to)
        return {"reassigned": moved}

    def _appoint(self, session: Session, principal: Principal, variant: str, username: str,
                 unit_id: str, position: str, valid_from: date | None,
                 valid_to: date | None) -> list[dict]:
        exists = session.scalars(select(Membership).where(
            Membership.username == username, Membership.unit_id == unit_id,
            Membership.position == position)).first()
        if exists is not None:
            exists.valid_from, exists.valid_to = valid_from, valid_to
            # re-dated before their first day: the handover to them moves with it
            session.execute(update(Handover).where(
                Handover.to_username == username, Handover.unit_id == unit_id,
                Handover.position == position, Handover.status == "pending")
                .values(effective_on=valid_from or local_today(self.clock)))
            return []
        previous = []
        if position in SINGLE_HOLDER:
            previous = list(session.scalars(select(Membership).where(
                Membership.unit_id == unit_id, Membership.position == position,
                Membership.username != username)))
        session.add(Membership(username=username, unit_id=unit_id, position=position,
                               valid_from=valid_from, valid_to=valid_to))
        session.flush()
        self._audit(session, principal, variant, "org_membership_added", username=username,
                    unit_id=unit_id, position=position,
                    valid_from=valid_from.isoformat() if valid_from else None,
                    valid_to=valid_to.isoformat() if valid_to else None)
        moved = []
        today = local_today(self.clock)
        for membership in previous:
            if valid_from is not None and valid_from > today and (
                    membership.valid_from is None or membership.valid_from < valid_from):
                # appointed from a later day: the holder stays until the day before it, and
                # their tasks of the position pass on that day (run_handovers)
                self._end_on(session, principal, variant, membership,
                             valid_from - timedelta(days=1))
                self._handover(session, principal, variant, membership, username,
                               valid_from)
            else:       # the successor takes the tasks only once their position counts
                starts = valid_from is None or valid_from <= today
                passed = self._end(session, principal, variant, membership,
                                   successor=username if starts else None)
                moved += passed
                if starts:
                    self._handover(session, principal, variant, membership, username,
                                   today, passed)
        return moved

    def _handover(self, session: Session, principal: Principal, variant: str,
                  membership: Membership, to: str, day: date,
                  moved: list[dict] | None = None) -> Handover:
        """Record ``membership``'s position passing to ``to`` on ``day``: done (``moved``
        the tasks that passed) or, for a later day, pending until the scheduler's round."""
        row = Handover(variant=variant, unit_id=membership.unit_id,
                       position=membership.position, from_username=membership.username,
                       to_username=to, effective_on=day, created_at=self.clock.now(),
                       created_by=principal.username,
                       status="pending" if moved is None else "done",
                       done_at=None if moved is None else self.clock.now(), moved=moved)
        session.add(row)
        session.flush()
        if moved is None:
            self._audit(session, principal, variant, "org_handover_planned",
                        handover=row.id, username=membership.username, to=to,
                        unit_id=membership.unit_id, position=membership.position,
                        effective_on=day.isoformat())
        return row

    # --- handovers on their day ------------------------------------------------------------
    def run_handovers(self) -> int:
        """Carry out the handovers whose day has come by the engine's clock (the
        scheduler's round calls it): each in its own transaction, once even when several
        schedulers race for it. Returns the number carried out."""
        today = local_today(self.clock)
        with self.db.reading() as session:
            due = list(session.scalars(select(Handover.id).where(
                Handover.status == "pending", Handover.effective_on <= today)
                .order_by(Handover.effective_on, Handover.id)))
        done = 0
        for handover_id in due:
            with self._transaction() as session:
                # the row's status decides: a second scheduler finds it no longer pending
                taken = session.execute(update(Handover).where(
                    Handover.id == handover_id, Handover.status == "pending")
                    .values(status="running")).rowcount  # type: ignore[attr-defined]
                if not taken:
                    continue
                row = session.get(Handover, handover_id)
                assert row is not None
                self._carry_out(session, row, today)
                done += 1
        return done

    def _carry_out(self, session: Session, row: Handover, today: date) -> None:
        principal = Principal.system(HANDOVER_ACTOR)
        holders = {name for name, start, end in session.execute(
            select(Membership.username, Membership.valid_from, Membership.valid_to).where(
                Membership.unit_id == row.unit_id, Membership.position == row.position))
            if in_force(start, end, today)}
        if row.from_username in holders or row.to_username not in holders:
            # the appointment changed meanwhile: the one before still holds the position,
            # or the one appointed does not hold it today
            row.conclude("cancelled", [], self.clock.now())
            self._audit(session, principal, row.variant, "org_handover_cancelled",
                        handover=row.id, username=row.from_username, to=row.to_username,
                        unit_id=row.unit_id, position=row.position)
            return
        moved = [self._pass_task(session, principal, task, row.from_username,
                                 row.to_username, "org_handover",
                                 handover=row.id, unit_id=row.unit_id, position=row.position)
                 for task in self._following(session, row, today)]
        row.conclude("done", moved, self.clock.now())
        self._audit(session, principal, row.variant, "org_handover_done", handover=row.id,
                    username=row.from_username, to=row.to_username, unit_id=row.unit_id,
                    position=row.position, tasks=[m["task_id"] for m in moved])

    def _following(self, session: Session, row: Handover, day: date) -> list[HumanTask]:
        """The open tasks of ``row``'s previous holder that pass with the position on
        ``day`` (those that other positions they hold there that day give them stay)."""
        still = [position for position, start, end in session.execute(
            select(Membership.position, Membership.valid_from, Membership.valid_to).where(
                Membership.username == row.from_username, Membership.unit_id == row.unit_id,
                Membership.position != row.position)) if in_force(start, end, day)]
        return [task for task in self._open_tasks(session, row.variant, row.from_username,
                                                  row.unit_id)
                if follows(task, row.position, still)]

    def handovers(self, principal: Principal, variant: str) -> list[dict]:
        """The variant's handovers, newest first: the tasks that moved, or, for one still
        to come, the open tasks that would move if its day were today."""
        self.access.require_admin(principal, variant, "see the organisation's handovers")
        with self.db.reading() as session:
            rows = list(session.scalars(select(Handover).where(Handover.variant == variant)
                                        .order_by(Handover.id.desc())))
            found = []
            for row in rows:
                if row.status == "pending":
                    tasks = [{"task_id": t.id, "instance_id": t.instance_id, "name": t.name,
                              "from": row.from_username, "to": row.to_username,
                              "claimed": t.assignee == row.from_username}
                             for t in self._following(session, row, row.effective_on)]
                else:
                    tasks = list(row.moved or [])
                found.append({"id": row.id, "unit_id": row.unit_id, "position": row.position,
                              "from": row.from_username, "to": row.to_username,
                              "effective_on": row.effective_on, "status": row.status,
                              "created_by": row.created_by, "created_at": row.created_at,
                              "done_at": row.done_at, "tasks": tasks})
        return found

    def _end_on(self, session: Session, principal: Principal, variant: str,
                membership: Membership, last_day: date) -> None:
        """End a membership on ``last_day`` (a later day than today): it counts until then,
        its holder keeps their tasks meanwhile."""
        if membership.valid_to is not None and membership.valid_to <= last_day:
            return
        membership.valid_to = last_day
        session.flush()
        self._audit(session, principal, variant, "org_membership_ended",
                    username=membership.username, unit_id=membership.unit_id,
                    position=membership.position,
                    valid_from=membership.valid_from.isoformat()
                    if membership.valid_from else None, ended=last_day.isoformat())

    def _end(self, session: Session, principal: Principal, variant: str,
             membership: Membership, successor: str | None = None,
             reassign: dict[str, str | None] | None = None) -> list[dict]:
        """End a membership; the open tasks of its unit the holder had pass on (to
        ``successor``, else to the other holder of the position there)."""
        username, unit_id, position = (membership.username, membership.unit_id,
                                       membership.position)
        session.delete(membership)
        session.flush()
        self._audit(session, principal, variant, "org_membership_ended", username=username,
                    unit_id=unit_id, position=position,
                    valid_from=membership.valid_from.isoformat()
                    if membership.valid_from else None,
                    ended=local_today(self.clock).isoformat())
        # another position in the same unit keeps them on the tasks it gives them, and a
        # task that named them personally stays theirs
        still = {m.position for m in session.scalars(select(Membership).where(
            Membership.username == username, Membership.unit_id == unit_id))}
        moved = []
        for task in self._open_tasks(session, variant, username, unit_id):
            if reassign is not None and task.id in reassign:
                to = reassign[task.id]
            elif not follows(task, position, still):
                continue
            else:
                to = successor or self._successor(session, task, username, (),
                                                  [(unit_id, position)],
                                                  local_today(self.clock))
            moved.append(self._pass_task(session, principal, task, username, to,
                                         "org_membership_ended"))
        return moved

    def _pass_task(self, session: Session, principal: Principal, task: HumanTask,
                   username: str, to: str | None, reason: str, **why) -> dict:
        """``username``'s candidacy and claim of an open task pass to ``to`` (or, without
        one, are given up: the other candidates keep the task); ``to`` is told as of a new
        task (of a task given to them, when the claim passed). ``why``: more of the
        reason, for the case's log."""
        lock_instance_chain(session, task.instance_id)
        session.refresh(task)
        claimed = task.assignee == username
        session.execute(delete(TaskCandidate).where(TaskCandidate.task_id == task.id,
                                                    TaskCandidate.username == username))
        if to and session.get(TaskCandidate, (task.id, to)) is None:
            session.add(TaskCandidate(task_id=task.id, instance_id=task.instance_id,
                                      username=to, task_open=True))
        if claimed:
            task.assignee = to
        instance = session.get(Instance, task.instance_id)
        session.add(AuditEvent(instance_id=task.instance_id,
                               definition_id=instance.definition_id if instance else None,
                               at=self.clock.now(), actor=principal.username,
                               action="task_reassigned", element_id=task.element_id,
                               details={"task_id": task.id, "from": username, "to": to,
                                        "claimed": claimed, "reason": reason, **why}))
        if to and self.notifications is not None:
            self.notifications.notify(session, [to],
                                      "task_assigned" if claimed else "task_available",
                                      instance=instance, task=task, actor=principal.username)
        session.flush()
        return {"task_id": task.id, "instance_id": task.instance_id, "name": task.name,
                "from": username, "to": to, "claimed": claimed}

    def end_membership(self, principal: Principal, variant: str, username: str,
                       unit_id: str, position: str,
                       reassign: dict[str, str | None] | None = None) -> dict:
        with self._transaction() as session:
            self._changing(session, principal, variant)
            self._unit(session, variant, unit_id)
            membership = session.scalars(select(Membership).where(
                Membership.username == username, Membership.unit_id == unit_id,
                Membership.position == position)).first()
            if membership is None:
                raise NotFound(f"{username} holds no {position} position in {unit_id}",
                               code="org.no_such_membership",
                               params={"user": username, "unit": unit_id})
            self._check_targets(session, variant, reassign)
            moved = self._end(session, principal, variant, membership, reassign=reassign)
        return {"reassigned": moved}

    def move(self, principal: Principal, variant: str, username: str, *, from_unit: str,
             to_unit: str, position: str, reassign: dict[str, str | None] | None = None
             ) -> dict:
        """An official leaves their positions in ``from_unit`` for ``position`` in
        ``to_unit``; their open tasks of ``from_unit`` pass to the holders left there (or as
        ``reassign`` says: task id → username, None to give it up)."""
        self._position(position)
        with self._transaction() as session:
            self._changing(session, principal, variant)
            self._unit(session, variant, from_unit)
            self._unit(session, variant, to_unit)
            self._check_targets(session, variant, reassign)
            held = list(session.scalars(select(Membership).where(
                Membership.username == username, Membership.unit_id == from_unit)))
            if not held:
                raise NotFound(f"{username} holds no position in {from_unit}",
                               code="org.no_such_membership",
                               params={"user": username, "unit": from_unit})
            moved = self._appoint(session, principal, variant, username, to_unit, position,
                                  local_today(self.clock), None)
            for membership in held:
                moved += self._end(session, principal, variant, membership,
                                   reassign=reassign)
            self._audit(session, principal, variant, "org_official_moved", username=username,
                        from_unit=from_unit, to_unit=to_unit, position=position)
        return {"reassigned": moved}

    def set_active(self, principal: Principal, variant: str, username: str, active: bool,
                   reassign: dict[str, str | None] | None = None) -> dict:
        """Deactivate an official (they cannot sign in, their memberships of the variant end
        and their open tasks pass on, all at once), or activate them again."""
        with self._transaction() as session:
            self._changing(session, principal, variant)
            user = self._user(session, username)
            self._check_targets(session, variant, reassign)
            moved: list[dict] = []
            if not active:
                held = list(session.scalars(
                    select(Membership).join(OrgUnit, OrgUnit.id == Membership.unit_id)
                    .where(Membership.username == username, OrgUnit.variant == variant)))
                for membership in held:
                    moved += self._end(session, principal, variant, membership,
                                       reassign=reassign)
                done = {m["task_id"] for m in moved}
                # tasks of other units they were named for (by name, say): as asked, else
                # given up
                for task in self._open_tasks(session, variant, username):
                    if task.id not in done:
                        moved.append(self._pass_task(session, principal, task, username,
                                                     (reassign or {}).get(task.id),
                                                     "org_official_deactivated"))
            user.active = active
            self._audit(session, principal, variant,
                        "org_official_activated" if active else "org_official_deactivated",
                        username=username, reassigned=len(moved))
        return {"reassigned": moved}

    def _check_targets(self, session: Session, variant: str,
                       reassign: dict[str, str | None] | None) -> None:
        """The officials chosen to take tasks exist, are active and, when they hold
        positions in the variant, hold one today: one whose position starts later cannot
        act on a task yet."""
        today = local_today(self.clock)
        for to in (reassign or {}).values():
            if to:
                user = session.get(User, to)
                if user is None or not user.active:
                    raise InvalidData(f"user '{to}' does not exist", code="user.not_found",
                                      params={"user": to})
                terms = session.execute(
                    select(Membership.valid_from, Membership.valid_to)
                    .join(OrgUnit, OrgUnit.id == Membership.unit_id)
                    .where(Membership.username == to, OrgUnit.variant == variant)).all()
                later = sorted(start for start, end in terms if start and start > today)
                if later and not any(in_force(start, end, today) for start, end in terms):
                    raise InvalidData(
                        f"{to} cannot take tasks before their position starts on "
                        f"{later[0].strftime('%d/%m/%Y')}", code="org.successor_not_started",
                        params={"user": to, "day": later[0].strftime("%d/%m/%Y")},
                        errors=[{"field": "to", "code": N_("org.successor_not_started"),
                                 "params": {"user": to,
                                            "day": later[0].strftime("%d/%m/%Y")}}])

    def reassign_tasks(self, principal: Principal, variant: str, task_ids: list[str],
                       username: str) -> list[dict]:
        """Give several open tasks of the variant to one official (bulk reassignment): they
        become its assignee and a candidate."""
        with self._transaction() as session:
            self.access.require_admin(principal, variant, "assign its tasks")
            self._check_targets(session, variant, {"": username})
            tasks = list(session.scalars(
                select(HumanTask).join(Instance, Instance.id == HumanTask.instance_id)
                .where(HumanTask.id.in_(task_ids), Instance.variant == variant)
                .order_by(HumanTask.instance_id, HumanTask.id)))
            if len(tasks) != len(set(task_ids)):
                missing = sorted(set(task_ids) - {t.id for t in tasks})
                raise NotFound(f"task {missing[0]} does not exist", code="task.not_found",
                               task_id=missing[0])
            done = []
            for task in tasks:
                lock_instance_chain(session, task.instance_id)
                session.refresh(task)
                if task.status != TaskStatus.OPEN:
                    raise Conflict("the task is no longer open", code="task.not_open",
                                   task_id=task.id)
                previous = task.assignee
                if session.get(TaskCandidate, (task.id, username)) is None:
                    session.add(TaskCandidate(task_id=task.id, instance_id=task.instance_id,
                                              username=username, task_open=True))
                task.assignee = username
                session.add(AuditEvent(instance_id=task.instance_id, at=self.clock.now(),
                                       actor=principal.username, action="task_assigned",
                                       element_id=task.element_id,
                                       details={"task_id": task.id, "assignee": username,
                                                "previous": previous, "bulk": True}))
                done.append({"task_id": task.id, "instance_id": task.instance_id,
                             "name": task.name, "from": previous, "to": username,
                             "claimed": True})
        return done

    # --- the spreadsheet -------------------------------------------------------------------
    def export_rows(self, principal: Principal, variant: str,
                    issuer: str | None = None) -> list[list]:
        """One row per membership, in the import's columns; with ``issuer`` (single sign-on
        configured) also ``sso_subject``, the official's account there, so that the export
        imports again with the same links."""
        self.access.require_admin(principal, variant, "export the organisation")
        rows: list[list] = [[*COLUMNS, *([IDENTITY_COLUMN] if issuer else [])]]
        subjects: dict[str, str] = {}
        if issuer:
            with self.db.reading() as session:
                subjects = dict(session.execute(select(IdentityLink.username,
                                                       IdentityLink.subject)
                                                .where(IdentityLink.issuer == issuer)).all())
        for user, memberships in self.officials(variant):
            for m in memberships:
                rows.append([user.username, user.full_name, user.email or "",
                             user.phone or "", m.unit_id, m.position,
                             m.valid_from.strftime("%d/%m/%Y") if m.valid_from else "",
                             m.valid_to.strftime("%d/%m/%Y") if m.valid_to else "",
                             "1" if user.active else "0",
                             *([subjects.get(user.username, "")] if issuer else [])])
        return rows

    @staticmethod
    def export_file(rows: list[list], fmt: str) -> bytes:
        if fmt == "csv":
            out = io.StringIO()
            csv.writer(out).writerows(rows)
            return out.getvalue().encode("utf-8-sig")
        from openpyxl import Workbook
        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "officials"
        for row in rows:
            sheet.append(row)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()

    def import_file(self, principal: Principal, variant: str, content: bytes,
                    filename: str, apply: bool, issuer: str | None = None) -> ImportPlan:
        """Preview (``apply`` False) or make the changes of an HR spreadsheet: one row per
        membership; the officials it names hold exactly the positions of the variant it
        gives them. With any row in error nothing is written. A column ``sso_subject``
        links officials to their account at the identity provider ``issuer`` (the
        deployment's, when single sign-on is configured)."""
        self.access.require_admin(principal, variant, "import the organisation")
        rows = read_rows(content, filename)
        if not apply:
            with self.db.reading() as session:
                return self._plan(session, variant, rows, issuer)
        with self._transaction() as session:
            bump_generation(session)
            plan = self._plan(session, variant, rows, issuer)
            if plan.errors:        # raised inside: the unit of work writes nothing
                first = plan.errors[0]
                raise InvalidData(
                    f"{len(plan.errors)} rows in error; nothing was imported (row "
                    f"{first.row}, column {first.column}: {first.message})",
                    code="org.import_refused", params={"count": len(plan.errors)},
                    errors=[{"field": f"{e.column}", "row": e.row, "column": e.column,
                             "value": e.value, "code": e.code,
                             "params": {"row": e.row, "column": e.column,
                                        "value": e.value},
                             "message": f"row {e.row}, {e.column}: {e.message}"}
                            for e in plan.errors])
            self._apply(session, principal, variant, rows, plan)
            for username in plan.linked:
                assert issuer is not None           # _plan refuses links without one
                subject = self._link(session, username, (issuer, subjects_of(rows)[username]))
                self._audit(session, principal, variant, "org_official_changed",
                            username=username, imported=True, identity=subject)
            self._audit(session, principal, variant, "org_imported", file=filename[:200],
                        rows=plan.rows, added=len(plan.added), updated=len(plan.updated),
                        memberships_added=len(plan.memberships_added),
                        memberships_ended=len(plan.memberships_ended))
        return plan

    def _plan(self, session: Session, variant: str, rows: list[dict],
              issuer: str | None = None) -> ImportPlan:
        plan = ImportPlan(rows=len(rows))
        subjects: dict[str, str] = {}            # username → the provider's value
        owners: dict[str, str] = {}              # the provider's value → username
        units = set(session.scalars(select(OrgUnit.id).where(OrgUnit.variant == variant)))
        people: dict[str, dict] = {}
        wanted: dict[str, set[tuple[str, str]]] = {}
        seen: set[tuple[str, str, str]] = set()
        for number, row in enumerate(rows, start=2):        # the header is row 1
            def error(column: str, code: str, message: str, value: Any = "") -> None:
                plan.errors.append(RowError(number, column, code, message,
                                            str(value if value is not None else "")))
            cells = {k: str(v).strip() if v is not None else "" for k, v in row.items()}
            username = cells.get("username") or ""
            if not USERNAME.match(username):
                error("username", N_("org.bad_username"), "not a username", username)
                continue
            if not cells.get("full_name"):
                error("full_name", N_("org.missing"), "empty")
            email = cells.get("email") or None
            if email and not EMAIL.match(email):
                error("email", N_("org.bad_email"), "not an e-mail address", email)
            unit_id = cells.get("unit_id") or ""
            if unit_id not in units:
                error("unit_id", N_("org.unknown_unit"), "unknown unit", unit_id)
            position = cells.get("position") or ""
            if position not in POSITIONS:
                error("position", N_("org.unknown_position"), "unknown position", position)
            dates = {}
            for column in ("valid_from", "valid_to"):
                try:
                    dates[column] = _date(row.get(column))
                except ValueError:
                    error(column, N_("org.bad_date"), "not a date (dd/mm/yyyy)",
                          row.get(column))
            person = {"full_name": cells.get("full_name") or "", "email": email,
                      "phone": cells.get("phone") or None,
                      "active": _active(cells.get("active"))}
            if username in people and people[username] != person:
                error("username", N_("org.duplicate_username"),
                      "the same username with other details on an earlier row", username)
                continue
            subject = cells.get(IDENTITY_COLUMN) or ""
            if subject:
                if issuer is None:
                    error(IDENTITY_COLUMN, N_("org.sso_not_configured"),
                          "single sign-on is not configured", subject)
                elif len(subject) > 255:
                    error(IDENTITY_COLUMN, N_("org.bad_identity"), "longer than 255",
                          subject[:40])
                elif owners.setdefault(subject, username) != username or (
                        (link := session.get(IdentityLink, (issuer, subject))) is not None
                        and link.username != username):
                    error(IDENTITY_COLUMN, N_("org.import_identity_taken"),
                          "linked to another official", subject)
            if subjects.setdefault(username, subject) != subject:
                error(IDENTITY_COLUMN, N_("org.duplicate_username"),
                      "the same username with another identity on an earlier row", username)
                continue
            if (username, unit_id, position) in seen:
                error("position", N_("org.duplicate_row"), "the same membership twice",
                      f"{unit_id} {position}")
                continue
            seen.add((username, unit_id, position))
            people[username] = person
            row["_dates"] = dates
            wanted.setdefault(username, set()).add((unit_id, position))
        if plan.errors:
            return plan
        if issuer is not None:
            plan.linked = [username for username, subject in subjects.items()
                           if subject and session.get(IdentityLink, (issuer, subject)) is None]
        for username, person in people.items():
            user = session.get(User, username)
            if user is None:
                plan.added.append(username)
                continue
            changes = {k: v for k, v in person.items()
                       if getattr(user, k) != v and not (k == "phone" and not v
                                                         and not user.phone)}
            if changes:
                plan.updated.append({"username": username, "changes": changes})
        current: dict[str, set[tuple[str, str]]] = {}
        for m in session.scalars(select(Membership).where(
                Membership.username.in_(list(people)), Membership.unit_id.in_(units))):
            current.setdefault(m.username, set()).add((m.unit_id, m.position))
        for username, memberships in wanted.items():
            have = current.get(username, set())
            plan.memberships_added += [{"username": username, "unit_id": u, "position": p}
                                       for u, p in sorted(memberships - have)]
            plan.memberships_ended += [{"username": username, "unit_id": u, "position": p}
                                       for u, p in sorted(have - memberships)]
        # a new head (or acting head) ends the one who holds it now, named in the file or not
        ended = {(e["username"], e["unit_id"], e["position"]) for e in plan.memberships_ended}
        for added in list(plan.memberships_added):
            if added["position"] not in SINGLE_HOLDER:
                continue
            for holder in session.scalars(select(Membership.username).where(
                    Membership.unit_id == added["unit_id"],
                    Membership.position == added["position"],
                    Membership.username != added["username"])):
                key = (holder, added["unit_id"], added["position"])
                if key not in ended and (added["unit_id"], added["position"]) not in \
                        wanted.get(holder, set()):
                    ended.add(key)
                    plan.memberships_ended.append({"username": holder,
                                                   "unit_id": added["unit_id"],
                                                   "position": added["position"]})
        return plan

    def _apply(self, session: Session, principal: Principal, variant: str,
               rows: list[dict], plan: ImportPlan) -> None:
        people: dict[str, dict] = {}
        for row in rows:
            people.setdefault(str(row["username"]).strip(), row)
        for username, row in people.items():
            user = session.get(User, username)
            full_name = str(row.get("full_name") or "").strip()
            email = str(row.get("email") or "").strip() or None
            phone = str(row.get("phone") or "").strip() or None
            if user is None:
                user = User(username=username, password_hash=UNUSABLE_PASSWORD,
                            notification_mode="immediate")
                session.add(user)
            user.full_name, user.email, user.phone = full_name, email, phone
            user.active = _active(row.get("active"))
        session.flush()
        for username in plan.added:
            self._audit(session, principal, variant, "org_official_created",
                        username=username, imported=True)
        for change in plan.updated:
            self._audit(session, principal, variant, "org_official_changed",
                        username=change["username"], imported=True,
                        changes={k: v for k, v in change["changes"].items()})
        dates = {(str(r["username"]).strip(), str(r["unit_id"]).strip(),
                  str(r["position"]).strip()): r.get("_dates", {}) for r in rows}
        # the new memberships first: a head who is replaced passes their tasks to the new one
        for added in plan.memberships_added:
            key = (added["username"], added["unit_id"], added["position"])
            session.add(Membership(username=key[0], unit_id=key[1], position=key[2],
                                   valid_from=dates[key].get("valid_from")
                                   or local_today(self.clock),
                                   valid_to=dates[key].get("valid_to")))
            self._audit(session, principal, variant, "org_membership_added",
                        username=key[0], unit_id=key[1], position=key[2], imported=True)
        session.flush()
        today = local_today(self.clock)
        # a head (or acting head) the file appoints: the one before hands over on their day
        appointed = {(a["unit_id"], a["position"]): (
            a["username"], dates[(a["username"], a["unit_id"], a["position"])]
            .get("valid_from") or today)
            for a in plan.memberships_added if a["position"] in SINGLE_HOLDER}
        for ended in plan.memberships_ended:
            membership = session.scalars(select(Membership).where(
                Membership.username == ended["username"],
                Membership.unit_id == ended["unit_id"],
                Membership.position == ended["position"])).first()
            if membership is None:
                continue
            successor, first_day = appointed.get((membership.unit_id, membership.position),
                                                 (None, today))
            if successor is not None and first_day > today:
                self._end_on(session, principal, variant, membership,
                             first_day - timedelta(days=1))
                self._handover(session, principal, variant, membership, successor,
                               first_day)
            elif successor is not None:
                passed = self._end(session, principal, variant, membership,
                                   successor=successor)
                self._handover(session, principal, variant, membership, successor, today,
                               passed)
                plan.reassigned += passed
            else:
                plan.reassigned += self._end(session, principal, variant, membership)
        for (username, unit_id, position), found in dates.items():
            membership = session.scalars(select(Membership).where(
                Membership.username == username, Membership.unit_id == unit_id,
                Membership.position == position)).first()
            if membership is not None and found.get("valid_from"):
                membership.valid_from = found["valid_from"]
                membership.valid_to = found.get("valid_to")
        for username, row in people.items():
            if not _active(row.get("active")):
                for task in self._open_tasks(session, variant, username):
                    plan.reassigned.append(self._pass_task(
                        session, principal, task, username, None,
                        "org_official_deactivated"))
