"""Multi-instance activities: each instance carries its item, not the activity's collections
(a cycle for N units held the list of all N in each of its N instances: O(N²) time and
stored state), and the collections are measured against their own data limit."""
from __future__ import annotations

import gc
import json
import re
import sys
import threading
import uuid
from datetime import datetime, timezone

import pytest
from SpiffWorkflow.util.task import TaskState

from conftest import ALICE, bpmn_source, empty_database
from engine import multi_instance
from engine.multi_instance import all_tasks, large_step, step_scope
from engine.scheduler import SCHEDULER
from engine.workflow_engine import WorkflowEngine
from procedures import Case, as_user, deploy_library


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


_FILTERS = ({}, {"state": TaskState.READY | TaskState.WAITING | TaskState.STARTED},
            {"state": TaskState.READY}, {"state": TaskState.WAITING},
            {"state": TaskState.COMPLETED}, {"state": TaskState.ERROR},
            {"state": TaskState.NOT_FINISHED_MASK}, {"state": TaskState.PREDICTED_MASK})


def _same_walk(workflow) -> None:
    """``all_tasks`` lists what SpiffWorkflow's own iterator lists without its depth bound:
    the same tasks in the same order, for every filter the engine uses and more."""
    for filters in _FILTERS:
        ours = [t.id for t in all_tasks(workflow, **filters)]
        spiffs = [t.id for t in workflow.get_tasks(max_depth=sys.maxsize, **filters)]
        assert ours == spiffs, filters


def _cycle_for_30_units(engine, clock) -> Case:
    """A national reporting cycle opened for 30 communes added in bulk, each with a head."""
    from bench.fanout import add_units
    add_units(engine, 30)
    engine.org.invalidate()
    clock.set(utc(2026, 11, 16, 1, 0))
    return Case.start(engine, "national", "annual_report", SCHEDULER,
                      data={"proposer_unit": "mau"})


def test_the_engine_walks_a_workflow_s_tasks_as_spiff_workflow_does(library_engine, clock):
    """A cycle for 30 units, as it opens, once some units reported (their subprocesses
    completed) and once all did: the engine's walk (a stack, linear in the tasks) lists what
    SpiffWorkflow's (a list copied at every task, quadratic past N instances) lists."""
    engine = library_engine
    case = _cycle_for_30_units(engine, clock)
    _same_walk(engine.runtime.workflow(case.id))
    for i, task in enumerate(case.open("submit_report")):
        if i in (0, 7, 29):
            _same_walk(engine.runtime.workflow(case.id))
        engine.runtime.complete_task(task.id, {"report": {"summary": "Báo cáo"}},
                                     principal=as_user(engine, case.candidates(task)[0]))
    _same_walk(engine.runtime.workflow(case.id))


def test_engine_steps_run_what_spiff_workflow_s_run_skipping_idle_subprocesses(
        library_engine, clock):
    """A unit's report in a cycle for 30 units: the engine's engine steps (which skip the
    walks of the subprocesses with nothing to run) leave the workflow as SpiffWorkflow's
    own do_engine_steps does, the same state to the byte, and run the same tasks."""
    from engine.deadlines import variant_settings
    from engine.multi_instance import do_engine_steps
    from engine.scripting import one_step
    from engine.store import Definition
    engine = library_engine
    case = _cycle_for_30_units(engine, clock)
    first, *others = case.open("submit_report")
    engine.runtime.complete_task(first.id, {"report": {"summary": "Báo cáo"}},
                                 principal=as_user(engine, case.candidates(first)[0]))
    task_id = others[5].id
    with engine.db.reading() as session:
        definition = session.get(Definition, engine.runtime.get(case.id).definition_id)
        settings = engine.repository.settings(definition)
    runs, states = [], []
    for steps in (do_engine_steps, lambda wf, did_complete_task: wf.do_engine_steps(
            did_complete_task=did_complete_task)):
        workflow = engine.runtime.workflow(case.id)
        task = workflow.get_task_from_id(uuid.UUID(task_id))
        ran = []
        with variant_settings(settings), one_step():
            task.data.update({"report": {"summary": "Báo cáo"}})
            task.run()
            steps(workflow, did_complete_task=lambda t: ran.append(t.id))
        runs.append(ran)
        # the times of the state changes aside (SpiffWorkflow's clock, not the engine's)
        states.append(re.sub(r'"last_state_change":[0-9.e+-]+', "",
                             engine.codec.state_json(workflow)))
    assert runs[0] == runs[1] and len(runs[0]) >= 2          # the end event and the unit's
    assert states[0] == states[1]


@pytest.fixture
def library_engine(engine):
    deploy_library(engine)
    return engine


@pytest.fixture
def limited(database_url, clock):
    """An engine whose task data may hold 2 KB, and each multi-instance collection 32 KB."""
    wf_engine = WorkflowEngine(database_url, clock=clock, max_data_bytes=2048,
                               max_collection_bytes=32768)
    empty_database(wf_engine.db)
    yield wf_engine
    wf_engine.close()


@pytest.mark.parametrize("sequential", [False, True], ids=["parallel", "sequential"])
def test_collections_over_the_task_data_limit_fit_their_own(limited, sequential):
    """500 items (7 KB of JSON, over the 2 KB of task data) and their 500 results go through a
    multi-instance subprocess: each collection is measured on its own, and each instance
    holds only its item and result."""
    replace = {"<bpmn:multiInstanceLoopCharacteristics>":
               '<bpmn:multiInstanceLoopCharacteristics isSequential="true">'} if sequential else {}
    limited.repository.deploy("national", [bpmn_source("collections.bpmn", replace)],
                              "designer")
    instance = limited.runtime.start("national", "collections", principal=ALICE,
                                     data={"count": 500, "note_size": 0})
    if sequential:              # the next instance starts when the one before ends
        assert limited.runtime.get(instance.id).status == "running"
    [review] = limited.runtime.open_tasks(instance.id)
    assert review.element_id == "review"
    workflow = limited.runtime.workflow(instance.id)
    [task] = all_tasks(workflow, spec_name="review")
    assert task.data["total"] == 500
    assert task.data["results"][:2] == ["ITEM-000000", "ITEM-000001"]
    for task in _instance_tasks(workflow, "each"):
        assert "items" not in task.data and "results" not in task.data


def test_a_collection_over_its_limit_is_an_incident_naming_the_limit(limited):
    limited.repository.deploy("national", [bpmn_source("collections.bpmn")], "designer")
    instance = limited.runtime.start("national", "collections", principal=ALICE,
                                     data={"count": 3000, "note_size": 0})   # 39 KB
    failed = limited.runtime.get(instance.id)
    assert failed.status == "incident" and failed.incident_element == "make"
    assert ("the collection 'items' of a multi-instance activity would grow over the "
            "32,768 byte limit of a collection (ND73_MAX_COLLECTION_BYTES)"
            in failed.incident_message)


def test_other_task_data_still_counts_against_the_task_data_limit(limited):
    limited.repository.deploy("national", [bpmn_source("collections.bpmn")], "designer")
    instance = limited.runtime.start("national", "collections", principal=ALICE,
                                     data={"count": 10, "note_size": 3000})
    failed = limited.runtime.get(instance.id)
    assert failed.status == "incident" and failed.incident_element == "make"
    assert ("task data would grow over the 2,048 byte limit (ND73_MAX_DATA_BYTES)"
            in failed.incident_message)


def test_a_large_step_makes_no_full_collection_until_it_ends():
    """The oldest generation's threshold is out of reach from the moment a step is found
    large to its end (a step within it is part of it), and as it was after; outside a step
    nothing changes."""
    before = gc.get_threshold()
    large_step()
    assert gc.get_threshold() == before
    with step_scope():
        assert gc.get_threshold() == before          # not large (yet)
        large_step()
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] >= 1 << 30
        with step_scope():
            large_step()
        assert gc.get_threshold()[2] >= 1 << 30
    assert gc.get_threshold() == before


def test_threads_large_steps_put_the_thresholds_back_when_the_last_ends():
    """Two threads' large steps overlap: the first to end leaves the thresholds raised for
    the other; the last puts them back as they were."""
    before = gc.get_threshold()
    started, release = threading.Event(), threading.Event()

    def other():
        with step_scope():
            large_step()
            started.set()
            release.wait(10)
    thread = threading.Thread(target=other)
    with step_scope():
        large_step()
        thread.start()
        assert started.wait(10)
    assert gc.get_threshold()[2] >= 1 << 30             # the other's step runs on
    release.set()
    thread.join(10)
    assert gc.get_threshold() == before


def test_a_cycle_s_opening_and_reports_are_large_steps(library_engine, clock, monkeypatch):
    """A cycle with more units than a large step's bound: its opening and a unit's report
    run with no full collection, and the thresholds are back as they were after each."""
    from bench.fanout import add_units
    engine = library_engine
    monkeypatch.setattr(multi_instance, "LARGE_STEP_SUBPROCESSES", 10)
    seen = []
    real = multi_instance.large_step

    def recording():
        real()
        seen.append(gc.get_threshold()[2])
    monkeypatch.setattr(multi_instance, "large_step", recording)
    before = gc.get_threshold()
    add_units(engine, 12)
    engine.org.invalidate()
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(engine, "national", "annual_report", SCHEDULER,
                      data={"proposer_unit": "mau"})
    assert seen and all(threshold >= 1 << 30 for threshold in seen)
    assert gc.get_threshold() == before
    seen.clear()
    task = case.open("submit_report")[0]
    engine.runtime.complete_task(task.id, {"report": {"summary": "Báo cáo"}},
                                 principal=as_user(engine, case.candidates(task)[0]))
    assert seen and all(threshold >= 1 << 30 for threshold in seen)
    assert gc.get_threshold() == before


def test_a_subprocess_s_data_is_copied_as_deepcopy_copies_it():
    """The data an embedded subprocess starts with (and gives back) is a copy equal to
    deepcopy's, sharing no dict or list with the original, whatever values it holds."""
    from copy import deepcopy
    from datetime import date
    from decimal import Decimal
    from engine.multi_instance import data_copy
    data = {"units": ["a", {"b": [1, 2.5, None, True]}], "when": date(2026, 1, 2),
            "amount": Decimal("1.5"), "pair": (1, [2]), "name": "x", "n": 3}
    copied = data_copy(data)
    assert copied == deepcopy(data) and list(copied) == list(data)
    copied["units"][1]["b"].append(4)
    copied["pair"][1].append(3)
    assert data["units"][1]["b"] == [1, 2.5, None, True] and data["pair"] == (1, [2])


def test_a_subprocess_s_copy_keeps_immutable_values_and_copies_containers():
    """Values no one can change (dates, times, Decimals, strings, numbers) are the same
    objects in the copy; the dicts and lists holding them are new ones, so a change in the
    subprocess's data leaves the parent's as it was."""
    from datetime import date, time, timedelta
    from decimal import Decimal
    from engine.multi_instance import data_copy
    due = datetime(2026, 3, 31, 17, 0, tzinfo=timezone.utc)
    data = {"due": due, "day": date(2026, 1, 2), "at": time(9, 30), "span": timedelta(days=3),
            "amount": Decimal("12.50"), "name": "Xã 1", "raw": b"x",
            "deadlines": [due, {"day": date(2026, 1, 2)}]}
    copied = data_copy(data)
    assert copied == data
    for key in ("due", "day", "at", "span", "amount", "name", "raw"):
        assert copied[key] is data[key]
    assert copied["deadlines"] is not data["deadlines"]
    assert copied["deadlines"][1] is not data["deadlines"][1]
    copied["deadlines"][1]["day"] = date(2027, 1, 1)
    copied["deadlines"].append(None)
    copied["due"] = None
    assert data["deadlines"] == [due, {"day": date(2026, 1, 2)}] and data["due"] == due


def test_a_subclass_of_an_immutable_type_is_still_copied():
    """Only the exact immutable types are kept: a subclass may carry state of its own."""
    from engine.multi_instance import data_copy

    class Noted(str):
        pass
    value = Noted("Xã 1")
    value.notes = ["kept apart"]
    copied = data_copy({"name": value})["name"]
    assert copied == value and copied is not value
    copied.notes.append("changed")
    assert value.notes == ["kept apart"]


def _tree(subprocess) -> list:
    """A subprocess's tasks as what they are made of, without their ids and times: in the
    order made, each one's spec, state, parent's and children's places, thread, whether it
    was triggered, data and internal data; and the subprocess's own attributes."""
    tasks = list(subprocess.tasks.values())
    place = {task.id: n for n, task in enumerate(tasks)}
    return [(subprocess.spec.name, subprocess.data, subprocess.correlations, subprocess.depth,
             place[subprocess.task_tree.id], subprocess.completed, subprocess.success)] + [
        (t.task_spec.name, t.state, place.get(t._parent), [place[c] for c in t._children],
         t.thread_id, t.triggered, t.data, t.internal_data) for t in tasks]


def test_a_subprocess_made_from_its_spec_s_noted_prediction_is_spiff_workflow_s(
        library_engine, clock):
    """A new subprocess's tree of tasks, predicted from its spec by SpiffWorkflow for the
    first of that spec and made from the note of that prediction for the next ones, is the
    tree SpiffWorkflow's own create_subprocess makes: the same tasks in the same order, with
    the same specs, states, parents, children, threads and (empty) data, its start ready."""
    from engine.multi_instance import create_subprocess
    engine = library_engine
    case = _cycle_for_30_units(engine, clock)
    workflow = engine.runtime.workflow(case.id)
    [cycle] = [t for t in all_tasks(workflow) if t.task_spec.name == "annual_report_units"]
    units = [t for t in cycle.children if t.id in workflow.subprocesses]
    spec_name = units[0].task_spec.spec
    spec = workflow.subprocess_specs[spec_name]
    assert spec._nd73_predicted                       # noted when the cycle opened
    for n, task in enumerate(units[:3]):
        if n == 1:
            del spec._nd73_predicted                  # predicted again, and noted
        ours = _tree(create_subprocess(workflow, task, spec_name))
        spiffs = _tree(workflow.create_subprocess(task, spec_name))
        assert ours == spiffs
        assert ours[1][:2] == ("Start", TaskState.READY) and len(ours) > 5
    assert spec._nd73_predicted


def test_a_subprocess_finds_its_waiting_tasks_as_spiff_workflow_s_iterator_does(
        library_engine, clock):
    """A subprocess (stored or new: the engine's class either way) finds the tasks to
    update after each task completes by a plain walk: the tasks SpiffWorkflow's iterator
    finds, in the same order, its 1,000-level bound included."""
    from SpiffWorkflow.task import Task
    from SpiffWorkflow.util.task import TaskIterator
    from engine.multi_instance import BpmnSubWorkflow, waiting_tasks
    engine = library_engine
    case = _cycle_for_30_units(engine, clock)

    def same(workflow) -> int:
        ours = list(waiting_tasks(workflow))
        assert ours == list(TaskIterator(workflow.task_tree, state=TaskState.WAITING))
        return len(ours)

    for reported in range(3):
        workflow = engine.runtime.workflow(case.id)           # read from the store
        assert all(type(sub) is BpmnSubWorkflow for sub in workflow.subprocesses.values())
        assert sum(same(sub) for sub in workflow.subprocesses.values()) >= 30 - reported
        task = case.open("submit_report")[0]
        engine.runtime.complete_task(task.id, {"report": {"summary": "Báo cáo"}},
                                     principal=as_user(engine, case.candidates(task)[0]))
    # a chain of waiting tasks deeper than SpiffWorkflow's iterators go
    sub = next(iter(engine.runtime.workflow(case.id).subprocesses.values()))
    parent = sub.task_tree
    for _ in range(1100):
        parent = Task(sub, parent.task_spec, parent, state=TaskState.WAITING)
    assert 1000 <= same(sub) < 1100


def test_a_subprocess_lists_a_spec_s_tasks_as_spiff_workflow_s_iterator_does(
        library_engine, clock):
    """What a start event's run asks of its subprocess (the tasks of a spec's name from a
    task down) is what SpiffWorkflow's iterator lists, without its depth bound."""
    from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
    engine = library_engine
    case = _cycle_for_30_units(engine, clock)
    task = case.open("submit_report")[0]
    engine.runtime.complete_task(task.id, {"report": {"summary": "Báo cáo"}},
                                 principal=as_user(engine, case.candidates(task)[0]))
    workflow = engine.runtime.workflow(case.id)
    checked = 0
    for sub in workflow.subprocesses.values():
        for first in list(sub.tasks.values()):
            for name in {first.task_spec.name, "submit_report", "End", "nothing"}:
                ours = sub.get_tasks(first, spec_name=name)
                assert ours == list(BpmnTaskIterator(first, spec_name=name,
                                                     max_depth=sys.maxsize))
                checked += len(ours)
    assert checked > 30 * 5
    assert sub.get_tasks(spec_name="Start") == [sub.task_tree]


def test_state_changes_are_logged_as_spiff_workflow_logs_them_when_the_logger_emits(
        library_engine, clock, caplog, monkeypatch):
    """SpiffWorkflow's records of task state changes (logger ``spiff.task``) come with their
    extras when the logger emits them; when it does not, the extras are never gathered."""
    import logging

    from SpiffWorkflow.task import Task
    engine = library_engine
    with caplog.at_level(logging.INFO, logger="spiff.task"):
        case = _cycle_for_30_units(engine, clock)
    changes = [r for r in caplog.records if r.name == "spiff.task"]
    assert len(changes) > 30 * 5
    for record in changes:
        assert record.getMessage() == f"State changed to {record.state}"
        assert record.task_spec and record.workflow_spec and record.elapsed >= 0
    assert {"READY", "COMPLETED", "WAITING"} <= {r.state for r in changes}

    def gathered(*args, **kwargs):
        raise AssertionError("log extras gathered for a record the logger drops")
    monkeypatch.setattr(Task, "collect_log_extras", gathered)
    caplog.clear()
    first, *others = case.open("submit_report")
    engine.runtime.complete_task(first.id, {"report": {"summary": "Báo cáo"}},
                                 principal=as_user(engine, case.candidates(first)[0]))
    assert len(case.open("submit_report")) == len(others) and not caplog.records


def test_a_workflow_s_waiting_tasks_are_updated_as_spiff_workflow_finds_them(
        engine, clock, monkeypatch):
    """The engine's workflows, as started and as loaded, are its own class, stored under
    SpiffWorkflow's name; after each task a proposal's steps complete, the waiting tasks it
    updates are those SpiffWorkflow's task iterator finds, in the same order."""
    from SpiffWorkflow.util.task import TaskIterator

    from procedures import SCREENED, implement_and_evaluate, plan
    deploy_library(engine, ballots=True)          # one ballot task per member
    updated: list[int] = []
    ours = multi_instance.BpmnWorkflow.update_waiting_tasks

    def checked(workflow):
        found = list(multi_instance.waiting_tasks(workflow))
        assert found == list(TaskIterator(workflow.task_tree, state=TaskState.WAITING))
        updated.append(len(found))
        ours(workflow)
    monkeypatch.setattr(multi_instance.BpmnWorkflow, "update_waiting_tasks", checked)
    proposer = "mau.sxd.qlxd.truongphong"
    case = Case.start(engine, "national", "proposal", proposer, business_key="DX-31")
    case.do("submit_plan", plan(), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": False})
    case.do("party_opinion", {"party_opinion": "agree"})
    for voter in case.voters():
        case.do("leadership_vote", {"vote": "for"}, by=voter)
    case.do("decide", {"decision": "approve"})
    implement_and_evaluate(case, "completed", proposer)
    assert len(updated) > 20 and sum(1 for n in updated if n) > 10
    workflow = engine.runtime.workflow(case.id)            # read from the store
    assert type(workflow) is multi_instance.BpmnWorkflow
    assert json.loads(engine.codec.state_json(workflow))["typename"] == "BpmnWorkflow"


def test_a_process_s_end_waits_for_the_tasks_spiff_workflow_s_end_waits_for(
        engine, monkeypatch):
    """Each time a branch reaches the join before a process's end (a branch ending while
    another, and a subprocess, are still open; then the last one), the engine's join
    decides as SpiffWorkflow's does whether every other task has finished; the deployed
    specs load as the engine's join."""
    from SpiffWorkflow.bpmn.specs.control import _EndJoin as SpiffEndJoin
    decided: list[bool] = []
    ours = multi_instance._EndJoin._check_threshold_unstructured

    def checked(spec, my_task):
        mine = ours(spec, my_task)
        assert mine == SpiffEndJoin._check_threshold_unstructured(spec, my_task)
        decided.append(mine)
        return mine
    monkeypatch.setattr(multi_instance._EndJoin, "_check_threshold_unstructured", checked)
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    instance = engine.runtime.start("national", "deadline_kinds", principal=ALICE)
    for element in ("d_answer", "s_review"):
        [task] = [t for t in engine.runtime.open_tasks(instance.id) if t.element_id == element]
        engine.runtime.complete_task(task.id, {}, principal=ALICE)
    assert engine.runtime.get(instance.id).status == "completed"
    assert decided.count(False) >= 1 and decided[-1] is True
