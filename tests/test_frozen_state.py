"""A save serializes only the tasks that may have changed since the last one and keeps the
digests of the *frozen* others (engine.serialization.Frozen). These paths change what a
frozen task's part is made of in every way found: nested values of the data changed in
place through the tasks that share them, a join merging finished branches' data and a script
changing it, a loop back to a task that finished, a failed script retried by an
administrator with data, suspension and resumption. After every save the digests kept for
the next one are those of the whole workflow serialized again, and the workflow rebuilt
from the store is the one in memory."""
from __future__ import annotations

import json

import pytest

from conftest import ADMIN, ALICE, bpmn_source
from engine.serialization import digests, stored_state


@pytest.fixture
def watched(engine, monkeypatch):
    engine.repository.deploy("national", [bpmn_source("frozen_state.bpmn")], "designer")
    runtime, codec = engine.runtime, engine.codec
    monkeypatch.setattr(runtime, "state_snapshot_every", 4)   # snapshots and deltas
    put = runtime._workflows.put
    frozen: list[int] = []

    def put_and_compare(instance_id, version, definition_id, workflow):
        put(instance_id, version, definition_id, workflow)
        stored = stored_state(workflow)
        assert stored.parts == digests(codec.state_parts(workflow))
        reloaded = runtime.workflow(instance_id)
        assert json.loads(codec.state_json(reloaded)) == json.loads(codec.state_json(workflow))
        frozen.append(len(stored.frozen.tasks))
    monkeypatch.setattr(runtime._workflows, "put", put_and_compare)
    engine.frozen = frozen
    return engine


def _complete(engine, instance_id: str, element: str, data: dict | None = None) -> None:
    [row] = [t for t in engine.runtime.open_tasks(instance_id) if t.element_id == element]
    engine.runtime.complete_task(row.id, data or {}, principal=ALICE)


def _data(engine, instance_id: str, element: str) -> list[dict]:
    return [t.data for t in engine.runtime.workflow(instance_id).get_tasks(spec_name=element)]


def test_frozen_tasks_changed_in_place_joined_looped_and_retried_are_stored_again(watched):
    engine = watched
    instance = engine.runtime.start("national", "frozen_state", principal=ALICE,
                                    business_key="FROZEN-1")
    _complete(engine, instance.id, "first")          # "grow" changes nested values in place
    assert _data(engine, instance.id, "first")[0]["doc"]["meta"]["tags"] == [
        "a", "grown", "through another name"]
    for round_ in range(2):
        _complete(engine, instance.id, "again")
        engine.runtime.suspend(instance.id, principal=ADMIN, reason="pause")
        engine.runtime.resume(instance.id, principal=ADMIN)
        for name in ("a", "b", "c"):
            _complete(engine, instance.id, f"branch_{name}",
                      {"branches": {name: {"seen": [], "by": name}}})
        # the split and the finished branches are frozen by now; the join merges their data
        _complete(engine, instance.id, "branch_c2")
        if round_ == 0:                                 # "joined" divides by nothing yet
            assert engine.runtime.get(instance.id).status == "incident"
            engine.runtime.retry(instance.id, principal=ADMIN, data={"divisor": 1})
    _complete(engine, instance.id, "close")
    assert engine.runtime.get(instance.id).status == "completed"
    # the frozen branch tasks' nested lists were changed through the join's merged data
    assert any(d["branches"][name]["seen"] for d in _data(engine, instance.id, "branch_a")
               for name in d["branches"])
    assert max(engine.frozen) >= 10             # saves did skip frozen tasks
