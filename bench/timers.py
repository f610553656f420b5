"""Figure 6, timer precision: N timers due within one minute (instances of a one-timer
process, bench/processes/timer.bpmn, started through the engine), fired by the real
scheduler loop (engine.scheduler.run_loop: APScheduler, claim, fire, release, every
second) on a clock that runs in real time; the figure is the delay from each timer's due
time to its firing (timers.fired_at - timers.due_at).

The instances are created first on a manual clock, long before the window; then the
scheduler processes start on a clock that moves with the wall clock, set a few seconds
before the first timer is due, so creation time never eats into the window.

Usage: python -m bench.timers [N] [--window 60] [--schedulers 1] [--database ...]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, insert, select

from engine.access import Principal
from engine.audit import event_hash
from engine.clock import Clock, ManualClock
from engine.serialization import compress_state, state_text
from engine.store import AuditEvent, Instance, InstanceStateDelta, Timer
from engine.variants import SourceFile
from engine.workflow_engine import WorkflowEngine

from .common import PROJECT, RoundTrips, bench_database, emit, percentiles, postgres_available

PROCESS = PROJECT / "bench" / "processes" / "timer.bpmn"
BASE = datetime(2027, 3, 1, 1, 0, tzinfo=timezone.utc)
LEAD = timedelta(seconds=5)          # the scheduler starts this long before the first is due


class RealTimeClock(Clock):
    """The wall clock moved to another instant: ``start`` at construction, then real time."""

    def __init__(self, start: datetime):
        self._start = start
        self._wall = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._wall)


def _scheduler_process(url: str, start: datetime, started_at: float, owner: str,
                       counters=None) -> None:
    import logging
    import threading
    from engine.scheduler import run_loop
    # a round that overruns the 1 s interval is skipped by APScheduler, as designed: quiet
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    # the same instant in every scheduler process: the parent's start plus time since
    clock = RealTimeClock(start + timedelta(seconds=time.time() - started_at))
    engine = WorkflowEngine(url, clock=clock)
    if counters is not None:      # statements, round trips and CPU seconds, for the parent
        trips = RoundTrips(engine.db.engine)
        trips.counting = True
        cpu = time.process_time()

        def publish() -> None:
            while True:
                counters[:] = [trips.statements, trips.round_trips, time.process_time() - cpu]
                time.sleep(0.2)
        threading.Thread(target=publish, daemon=True).start()
    run_loop(engine, interval=1.0, blocking=True, owner=owner)


def create(url: str, n: int, window: float, *, clone: bool = True) -> None:
    """N instances waiting for their timers, due evenly over ``window`` seconds from an hour
    after BASE. The first is started through the engine; with ``clone`` the others are
    copies of its rows (instance with its state, timer, audit entry with its own hash),
    written in bulk with only the instance id and the due instant changed, as the engine
    would have written them: they load and fire through the engine like any instance.
    Without ``clone`` every instance is started through the engine (minutes at 10,000)."""
    engine = WorkflowEngine(url, clock=ManualClock(BASE))
    try:
        engine.upgrade_database()
        engine.repository.deploy("bench", [SourceFile("timer.bpmn", PROCESS.read_bytes())],
                                 "bench")
        first = BASE + timedelta(hours=1)
        dues = [first + timedelta(seconds=window * i / max(n - 1, 1)) for i in range(n)]
        for due in dues[:1] if clone else dues:
            engine.runtime.start("bench", "bench_timer", principal=Principal.system("bench"),
                                 data={"due": due.isoformat()})
        if clone and n > 1:
            _clone(engine, dues[0], dues[1:])
    finally:
        engine.close()


def _clone(engine: WorkflowEngine, template_due: datetime, dues: list[datetime],
           chunk: int = 2000) -> None:
    """Copies of the one instance there is, one per due instant (see :func:`create`)."""
    with engine.db.reading() as session:
        instance = session.scalars(select(Instance)).one()
        timer = session.scalars(select(Timer)).one()
        entry = session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id == instance.id)).one()
        assert not session.scalar(select(func.count()).select_from(
            InstanceStateDelta)), "the template instance has a snapshot only"
    state = state_text(instance.state)
    quoted = json.dumps(template_due.isoformat())
    assert state.count(quoted) == 2, "the due instant is in the data and in the timer"
    columns = [c.key for c in Instance.__table__.columns]
    instance_row = {c: getattr(instance, Instance.__mapper__.get_property_by_column(
        Instance.__table__.c[c]).key) for c in columns}
    timer_row = {c.key: getattr(timer, c.key) for c in Timer.__table__.columns if c.key != "id"}
    entry_row = {c.key: getattr(entry, c.key) for c in AuditEvent.__table__.columns
                 if c.key != "id"}
    for start in range(0, len(dues), chunk):
        instances, timer_rows, entries = [], [], []
        for due in dues[start:start + chunk]:
            instance_id = str(uuid.uuid4())
            value = due.isoformat()
            details = json.loads(json.dumps(entry.details).replace(quoted, json.dumps(value)))
            audit = {**entry_row, "instance_id": instance_id, "details": details}
            audit["hash"] = event_hash(None, **{k: audit[k] for k in (
                "seq", "instance_id", "definition_id", "at", "actor", "action", "element_id",
                "details")})
            instances.append({**instance_row, "id": instance_id, "audit_head": audit["hash"],
                              "state_data": compress_state(state.replace(quoted,
                                                                         json.dumps(value)))})
            timer_rows.append({**timer_row, "instance_id": instance_id, "due_at": due})
            entries.append(audit)
        with engine.db.transaction() as session:
            session.execute(insert(Instance.__table__), instances)
            session.execute(insert(Timer.__table__), timer_rows)
            session.execute(insert(AuditEvent.__table__), entries)


def start_schedulers(url: str, schedulers: int) -> list:
    """``schedulers`` scheduler processes on a clock that stands LEAD before the first
    timer is due and then runs in real time. Each process publishes the statements, round
    trips and CPU time it has spent in its ``counters`` (shared memory)."""
    start = BASE + timedelta(hours=1) - LEAD
    context = multiprocessing.get_context("spawn")
    wall = time.time()
    workers = []
    for k in range(schedulers):
        counters = context.Array("d", 3, lock=False)
        worker = context.Process(target=_scheduler_process,
                                 args=(url, start, wall, f"bench-{k}", counters), daemon=True)
        worker.counters = counters
        workers.append(worker)
    for worker in workers:
        worker.start()
    return workers


def watch(url: str, workers: list, window: float, time_limit: float) -> dict:
    """Wait until no timer is pending (or the time limit), stop the schedulers, and return
    the delays' figures."""
    watcher = WorkflowEngine(url)
    deadline = time.monotonic() + LEAD.total_seconds() + window + time_limit
    try:
        while time.monotonic() < deadline:
            with watcher.db.reading() as session:
                pending = session.scalar(select(func.count(Timer.id)).where(
                    Timer.status == "pending"))
            if not pending:
                break
            time.sleep(1.0)
        with watcher.db.reading() as session:
            rows = session.execute(select(Timer.due_at, Timer.fired_at).where(
                Timer.fired_at.isnot(None))).all()
            pending = session.scalar(select(func.count(Timer.id)).where(
                Timer.status == "pending"))
        time.sleep(0.5)               # the schedulers' counters are published every 0.2 s
        spent = [sum(worker.counters[i] for worker in workers) for i in range(3)]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(10)
        watcher.close()
    delays = [max(0.0, (_utc(fired) - _utc(due)).total_seconds()) for due, fired in rows]
    fired = max(len(delays), 1)
    # everything the scheduler processes did from their start (idle rounds before and after
    # the window, the outbox's job) divided by the timers fired
    per_firing = {"statements": round(spent[0] / fired, 1),
                  "round_trips": round(spent[1] / fired, 1),
                  "cpu_ms": round(spent[2] * 1000 / fired, 2)}
    return {"fired": len(delays), "not_fired": pending,
            "delay_s": percentiles(delays, scale=1.0) if delays else None,
            "scheduler_per_firing": per_firing,
            "scheduler_cpu_s": round(spent[2], 1)}


def run(n: int = 10_000, window: float = 60.0, schedulers: int = 1,
        database: str = "postgresql", time_limit: float = 300.0) -> dict:
    if database == "sqlite":
        schedulers = 1                   # SQLite has one writer: one scheduler (README)
    with bench_database(database, "timers") as url:
        started = time.perf_counter()
        create(url, n, window)
        created_s = time.perf_counter() - started
        result = watch(url, start_schedulers(url, schedulers), window, time_limit)
    return emit("timer_precision", database, n, window_s=window, schedulers=schedulers,
                created_s=round(created_s, 1), **result, target_p99_s=2.0)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=10_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgresql"),
                        default="postgresql" if postgres_available() else "sqlite")
    args = parser.parse_args(argv)
    run(args.n, args.window, args.schedulers, args.database)


if __name__ == "__main__":
    main()
