"""The engine's notion of "now".

Every component that needs the current time (timers, audit entries, due dates) asks the
engine's clock, never ``datetime.now`` directly, so tests move time instead of sleeping.
All instants are timezone-aware UTC; local display (Asia/Ho_Chi_Minh) is a UI concern.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class Clock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock(Clock):
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: datetime | None = None):
        start = start or datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        delta = delta if delta is not None else timedelta(**kwargs)
        if delta < timedelta(0):
            raise ValueError("the engine clock never moves backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware times")
        instant = instant.astimezone(timezone.utc)
        with self._lock:
            if instant < self._now:
                raise ValueError("the engine clock never moves backwards")
            self._now = instant
            return self._now


def as_utc(value: datetime) -> datetime:
    """Read a stored datetime as UTC (SQLite returns naive values)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
