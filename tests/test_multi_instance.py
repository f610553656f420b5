"""Multi-instance activities: each instance carries its item, not the activity's collections
(a cycle for N units held the list of all N in each of its N instances: O(N²) time and
stored state)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from engine.multi_instance import all_tasks
from engine.scheduler import SCHEDULER
from procedures import deploy_library


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def _instance_tasks(workflow, activity: str) -> list:
    """Every task of every instance of a multi-instance activity: the instances and, for a
    subprocess, the tasks of the subprocess each of them runs."""
    [parent] = [t for t in all_tasks(workflow) if t.task_spec.name == activity]
    instances = [t for t in parent.children if t.task_spec.name == parent.task_spec.task_spec]
    tasks = list(instances)
    for instance in instances:
        sub = workflow.subprocesses.get(instance.id)
        if sub is not None:
            tasks.extend(sub.get_tasks())
    return tasks


@pytest.mark.parametrize("units", [40, 80])
def test_a_cycle_s_instances_hold_their_unit_not_the_list_of_all_units(engine, clock, units):
    """Each of a reporting cycle's N instances has its own unit, none has the list of all
    units or the reports' list, and the stored state names a unit about as often whatever N
    is (each instance held all N units before: a unit was named N times and more)."""
    from bench.fanout import add_units
    deploy_library(engine)
    pairs = add_units(engine, units)
    engine.org.invalidate()
    clock.set(utc(2026, 11, 16, 1, 0))
    instance = engine.runtime.start("national", "annual_report", principal=SCHEDULER,
                                    data={"proposer_unit": "mau"})
    workflow = engine.runtime.workflow(instance.id)
    tasks = _instance_tasks(workflow, "annual_report_units")
    assert len({t.data.get("reporting_unit") for t in tasks}) >= units
    for task in tasks:
        assert "reporting_units" not in task.data and "reports" not in task.data
    [cycle] = [t for t in all_tasks(workflow) if t.task_spec.name == "annual_report_units"]
    assert {unit for unit, _ in pairs} <= set(cycle.data["reporting_units"])
    state = engine.codec.state_json(workflow)
    first_unit = pairs[0][0]
    assert state.count(f'"{first_unit}"') <= 5
    assert json.loads(state) == json.loads(engine.codec.state_json(
        engine.runtime.workflow(instance.id)))
