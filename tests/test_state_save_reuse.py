"""A save reuses what an earlier save of the same workflow serialized: the frozen tasks'
parts, and the parts of the tasks with empty data (tasks not reached yet) or with their
parent's data (most live tasks) whose state and children are what they were. It serializes
only what may have changed, and a snapshot put together from reused and new texts is the
workflow's state."""
from __future__ import annotations

import json
import zlib

from SpiffWorkflow.util.task import TaskState

from conftest import ALICE, bpmn_source
from engine import serialization
from engine.serialization import (SNAPSHOT_BATCH, Codec, StoredState, compress_state, digests,
                                  state_from_parts, state_text)


def _save(codec, workflow, stored, whole=False):
    texts, parts, frozen, serialized = codec.changed_parts(workflow, stored, whole=whole)
    return texts, parts, StoredState(parts, (stored.deltas + 1) if stored else 0, frozen), \
        serialized


def test_a_save_serializes_only_the_parts_that_may_have_changed(engine):
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn")], "designer")
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE)
    [first] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(first.id, {}, principal=ALICE)
    codec: Codec = engine.codec
    workflow = engine.runtime.workflow(instance.id)       # read from the store
    tasks = list(workflow.tasks.values())
    empty = [t for t in tasks if not t.data and not t.internal_data]
    assert empty and len(empty) < len(tasks)

    _, _, stored, serialized = _save(codec, workflow, None)
    assert serialized == 1 + len(tasks)                   # nothing to reuse after a load
    _, parts, stored, serialized = _save(codec, workflow, stored)
    assert serialized == 1 + len(tasks) - len(empty)      # the empty ones reused
    assert parts == digests(codec.state_parts(workflow))
    _, parts, stored, serialized = _save(codec, workflow, stored)
    frozen = stored.frozen.tasks
    assert frozen
    # and, in a workflow kept from one save to the next, those whose data differs from
    # their parent's by plain values only, looked for since the last save
    inherited = [t for t in tasks if t not in frozen and t not in empty
                 and serialization._inherited_fingerprint(t)]
    assert inherited
    assert serialized == 1 + len([t for t in tasks if t not in frozen and t not in empty
                                  and t not in inherited])
    assert parts == digests(codec.state_parts(workflow))

    # a snapshot: every part's text, the reused ones too, in the order of a whole state
    texts, parts, stored, again = _save(codec, workflow, stored, whole=True)
    assert again == serialized
    assert list(texts.items()) == list(codec.state_parts(workflow).items())
    assert json.loads(state_text(Codec.snapshot(texts))) == json.loads(
        codec.state_json(workflow))

    # a task with empty data is written without its parent's data names: a name added to
    # the parent serializes the parent, not its children with empty data
    [ready] = [t for t in tasks if t.state == TaskState.READY]
    children = [c for c in ready.children if c in empty]
    assert children
    ready.data["added"] = 1
    texts, parts, stored, serialized = _save(codec, workflow, stored)
    assert f"t:{ready.id}" in texts
    assert not any(f"t:{child.id}" in texts for child in children)
    assert parts == digests(codec.state_parts(workflow))


def test_a_task_with_its_parent_s_data_is_reused_while_its_part_is_the_same(engine):
    """A task whose data differs from its parent's by plain values only (its part holds the
    difference) is reused while the difference, its internal data and its state stay the
    same: a value that is not plain (a float, in a list or not) set on it alone, a NaN (which
    SpiffWorkflow's converter finds different from itself), a name that is not a string,
    an internal value changing type (True to 1) have it serialized; a value changed deep
    inside what it shares with its parent does not change its part."""
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn")], "designer")
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE)
    [first] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(first.id, {"note": {"deep": [1, {"n": None}]}, "n": 1},
                                 principal=ALICE)
    codec: Codec = engine.codec
    workflow = engine.runtime.workflow(instance.id)
    [ready] = [t for t in workflow.tasks.values() if t.state == TaskState.READY]
    parent = ready.parent
    assert ready.data == parent.data and not ready.internal_data
    key = f"t:{ready.id}"
    _, _, stored, _ = _save(codec, workflow, None)
    texts, _, stored, _ = _save(codec, workflow, stored)   # kept: its part looked at since
    assert key in texts

    def serialized() -> bool:
        nonlocal stored
        texts, parts, stored, _ = _save(codec, workflow, stored)
        assert parts == digests(codec.state_parts(workflow))
        return key in texts

    assert not serialized()
    ready.data["note"]["deep"][1]["n"] = 2      # shared with the parent's: still its data
    assert not serialized()
    # a value and whether the next two saves serialize the task: True is == the parent's
    # 1 (no difference, as for SpiffWorkflow's converter), and then 1 is the same part
    for value, first_save, second_save in (
            (2, True, False), ("2", True, False), (None, True, False), (True, True, False),
            (1, False, False), (0, True, False), (False, True, False), (2.0, True, True),
            ([2], True, False), ([True], True, False), ({"n": [2, None]}, True, False),
            ({"n": [2, 0]}, True, False), ({"n": [2, False]}, True, False),
            ({"m": [2, False]}, True, False), ({"n": [2.0]}, True, True),
            ({1: [2]}, True, True), ([], True, False), ({}, True, False)):
        ready.data["n"] = value
        assert (serialized(), serialized()) == (first_save, second_save), value
    ready.data["n"] = 2
    assert serialized() and not serialized()
    parent.data["other"] = "y"                  # the same value set, one more name lacked
    assert serialized() and not serialized()
    del parent.data["other"]
    assert serialized() and not serialized()
    ready.data["n"] = parent.data["n"]
    assert serialized() and not serialized()
    parent.data["added"] = "x"                  # a name the task lacks
    assert serialized() and not serialized()
    ready.data["added"] = "x"
    assert serialized() and not serialized()
    ready.data["nan"] = parent.data["nan"] = float("nan")
    assert serialized() and serialized()
    del ready.data["nan"], parent.data["nan"]
    assert serialized() and not serialized()
    ready.data[1] = "x"
    assert serialized() and serialized()
    del ready.data[1]
    assert serialized() and not serialized()
    for value, reused in ((True, True), (1, True), ("1", True), (None, True), (1.0, False)):
        ready.internal_data["flag"] = value
        assert serialized() and serialized() != reused, value


def test_a_task_with_empty_data_is_stored_without_its_parent_s_data_names(engine):
    """Its part holds empty data and no delta; it loads as the same task, and a state stored
    in SpiffWorkflow's own form (a delta deleting each of the parent's names) still loads."""
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn")], "designer")
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE)
    [first] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(first.id, {"note": "x"}, principal=ALICE)
    codec: Codec = engine.codec
    workflow = engine.runtime.workflow(instance.id)
    state = json.loads(codec.state_json(workflow))
    empty = [t for t in workflow.tasks.values()
             if not t.data and t.parent is not None and t.parent.data]
    assert empty
    for task in empty:
        assert (state["tasks"][str(task.id)]["data"], state["tasks"][str(task.id)]["delta"]) \
            == ({}, {})
    # SpiffWorkflow's own form of the same state
    for task in empty:
        state["tasks"][str(task.id)]["delta"] = {"updates": {},
                                                 "deletions": list(task.parent.data)}
    definition = engine.repository.get(instance.definition_id)
    spec, subprocess_specs = engine.repository.specs(definition)
    for form in (codec.state_json(workflow), json.dumps(state)):
        loaded = codec.load_state(compress_state(form), spec, subprocess_specs,
                                  engine.script_engine)
        assert {t.id: t.data for t in loaded.tasks.values()} == {
            t.id: t.data for t in workflow.tasks.values()}
        assert json.loads(codec.state_json(loaded)) == json.loads(codec.state_json(workflow))


def test_a_snapshot_compressed_in_batches_is_the_whole_texts_compression():
    """A snapshot is compressed a batch of pieces at a time, never built as one text: its
    bytes are those of the whole text compressed at once, and its JSON is the state of its
    parts (a workflow, its tasks, subprocesses with and without attributes and tasks)."""
    note = "Báo cáo \"năm\" \\ {}" * 40
    parts = {"w": json.dumps({"data": {"n": 1}}, ensure_ascii=False)}
    for n in range(3000):
        parts[f"t:task{n}"] = json.dumps({"n": n, "note": note}, ensure_ascii=False)
    for s in range(400):
        parts[f"s:sub{s}"] = "{}" if s % 3 == 0 else json.dumps({"s": s})
        for n in range(s % 4):
            parts[f"s:sub{s}:task{n}"] = json.dumps({"n": n, "note": note}, ensure_ascii=False)
    whole = state_from_parts(parts)
    assert len(whole) > 4 * SNAPSHOT_BATCH                  # several batches
    assert Codec.snapshot(parts) == compress_state(whole)
    state = json.loads(state_text(Codec.snapshot(parts)))
    assert state["data"] == {"n": 1} and len(state["tasks"]) == 3000
    assert state["tasks"]["task7"] == {"n": 7, "note": note}
    assert state["subprocesses"]["sub0"] == {"tasks": {}}
    assert state["subprocesses"]["sub5"] == {"s": 5, "tasks": {
        "task0": {"n": 0, "note": note}}}


def test_a_large_state_is_compressed_at_the_faster_level(monkeypatch):
    """A state of more characters than LARGE_STATE_CHARS (a reporting cycle of a thousand
    units or more) is compressed at zlib's level 1, a smaller one at level 6: both read
    back as the state."""
    parts = {"w": "{}"} | {f"t:task{n}": json.dumps(
        {"n": n, "note": f"Báo cáo năm của xã {n} " * 20}, ensure_ascii=False)
        for n in range(2000)}
    whole = state_from_parts(parts)
    assert Codec.snapshot(parts) == zlib.compress(whole.encode(), 6)
    monkeypatch.setattr(serialization, "LARGE_STATE_CHARS", len(whole) // 2)
    large = Codec.snapshot(parts)
    assert large == zlib.compress(whole.encode(), 1) == compress_state(whole)
    assert len(large) > len(zlib.compress(whole.encode(), 6))
    assert json.loads(state_text(large))["tasks"]["task1999"]["n"] == 1999


def test_a_subprocess_s_attributes_are_reused_while_they_stay_the_same(engine):
    """The attributes part of a reporting unit's subprocess (its data and correlations
    empty) is written again only when what it is made of changes; a subprocess whose data
    holds anything is written at every save."""
    from bench.fanout import add_units
    from engine.scheduler import SCHEDULER
    from procedures import deploy_library
    deploy_library(engine)
    add_units(engine, 12)
    engine.org.invalidate()
    instance = engine.runtime.start("national", "annual_report", principal=SCHEDULER,
                                    data={"proposer_unit": "mau"})
    codec: Codec = engine.codec
    workflow = engine.runtime.workflow(instance.id)
    subprocesses = list(workflow.subprocesses.values())
    assert len(subprocesses) >= 12

    _, _, stored, first = _save(codec, workflow, None)
    _, _, stored, _ = _save(codec, workflow, stored)      # this one freezes tasks
    _, parts, stored, second = _save(codec, workflow, stored)
    assert parts == digests(codec.state_parts(workflow))
    assert second <= first - len(subprocesses)            # none written again

    moved, filled = subprocesses[0], subprocesses[1]
    moved.last_task = moved.task_tree                      # what it is made of changed
    filled.data["note"] = {"n": 1}
    _, parts, stored, third = _save(codec, workflow, stored)
    assert parts == digests(codec.state_parts(workflow))
    assert third == second + 2
    filled.data["note"]["n"] = 2                           # changed in place
    texts, parts, stored, _ = _save(codec, workflow, stored, whole=True)
    assert parts == digests(codec.state_parts(workflow))
    assert json.loads(texts[f"s:{filled.parent_task_id}"])["data"] == {"note": {"n": 2}}
