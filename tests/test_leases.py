"""The lease queue shared by the timers and the e-mail outbox, on their real tables: a claim
is exclusive between owners (PostgreSQL skips rows another transaction locked), an expired
lease is claimed again, failures back off on the engine clock and give up through the
queue's callback after the last attempt, and each queue keeps its own settings."""
from __future__ import annotations

import threading
from dataclasses import FrozenInstanceError, replace
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from engine.clock import as_utc
from engine.leases import GIVEN_UP, NOT_HELD, RETRYING, LeaseQueue, LeaseSettings
from engine.notifications.outbox import OUTBOX_LEASES, OutboxSender
from engine.scheduler import TIMER_LEASES, Scheduler
from engine.store import Timer
from engine.store.models import OutboxMessage

SETTINGS = LeaseSettings(lease_seconds=30, max_attempts=3, backoff_base_seconds=10,
                         backoff_cap_seconds=15)


def messages(engine, count: int, *, due_in: timedelta = timedelta(0)) -> list[int]:
    """``count`` pending outbox rows, due ``due_in`` from now, one second apart."""
    now = engine.clock.now()
    with engine.db.transaction() as session:
        rows = [OutboxMessage(username="u", recipient="u@nd73.test", subject=f"m{i}",
                              text_body="", html_body="", kind="test", status="pending",
                              attempts=0, next_attempt_at=now + due_in - timedelta(seconds=i),
                              created_at=now) for i in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def a_timer(engine) -> int:
    """A pending schedule row (no instance), due now."""
    with engine.db.transaction() as session:
        row = Timer(instance_id=None, definition_id=None, task_id=None, element_id="t",
                    kind="StartTimeDate", due_at=engine.clock.now(), status="pending",
                    attempts=0)
        session.add(row)
        session.flush()
        return row.id


def row_of(engine, model, row_id):
    with engine.db.reading() as session:
        return session.get(model, row_id)


class GiveUps:
    """A give-up callback that marks the row failed and remembers what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, session, row, error):
        self.calls.append((row.id, row.attempts, error))
        row.status = "failed"


def queue(engine, owner: str, settings: LeaseSettings = SETTINGS, give_up=None) -> LeaseQueue:
    return LeaseQueue(engine.db, engine.clock, OutboxMessage, owner=owner, settings=settings,
                      due=OutboxMessage.next_attempt_at, give_up=give_up or GiveUps())


def test_settings_double_the_backoff_up_to_the_cap_and_refuse_nonsense():
    assert [SETTINGS.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 15, 15, 15]
    assert SETTINGS.lease == timedelta(seconds=30)
    # today's defaults: timers 10, 20, 40, 80 s (no cap), the outbox 1, 2, 4… min, ≤ 1 h
    assert (TIMER_LEASES.lease_seconds, TIMER_LEASES.max_attempts) == (60, 5)
    assert [TIMER_LEASES.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert (OUTBOX_LEASES.lease_seconds, OUTBOX_LEASES.max_attempts) == (300, 8)
    assert [OUTBOX_LEASES.backoff(n).total_seconds() for n in range(1, 9)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert TIMER_LEASES.backoff(10_000) > timedelta(days=365)     # representable, uncapped
    assert SETTINGS.overridden(lease_seconds=None, max_attempts=7) == replace(
        SETTINGS, max_attempts=7)
    with pytest.raises(ValueError) as refused:
        LeaseSettings(lease_seconds=0, max_attempts=0, backoff_base_seconds=5,
                      backoff_cap_seconds=1)
    problem = str(refused.value)
    assert "lease_seconds" in problem and "max_attempts" in problem
    assert "backoff_cap_seconds (1) must be at least backoff_base_seconds (5)" in problem
    with pytest.raises(FrozenInstanceError):
        SETTINGS.max_attempts = 9                       # frozen: a queue's settings stay


def test_a_claim_takes_the_oldest_due_rows_and_excludes_other_owners(engine, clock):
    newest, middle, oldest = messages(engine, 3)
    [later] = messages(engine, 1, due_in=timedelta(seconds=20))
    first, second = queue(engine, "a"), queue(engine, "b")
    assert [r.id for r in first.claim(2)] == [oldest, middle]
    assert [r.id for r in second.claim(10)] == [newest]          # not a's, not yet due
    assert first.claim(10) == [] and second.claim(10) == []
    held = row_of(engine, OutboxMessage, oldest)
    assert held.lock_owner == "a" and as_utc(held.lock_expires_at) == clock.now() + \
        timedelta(seconds=30)
    assert held.attempts == 0                              # a claim is not an attempt
    clock.advance(seconds=20)                              # due now; the leases still hold
    assert [r.id for r in second.claim(10)] == [later]
    assert [r.id for r in first.claim(10, OutboxMessage.id == later)] == []


def test_owners_claiming_at_once_take_disjoint_rows(engine):
    ids = messages(engine, 60)
    owners = [queue(engine, f"o{i}") for i in range(3)]
    barrier = threading.Barrier(len(owners))
    taken: dict[str, list[int]] = {q.owner: [] for q in owners}

    def drain(owner: LeaseQueue):
        barrier.wait()
        while batch := owner.claim(7):
            taken[owner.owner] += [row.id for row in batch]

    threads = [threading.Thread(target=drain, args=(q,)) for q in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    every = [row_id for claimed in taken.values() for row_id in claimed]
    assert sorted(every) == sorted(ids)                   # each row once, none left out
    with engine.db.reading() as session:
        owners_of = {row_id: owner for row_id, owner in session.execute(
            select(OutboxMessage.id, OutboxMessage.lock_owner))}
    assert all(owners_of[row_id] == owner for owner, rows in taken.items() for row_id in rows)


def test_postgresql_claims_skip_rows_another_transaction_locked(engine):
    if engine.db.is_sqlite:
        pytest.skip("SQLite serializes writers: a claim waits for the other transaction")
    ids = messages(engine, 4)
    locked = sorted(ids)[:2]
    claimed = []
    with engine.db.engine.connect() as other:
        transaction = other.begin()
        other.execute(text("SELECT id FROM outbox WHERE id IN (:a, :b) FOR UPDATE"),
                      {"a": locked[0], "b": locked[1]})
        claimer = threading.Thread(target=lambda: claimed.extend(queue(engine, "b").claim(10)))
        claimer.start()
        claimer.join(timeout=60)
        waited = claimer.is_alive()
        transaction.rollback()
        claimer.join(timeout=60)
    assert not waited, "the claim waited for the locked rows instead of skipping them"
    assert sorted(r.id for r in claimed) == sorted(set(ids) - set(locked))
    assert sorted(r.id for r in queue(engine, "c").claim(10)) == locked


def test_an_expired_lease_is_claimed_again_and_its_old_owner_writes_nothing(engine, clock):
    [row_id] = messages(engine, 1)
    dead, survivor = queue(engine, "dead"), queue(engine, "survivor")
    assert [r.id for r in dead.claim(10)] == [row_id]
    clock.advance(seconds=30)                     # the lease ends after, not at, 30 s
    assert survivor.claim(10) == []
    clock.advance(seconds=1)
    assert [r.id for r in survivor.claim(10)] == [row_id]
    # the first owner comes back: its lease is gone, whatever it tries
    assert dead.record_failure(row_id, "late") == NOT_HELD
    assert dead.release(row_id) is False
    assert dead.move(row_id, "pending", "sending", lease="renew") is False
    row = row_of(engine, OutboxMessage, row_id)
    assert (row.lock_owner, row.attempts, row.last_error) == ("survivor", 0, None)


def test_a_released_row_is_ready_at_once_without_an_attempt(engine):
    [row_id] = messages(engine, 1)
    first, second = queue(engine, "a"), queue(engine, "b")
    first.claim(10)
    assert second.release(row_id) is False                 # only its holder gives it back
    assert first.release(row_id, status="sending") is False
    assert first.release(row_id) is True
    row = row_of(engine, OutboxMessage, row_id)
    assert (row.lock_owner, row.lock_expires_at, row.attempts) == (None, None, 0)
    assert [r.id for r in second.claim(10)] == [row_id]


def test_failures_back_off_on_the_engine_clock_then_the_callback_gives_up(engine, clock):
    [row_id] = messages(engine, 1)
    give_ups = GiveUps()
    worker = queue(engine, "w", give_up=give_ups)
    for attempt, wait in ((1, 10), (2, 15)):             # 10 s, then 20 capped at 15 s
        assert [r.id for r in worker.claim(10)] == [row_id]
        assert worker.record_failure(row_id, f"421 try later ({attempt})") == RETRYING
        row = row_of(engine, OutboxMessage, row_id)
        assert (row.status, row.attempts, row.lock_owner) == ("pending", attempt, None)
        assert row.last_error == f"421 try later ({attempt})"
        assert as_utc(row.next_attempt_at) == clock.now() + timedelta(seconds=wait)
        clock.advance(seconds=wait - 1)
        assert worker.claim(10) == []                    # still backing off
        clock.advance(seconds=1)
    assert [r.id for r in worker.claim(10)] == [row_id]
    assert give_ups.calls == []
    assert worker.record_failure(row_id, "550 " + "x" * 3000) == GIVEN_UP
    assert give_ups.calls == [(row_id, 3, "550 " + "x" * 3000)]   # the whole error
    row = row_of(engine, OutboxMessage, row_id)
    assert (row.status, row.attempts, row.lock_owner, row.lock_expires_at) == (
        "failed", 3, None, None)
    assert len(row.last_error) == 2000
    clock.advance(days=30)
    assert worker.claim(10) == []                         # given up: never claimed again


def test_a_give_up_callback_must_set_the_final_status(engine):
    [row_id] = messages(engine, 1)
    forgetful = queue(engine, "w", replace(SETTINGS, max_attempts=1),
                      give_up=lambda session, row, error: None)
    forgetful.claim(10)
    with pytest.raises(RuntimeError, match="left row .* pending"):
        forgetful.record_failure(row_id, "refused")
    row = row_of(engine, OutboxMessage, row_id)           # nothing of it was written
    assert (row.status, row.attempts, row.lock_owner, row.last_error) == (
        "pending", 0, "w", None)


def test_a_failure_is_recorded_only_in_the_status_the_holder_expects(engine, clock):
    [row_id] = messages(engine, 1)
    worker = queue(engine, "w")
    worker.claim(10)
    assert worker.move(row_id, "pending", "sending", lease="renew", subject="renewed")
    assert worker.record_failure(row_id, "refused") == NOT_HELD      # it is sending now
    assert worker.record_failure(row_id, "refused", status="sending") == RETRYING
    row = row_of(engine, OutboxMessage, row_id)
    assert (row.status, row.attempts, row.subject) == ("pending", 1, "renewed")
    with pytest.raises(ValueError, match="keep, renew or end"):
        worker.move(row_id, "pending", "sending", lease="forever")


def test_rows_left_midway_under_an_expired_lease_are_settled(engine, clock):
    interrupted, renewed = messages(engine, 2)
    dead = queue(engine, "dead")
    dead.claim(10)
    assert dead.move(interrupted, "pending", "sending")     # lease kept: ends at 30 s
    clock.advance(seconds=20)
    assert dead.move(renewed, "pending", "sending", lease="renew")    # now ends at 50 s
    clock.advance(seconds=11)
    survivor = queue(engine, "survivor")
    assert survivor.end_expired("sending", "unknown", last_error="interrupted") == 1
    settled = row_of(engine, OutboxMessage, interrupted)
    still_held = row_of(engine, OutboxMessage, renewed)
    assert (settled.status, settled.lock_owner, settled.last_error) == (
        "unknown", None, "interrupted")
    assert (still_held.status, still_held.lock_owner) == ("sending", "dead")
    assert survivor.claim(10) == []                        # neither is ready


def test_the_timers_back_off_in_their_lock_keeping_their_due_time(engine, clock):
    timer_id = a_timer(engine)
    due = clock.now()
    timers = Scheduler(engine, owner="s1", smtp=None).timer_queue
    assert [r.id for r in timers.claim(10)] == [timer_id]
    assert timers.record_failure(timer_id, "boom") == RETRYING
    row = row_of(engine, Timer, timer_id)
    assert as_utc(row.due_at) == due                      # what the timer fires for
    assert (row.lock_owner, as_utc(row.lock_expires_at)) == (
        None, clock.now() + timedelta(seconds=10))
    clock.advance(seconds=9)
    assert timers.claim(10) == []
    clock.advance(seconds=2)
    assert [r.id for r in timers.claim(10)] == [timer_id]


def test_each_queue_of_the_scheduler_keeps_its_own_settings(engine, clock):
    timer_id = a_timer(engine)
    [message_id] = messages(engine, 1)
    first = Scheduler(engine, owner="s1", smtp=None)
    second = Scheduler(engine, owner="s2", smtp=None)
    assert first.timer_queue.settings == TIMER_LEASES
    assert first.outbox.queue.settings == OUTBOX_LEASES
    assert [r.id for r in first.claim()] == [timer_id]
    assert first.outbox.claim() == [message_id]
    clock.advance(seconds=61)                   # the timer's 60 s lease is over, not 5 min
    assert [r.id for r in second.claim()] == [timer_id]
    assert second.outbox.claim() == []
    clock.advance(minutes=4)
    assert second.outbox.claim() == [message_id]

    # failures: the timer gives up after its 5th attempt, the e-mail after its 8th
    waits = {"timer": [], "email": []}
    for name, held, row_id, model, retry_column in (
            ("timer", second.timer_queue, timer_id, Timer, "lock_expires_at"),
            ("email", second.outbox.queue, message_id, OutboxMessage, "next_attempt_at")):
        while held.record_failure(row_id, "refused") != GIVEN_UP:
            retry_at = as_utc(getattr(row_of(engine, model, row_id), retry_column))
            waits[name].append((retry_at - clock.now()).total_seconds())
            clock.set(retry_at + timedelta(seconds=1))
            assert [r.id for r in held.claim(1, model.id == row_id)] == [row_id]
    assert waits == {"timer": [10, 20, 40, 80],
                     "email": [60, 120, 240, 480, 960, 1920, 3600]}
    assert row_of(engine, Timer, timer_id).status == "failed"
    assert row_of(engine, OutboxMessage, message_id).status == "failed"


def test_constructor_arguments_of_today_override_the_queue_settings(engine):
    scheduler = Scheduler(engine, owner="s1", lock_seconds=5, max_attempts=2, smtp=None,
                          outbox_leases=replace(OUTBOX_LEASES, backoff_cap_seconds=600))
    assert scheduler.timer_queue.settings == replace(TIMER_LEASES, lease_seconds=5,
                                                     max_attempts=2)
    assert scheduler.outbox.queue.settings.backoff_cap_seconds == 600
    sender = OutboxSender(engine.db, engine.clock, engine.notifications, "s1", None,
                          lease_seconds=60, max_attempts=3)
    assert sender.queue.settings == replace(OUTBOX_LEASES, lease_seconds=60, max_attempts=3)
