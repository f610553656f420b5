"""Figure 5, state size: bytes stored per instance of the national proposal (serialized
state, projections: tasks, candidates, timers, subscriptions, decisions, and the audit log)
at the end of the ordinary path, and again after 50 suspend/resume loops. Also the bytes of
state written per step along the ordinary path: incrementally (deltas, a snapshot every K
and at the end) and, for comparison, as a whole state at every step (K = 0).

Bytes are counted the same way on every database: the length of each stored column's text
(JSON and dates as they are written) or binary value (the compressed state), so SQLite and
PostgreSQL give comparable figures.

Usage: python -m bench.state_size [N] [--loops 50] [--database sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import json

from sqlalchemy import inspect, select

from engine.store import (AuditEvent, Decision, HumanTask, Instance, InstanceStateDelta,
                          MessageSubscription, TaskCandidate, Timer)
from engine.store.models import Notification

from .common import (PROPOSER, bench_database, drive_proposal, emit, library_engine,
                     step_data)


def _row_bytes(row) -> int:
    total = 0
    for attribute in inspect(row).mapper.column_attrs:
        value = getattr(row, attribute.key)
        if value is None:
            continue
        if isinstance(value, bytes):
            total += len(value)
        elif isinstance(value, (dict, list)):
            total += len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        else:
            total += len(str(value).encode("utf-8"))
    return total


def measure(engine, instance_ids: list[str]) -> dict:
    """Average bytes per instance, by part."""
    parts = {"state": 0, "instance_row": 0, "projections": 0, "audit": 0, "notifications": 0}
    with engine.db.reading() as session:
        for instance_id in instance_ids:
            instance = session.get(Instance, instance_id)
            parts["state"] += len(instance.state) + sum(
                _row_bytes(r) for r in session.scalars(select(InstanceStateDelta).where(
                    InstanceStateDelta.instance_id == instance_id)))
            parts["instance_row"] += _row_bytes(instance) - len(instance.state)
            tasks = list(session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance_id)))
            rows = tasks + list(session.scalars(select(TaskCandidate).where(
                TaskCandidate.task_id.in_([t.id for t in tasks]))))
            for model in (Timer, MessageSubscription, Decision):
                rows += list(session.scalars(select(model).where(
                    model.instance_id == instance_id)))
            parts["projections"] += sum(_row_bytes(r) for r in rows)
            parts["audit"] += sum(_row_bytes(r) for r in session.scalars(select(AuditEvent).where(
                AuditEvent.instance_id == instance_id)))
            parts["notifications"] += sum(_row_bytes(r) for r in session.scalars(
                select(Notification).where(Notification.instance_id == instance_id)))
    count = len(instance_ids)
    average = {k: round(v / count) for k, v in parts.items()}
    average["total"] = sum(average.values())
    return average


def state_written(engine, snapshot_every: int) -> dict:
    """Bytes of state one ordinary path writes per step (snapshots and deltas), with a
    snapshot every ``snapshot_every`` deltas (0: the whole state at every step)."""
    runtime = engine.runtime
    saved, runtime.state_snapshot_every = runtime.state_snapshot_every, snapshot_every
    writes = runtime.state_writes
    before = dict(writes)
    try:
        instance = runtime.start("national", "proposal",
                                 principal=engine.access.principal(PROPOSER))
        drive_proposal(engine, instance.id, candidates=False)
    finally:
        runtime.state_snapshot_every = saved
    done = {k: writes[k] - before[k] for k in writes}
    steps = done["snapshots"] + done["deltas"]
    return {"steps": steps, "snapshots": done["snapshots"], "deltas": done["deltas"],
            "bytes_per_step": round(done["bytes"] / steps)}


def run(n: int = 20, loops: int = 50, database: str = "sqlite") -> dict:
    with bench_database(database, "state") as url:
        engine = library_engine(url)
        try:
            ids = []
            proposer = engine.access.principal(PROPOSER)
            admin = engine.access.principal("admin")
            for _ in range(n):
                instance = engine.runtime.start("national", "proposal", principal=proposer)
                drive_proposal(engine, instance.id, candidates=False)
                ids.append(instance.id)
            finished = measure(engine, ids)
            written = state_written(engine, engine.runtime.state_snapshot_every)
            whole = state_written(engine, 0)
            # a second set, suspended and resumed while it waits for screening
            looped_ids = []
            for _ in range(n):
                instance = engine.runtime.start("national", "proposal", principal=proposer)
                [plan_task] = engine.runtime.open_tasks(instance.id)
                engine.runtime.complete_task(plan_task.id, step_data("submit_plan"),
                                             principal=proposer)
                for _ in range(loops):
                    engine.runtime.suspend(instance.id, principal=admin, reason="kiểm tra")
                    engine.runtime.resume(instance.id, principal=admin)
                drive_proposal(engine, instance.id, candidates=False)
                looped_ids.append(instance.id)
            looped = measure(engine, looped_ids)
        finally:
            engine.close()
    growth = {k: looped[k] - finished[k] for k in finished}
    return emit("state_size", database, n, loops=loops,
                bytes_per_instance_ordinary_path=finished,
                bytes_per_instance_after_loops=looped,
                growth_per_loop={k: round(v / loops, 1) for k, v in growth.items()},
                state_growth_per_loop_bytes=round(growth["state"] / loops, 1),
                audit_growth_per_loop_bytes=round(growth["audit"] / loops, 1),
                target_bytes=32 * 1024,
                state_written_per_step_incremental=written,
                state_written_per_step_whole_state=whole)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=20)
    parser.add_argument("--loops", type=int, default=50)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    run(args.n, args.loops, args.database)


if __name__ == "__main__":
    main()
