"""Timers run on the engine clock, and state round-trips through the store without the spec."""
from __future__ import annotations

import json
from datetime import timedelta

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.clock import as_utc
from engine.serialization import state_text
from engine.store import Definition, Instance, Timer

from conftest import bpmn_source


def _timers(engine, instance_id):
    with engine.db.reading() as session:
        return list(session.scalars(select(Timer).where(Timer.instance_id == instance_id)))


def _to_decision(engine):
    instance = engine.runtime.start("national", "review", started_by="alice",
                                    business_key="DX-7")
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, actor="alice")
    return instance


def test_boundary_timer_is_due_seven_days_after_on_the_engine_clock(engine, review, clock):
    clock.advance(days=100)      # far from the wall clock, on purpose
    instance = _to_decision(engine)
    [timer] = _timers(engine, instance.id)
    assert timer.element_id == "remind" and timer.status == "pending"
    assert as_utc(timer.due_at) == clock.now() + timedelta(days=7)


def test_timer_fires_only_when_the_clock_reaches_it(engine, review, clock):
    instance = _to_decision(engine)
    clock.advance(days=6, hours=23)
    assert engine.runtime.due_timers() == []
    engine.runtime.fire_timers(instance.id)
    workflow = engine.runtime.workflow(instance.id)
    assert not workflow.get_tasks(spec_name="reminded")[0].has_state(TaskState.COMPLETED)   # not completed
    clock.advance(hours=2)
    [due] = engine.runtime.due_timers()
    assert due.instance_id == instance.id
    engine.runtime.fire_timers(instance.id)
    workflow = engine.runtime.workflow(instance.id)
    [reminded] = workflow.get_tasks(spec_name="reminded")
    assert reminded.data["reminder_sent"] is True
    # non-interrupting: the decision is still open
    assert [t.element_id for t in engine.runtime.open_tasks(instance.id)] == ["decide"]
    [fired] = _timers(engine, instance.id)
    assert fired.status == "fired" and as_utc(fired.fired_at) == clock.now()
    assert engine.runtime.due_timers() == []


def test_timer_and_message_round_trip_without_the_spec_per_instance(engine, review, clock):
    instance = _to_decision(engine)
    with engine.db.reading() as session:
        stored = session.get(Instance, instance.id)
        definition = session.get(Definition, stored.definition_id)
    text = state_text(stored.state)
    state = json.loads(text)
    assert "spec" not in state and "subprocess_specs" not in state
    assert "task_specs" not in text
    assert len(stored.state) * 4 < len(text.encode())       # stored compressed
    assert "task_specs" in definition.spec           # the spec lives once, on the version
    # reload from the store (a fresh engine shares nothing in memory) and carry on
    from engine.workflow_engine import WorkflowEngine
    fresh = WorkflowEngine(engine.db.url, clock=clock)
    [decide] = fresh.runtime.open_tasks(instance.id)
    fresh.runtime.complete_task(decide.id, {"decision": "approve", "budget": 10, "months": 2},
                                actor="bob")
    fresh.runtime.send_message("implementation_report", {"ok": True}, actor="alice",
                               correlation_key="DX-7")
    assert fresh.runtime.get(instance.id).status == "completed"
    fresh.close()


def test_timer_date_expression_naive_is_read_in_vietnam_time(engine, clock):
    source = bpmn_source(replace={'<bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"P7D"'
                                  '</bpmn:timeDuration>':
                                  '<bpmn:timeDate xsi:type="bpmn:tFormalExpression">'
                                  '"2026-12-10T17:00:00"</bpmn:timeDate>'})
    engine.repository.deploy("national", [source], "designer")
    instance = _to_decision(engine)
    [timer] = _timers(engine, instance.id)
    assert as_utc(timer.due_at).isoformat() == "2026-12-10T10:00:00+00:00"
