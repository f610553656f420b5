"""Working days (ngày làm việc) in Asia/Ho_Chi_Minh.

Legal deadlines of Decree 73 count working days: Saturdays, Sundays and Vietnamese public
holidays (the ``holidays`` package knows Tết and substituted days off) do not count, nor do
the days off a province declares; make-up working days a province declares do count.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Iterable

import holidays

from .clock import LOCAL_TZ

OFFICE_CLOSE = time(17, 0)     # a deadline "within N working days" ends at close of office


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("VN", years=year))


def load_public_holidays(year: int) -> None:
    """Load the holiday tables now. The ``holidays`` package imports its ~280 countries at
    the first look-up (half a CPU second or more): done inside a script, that one-off cost
    of the process would count against the first script's CPU limit that counts working
    days, refusing it or not depending on what the process ran before."""
    _public_holidays(year)


class WorkingCalendar:
    def __init__(self, days_off: Iterable[date] = (), working_days: Iterable[date] = ()):
        self.days_off = frozenset(days_off)
        self.working_days = frozenset(working_days)

    def is_working_day(self, day: date) -> bool:
        if day in self.working_days:
            return True
        if day in self.days_off or day.weekday() >= 5:
            return False
        return day not in _public_holidays(day.year)

    def add_working_days(self, start: datetime | date, count: int) -> datetime:
        """Close of office on the ``count``-th working day after ``start``'s local date.

        ``count`` = 0 gives the close of ``start``'s day if it is a working day, else of the
        next working day.
        """
        if count < 0:
            raise ValueError("a deadline counts forward: the number of days must be ≥ 0")
        day = _local_date(start)
        if count == 0:
            while not self.is_working_day(day):
                day += timedelta(days=1)
        remaining = count
        while remaining:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return datetime.combine(day, OFFICE_CLOSE, LOCAL_TZ)

    def working_days_between(self, start: datetime | date, end: datetime | date) -> int:
        """Working days after ``start``'s date up to and including ``end``'s date."""
        first, last = _local_date(start), _local_date(end)
        sign = 1
        if last < first:
            first, last, sign = last, first, -1
        count = 0
        day = first
        while day < last:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return sign * count


def _local_date(value: datetime | date) -> date:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=LOCAL_TZ)
        return value.astimezone(LOCAL_TZ).date()
    return value
