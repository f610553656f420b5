"""Working-day deadlines offered to BPMN expressions, on the running instance's calendar.

The calendar depends on the variant (its days off and make-up working days), so the runtime
sets the current variant's settings around every workflow step; the functions read them.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Iterator, Mapping

from .clock import LOCAL_TZ, Clock
from .variants import DEFAULT_SETTINGS, parse_day_month, parse_full_date
from .workdays import OFFICE_CLOSE, WorkingCalendar

_settings: ContextVar[Mapping] = ContextVar("nd73_variant_settings", default=DEFAULT_SETTINGS)


@lru_cache(maxsize=64)
def _calendar(calendar_json: str) -> WorkingCalendar:
    section = json.loads(calendar_json)
    return WorkingCalendar(
        [parse_full_date(d, "calendar.days_off") for d in section.get("days_off", [])],
        [parse_full_date(d, "calendar.working_days") for d in section.get("working_days", [])])


def calendar_for(settings: Mapping) -> WorkingCalendar:
    return _calendar(json.dumps(settings.get("calendar", {}), sort_keys=True))


@contextmanager
def variant_settings(settings: Mapping) -> Iterator[None]:
    token = _settings.set(settings)
    try:
        yield
    finally:
        _settings.reset(token)


def current_settings() -> Mapping:
    return _settings.get()


def deadline_days(name: str) -> int:
    deadlines = current_settings().get("deadlines", {})
    if name not in deadlines:
        raise ValueError(f"no deadline named '{name}' in the variant's settings "
                         f"(known: {', '.join(sorted(deadlines))})")
    return int(deadlines[name])


def sandbox_functions(clock: Clock) -> dict:
    def add_working_days(start, days):
        return calendar_for(current_settings()).add_working_days(start, int(days))

    def working_days_between(start, end):
        return calendar_for(current_settings()).working_days_between(start, end)

    def due_in_working_days(days):
        return add_working_days(clock.now(), days)

    def deadline(name):
        """Close of office on the last day of the named legal deadline, counted from now."""
        return due_in_working_days(deadline_days(name))

    def escalation(name):
        """When a step left past the named deadline is escalated to the assignee's head."""
        return add_working_days(deadline(name), deadline_days("escalation_after"))

    def setting(section, key):
        return current_settings().get(section, {}).get(key)

    def parse_date(text):
        """'2026-12-31' or '31/12/2026' → a date."""
        text = str(text).strip()
        if "/" in text:
            return parse_full_date(text, "date")
        return date.fromisoformat(text[:10])

    def cycle_year():
        return clock.now().astimezone(LOCAL_TZ).year

    def date_in_year(day_month, year=None):
        """Close of office on a 'dd/mm' day of ``year`` (this year by default), local time."""
        day, month = parse_day_month(day_month, "date")
        return datetime.combine(date(int(year or cycle_year()), month, day), OFFICE_CLOSE,
                                LOCAL_TZ)

    def due_before(day_month, year=None):
        """"Trước ngày dd/mm": due by the end (23:59:59, local time) of the day before it."""
        day, month = parse_day_month(day_month, "date")
        before = date(int(year or cycle_year()), month, day) - timedelta(days=1)
        return datetime.combine(before, time(23, 59, 59), LOCAL_TZ)

    def report_cycle(section="reporting"):
        """A reporting cycle's timer: it opens on ``<section>.opens`` at 08:00, every
        ``<section>.every_years`` years (1 by default), the first time in
        ``<section>.first_year`` (this year by default)."""
        where = f"{section}.opens"
        day, month = parse_day_month(setting(section, "opens"), where)
        every = int(setting(section, "every_years") or 1)
        first_year = int(setting(section, "first_year") or cycle_year())
        first = datetime(first_year, month, day, 8, 0, tzinfo=LOCAL_TZ)
        return f"R/{first.isoformat()}/P{every}Y"

    return {"add_working_days": add_working_days, "working_days_between": working_days_between,
            "due_in_working_days": due_in_working_days, "deadline": deadline,
            "deadline_days": deadline_days, "escalation": escalation, "setting": setting,
            "parse_date": parse_date, "cycle_year": cycle_year, "date_in_year": date_in_year,
            "due_before": due_before, "report_cycle": report_cycle}


def due_at(days_or_name, now: datetime) -> datetime:
    """A task's due time from its ``dueInWorkingDays`` property: a number or a deadline name."""
    text = str(days_or_name).strip()
    days = int(text) if text.isdigit() else deadline_days(text)
    return calendar_for(current_settings()).add_working_days(now, days)
