"""Figure 3, flat cost with history: an official's inbox query, instance searches and a task
completion, with a large history of finished instances and 10,000 open tasks, against the
same with 1,000 finished instances. Each size gets its own database, created and dropped by
the bench; the history is written in bulk (bench/history_data.py), the measured instances
run through the engine.

Usage: python -m bench.history [--history 1000000] [--open 10000] [--samples 200]
                               [--database postgresql|sqlite]
"""
from __future__ import annotations

import argparse
import time

from sqlalchemy import select

from engine.queries import InstanceFilters
from engine.store import Definition

from . import history_data
from .common import (PROPOSER, bench_database, emit, library_engine, percentiles,
                     postgres_available, step_data)

MEASURED = "mau.sxd.giamdoc"        # head of the model department: screens, decides, votes
MEASURED_UNIT = "mau.sxd"
ADMIN = "admin"


def _latencies(function, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        function()
        out.append(time.perf_counter() - started)
    return out


def measure(url: str, history: int, open_tasks: int, samples: int) -> dict:
    engine = library_engine(url)
    try:
        with engine.db.reading() as session:
            definition_id = session.scalars(select(Definition.id).where(
                Definition.variant == "national", Definition.key == "proposal")).first()
        started = time.perf_counter()
        with engine.db.engine.begin() as connection:
            history_data.generate(connection, definition_id=definition_id, history=history,
                                  open_tasks=open_tasks, measured_user=MEASURED,
                                  measured_unit=MEASURED_UNIT)
        history_data.settle(engine.db.engine)
        generated_s = time.perf_counter() - started
        # real proposals waiting for the measured official's screening, completed one by one
        waiting = []
        proposer = engine.access.principal(PROPOSER)
        for _ in range(min(samples, 100)):
            instance = engine.runtime.start("national", "proposal", principal=proposer)
            [plan_task] = engine.runtime.open_tasks(instance.id)
            engine.runtime.complete_task(plan_task.id, step_data("submit_plan"),
                                         principal=proposer)
            [screening] = engine.runtime.open_tasks(instance.id)
            waiting.append(screening.id)
        official = engine.access.principal(MEASURED)
        admin = engine.access.principal(ADMIN)
        inbox = _latencies(lambda: engine.tasks.inbox(official), samples)
        search = _latencies(lambda: engine.queries.instances(official, InstanceFilters()),
                            samples)
        admin_search = _latencies(lambda: engine.queries.instances(
            admin, InstanceFilters(status="running", unit=MEASURED_UNIT)), samples)
        completions = []
        for task_id in waiting:
            started = time.perf_counter()
            engine.runtime.complete_task(task_id, step_data("screening"), principal=official)
            completions.append(time.perf_counter() - started)
        page = engine.tasks.inbox(official)
        return {"history": history, "open_tasks": open_tasks, "generated_s": round(generated_s, 1),
                "inbox_total": page.total,
                "inbox_ms": percentiles(inbox), "search_ms": percentiles(search),
                "admin_search_ms": percentiles(admin_search),
                "complete_ms": percentiles(completions)}
    finally:
        engine.close()


def run(history: int = 100_000, open_tasks: int = 10_000, samples: int = 200,
        database: str = "postgresql", small: int = 1000) -> dict:
    results = {}
    for label, size in (("small", min(small, history)), ("large", history)):
        with bench_database(database, f"history_{label}") as url:
            results[label] = measure(url, size, open_tasks, samples)
    ratios = {f"{name}_p95_ratio": round(results["large"][f"{name}_ms"]["p95"]
                                         / max(results["small"][f"{name}_ms"]["p95"], 0.01), 2)
              for name in ("inbox", "search", "admin_search", "complete")}
    return emit("flat_cost_with_history", database, history, samples=samples,
                open_tasks=open_tasks, small=results["small"], large=results["large"],
                **ratios, target_p95_ratio=1.5, target_inbox_p95_ms=20)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000,
                        help="finished instances of the large database (the issue: 1000000)")
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--database", choices=("sqlite", "postgresql"),
                        default="postgresql" if postgres_available() else "sqlite")
    args = parser.parse_args(argv)
    run(args.history, args.open, args.samples, args.database)


if __name__ == "__main__":
    main()
