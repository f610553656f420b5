"""Timers run on the engine clock, and state round-trips through the store without the spec."""
from __future__ import annotations

import json
from datetime import timedelta

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.clock import as_utc
from engine.runtime import WaitingEvents
from engine.scheduler import SCHEDULER
from engine.serialization import state_text
from engine.store import (Definition, HumanTask, Instance, MessageSubscription,
                          TaskCandidate, Timer)

from conftest import ALICE, BOB, bpmn_source
from procedures import SCREENED, Case, deploy_library, implement_and_evaluate, plan


def _timers(engine, instance_id):
    with engine.db.reading() as session:
        return list(session.scalars(select(Timer).where(Timer.instance_id == instance_id)))


def _to_decision(engine):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    business_key="DX-7")
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
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
    engine.runtime.fire_timers(instance.id, principal=SCHEDULER)
    workflow = engine.runtime.workflow(instance.id)
    assert not workflow.get_tasks(spec_name="reminded")[0].has_state(TaskState.COMPLETED)
    clock.advance(hours=2)
    [due] = engine.runtime.due_timers()
    assert due.instance_id == instance.id
    engine.runtime.fire_timers(instance.id, principal=SCHEDULER)
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
                                principal=BOB)
    fresh.runtime.send_message("implementation_report", {"ok": True}, principal=ALICE,
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


def assert_projections_match(engine, instance_id: str, where: str) -> None:
    """The pending timer rows, subscriptions and open task rows are exactly what the
    workflow waits for: completions write them from what waited before the step, without
    reading them, so nothing else keeps them right."""
    workflow = engine.runtime.workflow(instance_id)
    finished = engine.runtime.get(instance_id).status in ("completed", "terminated")
    live = [] if finished else workflow.get_tasks(
        state=TaskState.READY | TaskState.WAITING | TaskState.STARTED)
    waiting = WaitingEvents.of(live)
    with engine.db.reading() as session:
        pending = {t.task_id: as_utc(t.due_at) for t in session.scalars(select(Timer).where(
            Timer.instance_id == instance_id, Timer.status == "pending"))}
        subscribed = set(session.scalars(select(MessageSubscription.task_id).where(
            MessageSubscription.instance_id == instance_id)))
        open_rows = set(session.scalars(select(HumanTask.id).where(
            HumanTask.instance_id == instance_id, HumanTask.status == "open")))
        # each candidacy says whether its task is open (kept by a trigger, read by inboxes)
        candidacies = session.execute(select(TaskCandidate.task_open, HumanTask.status).join(
            HumanTask, HumanTask.id == TaskCandidate.task_id).where(
            TaskCandidate.instance_id == instance_id)).all()
    assert candidacies and all(flag == (status == "open") for flag, status in candidacies), where
    assert pending == {task_id: due for task_id, (_, _, due) in waiting.timers.items()}, where
    assert subscribed == set(waiting.messages), where
    assert open_rows == {str(t.id) for t in live
                         if t.task_spec.manual and t.has_state(TaskState.READY)}, where


class CheckedCase(Case):
    """A case whose projections are compared with its workflow after every completion."""

    steps = 0

    def do(self, element_id, data=None, *, by=None):
        actor = super().do(element_id, data, by=by)
        self.steps += 1
        assert_projections_match(self.engine, self.id, f"after {element_id}")
        return actor


def test_completions_keep_timer_subscription_and_task_rows_equal_to_the_workflow(engine, clock):
    deploy_library(engine, ballots=True)          # one ballot task per member
    proposer = "mau.sxd.qlxd.truongphong"
    case = CheckedCase.start(engine, "national", "proposal", proposer, business_key="DX-9")
    case.do("submit_plan", plan(), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": False})
    clock.advance(days=3)                        # deadlines move with the engine clock
    case.do("party_opinion", {"party_opinion": "agree"})
    for voter in case.voters():
        case.do("leadership_vote", {"vote": "for"}, by=voter)
    case.do("decide", {"decision": "approve"})
    implement_and_evaluate(case, "not_completed", proposer)
    case.do("submit_protection_request",
            {"claimed_outcome": "not_completed", "facts": "Khách quan"}, by=proposer)
    case.do("assess", {"followed_policy": True, "pure_motives": True, "common_interest": True,
                       "abuse": False, "assessment": "Đúng chủ trương"})
    case.do("protection_party_opinion", {"party_opinion": "agree"})
    case.do("decide_protection", {"protection_decision": "excluded",
                                  "protection_reasons": "Điều 11"})
    assert case.instance.status == "completed" and case.steps >= 14
    with engine.db.reading() as session:
        statuses = set(session.scalars(select(Timer.status).where(Timer.instance_id == case.id)))
    assert "cancelled" in statuses                # deadlines of completed steps were dropped


def test_completions_cancel_a_boundary_timer_and_subscribe_to_a_message(engine, review):
    instance = _to_decision(engine)
    assert_projections_match(engine, instance.id, "at the decision")
    [timer] = _timers(engine, instance.id)
    assert timer.status == "pending"
    [decide] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(decide.id, {"decision": "approve", "budget": 10, "months": 2},
                                 principal=BOB)
    assert_projections_match(engine, instance.id, "after the decision")
    [timer] = _timers(engine, instance.id)
    assert timer.status == "cancelled"
    with engine.db.reading() as session:
        [waiting] = session.scalars(select(MessageSubscription).where(
            MessageSubscription.instance_id == instance.id))
    assert waiting.message_name == "implementation_report"
    engine.runtime.send_message("implementation_report", {"ok": True}, principal=ALICE,
                                correlation_key="DX-7")
    assert_projections_match(engine, instance.id, "after the report")
    assert engine.runtime.get(instance.id).status == "completed"
