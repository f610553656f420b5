"""The notification centre: recording notifications with the event that caused them, and
what each user reads, marks read and prefers.

:meth:`Notifications.notify` runs inside the caller's transaction (a step of an instance, an
assignment): the notification rows and, for users who want e-mail at once, the outbox rows
commit or roll back with the event itself. Nobody is told of what they just did themselves.
In-app notifications are always kept; the preference only decides e-mail:
``immediate`` (one e-mail per notification), ``digest`` (one e-mail a day) or ``off``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ..clock import Clock, as_utc
from ..errors import N_, InvalidData, InvalidState, NotFound
from ..store import (AuditEvent, Database, Definition, HumanTask, Instance, Membership,
                     OrgUnit, User, appends)
from ..org import Org
from ..store.models import Notification, OutboxMessage
from ..tasks import page_of
from .templates import Renderer, from_sources

MODES = ("immediate", "digest", "off")
SYSTEM_ACTORS = ("scheduler", "system")
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def link_for(task_id: str | None, instance_id: str | None) -> str:
    """The web app's path: the task for task notifications, else the instance."""
    if task_id:
        return f"/tasks/{task_id}"
    return f"/instances/{instance_id}" if instance_id else "/"


def in_app_body(text: str, url: str) -> str:
    """The e-mail's text as the notification centre shows it, where the title is the link:
    without the lines that give the link's address (``url``) and without the e-mail's
    signature (from a line ``--`` on: "sent automatically, do not reply"). Together they
    were a quarter of every notification row."""
    kept = []
    for line in text.splitlines():
        if line.rstrip() == "--":
            break
        if url not in line:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def as_dict(row: Notification) -> dict:
    return {"id": row.id, "kind": row.kind, "title": row.title, "body": row.body,
            "task_id": row.task_id, "instance_id": row.instance_id, "link": row.link,
            "created_at": as_utc(row.created_at),
            "read_at": as_utc(row.read_at) if row.read_at is not None else None}


# a user as a step knows them: the session's object, or a row of the columns below
Person = User | Row
# the users of some names (Notifications.prefetch), built once
_USERS = select(User.username, User.full_name, User.active, User.email,
                User.notification_mode).where(
    User.username.in_(bindparam("usernames", expanding=True)))


def _administered(principal):
    """SQL condition on an outbox row: it goes to a member of a unit in a variant the
    principal administers."""
    members = (select(Membership.username).join(OrgUnit, OrgUnit.id == Membership.unit_id)
               .where(principal.admin_variants_clause(OrgUnit.variant)))
    return OutboxMessage.username.in_(members)


class Notifications:
    def __init__(self, db: Database, clock: Clock, org: Org, base_url: str | None = None):
        self.db = db
        self.org = org              # unit names, from its in-memory tree
        self.clock = clock
        # where the web app is reached, for links in e-mails (ND73_PUBLIC_URL)
        self.base_url = (base_url or DEFAULT_PUBLIC_URL).rstrip("/")
        self.renderer = Renderer()
        self._templates: dict[int, dict[str, str]] = {}
        self._definitions: dict[int, Definition] = {}

    # --- recording (inside the caller's transaction) -------------------------------------
    def notify(self, session: Session, usernames, kind: str, *, instance: Instance | None,
               task: HumanTask | None = None, data: dict | None = None,
               actor: str | None = None, title: str | None = None,
               documents: Sequence[dict] = ()) -> list[dict]:
        """Record the notifications (and e-mails) of an event; returns their rows' values,
        written with the unit of work (:mod:`engine.store.appends`). ``documents``: the
        official documents the event issued, which templates cite (``documents``)."""
        now = self.clock.now()
        definition = (self._definition(session, instance.definition_id)
                      if instance is not None else None)
        created: list = []
        recipients = [u for u in dict.fromkeys(usernames)
                      if u and u != actor and u not in SYSTEM_ACTORS]
        if not recipients:
            return created
        # the recipients and the proposer named in the messages, in one query
        users = self.prefetch(session, recipients + (
            [instance.started_by] if instance is not None else []))
        for username in recipients:
            user = users.get(username)
            if user is None or not user.active:
                continue
            link = link_for(task.id if task is not None else None,
                            instance.id if instance is not None else None)
            context = self._context(session, user, instance, definition, task, data, link)
            context["documents"] = [dict(d) for d in documents]
            if title:                 # the declared title, for a kind without templates
                context["title"] = title
            # the HTML part only for an e-mail sent at once (a digest is made of the rows)
            email_status = self._email_status(user)
            subject, text, html = self._render(definition, kind, context,
                                               html=email_status == "outbox")
            created.append(appends.add(
                session, Notification.__table__, username=username, kind=kind,
                title=subject, body=in_app_body(text, context["url"]),
                task_id=task.id if task is not None else None,
                instance_id=instance.id if instance is not None else None,
                definition_id=definition.id if definition else None, link=link,
                created_at=now, read_at=None, email_status=email_status, outbox_id=None,
                outbox=None if email_status != "outbox" else dict(
                    username=username, recipient=user.email, subject=subject,
                    text_body=text, html_body=html, kind=kind, status="pending",
                    attempts=0, next_attempt_at=now, created_at=now)))
        return created

    @staticmethod
    def prefetch(session: Session, usernames) -> dict[str, Person]:
        """The users of ``usernames`` that exist, by name: those the session holds (its
        objects) or this unit of work read, the others in a few statements instead of one
        each (a reporting cycle tells thousands of units), read as rows of the columns a
        notification and a document use (name, full name, whether active, e-mail and
        notification mode), not as the session's objects: making an object of each of a
        cycle's thousands of rows took most of the read. Kept for the unit of work, so
        later look-ups of the same users in it find them without asking the database."""
        kept = session.info.setdefault("prefetched", {})
        found = {}
        missing = []
        for name in dict.fromkeys(usernames):
            if not name:
                continue
            user = kept.get(name) or session.identity_map.get(identity_key(User, name))
            if user is not None:
                found[name] = user
            elif name not in SYSTEM_ACTORS:
                missing.append(name)
        # users are not among what the step has pending: no flush of it before reading
        for first in range(0, len(missing), 500):
            connection = session.connection()
            for row in connection.execute(_USERS, {"usernames": missing[first:first + 500]}):
                found[row.username] = row
        kept.update(found)
        return found

    def _definition(self, session: Session, definition_id: int) -> Definition | None:
        """Definition versions never change: read each once (its row holds the whole spec
        and sources, too big to read at every notification)."""
        cached = self._definitions.get(definition_id)
        if cached is None:
            cached = session.get(Definition, definition_id)
            if cached is not None:
                session.expunge(cached)
                self._definitions[definition_id] = cached
        return cached

    @staticmethod
    def _email_status(user: Person) -> str:
        if not user.email or user.notification_mode == "off":
            return "none"
        return "digest" if user.notification_mode == "digest" else "outbox"

    def templates_of(self, definition: Definition | None) -> dict[str, str]:
        if definition is None:
            return {}
        cached = self._templates.get(definition.id)
        if cached is None:
            cached = self._templates[definition.id] = from_sources(definition.sources or {})
        return cached

    def _render(self, definition, kind, context, html: bool = True):
        return self.renderer.render(definition.id if definition else None,
                                    self.templates_of(definition), kind, context, html=html)

    def _context(self, session: Session, user: Person, instance, definition, task, data,
                 link: str) -> dict:
        context = {"user": {"username": user.username, "full_name": user.full_name},
                   "link": link, "url": self.base_url + link, "site_url": self.base_url,
                   "now": self.clock.now(), "data": dict(data or {}), "task": None,
                   "instance": None}
        if instance is not None:
            proposer = (None if instance.started_by in SYSTEM_ACTORS
                        else self.prefetch(session, [instance.started_by]).get(
                            instance.started_by))
            context["instance"] = {
                "id": instance.id, "business_key": instance.business_key,
                "process": (definition.name if definition else None) or instance.definition_key,
                "definition_key": instance.definition_key, "variant": instance.variant,
                "stage": instance.stage, "proposer": instance.started_by,
                "proposer_name": proposer.full_name if proposer else instance.started_by,
                "unit_name": self._unit_name(instance.unit_id),
                "started_at": instance.started_at}
        if task is not None:
            context["task"] = {"id": task.id, "name": task.name or task.element_id,
                               "element_id": task.element_id, "due_at": task.due_at,
                               "role": task.role, "unit_name": self._unit_name(task.unit_id)}
        return context

    def _unit_name(self, unit_id: str | None) -> str | None:
        if not unit_id:
            return None
        try:
            return self.org.unit(unit_id).name
        except NotFound:
            return None

    # --- the notification centre -------------------------------------------------------
    def unread_count(self, username: str) -> int:
        with self.db.reading() as session:
            return session.scalar(select(func.count(Notification.id)).where(
                Notification.username == username, Notification.read_at.is_(None))) or 0

    def count(self, username: str, *, unread_only: bool = False) -> int:
        query = select(func.count(Notification.id)).where(Notification.username == username)
        if unread_only:
            query = query.where(Notification.read_at.is_(None))
        with self.db.reading() as session:
            return session.scalar(query) or 0

    def list_for(self, username: str, *, unread_only: bool = False, limit: int = 50,
                 offset: int = 0) -> list[dict]:
        """Unread first, then newest first."""
        query = select(Notification).where(Notification.username == username)
        if unread_only:
            query = query.where(Notification.read_at.is_(None))
        query = query.order_by(Notification.read_at.isnot(None), Notification.created_at.desc(),
                               Notification.id.desc()).offset(max(offset, 0)).limit(
            max(min(limit, 500), 0))
        with self.db.reading() as session:
            return [as_dict(row) for row in session.scalars(query)]

    def mark_read(self, username: str, ids: list[int] | None = None) -> int:
        """Mark notifications read (all of the user's when ``ids`` is None); returns how many
        were unread. Ids that are not the user's are refused, and nothing is marked."""
        now = self.clock.now()
        with self.db.transaction() as session:
            query = update(Notification).where(Notification.username == username,
                                               Notification.read_at.is_(None))
            if ids is not None:
                try:
                    wanted = sorted({int(i) for i in ids})
                except (TypeError, ValueError):
                    raise InvalidData("notification ids are whole numbers",
                                      code="notification.bad_ids") from None
                storable = [i for i in wanted if 0 < i < 2**31]   # beyond any stored id
                owned = set(session.scalars(select(Notification.id).where(
                    Notification.username == username, Notification.id.in_(storable)))) \
                    if storable else set()
                missing = [i for i in wanted if i not in owned]
                if missing:
                    raise NotFound(f"notification(s) {', '.join(map(str, missing[:10]))} do "
                                   f"not exist", code="notification.not_found",
                                   ids=missing[:10])
                if not wanted:
                    return 0
                query = query.where(Notification.id.in_(wanted))
            return session.execute(query.values(read_at=now)).rowcount  # type: ignore[attr-defined]

    def preference(self, username: str) -> str:
        with self.db.reading() as session:
            user = session.get(User, username)
        if user is None:
            raise NotFound(f"user '{username}' does not exist", code="user.not_found",
                               params={"user": username})
        return user.notification_mode or "immediate"

    def email(self, username: str) -> str | None:
        with self.db.reading() as session:
            user = session.get(User, username)
        return user.email if user is not None else None

    def set_preference(self, username: str, mode: str) -> str:
        """Switching away from ``digest`` drops the e-mail of notifications still waiting for
        a digest (they stay in the app)."""
        if mode not in MODES:
            params = {"modes": ", ".join(MODES)}
            raise InvalidData(f"mode must be one of {', '.join(MODES)}, not '{mode}'",
                              code="notification.mode", params=params,
                              errors=[{"field": "mode", "code": N_("notification.mode"),
                                       "params": params,
                                       "message": f"One of: {', '.join(MODES)}"}])
        with self.db.transaction() as session:
            user = session.get(User, username)
            if user is None:
                raise NotFound(f"user '{username}' does not exist", code="user.not_found",
                               params={"user": username})
            if user.notification_mode == "digest" and mode != "digest":
                session.execute(update(Notification).where(
                    Notification.username == username, Notification.email_status == "digest")
                    .values(email_status="none"))
            user.notification_mode = mode
        return mode

    def outbox_page(self, principal, status: str | None = None, page: int = 1,
                    page_size: int = 50):
        """E-mails to the users of the variants an administrator administers, newest first:
        what is waiting, sent, failed or unknown (and why)."""
        query = select(OutboxMessage).where(_administered(principal))
        if status:
            query = query.where(OutboxMessage.status == status)
        with self.db.reading() as session:
            return page_of(session, query, (OutboxMessage.id.desc(),), page, page_size)

    def requeue(self, principal, message_id: int) -> OutboxMessage:
        """Send a failed e-mail again, or one whose delivery is unknown (the administrator
        decides it was not received: it may arrive twice)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = session.scalars(select(OutboxMessage).where(
                OutboxMessage.id == message_id, _administered(principal))).first()
            if row is None:
                raise NotFound(f"e-mail {message_id} does not exist", code="email.not_found")
            if row.status not in ("failed", "unknown"):
                raise InvalidState(f"e-mail {message_id} is {row.status}; only failed or "
                                   "unknown ones are sent again", code="email.not_resendable",
                                   params={"outbox_status": row.status})
            session.add(AuditEvent(at=now, actor=principal.username, action="email_requeued",
                                   details={"outbox_id": row.id, "was": row.status,
                                            "recipient": row.recipient}))
            row.status, row.attempts, row.next_attempt_at = "pending", 0, now
            row.lock_owner = row.lock_expires_at = row.last_error = None
            session.flush()
            session.expunge(row)
        return row

    def outbox(self, username: str | None = None) -> list[OutboxMessage]:
        """Outbox rows, oldest first (monitoring and tests)."""
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if username:
            query = query.where(OutboxMessage.username == username)
        with self.db.reading() as session:
            return list(session.scalars(query))
