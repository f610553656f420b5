"""The scheduler's e-mail job: daily digests, then the outbox, sent at most once.

Guarantee (any number of schedulers, any of them killed at any moment):

- A message is written to the outbox in the transaction of the event that caused it, so an
  event that rolled back sends nothing and one that committed has its message queued.
- A sender *claims* due ``pending`` messages (PostgreSQL: ``FOR UPDATE SKIP LOCKED``) with a
  lease. Before handing one message's content to the SMTP server it commits
  ``status = sending`` — only if it still holds the claim — and after the server accepted
  it (250) commits ``sent``. A claim whose sender died while the message was still
  ``pending`` is taken over when the lease expires: that message was never handed over.
- A message found ``sending`` after its lease expired was being handed over when its sender
  died: the server may have it. It becomes ``unknown`` and is never sent again. So a
  message is delivered **at most once**; it is lost only if a sender dies in the moment
  between committing ``sending`` and committing ``sent`` (or the connection breaks in that
  moment, which also gives ``unknown``).
- A refused message (connection refused, 4xx/5xx reply to the envelope or the content) was
  not delivered: it goes back to ``pending`` with exponential backoff and, after
  ``max_attempts``, becomes ``failed``. The workflow is never affected: sending runs only
  here, never in a request.

Claims, leases, backoff and giving up are :class:`engine.leases.LeaseQueue`'s, with the
outbox's own settings (:data:`OUTBOX_LEASES`); a message waits out its backoff in
``next_attempt_at``.

Digests: at ``ND73_DIGEST_HOUR`` (local time, Asia/Ho_Chi_Minh) or later, each user in
``digest`` mode with waiting notifications gets one outbox message for that local day; the
unique (user, day) row and the notifications it takes are written in one transaction.
"""
from __future__ import annotations

import logging
import re

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from ..clock import LOCAL_TZ, as_utc
from ..errors import N_
from ..leases import LeaseQueue, LeaseSettings
from ..logs import log_scope, note
from ..store import Definition, User
from ..store.models import Notification, OutboxMessage
from .mailer import Refused, SmtpConnection, SmtpSettings, Unknown, build_message
from .service import Notifications, as_dict

log = logging.getLogger("nd73.outbox")
DEFAULT_DIGEST_HOUR = 7
# a 5-minute lease covers a batch's SMTP conversation; 1, 2, 4… minutes between attempts, at
# most an hour; failed after the 8th
OUTBOX_LEASES = LeaseSettings(lease_seconds=300, max_attempts=8, backoff_base_seconds=60,
                              backoff_cap_seconds=3600)

INTERRUPTED = "the sender stopped while handing the message to the SMTP server; not sent again"
# How a failure reads in ``last_error`` (written here and by the mailer), as a message code
# with its params, so that pages say it in the reader's language; ``smtp`` is the server's
# reply code. The first pattern that matches names the failure.
FAILURES = (
    (N_("outbox_error.connect"), re.compile(r"cannot connect to (?P<server>\S+?):?\s")),
    (N_("outbox_error.sender_refused"), re.compile(r"MAIL FROM refused: (?P<smtp>\d{3})")),
    (N_("outbox_error.recipient_refused"), re.compile(r"RCPT TO refused: (?P<smtp>\d{3})")),
    (N_("outbox_error.envelope"), re.compile(r"SMTP envelope failed")),
    (N_("outbox_error.content_refused"), re.compile(r"DATA refused: (?P<smtp>\d{3})")),
    (N_("outbox_error.connection_lost"), re.compile(r"connection lost while sending")),
    (N_("outbox_error.interrupted"), re.compile(re.escape(INTERRUPTED))),
    (N_("outbox_error.smtp_reply"), re.compile(r"^(?P<smtp>[45]\d\d)\b")),
)


def failure_code(last_error: str | None) -> tuple[str, dict] | None:
    """``last_error`` as (message code, params); None when it is not one of ours."""
    for code, pattern in FAILURES:
        found = pattern.search(last_error or "")
        if found:
            return code, found.groupdict()
    return None


class OutboxSender:
    def __init__(self, db, clock, notifications: Notifications, owner: str,
                 smtp: SmtpSettings | None, *, lease_seconds: int | None = None,
                 max_attempts: int | None = None, batch: int = 50, hour: int | None = None,
                 leases: LeaseSettings = OUTBOX_LEASES):
        """``lease_seconds`` and ``max_attempts``, when given, replace those of ``leases``."""
        self.db = db
        self.clock = clock
        self.notifications = notifications
        self.owner = owner
        self.smtp = smtp
        self.queue = LeaseQueue(db, clock, OutboxMessage, owner=owner, name="outbox",
                                settings=leases.overridden(lease_seconds=lease_seconds,
                                                           max_attempts=max_attempts),
                                due=OutboxMessage.next_attempt_at, give_up=_failed)
        self.batch = batch
        self.hour = DEFAULT_DIGEST_HOUR if hour is None else hour

    def run(self) -> int:
        """One round: build due digests, then send what is due. Returns messages sent."""
        self.make_digests()
        if self.smtp is None:
            return 0                    # e-mail disabled here; messages wait in the outbox
        self.give_up_interrupted()
        sent = 0
        for _ in range(1000):           # bounded: a round ends even under a flood
            claimed = self.claim()
            if not claimed:
                break
            sent += self._send(claimed)
        return sent

    # --- digests ---------------------------------------------------------------------------
    def make_digests(self) -> int:
        now = self.clock.now()
        local = now.astimezone(LOCAL_TZ)
        if local.hour < self.hour:
            return 0
        day = local.date().isoformat()
        with self.db.reading() as session:
            users = list(session.scalars(
                select(Notification.username).where(Notification.email_status == "digest",
                                                    Notification.created_at <= now)
                .where(~exists().where(OutboxMessage.username == Notification.username,
                                       OutboxMessage.digest_day == day))
                .distinct().order_by(Notification.username)))
        made = 0
        for username in users:
            try:
                made += self._digest(username, day, now)
            except IntegrityError:
                pass                     # another scheduler made this user's digest first
        return made

    def _digest(self, username: str, day: str, now) -> int:
        with self.db.transaction() as session:
            user = session.get(User, username)
            rows = list(session.scalars(select(Notification).where(
                Notification.username == username, Notification.email_status == "digest",
                Notification.created_at <= now).order_by(Notification.id)))
            if user is None or not rows or not user.email or user.notification_mode != "digest":
                return 0
            definition = next((session.get(Definition, r.definition_id)
                               for r in reversed(rows) if r.definition_id), None)
            base = self.notifications.base_url
            items = [{**as_dict(r), "url": base + r.link} for r in rows]
            context = {"user": {"username": user.username, "full_name": user.full_name},
                       "notifications": items, "count": len(items), "day": now,
                       "link": "/notifications", "url": base + "/notifications",
                       "site_url": base, "now": now, "data": {}, "task": None,
                       "instance": None}
            subject, text, html = self.notifications.renderer.render(
                definition.id if definition else None,
                self.notifications.templates_of(definition), "digest", context)
            message = OutboxMessage(username=username, recipient=user.email, subject=subject,
                                    text_body=text, html_body=html, kind="digest",
                                    digest_day=day, status="pending", attempts=0,
                                    next_attempt_at=now, created_at=now)
            session.add(message)
            session.flush()             # the unique (user, day) row: a second one fails here
            for row in rows:
                row.email_status, row.outbox_id = "digested", message.id
        return 1

    # --- sending ---------------------------------------------------------------------------
    def give_up_interrupted(self) -> int:
        """Messages left ``sending`` by a sender that died: their delivery is unknown."""
        return self.queue.end_expired(
            "sending", "unknown",
            last_error=INTERRUPTED)

    def claim(self) -> list[int]:
        return [row.id for row in self.queue.claim(self.batch)]

    def _send(self, ids: list[int]) -> int:
        connection = SmtpConnection(self.smtp)
        sent = 0
        try:
            connection.open()
        except Refused as exc:
            for message_id in ids:
                with log_scope(message_id=message_id):
                    self._refused(message_id, str(exc))
            return 0
        try:
            for message_id in ids:
                if not connection.is_open:          # a broken connection ends the batch
                    self._release(message_id)
                    continue
                with log_scope(message_id=message_id):
                    sent += self._send_one(connection, message_id)
        finally:
            connection.close()
        return sent

    def _send_one(self, connection: SmtpConnection, message_id: int) -> int:
        with self.db.reading() as session:
            row = session.get(OutboxMessage, message_id)
            user = session.get(User, row.username) if row is not None else None
        if row is None or row.status != "pending" or row.lock_owner != self.owner:
            return 0
        note(recipient_user=row.username, kind=row.kind)     # on this message's log lines
        message = build_message(self.smtp, message_id=row.id, recipient=row.recipient,
                                recipient_name=user.full_name if user else None,
                                subject=row.subject, text=row.text_body, html=row.html_body,
                                created_at=as_utc(row.created_at))
        try:
            connection.envelope(message)
        except Refused as exc:
            self._refused(message_id, str(exc))
            return 0
        if not self.queue.move(message_id, "pending", "sending", lease="renew"):
            return 0                                # the claim was lost: someone else has it
        try:
            connection.content(message)
        except Refused as exc:
            self._refused(message_id, str(exc), status="sending")
            return 0
        except Unknown as exc:
            self.queue.move(message_id, "sending", "unknown", lease="end",
                            last_error=str(exc)[:2000])
            return 0
        self.queue.move(message_id, "sending", "sent", lease="end", sent_at=self.clock.now(),
                        last_error=None)
        return 1

    def _release(self, message_id: int) -> None:
        self.queue.release(message_id, status="pending")

    def _refused(self, message_id: int, error: str, status: str = "pending") -> None:
        """Not delivered: retry later with exponential backoff, or give up (failed)."""
        self.queue.record_failure(message_id, error, status=status)
        log.warning("e-mail %s not sent (%s)", message_id, error)


def _failed(session, row: OutboxMessage, error: str) -> None:
    """Refused at every attempt: kept as ``failed`` (an administrator may send it again)."""
    row.status = "failed"
