"""Leases on rows that schedulers take from a table, retried with backoff: one mechanism for
the timers (:mod:`engine.scheduler`) and the e-mail outbox (:mod:`engine.notifications.outbox`).

A row is *ready* (status ``pending``) once its due time has come and no lease is held on it.
An owner (a scheduler process) *claims* a batch of ready rows by writing its name and a lease
expiry on them. PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED``, so owners claiming at the
same time take different rows without waiting for each other. SQLite: every writing
transaction begins with ``BEGIN IMMEDIATE`` (:mod:`engine.store.db`), so claims are
serialized by its single writer lock and the second owner sees the first one's leases.

The owner then works on each row and, when done, ends the lease in the transaction that
records the result; or gives the row back (:meth:`LeaseQueue.release`: nothing was tried);
or records a failure (:meth:`LeaseQueue.record_failure`): the row waits a backoff that
doubles with each failure, and after the last attempt the queue's give-up callback, which
belongs to the queue's user, sets its final status. A lease whose owner died expires and
the row is claimed again; rows left in an intermediate status by such an owner are settled
with :meth:`LeaseQueue.end_expired`.

Rows need the columns ``id``, ``status``, ``attempts``, ``lock_owner``, ``lock_expires_at``
and ``last_error``, plus a due-time column. Each queue has its own :class:`LeaseSettings`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

READY = "pending"
ERROR_LIMIT = 2000              # characters of an error kept on the row

RETRYING = "retrying"           # outcomes of record_failure
GIVEN_UP = "given up"
NOT_HELD = "not held"

GiveUp = Callable[[Session, Any, str], None]


@dataclass(frozen=True)
class LeaseSettings:
    """How long a claim holds a row, how often a row is tried, and how long it waits after a
    failure: ``backoff_base_seconds`` after the first, doubling after each next one, never
    more than ``backoff_cap_seconds`` (None: no cap)."""

    lease_seconds: float
    max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float | None = None

    def __post_init__(self):
        problems = []
        if not self.lease_seconds > 0:
            problems.append(f"lease_seconds must be greater than 0, not {self.lease_seconds}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            problems.append(f"max_attempts must be a whole number of at least 1, "
                            f"not {self.max_attempts!r}")
        if not self.backoff_base_seconds > 0:
            problems.append("backoff_base_seconds must be greater than 0, "
                            f"not {self.backoff_base_seconds}")
        if self.backoff_cap_seconds is not None \
                and not self.backoff_cap_seconds >= self.backoff_base_seconds:
            problems.append(f"backoff_cap_seconds ({self.backoff_cap_seconds}) must be at "
                            f"least backoff_base_seconds ({self.backoff_base_seconds})")
        if problems:
            raise ValueError("lease settings: " + "; ".join(problems))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    def backoff(self, failures: int) -> timedelta:
        """The wait after the ``failures``-th failure (1, 2, …)."""
        # bounded exponent: a queue without a cap still gets a representable timedelta
        seconds = self.backoff_base_seconds * 2 ** min(max(failures - 1, 0), 40)
        if self.backoff_cap_seconds is not None:
            seconds = min(seconds, self.backoff_cap_seconds)
        return timedelta(seconds=seconds)

    def overridden(self, **values) -> LeaseSettings:
        """These settings with the given values that are not None (constructor arguments
        such as ``lock_seconds=None`` keep the default)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


class LeaseQueue:
    """The rows of ``model`` as a work queue for one ``owner``.

    ``due`` is the column that says when a row is ready (claims take the oldest first);
    ``retry_at`` the column a failure pushes back by the backoff (by default ``due``; a
    queue whose due time must not change, such as the timers, uses ``lock_expires_at``).
    ``give_up(session, row, error)`` runs in the failure's transaction after the last
    attempt and sets the row's final status (and whatever else giving up means there).
    """

    def __init__(self, db, clock, model, *, owner: str, settings: LeaseSettings, due,
                 give_up: GiveUp, retry_at=None, name: str | None = None):
        self.db = db
        self.clock = clock
        self.model = model
        self.owner = owner
        self.settings = settings
        self.due = due
        self.retry_at = due if retry_at is None else retry_at
        self.give_up = give_up
        self.name = name or model.__tablename__

    # --- claiming --------------------------------------------------------------------------
    def claim(self, limit: int, *where) -> list:
        """Lease up to ``limit`` ready rows (also matching ``where``), oldest due first, and
        return them (detached, with the lease written on them, oldest due first).

        One statement: an UPDATE of the rows a sub-select chooses (on PostgreSQL locked
        with SKIP LOCKED), returning them; a claim is a round trip, not a SELECT and then
        an UPDATE per row."""
        now = self.clock.now()
        model = self.model
        chosen = (select(model.id).where(model.status == READY, self.due <= now,
                                         self.free(now), *where)
                  .order_by(self.due, model.id).limit(limit))
        if not self.db.is_sqlite:
            chosen = chosen.with_for_update(skip_locked=True)
        statement = (update(model).where(model.id.in_(chosen.scalar_subquery()))
                     .values(lock_owner=self.owner, lock_expires_at=now + self.settings.lease)
                     .returning(model)
                     .execution_options(synchronize_session=False))
        with self.db.transaction() as session:
            rows = list(session.scalars(statement))
        due = self.due.key
        return sorted(rows, key=lambda row: (getattr(row, due), row.id))

    def free(self, now: datetime):
        """SQL condition: nobody holds the row at ``now`` (never leased, or lease expired)."""
        expires = self.model.lock_expires_at
        return or_(expires.is_(None), expires < now)

    def holding(self, row_id: int):
        """SQL condition: the row is ``row_id`` and this owner holds it; for statements of
        the queue's user that finish a row in their own transaction."""
        return and_(self.model.id == row_id, self.model.lock_owner == self.owner)

    # --- while holding a row ---------------------------------------------------------------
    def move(self, row_id: int, expected: str, status: str, *, lease: str = "keep",
             **values) -> bool:
        """Move a row this owner holds from ``expected`` to ``status``, writing ``values``;
        ``lease`` "renew" holds it for a whole lease from now, "end" gives the lease up.
        False when the row is not (or no longer) held in ``expected``."""
        if lease == "renew":
            values["lock_expires_at"] = self.clock.now() + self.settings.lease
        elif lease == "end":
            values.update(lock_owner=None, lock_expires_at=None)
        elif lease != "keep":
            raise ValueError(f"lease must be keep, renew or end, not {lease!r}")
        with self.db.transaction() as session:
            return session.execute(update(self.model).where(
                self.holding(row_id), self.model.status == expected)
                .values(status=status, **values)).rowcount == 1

    def release(self, row_id: int, status: str | None = None) -> bool:
        """Give a held row back untried: ready again at once, no attempt counted. With
        ``status``, only a row in that status. False when this owner does not hold it."""
        with self.db.transaction() as session:
            statement = update(self.model).where(self.holding(row_id))
            if status is not None:
                statement = statement.where(self.model.status == status)
            return session.execute(statement.values(
                lock_owner=None, lock_expires_at=None)).rowcount == 1

    def record_failure(self, row_id: int, error: str, *, status: str = READY) -> str:
        """A held row (in ``status``) was tried and failed: count the attempt, keep the error
        and end the lease; the row is ready again after the backoff (RETRYING), or, at
        ``max_attempts``, the give-up callback sets its final status (GIVEN_UP). NOT_HELD
        when this owner no longer holds it (its lease expired and another owner took it):
        nothing is written."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = session.get(self.model, row_id, with_for_update=True)
            if row is None or row.status != status or row.lock_owner != self.owner:
                return NOT_HELD
            row.attempts = (row.attempts or 0) + 1
            row.last_error = error[:ERROR_LIMIT]
            row.lock_owner, row.lock_expires_at = None, None
            if row.attempts >= self.settings.max_attempts:
                self.give_up(session, row, error)
                if row.status == READY:
                    raise RuntimeError(f"the give-up callback of queue {self.name} left row "
                                       f"{row_id} {READY}: it must set the final status")
                return GIVEN_UP
            row.status = READY
            setattr(row, self.retry_at.key, now + self.settings.backoff(row.attempts))
        return RETRYING

    # --- leases whose owner died -----------------------------------------------------------
    def end_expired(self, status: str, new_status: str, **values) -> int:
        """Rows left in ``status`` (not ready: ready ones are simply claimed again) under a
        lease that expired: their owner died in the middle. They move to ``new_status``
        without a lease. Returns how many."""
        now = self.clock.now()
        model = self.model
        with self.db.transaction() as session:
            return session.execute(update(model).where(
                model.status == status, model.lock_expires_at < now)
                .values(status=new_status, lock_owner=None, lock_expires_at=None,
                        **values)).rowcount
