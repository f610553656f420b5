"""The statements of a step: its audit entries go out with the instance row's UPDATE (on
PostgreSQL in the same statement), chained in order; the organisation's generation is read
by the statement that locks the instance, not by one of its own."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, select

from engine.audit import verify
from engine.store import AuditEvent

from conftest import ALICE

PROPOSER = "mau.sxd.qlxd.truongphong"
HEAD = "mau.sxd.giamdoc"


@contextmanager
def statements(engine):
    seen: list[str] = []

    def before(_connection, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()))
    event.listen(engine.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.db.engine, "before_cursor_execute", before)


def test_a_completion_writes_its_entries_with_the_instance_row(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    with statements(engine) as seen:
        engine.runtime.complete_task(task.id, {"approved": True}, principal=ALICE)
    postgres = engine.db.engine.dialect.name == "postgresql"
    entries = [s for s in seen if "INSERT INTO audit_events" in s]
    assert len(entries) == 1
    assert ("UPDATE instances" in entries[0]) == postgres
    assert not [s for s in seen if s.startswith("SELECT org_generation")]
    with engine.db.reading() as session:
        actions = session.scalars(select(AuditEvent.action)
                                  .where(AuditEvent.instance_id == instance.id)
                                  .order_by(AuditEvent.id)).all()
    assert actions[0] == "instance_started" and "task_completed" in actions
    assert verify(engine.db, instance.id).ok


def test_a_read_outside_a_unit_of_work_is_one_statement(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    with statements(engine) as seen:
        [task] = engine.runtime.open_tasks(instance.id)
    assert len(seen) == 1 and seen[0].startswith("SELECT")
    assert (task.instance_id, task.element_id) == (instance.id, "submit")


def test_the_statements_a_step_builds_once_are_compiled_once(engine, review):
    from engine.runtime.steps import _STATEMENTS
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {"approved": True}, principal=ALICE)
    assert _STATEMENTS
    # a statement without a cache key would be compiled again at every execution
    assert all(s._generate_cache_key() is not None for s in _STATEMENTS.values())


def test_a_start_reads_no_rows_of_the_new_instance(engine, review):
    """A new instance has no task, timer or subscription rows yet: its start reads none
    (a reporting cycle's opening looked for earlier rows of each of its thousands of
    tasks), and writes its task as before."""
    with statements(engine) as seen:
        instance = engine.runtime.start("national", "review", principal=ALICE)
    reads = [s for s in seen if s.startswith("SELECT") and any(
        f"FROM {table}" in s for table in ("human_tasks", "timers", "message_subscriptions"))]
    assert reads == []
    [task] = engine.runtime.open_tasks(instance.id)
    assert task.element_id == "submit"


def test_a_completion_writes_the_rows_it_added_with_the_instance_row(engine):
    """On PostgreSQL a step's writes go out in one statement: the instance row, its audit
    entries, its state's delta, the completed task's row and the rows the step added (the
    task it opened, its candidates, its deadline timers, the candidates' notifications and
    the e-mail sent at once, whose message the notification names); on SQLite a statement
    each. Every row is there afterwards."""
    from engine.store import HumanTask, TaskCandidate, Timer
    from engine.store.models import Notification, OutboxMessage
    from procedures import Case, deploy_library, plan
    deploy_library(engine)
    case = Case.start(engine, "national", "proposal", PROPOSER)
    [task] = case.open("submit_plan")
    with engine.db.reading() as session:
        timers_before = session.scalars(select(Timer.task_id).where(
            Timer.instance_id == case.id)).all()
    with statements(engine) as seen:
        case.do("submit_plan", plan(), by=PROPOSER)
    postgres = engine.db.engine.dialect.name == "postgresql"
    [step] = [s for s in seen if "UPDATE instances" in s]
    for written in ("INSERT INTO audit_events ", "INSERT INTO instance_state_deltas ",
                    "UPDATE human_tasks ", "INSERT INTO human_tasks ",
                    "INSERT INTO task_candidates ", "INSERT INTO timers ",
                    "INSERT INTO notifications ", "INSERT INTO outbox "):
        statements_of = [s for s in seen if written in s]
        assert len(statements_of) == 1, (written, len(statements_of))
        assert (statements_of[0] == step) == postgres, written
    [screening] = case.open("screening")
    with engine.db.reading() as session:
        candidates = set(session.scalars(select(TaskCandidate.username).where(
            TaskCandidate.task_id == screening.id)))
        notified = session.execute(select(Notification.username, Notification.outbox_id)
                                   .where(Notification.task_id == screening.id)).all()
        mail = session.scalars(select(OutboxMessage.username).where(
            OutboxMessage.id == notified[0].outbox_id)).all()
        timers = session.scalars(select(Timer.task_id).where(
            Timer.instance_id == case.id)).all()
        completed = session.get(HumanTask, task.id)
    assert candidates == {HEAD} and [n.username for n in notified] == [HEAD]
    assert mail == [HEAD]
    assert len(timers) > len(timers_before)    # the screening's deadline and reminders
    assert completed.status.value == "completed"
    assert verify(engine.db, case.id).ok


def test_a_completion_ends_the_timers_of_its_task_with_the_instance_row(engine):
    """The timers a completion ends (the screening's deadline and reminders) are ended by
    the step's own statement on PostgreSQL, by one of their own on SQLite; either way none
    of them is pending afterwards, and the audit chain holds."""
    from engine.store import Timer, TimerStatus
    from procedures import SCREENED, Case, deploy_library, plan
    deploy_library(engine)
    case = Case.start(engine, "national", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    with engine.db.reading() as session:
        waiting = set(session.scalars(select(Timer.task_id).where(
            Timer.instance_id == case.id, Timer.status == TimerStatus.PENDING)))
    assert waiting
    with statements(engine) as seen:
        case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    postgres = engine.db.engine.dialect.name == "postgresql"
    [step] = [s for s in seen if "UPDATE instances" in s]
    [ended] = [s for s in seen if "UPDATE timers " in s]
    assert (ended == step) == postgres
    with engine.db.reading() as session:
        statuses = dict(session.execute(select(Timer.task_id, Timer.status).where(
            Timer.task_id.in_(waiting))).all())
    assert statuses == {task_id: TimerStatus.CANCELLED for task_id in waiting}
    assert verify(engine.db, case.id).ok
