"""Administration of timers and of the e-mail outbox, and the test clock (only with
ND73_TEST_CLOCK=1)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from engine.clock import ManualClock
from engine.scheduler import Scheduler
from engine.scripting import duration_from
from engine.store import Definition, Timer, TimerStatus
from engine.tasks import Page

from .. import schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, utc_or_none, engine, page_dict


blp = Blueprint("admin", __name__,
                description="Administration: timers, the e-mail outbox and the test clock")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "unknown")


class TimerArgs(schemas.PageArgs):
    status = fields.String(load_default=TimerStatus.PENDING.value,
                           validate=validate.OneOf([s.value for s in TimerStatus]))
    variant = fields.String(validate=validate.Length(1, 64))


class TimerRow(Schema):
    id = fields.Integer(required=True)
    instance_id = fields.String(allow_none=True)
    definition_id = fields.Integer(allow_none=True)
    variant = fields.String(allow_none=True)
    element_id = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True)
    due_at = schemas.Utc(required=True)
    attempts = fields.Integer()
    lock_owner = fields.String(allow_none=True)
    lock_expires_at = schemas.Utc(allow_none=True)
    fired_at = schemas.Utc(allow_none=True)
    last_error = fields.String(allow_none=True)


class FireResult(Schema):
    fired = fields.Integer(required=True)


class ClockMove(Schema):
    advance = fields.String(validate=validate.Length(2, 64),
                            metadata={"description": "ISO 8601 duration, e.g. P3D or PT2H"})
    set = schemas.Utc()

    @validates_schema
    def one_of(self, data, **kwargs):
        if ("advance" in data) == ("set" in data):
            raise ValidationError("give exactly one of advance and set", "advance")


class ClockState(Schema):
    now = schemas.Utc(required=True)
    fired = fields.Integer(required=True)


def _row(timer: Timer, variant: str | None) -> dict:
    return {"id": timer.id, "instance_id": timer.instance_id,
            "definition_id": timer.definition_id, "variant": variant,
            "element_id": timer.element_id, "kind": timer.kind, "status": timer.status,
            "due_at": utc_or_none(timer.due_at), "attempts": timer.attempts,
            "lock_owner": timer.lock_owner, "lock_expires_at": utc_or_none(timer.lock_expires_at),
            "fired_at": utc_or_none(timer.fired_at), "last_error": timer.last_error}


@blp.route("/admin/timers")
@blp.arguments(TimerArgs, location="query")
@blp.response(200, schemas.page_of(TimerRow))
@blp.doc(security=SECURITY)
@authenticated
def list_timers(args):
    """Timers and schedules of the variants the caller administers, soonest first."""
    principal = current()
    if not principal.is_admin():
        raise ApiProblem("forbidden", "only administrators may list timers")
    query = (select(Timer, Definition.variant)
             .join(Definition, Definition.id == Timer.definition_id)
             .where(Timer.status == args["status"],
                    principal.admin_variants_clause(Definition.variant))
             .order_by(Timer.due_at, Timer.id))
    if args.get("variant"):
        query = query.where(Definition.variant == args["variant"])
    with engine().db.reading() as session:
        rows = session.execute(query).all()
    start = (args["page"] - 1) * args["page_size"]
    page = Page(rows[start:start + args["page_size"]], len(rows), args["page"],
                args["page_size"])
    return page_dict(page, lambda r: _row(r[0], r[1]))


@blp.route("/admin/timers/<int:timer_id>/fire", methods=["POST"])
@blp.response(200, FireResult)
@blp.doc(security=SECURITY)
@authenticated
def fire_now(timer_id):
    """Fire a pending (or failed) timer now, whatever its due time."""
    wf_engine = engine()
    # checked here too: this route writes the timer row itself, and fires schedules (which
    # have no instance); the engine checks again when it fires an instance's timer
    with wf_engine.db.reading() as session:
        timer = session.get(Timer, timer_id) if 0 < timer_id < 2**31 else None
        definition = session.get(Definition, timer.definition_id) if timer else None
    if timer is None or definition is None or not current().is_admin(definition.variant):
        raise ApiProblem("not-found", f"timer {timer_id} does not exist")
    if timer.status not in (TimerStatus.PENDING, TimerStatus.FAILED):
        raise ApiProblem("conflict", f"the timer is {timer.status}")
    if timer.instance_id is not None:
        # a failed timer waits again and the incident it raised is resolved, in the step
        fired = wf_engine.runtime.fire_timer_now(timer.instance_id, timer.task_id,
                                                 principal=current())
        return {"fired": int(fired is not None)}
    wf_engine.runtime.rearm_schedule(timer_id, principal=current())
    scheduler = Scheduler(wf_engine, owner=f"admin:{current().username}")
    return {"fired": sum(scheduler.fire(r) for r in scheduler.claim(timer_id=timer_id))}


class OutboxArgs(schemas.PageArgs):
    status = fields.String(validate=validate.OneOf(OUTBOX_STATUSES))


class OutboxRow(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    recipient = fields.String(required=True)
    subject = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    created_at = schemas.Utc(required=True)
    next_attempt_at = schemas.Utc(allow_none=True)
    sent_at = schemas.Utc(allow_none=True)
    last_error = fields.String(allow_none=True)


def outbox_row(row) -> dict:
    return {"id": row.id, "username": row.username, "recipient": row.recipient,
            "subject": row.subject, "kind": row.kind, "status": row.status,
            "attempts": row.attempts, "created_at": utc_or_none(row.created_at),
            "next_attempt_at": utc_or_none(row.next_attempt_at),
            "sent_at": utc_or_none(row.sent_at), "last_error": row.last_error}


@blp.route("/admin/outbox")
@blp.arguments(OutboxArgs, location="query")
@blp.response(200, schemas.page_of(OutboxRow))
@blp.doc(security=SECURITY)
@authenticated
def list_outbox(args):
    """E-mails to the users of the caller's variants, newest first (administrators)."""
    if not current().is_admin():
        raise ApiProblem("forbidden", "only administrators may list e-mails")
    page = engine().notifications.outbox_page(current(), args.get("status"), args["page"],
                                              args["page_size"])
    return page_dict(page, outbox_row)


@blp.route("/admin/outbox/<int:message_id>/retry", methods=["POST"])
@blp.response(200, OutboxRow)
@blp.doc(security=SECURITY)
@authenticated
def retry_email(message_id):
    """Send a failed e-mail again, or one whose delivery is unknown (administrators)."""
    if not current().is_admin() or not 0 < message_id < 2**31:
        raise ApiProblem("not-found", f"e-mail {message_id} does not exist")
    return outbox_row(engine().notifications.requeue(current(), message_id))


def register_test_clock(api, enabled: bool) -> None:
    """``POST /admin/clock`` exists only when the server runs with ND73_TEST_CLOCK=1
    (``enabled``)."""
    if not enabled:
        return
    clock_blp = Blueprint("test_clock", __name__, description="Test clock (tests only)")

    @clock_blp.route("/admin/clock", methods=["POST"])
    @clock_blp.arguments(ClockMove)
    @clock_blp.response(200, ClockState)
    @clock_blp.doc(security=SECURITY)
    @authenticated
    def move_clock(body):
        """Move the engine clock and fire what came due (administrators)."""
        if not current().is_admin():
            raise ApiProblem("forbidden", "only administrators may move the clock")
        clock = engine().clock
        if not isinstance(clock, ManualClock):
            raise ApiProblem("conflict", "this server runs on the wall clock")
        try:
            if "advance" in body:
                clock.advance(duration_from(body["advance"], clock.now()))
            else:
                clock.set(body["set"])
        except Exception as exc:        # an unparsable duration or a move backwards
            raise ApiProblem("invalid-data", str(exc),
                             errors=[{"field": "advance" if "advance" in body else "set",
                                      "message": str(exc), "message_en": str(exc)}]) from None
        fired = Scheduler(engine(), owner="test-clock").run_due()
        return {"now": clock.now(), "fired": fired}

    api.register_blueprint(clock_blp, url_prefix="/api/v1")
