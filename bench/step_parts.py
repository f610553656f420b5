"""Where figure 1's time goes: the wall time of the parts of the engine's work per instance
(``engine_ms_per_instance_by_part``), measured on extra instances after the timed runs by
timing the engine's own methods for each part (and the garbage collector's passes).

A part's time includes what it calls: SpiffWorkflow's engine steps (``advance``) are the
work bare SpiffWorkflow does too, the rest is what the engine adds; ``other`` is the rest of
an instance's time (the completed task's own run, units of work, the audit chain, the
instance row's write, starting the instance).
"""
from __future__ import annotations

import gc
import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.orm import Session

import engine.runtime.instances as instances_module
from engine.store import appends


def _timed(owner, name: str, part: str, spent: Counter) -> None:
    """Replace ``owner.name`` (a method of an object, or a module's function) by one that
    adds its wall time to ``spent[part]``."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[part] += time.perf_counter() - started
    setattr(owner, name, timed)


@contextmanager
def parts_timed(engine) -> Iterator[Counter]:
    """While inside, the seconds spent in each part of the engine's work add up in the
    Counter yielded (the parts the module's docstring names)."""
    spent: Counter = Counter()
    runtime = engine.runtime
    replaced = [(runtime, "_advance", "advance (SpiffWorkflow's engine steps)"),
                (runtime, "_state_writer", "state (serialized and delta)"),
                (runtime.projection, "refresh", "projection (tasks, timers and events)"),
                (runtime, "_check_form", "form checks"),
                (runtime, "_load", "load (the workflow kept in memory or read)"),
                (runtime.access, "task_and_open_rows", "who may act"),
                (instances_module, "lock_instance", "lock"),
                (appends, "write", "rows added (written before the commit)"),
                (runtime, "task_data", "reads between steps (form data and open tasks)"),
                (runtime, "open_tasks", "reads between steps (form data and open tasks)")]
    for listener in runtime.listeners:
        name = type(listener).__name__
        part = {"DocumentIssuer": "documents", "Notifier": "notifications"}.get(
            name, "other listeners")
        replaced += [(listener, "step_saving", part), (listener, "step_saved", part)]
    saved = [(owner, name, owner.__dict__.get(name, _ABSENT)) for owner, name, _ in replaced]
    for owner, name, part in replaced:
        _timed(owner, name, part, spent)
    collecting = [0.0]

    def on_gc(phase, _info):
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            spent["garbage collection"] += time.perf_counter() - collecting[0]
    committing = [0.0]

    def before_commit(_session):
        committing[0] = time.perf_counter()

    def after_commit(_session):
        spent["commit (the last flush and the database's commit)"] += \
            time.perf_counter() - committing[0]
    gc.callbacks.append(on_gc)
    event.listen(Session, "before_commit", before_commit)
    event.listen(Session, "after_commit", after_commit)
    try:
        yield spent
    finally:
        event.remove(Session, "after_commit", after_commit)
        event.remove(Session, "before_commit", before_commit)
        gc.callbacks.remove(on_gc)
        for owner, name, before in reversed(saved):
            if before is _ABSENT:
                delattr(owner, name)        # the class's method shows through again
            else:
                setattr(owner, name, before)


_ABSENT = object()


def by_part(engine, drive, instances: int) -> dict[str, float]:
    """Milliseconds per instance in each part while ``drive(instances)`` runs instances
    through the engine, with ``total`` and ``other``."""
    with parts_timed(engine) as spent:
        started = time.perf_counter()
        drive(instances)
        total = time.perf_counter() - started
    per_instance = {part: round(seconds * 1000 / instances, 2)
                    for part, seconds in sorted(spent.items(), key=lambda kv: -kv[1])}
    # parts nest only where a collection runs inside one (counted in both)
    per_instance["other"] = round(total * 1000 / instances - sum(
        v for k, v in per_instance.items() if k != "garbage collection"), 2)
    per_instance["total"] = round(total * 1000 / instances, 2)
    return per_instance
