"""SpiffWorkflow's script engine and timers, wired to the sandbox and the engine clock.

SpiffWorkflow evaluates scripts, gateway conditions and timer expressions through a
``PythonScriptEngine``; ours sends all of them through :mod:`engine.sandbox`. Its timer event
definitions read ``datetime.now()``; the subclasses here read the clock carried by the script
engine instead, so one injectable clock rules every timer.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Mapping
from uuid import UUID

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventSpec
from SpiffWorkflow.util.task import TaskState

from .clock import LOCAL_TZ, Clock
from .errors import ScriptError
from .multi_instance import workflow_collections
from .sandbox import DEFAULT_TIME_LIMIT, Sandbox, check_code

DEFAULT_MAX_DATA_BYTES = 512 * 1024
# A multi-instance activity's collections (the items it iterates, the results it gathers)
# grow with the number of instances, by design: each is measured on its own, against this
# limit, and the rest of the task's data against DEFAULT_MAX_DATA_BYTES (a reporting cycle
# for 50,000 units holds 0.7 MB of unit ids and several MB of reports).
DEFAULT_MAX_COLLECTION_BYTES = 64 * 2**20

# The collections of the workflow whose script runs (set by EngineScriptEngine.execute).
_COLLECTIONS: ContextVar[frozenset] = ContextVar("collections", default=frozenset())

# Look-ups that many scripts of one step ask for alike (the figures of a reporting cycle's
# thousands of units, one unit per script) are computed once per step: see ``one_step``.
_STEP_MEMO: ContextVar[dict | None] = ContextVar("step_memo", default=None)


@contextmanager
def one_step():
    """Scope in which ``step_memo`` keeps what it computed (one run of engine steps)."""
    token = _STEP_MEMO.set({})
    try:
        yield
    finally:
        _STEP_MEMO.reset(token)


def step_memo(key, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per key within the current ``one_step`` (every time outside one).
    Callers must not hand the memoized value itself to scripts, which could change it."""
    memo = _STEP_MEMO.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(type(value).__name__)


def data_size(data: Mapping[str, Any], limit: int | None = None) -> int:
    """Bytes ``data`` takes as JSON; raises ScriptError for values that cannot be stored.

    With ``limit``, encoding stops as soon as the size passes it (and the size so far is
    returned): a list holding the same big list a million times is small in memory but
    would take terabytes as JSON, so it must never be encoded in one go.
    """
    # NaN and the infinities are not JSON: refused (PostgreSQL's JSON columns, the audit's
    # among them, refuse them, and a browser cannot read them)
    encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False, allow_nan=False)
    try:
        if limit is not None and _least_size(data, limit) <= limit:
            # surely not a bomb: the C encoder in one go, many times faster than the
            # chunked pure-Python one (every script of every task measures its data)
            return len(encoder.encode(data).encode())
        size = 0
        for chunk in encoder.iterencode(data):
            size += len(chunk.encode())
            if limit is not None and size > limit:
                break
        return size
    except TypeError as exc:
        raise _unstorable_error(f"task data cannot hold a value of type {exc}", data) from None
    except ValueError as exc:
        if str(exc).startswith("Out of range float"):
            raise _unstorable_error("task data cannot hold NaN or an infinity, numbers JSON "
                                    "does not have", data) from None
        raise ScriptError("task data refers to itself or is nested too deeply") from None
    except RecursionError:
        raise ScriptError("task data refers to itself or is nested too deeply") from None


def _unstorable_error(message: str, data: Mapping[str, Any]) -> ScriptError:
    """``message``, naming the variables whose values cannot be stored."""
    bad = [k for k, v in data.items() if _unstorable(v)]
    return ScriptError(message + (f" (variable {', '.join(map(repr, bad))})" if bad else ""))


def _least_size(data, limit: int) -> int:
    """A lower bound of the bytes ``data`` takes as JSON, counted only until it passes
    ``limit`` (shared or self-referring values count at every place they appear, so a
    value that is small in memory but huge as JSON passes the limit here quickly)."""
    size = 0
    stack = [data]
    pop, push, extend = stack.pop, stack.append, stack.extend
    scalars = (int, float, bool, type(None))
    while stack:
        value = pop()
        kind = type(value)              # exact types first: isinstance of an ABC is slow
        if kind is str:
            size += len(value) + 3
        elif kind in scalars:
            size += 5
        elif kind is dict or isinstance(value, Mapping):
            size += 2 + 4 * len(value)
            for key, item in value.items():
                size += len(key) if type(key) is str else 1
                push(item)
        elif kind is list or kind is tuple or isinstance(value, (list, tuple)):
            size += 2 + len(value)
            extend(value)
        else:
            size += 5
        if size > limit:
            break
    return size


def _unstorable(value, limit: int = 4 * 1024 * 1024) -> bool:
    try:
        size = 0
        for chunk in json.JSONEncoder(default=_json_default, allow_nan=False).iterencode(value):
            size += len(chunk)
            if size > limit:     # too big to say: not worth encoding further
                return False
        return False
    except (TypeError, ValueError, RecursionError):
        return True


def check_data_size(data: Mapping[str, Any], max_bytes: int, max_collection_bytes: int,
                    collections=frozenset()) -> None:
    """Raise ScriptError when task data is over its limits: the variables named in
    ``collections`` (a multi-instance activity's) each at most ``max_collection_bytes`` as
    JSON, the rest together at most ``max_bytes``."""
    held = [name for name in collections if name in data]
    ordinary = {k: v for k, v in data.items() if k not in collections} if held else data
    if data_size(ordinary, max_bytes) > max_bytes:
        raise ScriptError(f"task data would grow over the {max_bytes:,} byte limit "
                          f"(ND73_MAX_DATA_BYTES)")
    for name in sorted(held):
        if data_size({name: data[name]}, max_collection_bytes) > max_collection_bytes:
            raise ScriptError(
                f"the collection '{name}' of a multi-instance activity would grow over the "
                f"{max_collection_bytes:,} byte limit of a collection "
                f"(ND73_MAX_COLLECTION_BYTES)")


class SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Runs SpiffWorkflow's scripts and expressions inside the sandbox."""

    def __init__(self, sandbox: Sandbox, max_data_bytes: int,
                 max_collection_bytes: int = DEFAULT_MAX_COLLECTION_BYTES):
        super().__init__()
        self.sandbox = sandbox
        self.max_data_bytes = max_data_bytes
        self.max_collection_bytes = max_collection_bytes

    def evaluate(self, expression, context, external_context=None):
        if external_context:
            context = {**external_context, **context}
        return self.sandbox.evaluate(expression, context)

    def execute(self, script, context, external_context=None):
        namespace = {**(external_context or {}), **context}
        self.sandbox.execute(script, namespace)
        for name in external_context or ():
            if name not in context:
                namespace.pop(name, None)
        check_data_size(namespace, self.max_data_bytes, self.max_collection_bytes,
                        _COLLECTIONS.get())
        context.clear()
        context.update(namespace)
        return True

    def call_service(self, context, **kwargs):
        raise ScriptError("service tasks are not supported")


class EngineScriptEngine(PythonScriptEngine):
    """The script engine of every workflow the engine runs; it also carries the clock."""

    def __init__(self, clock: Clock, functions: Mapping[str, Callable] | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT,
                 max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
                 max_collection_bytes: int = DEFAULT_MAX_COLLECTION_BYTES):
        self.clock = clock
        base = {"now": clock.now}
        sandbox = Sandbox({**base, **(functions or {})}, time_limit=time_limit)
        super().__init__(environment=SandboxEnvironment(sandbox, max_data_bytes,
                                                        max_collection_bytes))

    def validate(self, expression):
        check_code(expression, "exec")

    def execute(self, task, script, external_context=None):
        # the data check measures the multi-instance collections of the task's definition
        # against their own limit
        token = _COLLECTIONS.set(workflow_collections(task.workflow))
        try:
            return super().execute(task, script, external_context)
        finally:
            _COLLECTIONS.reset(token)


# --- timers on the engine clock ----------------------------------------------------

def _now(my_task) -> datetime:
    return my_task.workflow.script_engine.clock.now()


def parse_instant(value) -> datetime:
    """A timer's due time as aware UTC; naive values are read in Asia/Ho_Chi_Minh."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, date):
        instant = datetime.combine(value, datetime.min.time())
    elif isinstance(value, str):
        instant = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"a timer date must be an ISO 8601 text or a datetime, not {value!r}")
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=LOCAL_TZ)
    return instant.astimezone(timezone.utc)


@lru_cache(maxsize=1024)
def _stored_instant(event_value: str) -> datetime:
    """A waiting timer's due time as its task keeps it (ISO text): the timers of a cycle's
    units share a few, which every step compares with now, tens of thousands of times."""
    return parse_instant(event_value)


MAX_TIMER_MONTHS = 100 * 12     # SpiffWorkflow counts a duration's months one by one


def duration_from(expression: str, start: datetime) -> timedelta:
    try:
        parsed = TimerEventDefinition.parse_iso_duration(expression)
    except Exception:   # SpiffWorkflow raises a bare Exception
        raise ValueError(f"not an ISO 8601 duration: {expression[:80]!r}") from None
    if parsed.get("years", 0) * 12 + parsed.get("months", 0) > MAX_TIMER_MONTHS:
        raise ValueError(f"a timer duration of more than {MAX_TIMER_MONTHS // 12} years: "
                         f"{expression[:80]!r}")
    return TimerEventDefinition.get_timedelta_from_start(parsed, start)


@contextmanager
def _timer_errors(my_task):
    """A timer expression whose value is not a date or duration (or is out of range) fails
    its task with the reason, which the runtime turns into an incident on that element."""
    try:
        yield
    except (ValueError, TypeError, OverflowError) as exc:
        raise WorkflowTaskException(f"timer '{my_task.task_spec.bpmn_id}': {exc}",
                                    task=my_task) from None


class EngineTimeDate(TimeDateEventDefinition):
    def has_fired(self, my_task):
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            value = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            with _timer_errors(my_task):
                event_value = parse_instant(value).isoformat()
            my_task._set_internal_data(event_value=event_value)
        if _stored_instant(event_value) <= _now(my_task):
            my_task._set_internal_data(event_fired=True)
        return my_task._get_internal_data("event_fired", False)


class EngineDuration(DurationTimerEventDefinition):
    def has_fired(self, my_task):
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            value = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            now = _now(my_task)
            with _timer_errors(my_task):
                if isinstance(value, timedelta):
                    due = now + value
                elif isinstance(value, datetime):
                    due = parse_instant(value)   # a function already computed the due time
                else:
                    due = now + duration_from(str(value), now)
            event_value = due.isoformat()
            my_task._set_internal_data(event_value=event_value)
        if _stored_instant(event_value) <= _now(my_task):
            my_task._set_internal_data(event_fired=True)
        return my_task._get_internal_data("event_fired", False)


class EngineCycle(CycleTimerEventDefinition):
    def cycle_complete(self, my_task):
        event_value = my_task._get_internal_data("event_value")
        now = _now(my_task)
        if event_value is None:
            expression = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            with _timer_errors(my_task):
                cycles, start, duration = parse_cycle(str(expression), now)
            event_value = {"cycles": cycles, "next": start.isoformat(),
                           "duration": duration.total_seconds()}
        ready = False
        if event_value["cycles"] != 0:
            next_event = datetime.fromisoformat(event_value["next"])
            if next_event <= now:
                event_value["next"] = (next_event + timedelta(seconds=event_value["duration"])
                                       ).isoformat()
                event_value["cycles"] -= 1
                ready = True
        else:
            my_task.internal_data.pop("event_value", None)
            my_task.internal_data["event_fired"] = True
        my_task._set_internal_data(event_value=event_value)
        return ready


MIN_CYCLE_PERIOD = timedelta(minutes=1)


def parse_cycle(expression: str, now: datetime) -> tuple[int, datetime, timedelta]:
    """``R[n]/[start/]duration`` → (cycles, first due time, period); -1 cycles is unbounded."""
    parts = expression.strip().upper().replace("--", "/").split("/")
    if not parts[0].startswith("R") or len(parts) not in (2, 3):
        raise ValueError(f"not an ISO 8601 repeating interval: {expression!r}")
    cycles = int(parts[0][1:]) if parts[0][1:] else -1
    if len(parts) == 3:
        start = parse_instant(parts[1])
        period = duration_from(parts[2], start)
    else:
        start, period = None, duration_from(parts[1], now)
    # a zero period fires again at once, for ever: the step that starts it never ends
    if period < MIN_CYCLE_PERIOD:
        raise ValueError(f"a timer cycle must repeat after at least "
                         f"{MIN_CYCLE_PERIOD.total_seconds():g} seconds: {expression!r}")
    return cycles, start or now + period, period


class _StartsTheInstance:
    """A process's timer start event, inside an instance: the timer already fired, which is
    why the instance exists. When the next occurrence comes is the scheduler's business; it
    reads the expression from the definition and starts a new instance each time."""

    def has_fired(self, my_task):
        return True

    def update_task(self, my_task):
        pass


class StartTimeDate(_StartsTheInstance, TimeDateEventDefinition):
    pass


class StartDuration(_StartsTheInstance, DurationTimerEventDefinition):
    pass


class StartCycle(_StartsTheInstance, TimerEventDefinition):
    # Not a CycleTimerEventDefinition: inside the instance it must behave like a plain start.
    pass


ENGINE_TIMERS: dict[type, type] = {
    TimeDateEventDefinition: EngineTimeDate,
    DurationTimerEventDefinition: EngineDuration,
    CycleTimerEventDefinition: EngineCycle,
}
START_TIMERS: dict[type, type] = {
    TimeDateEventDefinition: StartTimeDate,
    DurationTimerEventDefinition: StartDuration,
    CycleTimerEventDefinition: StartCycle,
}


def _adopt(event_definition, replacements):
    replacement = replacements.get(type(event_definition))
    if replacement is not None:
        event_definition.__class__ = replacement
    elif isinstance(event_definition, MultipleEventDefinition):
        for inner in event_definition.event_definitions:
            _adopt(inner, replacements)


def adopt_engine_timers(process_spec, *subprocess_specs) -> None:
    """Make the timers of freshly parsed specs read the engine clock; the process's own timer
    start events become schedules (see ``_StartsTheInstance``)."""
    for spec in (process_spec, *subprocess_specs):
        for task_spec in spec.task_specs.values():
            definition = getattr(task_spec, "event_definition", None)
            if definition is None:
                continue
            starts_process = spec is process_spec and isinstance(task_spec, StartEventSpec)
            _adopt(definition, START_TIMERS if starts_process else ENGINE_TIMERS)


def start_timers(process_spec) -> list[tuple[str, str, str]]:
    """(element id, kind, expression) of the timer start events of a process."""
    return [(task_spec.bpmn_id, type(task_spec.event_definition).__name__,
             task_spec.event_definition.expression)
            for task_spec in process_spec.task_specs.values()
            if isinstance(getattr(task_spec, "event_definition", None), _StartsTheInstance)]


def timer_due(task) -> datetime | None:
    """When a waiting timer task fires next, from the value SpiffWorkflow keeps on it."""
    if not task.has_state(TaskState.WAITING):
        return None
    value = task._get_internal_data("event_value")
    if isinstance(value, dict):
        value = value.get("next") if value.get("cycles", 0) != 0 else None
    return parse_instant(value) if value else None
