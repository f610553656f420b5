"""The statements of a step: its audit entries go out with the instance row's UPDATE (on
PostgreSQL in the same statement), chained in order; the organisation's generation is read
by the statement that locks the instance, not by one of its own."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, select

from engine.audit import verify
from engine.store import AuditEvent

from conftest import ALICE


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
