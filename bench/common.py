"""What every figure shares: its JSON line, bench databases (a temporary SQLite file, or a
PostgreSQL database the bench creates and drops), the deployed process library with its
organisations, and the national proposal's ordinary approval path."""
from __future__ import annotations

import copy
import functools
import json
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, make_url

PROJECT = Path(__file__).resolve().parents[1]
# the local PostgreSQL server; each figure makes its own database on it and drops it after
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def emit(figure: str, database: str, n: int, **numbers) -> dict:
    """Print one figure as one JSON line (and return it, for the smoke test)."""
    record = {"figure": figure, "cpus": os.cpu_count(), "database": database, "n": n,
              "load_average_1m": round(os.getloadavg()[0], 2), **numbers}
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return record


def percentiles(samples: list[float], scale: float = 1000.0) -> dict:
    """p50/p95/p99 (milliseconds by default) of a list of durations in seconds."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, 2)
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99),
            "mean": round(statistics.fmean(ordered) * scale, 2)}


def postgres_available(url: str = DEFAULT_POSTGRES) -> bool:
    try:
        probe = create_engine(url, connect_args={"connect_timeout": 2})
        with probe.connect():
            pass
        probe.dispose()
        return True
    except Exception:            # noqa: BLE001 - any failure means: not available
        return False


@contextmanager
def bench_database(kind: str, name: str, server: str | None = None) -> Iterator[str]:
    """A fresh, empty database URL. ``kind`` is sqlite (a temporary file) or postgresql (a
    database ``nd73_bench_<name>_<pid>`` created on ``server`` and dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nd73-bench-") as folder:
            yield f"sqlite:///{folder}/{name}.sqlite3"
        return
    base = make_url(server or os.environ.get("ND73_BENCH_POSTGRES", DEFAULT_POSTGRES))
    with postgres_database(base, f"nd73_bench_{name}_{os.getpid()}") as url:
        yield url


@contextmanager
def postgres_database(server: URL, database: str) -> Iterator[str]:
    """Database ``database`` created new on ``server``'s PostgreSQL and dropped afterwards
    (also used by the tests that need a second database)."""
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        yield server.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


class RoundTrips:
    """Statements and round trips a SQLAlchemy engine sends while ``counting`` (SQLAlchemy's
    event hooks): every statement the cursor executes (a multi-row INSERT is one), plus, on
    PostgreSQL, the BEGIN, COMMIT and ROLLBACK the driver sends as commands of their own (on
    SQLite the engine's ``BEGIN IMMEDIATE`` is already a statement; COMMIT is a call into
    the library, counted as a round trip all the same). Not counted: the ``SELECT 1`` a
    connection idle for over a second is tested with (engine.store.db)."""

    def __init__(self, sa_engine):
        self.statements = self.round_trips = 0
        self.counting = False
        self._engine = sa_engine
        commands = ("commit", "rollback") + (
            ("begin",) if sa_engine.dialect.name == "postgresql" else ())
        self._listeners = [("before_cursor_execute", self._on_statement)] + [
            (name, self._on_command) for name in commands]
        for name, listener in self._listeners:
            event.listen(sa_engine, name, listener)

    def _on_statement(self, *_args) -> None:
        if self.counting:
            self.statements += 1
            self.round_trips += 1

    def _on_command(self, connection, *_args) -> None:
        # in autocommit SQLAlchemy still begins and commits, but sends nothing
        if self.counting and connection.get_execution_options().get(
                "isolation_level") != "AUTOCOMMIT":
            self.round_trips += 1

    def remove(self) -> None:
        """Stop listening (the hooks cost a call per statement)."""
        for name, listener in self._listeners:
            event.remove(self._engine, name, listener)

    @contextmanager
    def counted(self) -> Iterator[None]:
        self.counting = True
        try:
            yield
        finally:
            self.counting = False

    def per(self, operations: int) -> dict:
        return {"statements": round(self.statements / max(operations, 1), 1),
                "round_trips": round(self.round_trips / max(operations, 1), 1)}


def kind_of(url: str) -> str:
    return make_url(url).get_backend_name()


AFTER_THE_ORDINARY_PATH = datetime(2027, 7, 6, 1, 0, tzinfo=timezone.utc)


def library_engine(url: str, clock=None, **settings):
    """A migrated engine with the process library deployed and the organisations seeded
    (``settings``: WorkflowEngine's keyword arguments, such as max_data_bytes)."""
    from engine.clock import ManualClock
    from engine.demo import seed_orgs
    from engine.workflow_engine import WorkflowEngine

    # the ordinary path reports the work done on 30/06/2027 and the meeting after it: the
    # clock stands after them (a completion is never reported before it happens)
    engine = WorkflowEngine(url, clock=clock or ManualClock(AFTER_THE_ORDINARY_PATH), **settings)
    engine.upgrade_database()
    engine.repository.deploy_folder(PROJECT / "processes" / "national", "bench")
    seed_orgs(engine, PROJECT / "processes")
    return engine


# --- the national proposal's ordinary approval path ------------------------------------
PROPOSER = "mau.sxd.qlxd.truongphong"         # a division head of the model department
VOTERS = ("mau.sxd.giamdoc", "mau.sxd.pgd1", "mau.sxd.pgd2", "mau.sxd.pgd3")


@functools.cache
def _demo_plan() -> dict:
    from engine.demo import demo_plan
    return demo_plan(PROJECT / "processes")


def plan() -> dict:
    # read from demo.toml once: parsing it at every step took 0.2 ms, about a tenth of a
    # bare SpiffWorkflow step, timed on both sides of figure 1 as if it were theirs
    return copy.deepcopy(_demo_plan())


def step_data(element_id: str, known: dict | None = None) -> dict | None:
    """The form data of each step of the ordinary path: plan, screening (every Art. 5 k.1
    condition met, not complex), party opinion, the leadership meeting's record (every
    member present and for; or each one's ballot), decision (approve), implementation and the
    completion report, party's evaluation opinion, the evaluation meeting's record (its
    members from ``known``, the task's data), notification of the result, recognition."""
    if element_id == "submit_plan":
        return plan()
    members = (known or {}).get("evaluation_members") or []
    voters = (known or {}).get("voters") or []
    return {
        "screening": {**{f"condition_{name}": "met" for name in (
            "bottleneck", "common_interest", "urgent_need", "no_harm", "no_local_harm")},
            "is_complex": False},
        "party_opinion": {"party_opinion": "agree"},
        "leadership_vote": {"vote": "for"},
        "leadership_meeting": {"meeting_date": "2026-01-02", "meeting_attendees": voters,
                               "meeting_votes": [{"member": m, "vote": "for"}
                                                 for m in voters]},
        "decide": {"decision": "approve"},
        "implement": {"finished_on": "2027-06-30"},
        "report_completion": {"result_summary": "Đã triển khai"},
        "party_evaluation_opinion": {"party_opinion": "agree"},
        "evaluate": {"meeting_date": "2027-07-01", "attendees": members,
                     "member_assessments": [{"member": m, "assessment": "completed"}
                                            for m in members],
                     "outcome": "completed", "evaluation_note": "Đánh giá"},
        "notify_result": {},
        "recognition": {"measures": ["commendation"], "months_early": 12},
    }.get(element_id)


def drive_proposal(engine, instance_id: str, candidates: bool = True,
                   counter: RoundTrips | None = None) -> int:
    """Complete the open tasks of a proposal along the ordinary path until it ends, each by
    one of its candidates as that user (voters vote once each), or with ``candidates``
    false all as the proposer acting as a trusted system principal (no look-ups, no
    rights to check). With ``counter``, the completions' statements are counted (not the
    bench's own reads between them). Returns the steps taken."""
    from sqlalchemy import select
    from engine.access import Principal
    from engine.store import TaskCandidate

    runtime = engine.runtime
    steps = 0
    while True:
        tasks = runtime.open_tasks(instance_id)
        if not tasks:
            return steps
        for task in tasks:
            data = step_data(task.element_id, runtime.task_data(task.id))
            if data is None:
                raise RuntimeError(f"the ordinary path has no step {task.element_id}")
            principal = Principal.system(PROPOSER)
            if candidates:
                with engine.db.reading() as session:
                    actor = session.scalars(select(TaskCandidate.username).where(
                        TaskCandidate.task_id == task.id).order_by(
                        TaskCandidate.username)).first() or PROPOSER
                principal = engine.access.principal(actor)
            if counter is None:
                runtime.complete_task(task.id, data, principal=principal)
            else:
                with counter.counted():
                    runtime.complete_task(task.id, data, principal=principal)
            steps += 1


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result
