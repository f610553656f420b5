"""One writer per status: every change of an instance's, a human task's or a timer's status,
through every path that makes it (the runtime's operations, the scheduler, an
administrator's "fire now"), is stored with the audit entry that records it; and nothing
outside the runtime assigns such a status."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from engine.audit import verify
from engine.demo import seed_orgs
from engine.scheduler import Scheduler
from engine.store import (AuditEvent, HumanTask, Instance, InstanceStatus, TaskStatus, Timer,
                          TimerStatus)

from api_client import LiveServer
from conftest import ADMIN, ALICE, BOB, CAROL, PROJECT, bpmn_source

REVIEW_WITH_POST_SCRIPT = {   # the head's decision divides by the months the proposer gave
    '<bpmn:userTask id="decide" name="Quyết định">':
        '<bpmn:userTask id="decide" name="Quyết định"><bpmn:extensionElements>'
        '<spiffworkflow:postScript>per_month = budget / months</spiffworkflow:postScript>'
        '</bpmn:extensionElements>'}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def timers(engine):
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    return engine


@pytest.fixture
def admin_api(engine):
    seed_orgs(engine, PROJECT / "processes")        # the demo administrator, "admin"
    server = LiveServer(engine)
    yield server
    server.stop()


# --- reading what was stored ----------------------------------------------------------------
def _instance(engine, instance_id) -> Instance:
    return engine.runtime.get(instance_id)


def _task(engine, instance_id, element_id) -> HumanTask:
    with engine.db.reading() as session:
        [row] = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                        HumanTask.element_id == element_id))
    return row


def _timer(engine, instance_id, element_id) -> Timer:
    with engine.db.reading() as session:
        query = select(Timer).where(Timer.element_id == element_id)
        query = query.where(Timer.instance_id == instance_id) if instance_id else \
            query.where(Timer.instance_id.is_(None))
        return session.scalars(query.order_by(Timer.id.desc())).first()


@dataclass
class Recorded:
    """A change of status as the audit chain holds it: an entry of its own, or one of the
    changes a step's entry lists (``details["changes"]``: action → task id → element)."""
    entry: AuditEvent
    action: str
    element_id: str | None
    details: dict

    @property
    def actor(self) -> str:
        return self.entry.actor


def _changes(entry: AuditEvent) -> list[Recorded]:
    found = [Recorded(entry, entry.action, entry.element_id, entry.details or {})]
    for action, changed in ((entry.details or {}).get("changes") or {}).items():
        if isinstance(changed, list):             # timers: the elements
            for value in changed:
                extra = value if isinstance(value, dict) else {"element": value}
                found.append(Recorded(entry, action, extra["element"], extra))
            continue
        for task_id, value in changed.items():
            extra = value if isinstance(value, dict) else {"element": value}
            found.append(Recorded(entry, action, extra.get("element"),
                                  {"task_id": task_id, **extra}))
    return found


def _entries(engine, action, instance_id, element_id=None, **details) -> list[Recorded]:
    """The recorded changes ``action`` of the instance's chain (None: the system chain), of
    ``element_id``, whose details hold ``details``."""
    with engine.db.reading() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        query = query.where(AuditEvent.instance_id == instance_id) if instance_id else \
            query.where(AuditEvent.instance_id.is_(None))
        rows = [c for entry in session.scalars(query) for c in _changes(entry)]
    return [r for r in rows if r.action == action
            and (element_id is None or r.element_id == element_id)
            and all(r.details.get(k) == v for k, v in details.items())]


def _recorded(engine, action, instance_id, element_id=None, **details) -> Recorded:
    """The one entry that records a change (fails naming what it looked for)."""
    found = _entries(engine, action, instance_id, element_id, **details)
    assert len(found) == 1, (action, element_id, details, found)
    return found[0]


def _open_task(engine, instance_id, element_id) -> HumanTask:
    [task] = [t for t in engine.runtime.open_tasks(instance_id) if t.element_id == element_id]
    return task


# --- instances, tasks and timers of the runtime's operations ----------------------------------
def test_start_and_completions_open_and_complete_tasks_and_schedule_timers(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 100})
    assert _instance(engine, instance.id).status == InstanceStatus.RUNNING
    _recorded(engine, "instance_started", instance.id)
    submit = _task(engine, instance.id, "submit")
    assert submit.status == TaskStatus.OPEN
    _recorded(engine, "task_opened", instance.id, "submit", task_id=submit.id)

    engine.runtime.complete_task(submit.id, {"months": 4}, principal=ALICE)
    assert _task(engine, instance.id, "submit").status == TaskStatus.COMPLETED
    assert _recorded(engine, "task_completed", instance.id, "submit",
                     task_id=submit.id).actor == "alice"
    decide = _task(engine, instance.id, "decide")
    assert decide.status == TaskStatus.OPEN
    _recorded(engine, "task_opened", instance.id, "decide", task_id=decide.id)
    remind = _timer(engine, instance.id, "remind")
    assert remind.status == TimerStatus.PENDING
    _recorded(engine, "timer_scheduled", instance.id, "remind")
    assert remind.due_at is not None
    assert verify(engine.db, instance.id).ok


def test_a_completion_ends_the_instance_and_cancels_the_tasks_timer(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    engine.runtime.complete_task(_open_task(engine, instance.id, "submit").id, {},
                                 principal=ALICE)
    decide = _open_task(engine, instance.id, "decide")
    engine.runtime.complete_task(decide.id, {"decision": "refuse"}, principal=BOB)
    assert _instance(engine, instance.id).status == InstanceStatus.COMPLETED
    assert _recorded(engine, "instance_completed", instance.id).actor == "bob"
    assert _task(engine, instance.id, "decide").status == TaskStatus.COMPLETED
    remind = _timer(engine, instance.id, "remind")
    assert remind.status == TimerStatus.CANCELLED
    _recorded(engine, "timer_cancelled", instance.id, "remind")
    assert verify(engine.db, instance.id).ok


def test_a_message_ends_the_instance(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 100}, business_key="DX-1")
    engine.runtime.complete_task(_open_task(engine, instance.id, "submit").id,
                                 {"months": 4}, principal=ALICE)
    engine.runtime.complete_task(_open_task(engine, instance.id, "decide").id,
                                 {"decision": "approve"}, principal=BOB)
    assert _instance(engine, instance.id).status == InstanceStatus.RUNNING
    assert _entries(engine, "instance_completed", instance.id) == []
    engine.runtime.send_message("implementation_report", {"report": "xong"}, principal=CAROL,
                                correlation_key="DX-1")
    assert _instance(engine, instance.id).status == InstanceStatus.COMPLETED
    assert _recorded(engine, "instance_completed", instance.id).actor == "carol"


def test_suspend_resume_and_terminate_with_the_tasks_and_timers_it_cancels(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    engine.runtime.complete_task(_open_task(engine, instance.id, "submit").id, {},
                                 principal=ALICE)
    engine.runtime.suspend(instance.id, principal=ADMIN, reason="kiểm tra")
    assert _instance(engine, instance.id).status == InstanceStatus.SUSPENDED
    assert _recorded(engine, "instance_suspended", instance.id).details == {
        "reason": "kiểm tra"}
    engine.runtime.resume(instance.id, principal=ADMIN)
    assert _instance(engine, instance.id).status == InstanceStatus.RUNNING
    _recorded(engine, "instance_resumed", instance.id)

    decide = _task(engine, instance.id, "decide")
    engine.runtime.terminate(instance.id, principal=ADMIN, reason="rút đề xuất")
    assert _instance(engine, instance.id).status == InstanceStatus.TERMINATED
    _recorded(engine, "instance_terminated", instance.id)
    assert _task(engine, instance.id, "decide").status == TaskStatus.CANCELLED
    assert _recorded(engine, "task_cancelled", instance.id, "decide",
                     task_id=decide.id).actor == "admin"
    remind = _timer(engine, instance.id, "remind")
    assert remind.status == TimerStatus.CANCELLED
    _recorded(engine, "timer_cancelled", instance.id, "remind")
    assert _entries(engine, "instance_completed", instance.id) == []
    assert verify(engine.db, instance.id).ok


def test_an_incident_then_retry_reopens_the_task_whose_script_failed(engine):
    engine.repository.deploy("national", [bpmn_source(replace=REVIEW_WITH_POST_SCRIPT)],
                             "designer")
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 100})
    engine.runtime.complete_task(_open_task(engine, instance.id, "submit").id,
                                 {"months": 0}, principal=ALICE)
    decide = _open_task(engine, instance.id, "decide")
    engine.runtime.complete_task(decide.id, {"decision": "approve"}, principal=BOB)
    failed = _instance(engine, instance.id)
    assert (failed.status, failed.incident_element) == (InstanceStatus.INCIDENT, "decide")
    assert "division by zero" in _recorded(engine, "incident", instance.id,
                                           "decide").details["message"]
    assert _task(engine, instance.id, "decide").status == TaskStatus.COMPLETED

    engine.runtime.retry(instance.id, principal=ADMIN, data={"months": 5})
    retried = _instance(engine, instance.id)
    assert (retried.status, retried.incident_message) == (InstanceStatus.RUNNING, None)
    _recorded(engine, "instance_retried", instance.id, "decide")
    reopened = _task(engine, instance.id, "decide")
    assert (reopened.status, reopened.completed_by) == (TaskStatus.OPEN, None)
    assert _recorded(engine, "task_reopened", instance.id, "decide",
                     task_id=decide.id).details["was"] == "completed"
    engine.runtime.complete_task(decide.id, {"decision": "approve"}, principal=BOB)
    assert _task(engine, instance.id, "decide").status == TaskStatus.COMPLETED
    assert verify(engine.db, instance.id).ok


def test_migration_keeps_the_status_and_records_itself(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    renamed = bpmn_source(replace={'name="Quyết định"': 'name="Quyết định (mới)"'})
    [v2] = engine.repository.deploy("national", [renamed], "designer")
    engine.runtime.suspend(instance.id, principal=ADMIN)
    engine.runtime.migrate(instance.id, v2.definition_id, principal=ADMIN)
    migrated = _instance(engine, instance.id)
    assert (migrated.status, migrated.definition_id) == (InstanceStatus.SUSPENDED,
                                                         v2.definition_id)
    assert _recorded(engine, "instance_migrated", instance.id).details[
        "to_definition"] == v2.definition_id
    assert _task(engine, instance.id, "submit").status == TaskStatus.OPEN
    assert _entries(engine, "task_cancelled", instance.id) == []


# --- timers: the scheduler on the engine clock ------------------------------------------------
def test_a_timer_fires_and_ends_the_instance(timers, clock):
    instance = timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT2H"})
    timer = _timer(timers, instance.id, "w_timer")
    assert timer.status == TimerStatus.PENDING
    _recorded(timers, "timer_scheduled", instance.id, "w_timer")
    clock.advance(hours=2, minutes=1)
    assert Scheduler(timers, owner="s1").run_due() == 1
    fired = _timer(timers, instance.id, "w_timer")
    assert fired.status == TimerStatus.FIRED and fired.fired_at is not None
    assert _recorded(timers, "timer_fired", instance.id, "w_timer").actor == "scheduler"
    assert _instance(timers, instance.id).status == InstanceStatus.COMPLETED
    _recorded(timers, "instance_completed", instance.id)


def test_a_boundary_timer_cancels_its_task_and_a_cycle_fires_again(timers, clock):
    instance = timers.runtime.start("national", "deadline_kinds", principal=ALICE)
    answer = _open_task(timers, instance.id, "d_answer")
    scheduler = Scheduler(timers, owner="s1")
    clock.advance(hours=24, seconds=1)           # the daily cycle on the subprocess
    assert scheduler.run_due() == 1
    daily = _timer(timers, instance.id, "d_every_day")
    assert daily.status == TimerStatus.PENDING    # it waits for its next time
    assert "next_due_at" in _recorded(timers, "timer_fired", instance.id, "d_every_day").details
    clock.set(utc(2026, 1, 6, 10, 0, 1))         # 17:00 in Hà Nội: the answer is too late
    assert scheduler.run_due() == 1
    assert _task(timers, instance.id, "d_answer").status == TaskStatus.CANCELLED
    _recorded(timers, "task_cancelled", instance.id, "d_answer", task_id=answer.id)
    too_late = _timer(timers, instance.id, "d_too_late")
    assert too_late.status == TimerStatus.FIRED
    _recorded(timers, "timer_fired", instance.id, "d_too_late")
    assert verify(timers.db, instance.id).ok


def test_a_failing_timer_raises_an_incident_that_fire_now_resolves(timers, clock, admin_api,
                                                                   monkeypatch):
    instance = timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT1H"})
    scheduler = Scheduler(timers, owner="s1", max_attempts=2)
    with monkeypatch.context() as broken:        # a fault outside the process, then fixed
        def unavailable(*args, **kwargs):
            raise RuntimeError("the document store is unavailable")
        broken.setattr(timers.runtime, "fire_timers", unavailable)
        clock.advance(hours=2)
        assert scheduler.run_due() == 0           # first attempt; then it backs off
        assert _timer(timers, instance.id, "w_timer").status == TimerStatus.PENDING
        assert _instance(timers, instance.id).status == InstanceStatus.RUNNING
        clock.advance(seconds=11)
        assert scheduler.run_due() == 0           # the last attempt
    timer = _timer(timers, instance.id, "w_timer")
    assert (timer.status, timer.attempts) == (TimerStatus.FAILED, 2)
    assert "unavailable" in _recorded(timers, "timer_failed", instance.id, "w_timer",
                                      timer_id=timer.id).details["error"]
    failed = _instance(timers, instance.id)
    assert (failed.status, failed.incident_element) == (InstanceStatus.INCIDENT, "w_timer")
    assert "timer failed 2 times" in _recorded(timers, "incident", instance.id,
                                               "w_timer").details["message"]

    response = admin_api.post(f"/admin/timers/{timer.id}/fire", "admin")
    assert response.status_code == 200 and response.json() == {"fired": 1}, response.text
    _recorded(timers, "timer_rearmed", instance.id, "w_timer")
    assert _recorded(timers, "incident_resolved", instance.id, "w_timer").actor == "admin"
    assert _timer(timers, instance.id, "w_timer").status == TimerStatus.FIRED
    _recorded(timers, "timer_fired", instance.id, "w_timer")
    assert _instance(timers, instance.id).status == InstanceStatus.COMPLETED
    _recorded(timers, "instance_completed", instance.id)
    assert verify(timers.db, instance.id).ok


def test_schedules_are_created_fired_failed_rearmed_and_replaced(engine, clock, admin_api,
                                                                 monkeypatch):
    engine.repository.deploy("national", [bpmn_source("schedules.bpmn")], "designer")
    scheduler = Scheduler(engine, owner="s1", max_attempts=1)
    scheduler.sync_schedules()
    once, yearly = _timer(engine, None, "o_start"), _timer(engine, None, "y_start")
    assert once.status == yearly.status == TimerStatus.PENDING
    for row in (once, yearly):
        _recorded(engine, "timer_scheduled", None, row.element_id, timer_id=row.id)

    clock.set(utc(2026, 3, 2))                  # the one-off date and a yearly one passed
    start = engine.runtime.start
    with monkeypatch.context() as broken:       # the one-off start fails, then it is fixed
        def refused(variant, key, **kwargs):
            if key == "once":
                raise RuntimeError("no unit to run for")
            return start(variant, key, **kwargs)
        broken.setattr(engine.runtime, "start", refused)
        assert scheduler.run_due() == 1
    assert _timer(engine, None, "y_start").status == TimerStatus.PENDING   # moved on
    assert _timer(engine, None, "o_start").status == TimerStatus.FAILED
    _recorded(engine, "timer_failed", None, "o_start", timer_id=once.id)

    response = admin_api.post(f"/admin/timers/{once.id}/fire", "admin")
    assert response.status_code == 200 and response.json() == {"fired": 1}, response.text
    assert _recorded(engine, "timer_rearmed", None, "o_start",
                     timer_id=once.id).details["was"] == "failed"
    assert _timer(engine, None, "o_start").status == TimerStatus.FIRED
    with engine.db.reading() as session:
        [started] = session.scalars(select(Instance).where(Instance.definition_key == "once"))
    assert _recorded(engine, "schedule_fired", started.id, "o_start").details[
        "next_due_at"] is None

    changed = bpmn_source("schedules.bpmn", replace={'name="Hằng năm"': 'name="Hằng năm (mới)"'})
    engine.repository.deploy("national", [changed], "designer")
    scheduler.sync_schedules()
    with engine.db.reading() as session:
        replaced = session.get(Timer, yearly.id)
    assert replaced.status == TimerStatus.CANCELLED
    _recorded(engine, "timer_cancelled", None, "y_start", timer_id=yearly.id)
    assert verify(engine.db).ok


# --- nobody else writes a status ----------------------------------------------------------------
STATUS_MODELS = {"Instance", "HumanTask", "Timer"}
STATUS_TABLES = ("instances", "human_tasks", "timers")
# where ``.status =`` sets the statuses of other rows: the e-mail outbox's messages, and the
# lease queue's rows put back to ready after a failed attempt (a timer row already is, as
# timers are claimed while pending; after the last attempt the runtime sets its status)
OTHER_STATUSES = ("engine/notifications/", "engine/leases.py")


def status_writes(source: str, path: str) -> list[str]:
    """Where ``source`` writes the status of an instance, a task or a timer: an assignment
    to ``.status`` (outside the packages of other statuses), ``setattr(…, "status", …)``,
    ``Instance/HumanTask/Timer(status=…)``, ``update(<one of them>).values(status=…)``,
    or SQL text that updates their status."""
    found = []
    other = path.startswith(OTHER_STATUSES)
    for node in ast.walk(ast.parse(source, path)):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and not other:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in flat):
                found.append(f"{where}: assigns .status")
        elif isinstance(node, ast.Call):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", None)
            keywords = {k.arg for k in node.keywords}
            if function == "setattr" and len(node.args) > 1 and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value == "status":
                found.append(f"{where}: setattr(..., 'status', ...)")
            elif function in STATUS_MODELS and "status" in keywords:
                found.append(f"{where}: {function}(status=...)")
            elif function == "values" and "status" in keywords:
                names = {n.id for n in ast.walk(node.func) if isinstance(n, ast.Name)}
                if names & STATUS_MODELS:
                    found.append(f"{where}: update({'/'.join(sorted(names & STATUS_MODELS))})"
                                 f".values(status=...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = " ".join(node.value.lower().split())
            if any(f"update {table} set" in text for table in STATUS_TABLES) and \
                    "status" in text:
                found.append(f"{where}: SQL that updates a status")
    return found


def test_the_check_finds_each_kind_of_status_write():
    written = '''
instance.status = "running"
row.status, row.attempts = TimerStatus.PENDING, 0
setattr(task, "status", "open")
session.add(Timer(instance_id=None, status="pending"))
session.execute(update(HumanTask).where(HumanTask.id == x).values(status="cancelled"))
session.execute(update(Timer.__table__).values(status="fired"))
session.execute(text("UPDATE instances SET status = 'incident' WHERE id = :id"))
'''
    assert len(status_writes(written, "engine/elsewhere.py")) == 7
    read = '''
if instance.status == "incident": pass
query = select(Timer).where(Timer.status == TimerStatus.PENDING)
session.execute(update(OutboxMessage).values(status="sent"))
'''
    assert status_writes(read, "engine/elsewhere.py") == []
    assert status_writes('message.status = "sent"', "engine/notifications/outbox.py") == []


def test_only_the_runtime_and_the_store_write_statuses():
    found = []
    for folder in ("engine", "api"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            relative = path.relative_to(PROJECT).as_posix()
            if relative.startswith(("engine/runtime/", "engine/store/")):
                continue
            found += status_writes(path.read_text(encoding="utf-8"), relative)
    assert found == [], "statuses are changed through engine/runtime only:\n" + "\n".join(found)


def test_a_completion_that_ends_the_instance_cancels_the_other_open_tasks(engine):
    """A completion reads the instance's other open tasks without their whole rows
    (engine.access.Access.task_and_open_rows); those the step leaves are cancelled in the
    store all the same, each recorded."""
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn", {
        '<bpmn:sequenceFlow id="ja" sourceRef="branch_a" targetRef="join" />':
            '<bpmn:sequenceFlow id="ja" sourceRef="branch_a" targetRef="stop" />',
        '<bpmn:parallelGateway id="join"><bpmn:incoming>ja</bpmn:incoming>':
            '<bpmn:endEvent id="stop"><bpmn:incoming>ja</bpmn:incoming>'
            '<bpmn:terminateEventDefinition id="stop_all" /></bpmn:endEvent>'
            '<bpmn:parallelGateway id="join">'})], "designer")
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE)
    for element in ("first", "again"):
        engine.runtime.complete_task(_open_task(engine, instance.id, element).id, {},
                                     principal=ALICE)
    others = [_open_task(engine, instance.id, e) for e in ("branch_b", "branch_c")]
    assert {t.element_id for t in engine.runtime.open_tasks(instance.id)} == {
        "branch_a", "branch_b", "branch_c"}
    engine.runtime.complete_task(_open_task(engine, instance.id, "branch_a").id, {},
                                 principal=ALICE)
    assert _instance(engine, instance.id).status == InstanceStatus.COMPLETED
    assert engine.runtime.open_tasks(instance.id) == []
    for other in others:
        row = _task(engine, instance.id, other.element_id)
        assert row.status == TaskStatus.CANCELLED and row.completed_at is not None
        assert row.completed_by is None
        _recorded(engine, "task_cancelled", instance.id, other.element_id, task_id=other.id)
    assert _task(engine, instance.id, "branch_a").status == TaskStatus.COMPLETED
    assert verify(engine.db, instance.id).ok
