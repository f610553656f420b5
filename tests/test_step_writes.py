"""What a step reads and writes: the lock statement leaves out the state deltas when the
workflow kept in memory serves the step, and reads them when it does not."""
from __future__ import annotations

import json
import uuid

import pytest

from engine.audit import lock_instance, lock_instances, locked_deltas

from conftest import ALICE


def _with_a_delta(engine):
    """An instance of the review process whose row counts one state delta, with its
    workflow kept in memory at its version."""
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    stored = engine.runtime.get(instance.id)
    assert stored.state_deltas == 1
    [decide] = engine.runtime.open_tasks(instance.id)
    return stored, decide


def test_the_lock_reads_the_deltas_only_for_a_version_not_kept_in_memory(engine, review):
    if engine.db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite's lock reads no deltas")
    stored, _ = _with_a_delta(engine)
    versions = {None: 1, stored.version - 1: 1, stored.version: None}
    for kept, expected in versions.items():
        cached = {stored.id: kept} if kept is not None else None
        with engine.db.transaction() as session:
            lock_instance(session, stored.id, deltas=True, cached=cached)
            deltas = locked_deltas(session, stored.id)
            assert (None if deltas is None else len(deltas)) == expected, kept
        with engine.db.transaction() as session:
            lock_instances(session, [stored.id, str(uuid.uuid4())], cached=cached)
            deltas = locked_deltas(session, stored.id)
            assert (None if deltas is None else len(deltas)) == expected, kept


def test_a_task_finds_its_kept_workflow_and_a_lost_one_is_read_from_the_store(
        engine, review, monkeypatch):
    stored, decide = _with_a_delta(engine)
    runtime = engine.runtime
    assert runtime._workflows.holding(uuid.UUID(decide.id)) == (stored.id, stored.version)
    # the hint was taken, then the workflow left the cache before the step took it (a step
    # of the same process that failed): the step reads the state and its deltas
    take = runtime._workflows.take

    def lost(instance_id, version, definition_id):
        take(instance_id, version, definition_id)
        return None
    monkeypatch.setattr(runtime._workflows, "take", lost)
    runtime.complete_task(decide.id, {"decision": "reject", "refusal_reasons": "no"},
                           principal=ALICE)
    monkeypatch.setattr(runtime._workflows, "take", take)
    after = runtime.get(stored.id)
    assert (after.version, after.status) == (stored.version + 1, "completed")
    assert runtime._workflows.holding(uuid.UUID(decide.id)) is None
    kept = runtime._workflows.peek(stored.id, after.version, after.definition_id,
                                   engine.codec.state_json)
    assert json.loads(kept) == json.loads(engine.codec.state_json(runtime.workflow(stored.id)))


def test_a_step_whose_row_moved_on_writes_nothing_and_conflicts(engine, review, monkeypatch):
    """The instance row's UPDATE checks the version the step loaded (a Core statement, with
    the state's delta in the same statement on PostgreSQL): when the row has moved on, the
    step is a conflict and none of its rows are written."""
    from sqlalchemy import func, select, update

    from engine.errors import Conflict
    from engine.runtime import Projection
    from engine.store import AuditEvent, Instance, InstanceStateDelta
    stored, decide = _with_a_delta(engine)
    original = Projection.refresh

    def another_writer(self, session, instance, *args, **kwargs):
        rows = Instance.__table__          # the row only: not the step's object, no flush
        with session.no_autoflush:
            session.execute(update(rows).where(rows.c.id == instance.id)
                            .values(version=rows.c.version + 1))
        return original(self, session, instance, *args, **kwargs)
    monkeypatch.setattr(Projection, "refresh", another_writer)
    with pytest.raises(Conflict) as raised:
        engine.runtime.complete_task(decide.id, {"decision": "reject",
                                                 "refusal_reasons": "no"}, principal=ALICE)
    assert "changed by someone else" in str(raised.value)
    monkeypatch.setattr(Projection, "refresh", original)
    after = engine.runtime.get(stored.id)
    assert (after.version, after.state_deltas, after.audit_seq) == (
        stored.version, stored.state_deltas, stored.audit_seq)
    with engine.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(InstanceStateDelta).where(
            InstanceStateDelta.instance_id == stored.id)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.instance_id == stored.id)) == stored.audit_seq
    [still] = engine.runtime.open_tasks(stored.id)
    assert still.id == decide.id
    engine.runtime.complete_task(decide.id, {"decision": "reject", "refusal_reasons": "no"},
                                 principal=ALICE)
    assert engine.runtime.get(stored.id).status == "completed"
