"""Figure 4, fan-out: opening a reporting cycle (national annual_report) for N reporting
units (communes added in bulk under the model province, each with a head): seconds until
every unit's report task exists and is in the inbox of its head.

The cycle is opened the way the scheduler opens it (a start of annual_report for the
province, in this process). Whether the tasks are in the inboxes is seen as the officials
see it, from another process, as a web worker would: a reader started beforehand, with its
own engine and connections, waits for the cycle's instance to be committed (the opening is
one transaction: its tasks and candidacies come with it), then checks every unit with one
query equivalent to the inbox's condition (an open task of the cycle naming the unit's head
as candidate) and, for a sample, through the inbox query itself; ``all_visible_s`` is when
it is done, from the opening's start. The garbage collector's full pass that the opening's
millions of new objects bring on in the opening process (a pause of that process only, not
of the readers) is then run at once and timed on its own: ``collection_after_open_s``.

Then one unit's report in the opened cycle (``one_report_s``): its head completes the
``submit_report`` task through the engine, as a person would, for a few units in turn (the
median; every report is a step of the one large workflow, whose cost grows with the units
still reporting); ``open_cycle_cpu_s`` and ``one_report_cpu_s``: the CPU the engine's
process spent on them, which other work on the machine does not stretch.
``open_cycle_ms_per_unit`` and ``open_cycle_cpu_ms_per_unit``: the opening's seconds and CPU
per reporting unit, so runs of different N, or on a loaded machine (the CPU one), compare.

Usage: python -m bench.fanout [N] [--database sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time

from sqlalchemy import and_, func, insert, select
from werkzeug.security import generate_password_hash

from engine.scheduler import SCHEDULER
from engine.store import HumanTask, Instance, Membership, OrgUnit, TaskCandidate, User

from .common import bench_database, emit, library_engine, postgres_available

PROVINCE = "mau"
# reports completed after the cycle opened; their median is one_report_s
REPORTS = 3
# the heads whose inboxes the reader reads through the inbox query itself
INBOX_SAMPLE = 20
# how often the reader looks for the committed cycle, and for how long at most
WATCH_EVERY_S = 0.05
WATCH_AT_MOST_S = 3600


def unit_pairs(n: int) -> list[tuple[str, str]]:
    """The N communes' (unit, head) names."""
    return [(f"mau.xa{i:05d}", f"mau.xa{i:05d}.chutich") for i in range(n)]


def add_units(engine, n: int) -> list[tuple[str, str]]:
    """N communes under the province, each with a head; returns (unit, head) pairs."""
    pairs = unit_pairs(n)
    password = generate_password_hash("bench", method="pbkdf2:sha256:1000")
    with engine.db.transaction() as session:
        session.execute(insert(OrgUnit), [
            {"id": unit, "variant": "national", "name": f"Xã {i}", "parent_id": PROVINCE,
             "kind": "commune", "tags": []} for i, (unit, _) in enumerate(pairs)])
        session.execute(insert(User), [
            {"username": head, "full_name": f"Chủ tịch xã {i}", "password_hash": password,
             "active": True, "email": None, "notification_mode": "immediate"}
            for i, (_, head) in enumerate(pairs)])
        session.execute(insert(Membership), [
            {"username": head, "unit_id": unit, "position": "head"} for unit, head in pairs])
    return pairs


def run(n: int = 5000, database: str = "sqlite") -> dict:
    with bench_database(database, "fanout") as url:
        engine = library_engine(url)
        reader = None
        try:
            pairs = add_units(engine, n)
            engine.org.invalidate()        # units written in bulk, not by Org.seed
            reader = _start_reader(url, n)
            started_at = time.time()       # the reader's clock: the same wall clock
            started, cpu = time.perf_counter(), time.process_time()
            instance = engine.runtime.start("national", "annual_report",
                                            principal=SCHEDULER,
                                            data={"proposer_unit": PROVINCE})
            opened = time.perf_counter() - started
            opened_cpu = time.process_time() - cpu
            seen = _reader_result(reader)
            collecting = time.perf_counter()
            gc.collect()
            collection = time.perf_counter() - collecting
            reports, reports_cpu = one_reports(engine, instance.id, random.Random(11).sample(
                pairs, min(REPORTS, len(pairs))))
        finally:
            if reader is not None and reader.poll() is None:
                reader.kill()
            engine.close()
    assert seen["instance_id"] == instance.id, seen
    assert seen["reached"] == n, f"{seen['reached']} of {n} unit heads have the report task"
    return emit("reporting_cycle_fanout", database, n, report_tasks=seen["tasks"],
                unit_heads_with_task=seen["reached"], open_cycle_s=round(opened, 2),
                all_visible_s=round(seen["done_at"] - started_at, 2),
                open_cycle_cpu_s=round(opened_cpu, 2),
                open_cycle_ms_per_unit=round(opened * 1000 / n, 3),
                open_cycle_cpu_ms_per_unit=round(opened_cpu * 1000 / n, 3),
                collection_after_open_s=round(collection, 2),
                one_report_s=round(statistics.median(reports), 3),
                one_report_cpu_s=round(statistics.median(reports_cpu), 3),
                reports_s=[round(r, 3) for r in reports], target_s=30)


def _start_reader(url: str, n: int) -> subprocess.Popen:
    """The reader process (:func:`watch`), once it is ready to look."""
    reader = subprocess.Popen([sys.executable, "-m", "bench.fanout", str(n), "--watch", url],
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    line = reader.stdout.readline().strip()
    if line != "ready":
        reader.kill()
        raise RuntimeError(f"the fan-out's reader did not start (it said {line!r})")
    return reader


def _reader_result(reader: subprocess.Popen) -> dict:
    assert reader.stdout is not None
    line = reader.stdout.readline()
    reader.wait(timeout=60)
    if not line:
        raise RuntimeError(f"the fan-out's reader stopped (exit status {reader.returncode})")
    return json.loads(line)


def watch(url: str, n: int) -> None:
    """The reader: an engine of its own on the database (the organisation read, statements
    warmed), ``ready`` printed; then it waits for the reporting cycle's instance to be
    committed, checks that every unit's head has the report task open and that a sample of
    heads find it through the inbox query, and prints what it found and the wall-clock time
    it was done (JSON)."""
    from engine.workflow_engine import WorkflowEngine
    engine = WorkflowEngine(url)
    heads = [head for _, head in unit_pairs(n)]
    sample = random.Random(7).sample(heads, min(INBOX_SAMPLE, len(heads)))
    principals = {head: engine.access.principal(head) for head in sample}
    engine.tasks.inbox(principals[sample[0]])            # the inbox's statement compiled
    cycle = select(Instance.id).where(Instance.definition_key == "annual_report").limit(1)
    print("ready", flush=True)
    given_up = time.monotonic() + WATCH_AT_MOST_S
    while True:
        with engine.db.reading() as session:
            instance_id = session.scalar(cycle)
        if instance_id is not None or time.monotonic() > given_up:
            break
        time.sleep(WATCH_EVERY_S)
    tasks = reached = 0
    if instance_id is not None:
        with engine.db.reading() as session:
            tasks = session.scalar(select(func.count(HumanTask.id)).where(
                HumanTask.instance_id == instance_id, HumanTask.status == "open",
                HumanTask.element_id == "submit_report"))
            reached = session.scalar(
                select(func.count(func.distinct(TaskCandidate.username)))
                .join(HumanTask, and_(HumanTask.id == TaskCandidate.task_id,
                                      HumanTask.instance_id == instance_id,
                                      HumanTask.status == "open"))
                # the heads add_units made: five digits each
                .where(TaskCandidate.username.like("mau.xa_____.chutich")))
        for head in sample:
            page = engine.tasks.inbox(principals[head])
            assert any(t.instance_id == instance_id for t in page.items), head
    print(json.dumps({"instance_id": instance_id, "tasks": tasks, "reached": reached,
                      "done_at": time.time()}), flush=True)
    engine.close()


def one_reports(engine, instance_id: str, pairs: list[tuple[str, str]]
                ) -> tuple[list[float], list[float]]:
    """Seconds of each unit's report (its head completes its ``submit_report`` task), and
    the CPU seconds the engine's process spent on it (the database server's aside)."""
    with engine.db.reading() as session:
        tasks = dict(session.execute(
            select(HumanTask.unit_id, HumanTask.id).where(
                HumanTask.instance_id == instance_id, HumanTask.status == "open",
                HumanTask.element_id == "submit_report",
                HumanTask.unit_id.in_([unit for unit, _ in pairs]))).all())
    took, cpu = [], []
    for unit, head in pairs:
        principal = engine.access.principal(head)
        started, started_cpu = time.perf_counter(), time.process_time()
        engine.runtime.complete_task(tasks[unit], {"report": {"summary": "Báo cáo"}},
                                     principal=principal)
        took.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return took, cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"),
                        default="postgresql" if postgres_available() else "sqlite")
    parser.add_argument("--watch", metavar="URL",
                        help="be the reader of a run on the database URL (run starts it)")
    args = parser.parse_args(argv)
    if args.watch:
        watch(args.watch, args.n)
    else:
        run(args.n, args.database)


if __name__ == "__main__":
    main()
