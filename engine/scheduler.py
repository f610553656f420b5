"""Firing timers exactly once, from any number of scheduler processes.

The database decides: a scheduler claims due timer rows (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``; SQLite: its single writer lock, so one scheduler is enough there) by writing its
name and a lock expiry on them, fires them through the runtime, and releases them. A claim
whose scheduler died is taken over once its lock expires. Claims, retries with backoff and
giving up are :class:`engine.leases.LeaseQueue`'s, with the timers' own settings
(:data:`TIMER_LEASES`); a failing timer waits out its backoff under ``lock_expires_at``, its
due time being what it fires for. Firing is itself guarded: an
instance's timers fire inside the instance's optimistic-version transaction, and a
schedule (a process's timer start event) starts its instance in the same transaction that
moves the schedule on, conditioned on still holding the claim. So a timer fires once even
when two schedulers race for it.

Schedules are timer rows without an instance: one per timer start event of the newest
version of each process, due at the next occurrence. A cycle keeps its anchor (the start in
its expression); one whose start lies in the past fires once for the last missed occurrence,
then follows its schedule.

The scheduler decides what is due and when; the runtime changes the timers' and instances'
statuses (fired, failed, incident, a schedule created, moved on or cancelled), each change
with its audit entry.

Each round also carries out the organisation's handovers whose day has come (a head
appointed from a later day takes the position's open tasks on that day).

The same loop sends e-mail from the outbox (see :mod:`engine.notifications.outbox` for the
at-most-once guarantee).
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .access import Principal
from .clock import as_utc
from .deadlines import variant_settings
from .errors import Conflict, EngineError
from .leases import LeaseQueue, LeaseSettings
from .logs import log_scope
from .notifications.mailer import SmtpSettings
from .notifications.outbox import OUTBOX_LEASES, OutboxSender
from .scripting import duration_from, parse_cycle, parse_instant, start_timers
from .store import Definition, Timer

log = logging.getLogger("nd73.scheduler")
SCHEDULER_ACTOR = "scheduler"
SCHEDULER = Principal.system(SCHEDULER_ACTOR)      # trusted: it fires what the engine set up
# a claim outlives a slow firing; 10, 20, 40, 80 s between attempts; incident after the 5th
TIMER_LEASES = LeaseSettings(lease_seconds=60, max_attempts=5, backoff_base_seconds=10)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def next_occurrence(anchor: datetime, period_expression: str, after: datetime,
                    fire_missed: bool) -> datetime:
    """The first occurrence of ``anchor + k·period`` after ``after``; with ``fire_missed``,
    the last one at or before ``after`` when the anchor is already past (missed once)."""
    current = anchor
    previous = None
    for _ in range(100_000):                  # bounded: periods are days to years
        if current > after:
            return previous if (fire_missed and previous is not None) else current
        previous = current
        current = current + duration_from(period_expression, current)
    raise ValueError(f"cycle {period_expression} from {anchor} never passes {after}")


class Scheduler:
    def __init__(self, engine, owner: str | None = None, lock_seconds: int | None = None,
                 max_attempts: int | None = None, batch: int = 100, together: int = 8,
                 smtp: SmtpSettings | None | str = "settings", *,
                 timer_leases: LeaseSettings = TIMER_LEASES,
                 outbox_leases: LeaseSettings = OUTBOX_LEASES):
        """``lock_seconds`` and ``max_attempts``, when given, replace those of
        ``timer_leases``; ``outbox_leases`` are the e-mail outbox's. ``together``: how many
        instances' timers fire in one transaction (1: each in its own)."""
        self.engine = engine
        self.db = engine.db
        self.clock = engine.clock
        self.owner = owner or default_owner()
        self.batch = batch
        self.together = max(1, together)
        self._synced: frozenset[int] | None = None   # newest definitions synced last
        self.rounds = 0                     # numbers the rounds in the log lines
        self.timer_queue = LeaseQueue(
            self.db, self.clock, Timer, owner=self.owner, name="timers",
            settings=timer_leases.overridden(lease_seconds=lock_seconds,
                                             max_attempts=max_attempts),
            due=Timer.due_at, retry_at=Timer.lock_expires_at, give_up=self._give_up)
        if smtp == "settings":              # the engine's, read once at startup
            smtp = engine.settings.smtp
        self.outbox = OutboxSender(self.db, self.clock, engine.notifications, self.owner, smtp,
                                   hour=engine.settings.digest_hour, leases=outbox_leases)

    # --- schedules (timer start events) ----------------------------------------------------
    def sync_schedules(self, *, if_changed: bool = False) -> int:
        """Give the newest version of every process with a timer start event exactly one
        pending schedule row; older versions' schedules are cancelled. Returns rows created.
        ``if_changed``: only when the newest versions differ from the last sync's (a round
        reads their ids, not the rows with their sources, when nothing was deployed)."""
        repository = self.engine.repository
        created = 0
        newest = (select(Definition.variant, Definition.key,
                         func.max(Definition.version).label("version"))
                  .group_by(Definition.variant, Definition.key).subquery())
        with self.db.reading() as session:
            ids = frozenset(session.scalars(select(Definition.id).join(
                newest, (Definition.variant == newest.c.variant)
                & (Definition.key == newest.c.key) & (Definition.version == newest.c.version))))
        if if_changed and ids == self._synced:
            return 0
        latest = [repository.get(definition_id) for definition_id in sorted(ids)]
        for definition in latest:
            spec, _ = repository.specs(definition)
            timers = start_timers(spec)
            if not timers:
                continue
            created += self.engine.runtime.schedule(
                definition, timers,
                lambda kind, expression: self._first_due(definition, kind, expression),
                actor=SCHEDULER_ACTOR)
        self._synced = ids
        return created

    def _evaluate(self, definition: Definition, expression: str):
        with variant_settings(self.engine.repository.settings(definition)):
            return self.engine.script_engine.environment.evaluate(expression, {})

    def _first_due(self, definition: Definition, kind: str, expression: str) -> datetime:
        now = self.clock.now()
        value = self._evaluate(definition, expression)
        if kind == "StartTimeDate":
            return parse_instant(value)
        if kind == "StartDuration":
            return now + duration_from(str(value), now)
        _, anchor, _ = parse_cycle(str(value), now)
        period = str(value).strip().split("/")[-1]
        return next_occurrence(anchor, period, now, fire_missed=True)

    def _after_firing(self, definition: Definition, row: Timer, fired_due: datetime):
        """The schedule's next due time after an occurrence fired (None: it is finished)."""
        if row.kind != "StartCycle":
            return None
        value = str(self._evaluate(definition, self._expression(definition, row.element_id)))
        cycles, anchor, _ = parse_cycle(value, fired_due)
        period = value.strip().split("/")[-1]
        return next_occurrence(anchor, period, fired_due, fire_missed=False)

    def _expression(self, definition: Definition, element_id: str) -> str:
        spec, _ = self.engine.repository.specs(definition)
        return next(x for e, _, x in start_timers(spec) if e == element_id)

    # --- claiming and firing ---------------------------------------------------------------
    def claim(self, limit: int | None = None, timer_id: int | None = None) -> list[Timer]:
        """Take due, unclaimed (or abandoned) timers, oldest first; or just ``timer_id``."""
        only = (Timer.id == timer_id,) if timer_id is not None else ()
        return self.timer_queue.claim(limit or self.batch, *only)

    def run_due(self, max_rounds: int = 1000) -> int:
        """Claim and fire everything due now, oldest first. Returns timers fired."""
        with self._round("timers"):
            return self._run_due(max_rounds)

    def _round(self, queue: str):
        """A round's log lines name it as a request is named (which scheduler, which queue,
        which round) and the scheduler as their user; a timer adds its instance."""
        self.rounds += 1
        return log_scope(request_id=f"{self.owner}/{queue}/{self.rounds}", user=SCHEDULER_ACTOR)

    def _run_due(self, max_rounds: int) -> int:
        self.sync_schedules(if_changed=True)
        self.run_handovers()
        fired = 0
        for _ in range(max_rounds):
            rows = self.claim()
            if not rows:
                break
            fired += self._fire_rows(rows)
        return fired

    def _fire_rows(self, rows: list[Timer]) -> int:
        """Fire claimed rows in their order: instances' timers ``together`` at a time in one
        transaction, schedules one by one."""
        fired = 0
        group: list[Timer] = []
        for row in rows:
            if row.instance_id is None:
                fired += self._fire_together(group) + self.fire(row)
                group = []
                continue
            group.append(row)
            if len(group) >= self.together:
                fired += self._fire_together(group)
                group = []
        return fired + self._fire_together(group)

    def _fire_together(self, rows: list[Timer]) -> int:
        """The timers of several instances in one transaction (a BEGIN and a COMMIT shared,
        see :meth:`Runtime.fire_timers_together`); when anything in it fails, nothing of
        it was written and each is fired on its own, with its own retries and incident."""
        if len(rows) <= 1:
            return sum(self.fire(row) for row in rows)
        try:
            fired = self.engine.runtime.fire_timers_together(
                [row.instance_id for row in rows], principal=SCHEDULER, claimed_by=self.owner)
        except Exception:                   # noqa: BLE001 - each on its own decides
            log.info("firing %d timers together failed; firing them one by one", len(rows),
                     exc_info=True)
            return sum(self.fire(row) for row in rows)
        counted: set[str] = set()
        for row in rows:
            if row.instance_id in fired and row.instance_id not in counted:
                counted.add(row.instance_id)
                with log_scope(instance_id=row.instance_id, timer_id=row.id):
                    log.info("timer %s fired", row.element_id, extra={"fields": {
                        "element_id": row.element_id,
                        "due_at": as_utc(row.due_at).isoformat()}})
        return len(counted)

    def run_handovers(self) -> int:
        """Positions whose new holder takes office today (by the engine's clock) pass their
        open tasks on (:meth:`engine.orgadmin.OrgAdmin.run_handovers`)."""
        try:
            return self.engine.orgadmin.run_handovers()
        except Exception:                   # noqa: BLE001 - the next round tries again
            log.exception("carrying out a handover failed")
            return 0

    def send_mail(self) -> int:
        """Make due digests and send due e-mail from the outbox. Returns messages sent."""
        with self._round("outbox"):
            try:
                return self.outbox.run()
            except Exception:                   # noqa: BLE001 - the next round tries again
                log.exception("sending e-mail failed")
                return 0

    def fire(self, row: Timer) -> int:
        with log_scope(instance_id=row.instance_id, timer_id=row.id):
            fired = self._fire(row)
            if fired:           # a schedule's line has the instance it started
                log.info("timer %s fired", row.element_id, extra={"fields": {
                    "element_id": row.element_id, "due_at": as_utc(row.due_at).isoformat()}})
            return fired

    def _fire(self, row: Timer) -> int:
        try:
            if row.instance_id is None:
                return self._start_scheduled(row)
            return self._fire_instance_timer(row)
        except Conflict:
            self._release(row.id)           # someone else got there first; nothing lost
            return 0
        except Exception as exc:            # noqa: BLE001 - kept on the row, retried
            log.exception("timer %s failed", row.id)
            self._failed(row, exc)
            return 0

    def _fire_instance_timer(self, row: Timer) -> int:
        instance = self.engine.runtime.fire_timers(row.instance_id, principal=SCHEDULER,
                                                   claimed_by=self.owner)
        if instance is None:        # nothing fired: the claim is given back here
            self._release(row.id)
            return 0
        return 1                    # fire_timers released the claims of what it fired

    def _start_scheduled(self, row: Timer) -> int:
        definition = self.engine.repository.get(row.definition_id)
        next_due = self._after_firing(definition, row, as_utc(row.due_at))
        unit = self.engine.runtime.schedule_unit(definition)
        self.engine.runtime.start_scheduled(row, definition, next_due, owner=self.owner,
                                            principal=SCHEDULER,
                                            data={"proposer_unit": unit} if unit else {})
        return 1

    def _release(self, timer_id: int) -> None:
        self.timer_queue.release(timer_id)

    def _failed(self, row: Timer, exc: Exception) -> None:
        """Retried after the backoff; after the last attempt, :meth:`_give_up`."""
        message = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        self.timer_queue.record_failure(row.id, message)

    def _give_up(self, session: Session, row: Timer, error: str) -> None:
        """The timer's last attempt failed: the runtime marks it failed and puts its running
        instance in incident, in the transaction that records the failure."""
        self.engine.runtime.timer_failed(session, row, error, actor=SCHEDULER_ACTOR)


def run_loop(engine, *, interval: float = 1.0, blocking: bool = True, owner: str | None = None):
    """APScheduler drives :meth:`Scheduler.run_due` every ``interval`` seconds (one run at a
    time; a run that falls behind is not queued twice), and the outbox in a job of its own.
    Returns the APScheduler object."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = Scheduler(engine, owner=owner)
    loop = (BlockingScheduler if blocking else BackgroundScheduler)(timezone="UTC")
    loop.add_job(scheduler.run_due, "interval", seconds=interval, id="nd73-timers",
                 max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    # e-mail in its own job: a slow SMTP server never delays timers
    loop.add_job(scheduler.send_mail, "interval", seconds=interval, id="nd73-outbox",
                 max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
    loop.start()
    return loop
