"""Running instances: the review procedure end to end, messages, lifecycle, incidents,
retry and migration, each checked against the stored state and projections."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.errors import Conflict, InvalidData, InvalidState, MigrationRefused, NotFound
from engine.store import AuditEvent, HumanTask, Instance, MessageSubscription, Timer

from conftest import ADMIN, ALICE, BOB, MALLORY, PORTAL, bpmn_source


def _only_task(engine, instance_id):
    [task] = engine.runtime.open_tasks(instance_id)
    return task


def _approved_waiting_for_report(engine, business_key="DX-1"):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 120}, business_key=business_key)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {"months": 4},
                                 principal=ALICE)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {"decision": "approve"},
                                 principal=BOB)
    return instance


def _audit(engine, instance_id):
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id == instance_id).order_by(AuditEvent.id)))


def test_start_lists_first_user_task_with_lane_and_form(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 100})
    assert instance.status == "running" and instance.definition_id == review.definition_id
    task = _only_task(engine, instance.id)
    assert (task.element_id, task.lane, task.form, task.name) == (
        "submit", "proposer", "plan.schema.json", "Nộp kế hoạch")
    assert engine.runtime.task_data(task.id)["budget"] == 100
    started = _audit(engine, instance.id)[0]
    assert started.action == "instance_started" and started.actor == "alice"
    assert started.details["data"] == {"budget": 100}


def test_ordinary_path_to_completion_with_message_by_correlation_key(engine, review):
    instance = _approved_waiting_for_report(engine)
    assert engine.runtime.open_tasks(instance.id) == []
    with engine.db.reading() as session:
        [subscription] = session.scalars(select(MessageSubscription).where(
            MessageSubscription.instance_id == instance.id))
    assert subscription.message_name == "implementation_report"
    engine.runtime.send_message("implementation_report", {"report": "done"}, principal=ALICE,
                                correlation_key="DX-1")
    finished = engine.runtime.get(instance.id)
    assert finished.status == "completed" and finished.ended_at is not None
    data = engine.runtime.workflow(instance.id).data
    assert data["result"] == "approved" and data["budget_per_month"] == 30
    assert data["report"] == "done"
    actions = [e.action for e in _audit(engine, instance.id)]
    assert actions.count("task_completed") == 2 and "message_received" in actions
    decided = next(e for e in _audit(engine, instance.id)
                   if e.action == "task_completed" and e.element_id == "decide")
    assert decided.actor == "bob"
    assert decided.details["changed"] == {"decision": {"before": None, "after": "approve"}}


def test_message_by_instance_id(engine, review):
    instance = _approved_waiting_for_report(engine)
    engine.runtime.send_message("implementation_report", {}, principal=PORTAL,
                                instance_id=instance.id)
    assert engine.runtime.get(instance.id).status == "completed"


def test_message_nobody_waits_for_is_refused_and_changes_nothing(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    before = engine.runtime.get(instance.id)
    with pytest.raises(NotFound, match="not waiting for message 'implementation_report'"):
        engine.runtime.send_message("implementation_report", {}, principal=PORTAL,
                                    instance_id=instance.id)
    with pytest.raises(NotFound, match="no instance with key 'NOPE'"):
        engine.runtime.send_message("implementation_report", {}, principal=PORTAL,
                                    correlation_key="NOPE")
    assert engine.runtime.get(instance.id).version == before.version


def test_refusal_ends_the_instance(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {}, principal=ALICE)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {"decision": "reject",
                                                                   "refusal_reasons": "thiếu"},
                                 principal=BOB)
    assert engine.runtime.get(instance.id).status == "completed"
    with engine.db.reading() as session:
        timers = list(session.scalars(select(Timer).where(Timer.instance_id == instance.id)))
    assert timers and all(t.status == "cancelled" for t in timers)


def test_suspend_blocks_work_until_resumed(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task = _only_task(engine, instance.id)
    engine.runtime.suspend(instance.id, principal=ADMIN, reason="kiểm tra")
    assert engine.runtime.get(instance.id).status == "suspended"
    with pytest.raises(InvalidState, match="suspended"):
        engine.runtime.complete_task(task.id, {}, principal=ALICE)
    with pytest.raises(InvalidState):
        engine.runtime.suspend(instance.id, principal=ADMIN)
    engine.runtime.resume(instance.id, principal=ADMIN)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    assert _only_task(engine, instance.id).element_id == "decide"


def test_terminate_cancels_open_tasks_and_timers(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {}, principal=ALICE)
    engine.runtime.terminate(instance.id, principal=ADMIN, reason="rút đề xuất")
    stored = engine.runtime.get(instance.id)
    assert stored.status == "terminated" and stored.ended_at is not None
    assert engine.runtime.open_tasks(instance.id) == []
    with engine.db.reading() as session:
        assert all(t.status == "cancelled" for t in session.scalars(
            select(Timer).where(Timer.instance_id == instance.id)))
    with pytest.raises(InvalidState):
        engine.runtime.resume(instance.id, principal=ADMIN)


def test_failing_script_makes_an_incident_then_retry_after_fix(engine, review, clock):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 100})
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {"months": 0},
                                 principal=ALICE)
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {"decision": "approve"},
                                 principal=BOB)
    failed = engine.runtime.get(instance.id)
    assert failed.status == "incident"
    assert failed.incident_element == "record"
    assert "division by zero" in failed.incident_message
    assert failed.incident_at is not None
    # the head's decision is not lost
    assert engine.runtime.workflow(instance.id).get_tasks(spec_name="decide")[0].data[
        "decision"] == "approve"
    with pytest.raises(InvalidState):
        engine.runtime.send_message("implementation_report", {}, principal=PORTAL,
                                    instance_id=instance.id)
    engine.runtime.retry(instance.id, principal=ADMIN, data={"months": 5})
    fixed = engine.runtime.get(instance.id)
    assert fixed.status == "running" and fixed.incident_message is None
    [waiting] = engine.runtime.workflow(instance.id).get_tasks(spec_name="wait_report")
    assert waiting.data["budget_per_month"] == 20
    assert [e.action for e in _audit(engine, instance.id)].count("incident") == 1


def test_invalid_start_and_task_data_is_refused(engine, review):
    with pytest.raises(InvalidData, match="JSON object"):
        engine.runtime.start("national", "review", principal=ALICE, data=[1, 2])
    with pytest.raises(InvalidData, match="must not start with '_'"):
        engine.runtime.start("national", "review", principal=ALICE, data={"__class__": 1})
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task = _only_task(engine, instance.id)
    with pytest.raises(InvalidData, match="limit"):
        engine.runtime.complete_task(task.id, {"blob": "x" * 600_000}, principal=ALICE)
    with pytest.raises(InvalidData, match="cannot hold a value of type"):
        engine.runtime.complete_task(task.id, {"s": {1, 2}}, principal=ALICE)
    # not JSON: PostgreSQL's JSON columns refuse them, a browser cannot read them
    with pytest.raises(InvalidData, match=r"NaN or an infinity.*'ratio'"):
        engine.runtime.complete_task(task.id, {"n": 1.5, "ratio": [float("nan")]},
                                     principal=ALICE)
    with pytest.raises(InvalidData, match=r"NaN or an infinity.*'top'"):
        engine.runtime.start("national", "review", principal=ALICE,
                             data={"top": {"v": float("-inf")}})
    assert _only_task(engine, instance.id).id == task.id


def test_unknown_task_and_instance_are_not_found(engine, review):
    with pytest.raises(NotFound):
        engine.runtime.complete_task("00000000-0000-0000-0000-000000000000", {}, principal=ALICE)
    with pytest.raises(NotFound):
        engine.runtime.suspend("nope", principal=ALICE)


def test_completed_task_cannot_be_completed_twice(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    task = _only_task(engine, instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    with pytest.raises(Conflict, match="already completed by alice"):
        engine.runtime.complete_task(task.id, {}, principal=MALLORY)


def test_instance_stays_on_its_version_and_migrates_safely(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    renamed = bpmn_source(replace={'name="Quyết định"': 'name="Quyết định (mới)"'})
    [v2] = engine.repository.deploy("national", [renamed], "designer")
    assert engine.runtime.get(instance.id).definition_id == review.definition_id
    newer = engine.runtime.start("national", "review", principal=ALICE)
    assert newer.definition_id == v2.definition_id

    engine.runtime.migrate(instance.id, v2.definition_id, principal=ADMIN)
    migrated = engine.runtime.get(instance.id)
    assert migrated.definition_id == v2.definition_id
    engine.runtime.complete_task(_only_task(engine, instance.id).id, {}, principal=ALICE)
    assert _only_task(engine, instance.id).name == "Quyết định (mới)"
    assert "instance_migrated" in [e.action for e in _audit(engine, instance.id)]


def test_migration_removing_the_active_task_is_refused_with_reasons(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    without_submit = bpmn_source(replace={
        '<bpmn:userTask id="submit" name="Nộp kế hoạch">': '<bpmn:userTask id="submit_v2" '
        'name="Nộp kế hoạch">',
        "<bpmn:flowNodeRef>submit</bpmn:flowNodeRef>": "<bpmn:flowNodeRef>submit_v2"
        "</bpmn:flowNodeRef>",
        'targetRef="submit"': 'targetRef="submit_v2"',
        'sourceRef="submit"': 'sourceRef="submit_v2"'})
    [v2] = engine.repository.deploy("national", [without_submit], "designer")
    before = engine.runtime.get(instance.id)
    with pytest.raises(MigrationRefused) as caught:
        engine.runtime.migrate(instance.id, v2.definition_id, principal=ADMIN)
    assert any("'submit'" in reason for reason in caught.value.reasons)
    after = engine.runtime.get(instance.id)
    assert (after.definition_id, after.version) == (before.definition_id, before.version)


def test_migration_to_another_process_is_refused(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [other] = engine.repository.deploy("lao-cai", [bpmn_source()], "designer")
    with pytest.raises(MigrationRefused, match="belongs to lao-cai/review"):
        engine.runtime.migrate(instance.id, other.definition_id, principal=ADMIN)


def test_human_task_projection_follows_the_workflow(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    first = _only_task(engine, instance.id)
    engine.runtime.complete_task(first.id, {}, principal=ALICE)
    with engine.db.reading() as session:
        rows = {r.element_id: r for r in session.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance.id))}
        stored = session.get(Instance, instance.id)
    assert rows["submit"].status == "completed" and rows["submit"].completed_by == "alice"
    assert rows["decide"].status == "open" and rows["decide"].lane == "head"
    assert stored.version == 2   # started, then one completion


def test_task_data_comes_from_the_last_step_in_memory_while_the_row_has_its_version(
        engine, review, monkeypatch):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 120})
    engine.runtime.complete_task(_only_task(engine, instance.id).id,
                                 {"months": 4, "plan": {"steps": ["draft"]}}, principal=ALICE)
    decision = _only_task(engine, instance.id)
    loads = []
    load_state = engine.codec.load_state
    monkeypatch.setattr(engine.codec, "load_state",
                        lambda *a, **k: loads.append(1) or load_state(*a, **k))
    data = engine.runtime.task_data(decision.id)
    assert (data["budget"], data["months"]) == (120, 4) and loads == []
    data["budget"] = 999                           # a copy: the workflow is not changed
    data["plan"]["steps"].append("changed")        # nor through the values inside it
    again = engine.runtime.task_data(decision.id)
    assert (again["budget"], again["plan"]) == (120, {"steps": ["draft"]}) and loads == []
    # another process saved the instance: the workflow in memory is stale, the row is read
    with engine.db.transaction() as session:
        session.get(Instance, instance.id).business_key = "DX-2"   # a new version
    assert engine.runtime.task_data(decision.id)["months"] == 4 and loads == [1]
    with pytest.raises(NotFound):
        engine.runtime.task_data("00000000-0000-0000-0000-000000000000")
    engine.runtime.complete_task(decision.id, {"decision": "approve"}, principal=BOB)
    assert engine.runtime.open_tasks(instance.id) == []      # it waits for the report
