"""Structured logs: every line one JSON object with the time (UTC, ISO 8601), level, logger
and message, and the request id, user and instance id of the work it belongs to, when known.

The work in hand is kept in a context variable, so it follows the thread doing it (a
request in a server thread, a timer in the scheduler's) without being passed around. A unit
of work opens a scope with what it knows (an HTTP request its id, a timer its instance);
what is learnt inside it is noted into that scope (:func:`note`: the instance a completed
task belongs to), so the lines after it, the request's closing line among them, carry it
too. A scope's fields end with it; outside any scope a line carries none.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

# the fields every line carries when known, first and in this order
CONTEXT_FIELDS = ("request_id", "user", "instance_id")

_scope: ContextVar[dict[str, Any] | None] = ContextVar("nd73_log_scope", default=None)


def open_scope(**fields: Any) -> Token:
    """Start a unit of work (inside the current one, whose fields it keeps); a field may be
    a function, asked at each line (who is signed in is settled after the request starts).
    Give the token to :func:`close_scope`."""
    return _scope.set({**(_scope.get() or {}), **fields})


def close_scope(token: Token) -> None:
    _scope.reset(token)


@contextmanager
def log_scope(**fields: Any) -> Iterator[None]:
    token = open_scope(**fields)
    try:
        yield
    finally:
        close_scope(token)


def note(**fields: Any) -> None:
    """Add what became known to the unit of work in hand (nothing outside one)."""
    scope = _scope.get()
    if scope is not None:
        scope.update(fields)


def current_fields() -> dict[str, Any]:
    """The scope's fields that have a value now, the context fields first."""
    scope = _scope.get() or {}
    values = {}
    for name in (*CONTEXT_FIELDS, *(n for n in scope if n not in CONTEXT_FIELDS)):
        value = scope.get(name)
        if callable(value):
            value = _ask(value)
        if value is not None:
            values[name] = value
    return values


def _ask(function: Callable[[], Any]) -> Any:
    try:
        return function()
    except Exception:  # noqa: BLE001 - a log line never fails for its context
        return None


class ContextFilter(logging.Filter):
    """Puts the fields of the work in hand on each record (``record.context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = current_fields()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's ``extra={"fields": {...}}`` is added to it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "context", None) or {})
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_handler(stream=None) -> logging.Handler:
    """A handler writing JSON lines with the work's context to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    return handler


def use_json(handler: logging.Handler) -> None:
    """Make another library's handler (gunicorn's) write the same JSON lines."""
    handler.setFormatter(JsonFormatter())
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for every logger: the engine's at ``level``, other libraries'
    from WARNING on (the root's level, unless set otherwise). Safe to call again."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.addHandler(json_handler())
    engine_logs = logging.getLogger("nd73")
    engine_logs.setLevel(level)
    engine_logs.propagate = True
