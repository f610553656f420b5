"""The scheduler: every timer kind fires on the engine clock, schedules keep their anchor,
missed timers catch up oldest first, and several scheduler processes fire each timer once."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, func, select

from engine.access import Principal
from engine.clock import ManualClock, as_utc
from engine.scheduler import Scheduler, next_occurrence
from engine.store import AuditEvent, HumanTask, Instance, Timer
from engine.workflow_engine import WorkflowEngine

from conftest import ALICE, PROJECT, bpmn_source, child_environment


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def timers(engine):
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    return engine


@pytest.fixture
def schedules(engine):
    engine.repository.deploy("national", [bpmn_source("schedules.bpmn")], "designer")
    return engine


def _instances(engine, key):
    with engine.db.reading() as session:
        return list(session.scalars(select(Instance).where(Instance.definition_key == key)
                                    .order_by(Instance.started_at, Instance.id)))


def _audit(engine, action):
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)))


def test_intermediate_timer_fires_when_the_clock_reaches_it(timers, clock):
    instance = timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT2H"})
    scheduler = Scheduler(timers, owner="s1")
    clock.advance(hours=1, minutes=59)
    assert scheduler.run_due() == 0
    clock.advance(minutes=2)
    assert scheduler.run_due() == 1
    assert timers.runtime.get(instance.id).status == "completed"
    [fired] = _audit(timers, "timers_fired")
    assert fired.details["elements"] == ["w_timer"]
    assert fired.details["delay_seconds"] == {"w_timer": 60.0}
    assert scheduler.run_due() == 0


def test_interrupting_boundary_on_a_task_and_cycle_on_a_subprocess(timers, clock):
    instance = timers.runtime.start("national", "deadline_kinds", principal=ALICE)
    assert sorted(t.element_id for t in timers.runtime.open_tasks(instance.id)) == [
        "d_answer", "s_review"]
    scheduler = Scheduler(timers, owner="s1")
    clock.advance(hours=24, seconds=1)           # the daily nudge on the subprocess
    assert scheduler.run_due() == 1
    assert sorted(t.element_id for t in timers.runtime.open_tasks(instance.id)) == [
        "d_answer", "s_review"]                  # non-interrupting: both still open
    clock.set(utc(2026, 1, 6, 10, 0, 1))         # 17:00 in Hà Nội: the answer is too late
    assert scheduler.run_due() == 1
    assert [t.element_id for t in timers.runtime.open_tasks(instance.id)] == ["s_review"]
    workflow = timers.runtime.workflow(instance.id)
    assert workflow.get_tasks(spec_name="d_expired")[0].data["answer"] == "expired"
    clock.advance(hours=48)                      # two more daily nudges, the last of three
    scheduler.run_due()
    nudges = [t for t in timers.runtime.workflow(instance.id).get_tasks(spec_name="d_nudge")
              if t.has_state(TaskState.COMPLETED)]
    assert len(nudges) == 3


def test_timers_firing_together_read_the_open_tasks_of_all_instances_at_once(timers, clock):
    started = [timers.runtime.start("national", "deadline_kinds", principal=ALICE)
               for _ in range(3)]
    clock.set(utc(2026, 1, 6, 10, 0, 1))         # the answer's interrupting deadline
    seen: list[str] = []

    def before(_connection, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()))
    event.listen(timers.db.engine, "before_cursor_execute", before)
    try:
        assert Scheduler(timers, owner="s1", together=8).run_due() == 3
    finally:
        event.remove(timers.db.engine, "before_cursor_execute", before)
    task_reads = [s for s in seen if s.startswith("SELECT") and "FROM human_tasks" in s]
    assert len(task_reads) == 1
    for instance in started:                     # each one's answer cancelled, review open
        assert [t.element_id for t in timers.runtime.open_tasks(instance.id)] == ["s_review"]
        with timers.db.reading() as session:
            answer = session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance.id,
                HumanTask.element_id == "d_answer")).one()
        assert answer.status == "cancelled"
        cancelled = [e for e in _audit(timers, "timers_fired") if e.instance_id == instance.id]
        assert list(cancelled[0].details["changes"]["task_cancelled"].values()) == ["d_answer"]


def test_yearly_cycle_keeps_its_anchor_and_fires_a_missed_year_once(schedules, clock):
    timers = schedules
    clock.set(utc(2027, 6, 1, 0, 0))             # 01/12/2025 and 01/12/2026 were missed
    scheduler = Scheduler(timers, owner="s1")
    assert scheduler.run_due() == 2              # the yearly cycle once, and the one-off date
    [first] = _instances(timers, "yearly")
    [fired] = [e for e in _audit(timers, "schedule_fired") if e.instance_id == first.id]
    assert fired.details["due_at"] == "2026-12-01T01:00:00+00:00"     # 08:00 in Hà Nội
    assert fired.details["next_due_at"] == "2027-12-01T01:00:00+00:00"
    assert fired.details["delay_seconds"] > 0
    clock.set(utc(2027, 12, 1, 0, 59))
    assert scheduler.run_due() == 0
    clock.set(utc(2027, 12, 1, 1, 0, 30))        # across the year boundary, on its anchor
    assert scheduler.run_due() == 1
    clock.set(utc(2028, 12, 1, 1, 0, 0))
    assert scheduler.run_due() == 1
    assert len(_instances(timers, "yearly")) == 3
    assert len(_instances(timers, "once")) == 1


def test_next_occurrence_of_a_yearly_cycle():
    anchor = datetime.fromisoformat("2025-12-01T08:00:00+07:00")
    after = utc(2027, 6, 1)
    assert next_occurrence(anchor, "P1Y", after, fire_missed=False).isoformat() == \
        "2027-12-01T08:00:00+07:00"
    assert next_occurrence(anchor, "P1Y", after, fire_missed=True).isoformat() == \
        "2026-12-01T08:00:00+07:00"


def test_new_version_replaces_the_schedule(schedules, clock):
    timers = schedules
    scheduler = Scheduler(timers, owner="s1")
    scheduler.sync_schedules()
    changed = bpmn_source("schedules.bpmn",
                          replace={'name="Hằng năm"': 'name="Hằng năm (mới)"'})
    timers.repository.deploy("national", [changed], "designer")
    scheduler.sync_schedules()
    with timers.db.reading() as session:
        rows = list(session.scalars(select(Timer).where(Timer.instance_id.is_(None),
                                                        Timer.element_id == "y_start")))
    assert sorted(r.status for r in rows) == ["cancelled", "pending"]


def test_missed_timers_catch_up_oldest_first_with_their_delay(timers, clock):
    late = [timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                 data={"wait": f"PT{hours}H"}) for hours in (5, 1, 3)]
    clock.advance(days=2)                         # nothing ran for two days
    assert Scheduler(timers, owner="restart").run_due() == 3
    fired = _audit(timers, "timers_fired")
    assert [e.instance_id for e in fired] == [late[1].id, late[2].id, late[0].id]
    assert [e.details["delay_seconds"]["w_timer"] for e in fired] == [
        47 * 3600.0, 45 * 3600.0, 43 * 3600.0]


CLAIM_AND_HANG = """
import sys, time
from engine.scheduler import Scheduler
from engine.workflow_engine import WorkflowEngine
engine = WorkflowEngine(sys.argv[1])
claimed = Scheduler(engine, owner="doomed", lock_seconds=60).claim(limit=int(sys.argv[2]))
print(len(claimed), flush=True)
time.sleep(600)
"""

RUN_SCHEDULER = """
import sys
from engine.scheduler import Scheduler
from engine.workflow_engine import WorkflowEngine
engine = WorkflowEngine(sys.argv[1])
print(Scheduler(engine, owner=sys.argv[2], batch=25).run_due(), flush=True)
"""


def _python(script, *args, **kwargs):
    env = {**child_environment(), "PYTHONPATH": str(PROJECT)}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env,
                            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _due_in_the_past(engine, count):
    """``count`` instances whose timer fell due long before the real clock's now."""
    for _ in range(count):
        engine.runtime.start("national", "wait_then_go", principal=Principal.system("load"),
                             data={"wait": "PT1H"})


def test_three_scheduler_processes_fire_each_timer_exactly_once(timers, database_url):
    count = 1000 if not timers.db.is_sqlite else 300
    _due_in_the_past(timers, count)
    schedulers = [_python(RUN_SCHEDULER, database_url, f"s{i}") for i in range(3)]
    outputs = [p.communicate(timeout=900) for p in schedulers]
    assert all(p.returncode == 0 for p in schedulers), [err[-2000:] for _, err in outputs]
    fired_by_each = [int(out.strip()) for out, _ in outputs]
    assert sum(fired_by_each) == count
    with timers.db.reading() as session:
        per_instance = session.execute(
            select(AuditEvent.instance_id, func.count()).where(
                AuditEvent.action == "timers_fired").group_by(AuditEvent.instance_id)).all()
        completed = session.scalar(select(func.count(Instance.id)).where(
            Instance.status == "completed"))
        pending = session.scalar(select(func.count(Timer.id)).where(Timer.status == "pending"))
    assert len(per_instance) == count and all(n == 1 for _, n in per_instance)
    assert completed == count and pending == 0


def test_claims_of_a_killed_scheduler_are_taken_over_after_their_lock_expires(
        timers, database_url):
    _due_in_the_past(timers, 20)
    doomed = _python(CLAIM_AND_HANG, database_url, 20)
    assert doomed.stdout.readline().strip() == "20"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    now = datetime.now(timezone.utc)
    survivor_clock = ManualClock(now)
    survivor = WorkflowEngine(database_url, clock=survivor_clock)
    try:
        assert Scheduler(survivor, owner="survivor").run_due() == 0   # locks still held
        survivor_clock.advance(seconds=61)
        assert Scheduler(survivor, owner="survivor").run_due() == 20
        assert Scheduler(survivor, owner="survivor").run_due() == 0
    finally:
        survivor.close()
    fired = _audit(timers, "timers_fired")
    assert len(fired) == 20 and len({e.instance_id for e in fired}) == 20
    assert {e.details["scheduler"] for e in fired} == {"survivor"}


def test_a_scheduler_killed_while_firing_leaves_every_timer_fired_once(timers, database_url):
    count = 200
    _due_in_the_past(timers, count)
    doomed = _python(RUN_SCHEDULER, database_url, "doomed")
    for _ in range(6000):       # bounded wait until it is under way, then kill it mid-batch
        if _audit(timers, "timers_fired") or doomed.poll() is not None:
            break
        threading.Event().wait(0.01)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    fired_before = len(_audit(timers, "timers_fired"))
    assert 0 < fired_before < count, "killed before it began or after it finished"
    survivor_clock = ManualClock(datetime.now(timezone.utc) + timedelta(seconds=61))
    survivor = WorkflowEngine(database_url, clock=survivor_clock)
    try:        # once the dead scheduler's claims expired, the rest fire, each once
        assert Scheduler(survivor, owner="survivor").run_due() == count - fired_before
    finally:
        survivor.close()
    fired = _audit(timers, "timers_fired")
    assert len(fired) == count and len({e.instance_id for e in fired}) == count
    with timers.db.reading() as session:
        ids = list(session.scalars(select(Instance.id)))
        completed = session.scalar(select(func.count(Instance.id)).where(
            Instance.status == "completed"))
    assert completed == count
    for instance_id in ids:         # every stored state still loads
        assert timers.runtime.workflow(instance_id).is_completed()


def test_a_failing_timer_is_retried_with_backoff_then_raises_an_incident(timers, clock):
    instance = timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT1H"})
    with timers.db.transaction() as session:             # a fault: unreadable stored state
        session.get(Instance, instance.id).state = b"{not compressed json"
    scheduler = Scheduler(timers, owner="s1", max_attempts=2)
    clock.advance(hours=2)
    assert scheduler.run_due() == 0
    with timers.db.reading() as session:
        [row] = session.scalars(select(Timer).where(Timer.instance_id == instance.id))
    assert row.status == "pending" and row.attempts == 1
    assert "stored state is not compressed JSON" in row.last_error
    assert as_utc(row.lock_expires_at) == clock.now() + timedelta(seconds=10)
    assert scheduler.run_due() == 0                       # backing off: not claimed again
    clock.advance(seconds=11)
    assert scheduler.run_due() == 0
    with timers.db.reading() as session:
        row = session.get(Timer, row.id)
        failed = session.get(Instance, instance.id)
    assert row.status == "failed" and row.attempts == 2
    assert failed.status == "incident" and failed.incident_element == "w_timer"
    assert "timer failed 2 times" in failed.incident_message


def test_timers_of_several_instances_fire_together_and_one_failing_leaves_the_others(
        timers, clock):
    started = [timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": f"PT{hours}H"}) for hours in (1, 2, 3, 4, 5)]
    broken = started[2]
    with timers.db.transaction() as session:             # a fault: unreadable stored state
        session.get(Instance, broken.id).state = b"{not compressed json"
    clock.advance(hours=1, minutes=30)
    scheduler = Scheduler(timers, owner="s1", together=4)
    assert scheduler.run_due() == 1                       # one due: fired on its own
    clock.advance(hours=4)
    # four due together; the broken one rolls back their transaction, then each fires alone
    assert scheduler.run_due() == 3
    assert [timers.runtime.get(i.id).status for i in started] == [
        "completed", "completed", "running", "completed", "completed"]
    fired = _audit(timers, "timers_fired")
    assert [e.instance_id for e in fired] == [started[i].id for i in (0, 1, 3, 4)]
    assert len(_audit(timers, "instance_completed")) == 4
    with timers.db.reading() as session:
        rows = {r.instance_id: r for r in session.scalars(select(Timer))}
    assert rows[broken.id].status == "pending" and rows[broken.id].attempts == 1
    assert "stored state is not compressed JSON" in rows[broken.id].last_error
    assert all(r.lock_owner is None for i, r in rows.items() if i != broken.id)
    # all five, none broken: one transaction fires them (a BEGIN and a COMMIT for all)
    more = [timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                 data={"wait": "PT1H"}) for _ in range(3)]
    clock.advance(hours=2)
    assert scheduler.run_due() == 3
    assert all(timers.runtime.get(i.id).status == "completed" for i in more)


def test_instances_where_nothing_is_due_give_their_claims_back_in_the_shared_transaction(
        timers, clock):
    started = [timers.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT1H"}) for _ in range(3)]
    timers.runtime.suspend(started[1].id, principal=ALICE)
    clock.advance(hours=2)
    scheduler = Scheduler(timers, owner="s1", together=8)
    assert scheduler.run_due() == 2
    with timers.db.reading() as session:
        waiting = session.scalars(select(Timer).where(Timer.instance_id == started[1].id)).one()
    assert waiting.status == "pending" and waiting.lock_owner is None and waiting.attempts == 0


def test_interrupting_boundary_on_a_subprocess_counts_working_days(timers, clock):
    clock.set(utc(2026, 2, 13, 2, 0))            # Friday before Tết: 3 working days → 25/02
    instance = timers.runtime.start("national", "give_up", principal=ALICE)
    assert timers.runtime.due_timers() == []
    with timers.db.reading() as session:
        [row] = session.scalars(select(Timer).where(Timer.instance_id == instance.id))
    assert as_utc(row.due_at) == utc(2026, 2, 25, 10, 0)
    scheduler = Scheduler(timers, owner="s1")
    clock.set(utc(2026, 2, 25, 9, 59))
    assert scheduler.run_due() == 0
    clock.set(utc(2026, 2, 25, 10, 1))
    assert scheduler.run_due() == 1
    assert timers.runtime.open_tasks(instance.id) == []
    assert timers.runtime.get(instance.id).status == "completed"
    assert timers.runtime.workflow(instance.id).data["stopped"] is True
