"""Task ids that keep their text (engine.task_ids): the same kind of UUID as ``uuid4()``,
equal to the UUID read back from a stored state."""
import copy
import json
import pickle
import uuid

import SpiffWorkflow.task as spiff_task

from bench.fanout import add_units
from engine.scheduler import SCHEDULER
from engine.task_ids import SPIFF_UUID4, TaskId, new_task_id, spiff_uuid4
from procedures import deploy_library


def test_a_task_id_is_a_random_version_4_uuid_with_its_text():
    ids = [new_task_id() for _ in range(2000)]
    assert len({i.int for i in ids}) == 2000
    for task_id in ids[:200]:
        assert isinstance(task_id, uuid.UUID) and type(task_id) is TaskId
        assert task_id.version == 4 and task_id.variant == uuid.RFC_4122
        plain = uuid.UUID(str(task_id))
        assert str(task_id) == uuid.UUID.__str__(task_id) == str(plain)
        assert plain == task_id and task_id == plain and hash(plain) == hash(task_id)
        assert {plain: 1}[task_id] == 1
    # every bit but the version's and the variant's varies
    varying = 0
    for task_id in ids:
        varying |= task_id.int ^ ids[0].int
    assert bin(varying).count("1") == 122


def test_a_copied_or_pickled_task_id_is_the_plain_uuid_of_its_text():
    task_id = new_task_id()
    for other in (copy.copy(task_id), copy.deepcopy(task_id),
                  pickle.loads(pickle.dumps(task_id))):
        assert type(other) is uuid.UUID and other == task_id
        assert str(other) == str(task_id)


def test_the_tasks_a_step_makes_have_task_ids_and_reload_by_them(engine):
    """Every task of a new reporting cycle (SpiffWorkflow's own and the units' subprocesses
    the engine makes) is named by a TaskId; the state read back names the same tasks."""
    deploy_library(engine)
    add_units(engine, 3)
    engine.org.invalidate()
    instance = engine.runtime.start("national", "annual_report", principal=SCHEDULER,
                                    data={"proposer_unit": "mau"})
    # the workflow the step left in memory, and the one read back from the store
    workflow = engine.runtime._workflows.peek(instance.id, instance.version,
                                              instance.definition_id, lambda wf: wf)
    reloaded = engine.runtime.workflow(instance.id)
    assert workflow is not None and reloaded is not workflow
    made = [task for wf in (workflow, *workflow.subprocesses.values())
            for task in wf.tasks.values()]
    assert len(made) > 3 * 5 and all(type(task.id) is TaskId for task in made)
    again = {str(task.id): task.task_spec.name
             for wf in (reloaded, *reloaded.subprocesses.values()) for task in wf.tasks.values()}
    assert again == {str(task.id): task.task_spec.name for task in made}


def test_the_bench_can_lend_spiff_workflow_its_own_uuid4():
    assert spiff_task.uuid4 is new_task_id
    with spiff_uuid4():
        assert spiff_task.uuid4 is SPIFF_UUID4 is uuid.uuid4
    assert spiff_task.uuid4 is new_task_id


def test_a_task_id_in_a_state_s_values_is_written_and_read_as_a_uuid():
    """Should a task's id land among a task's values, the state writes it as SpiffWorkflow
    writes a UUID and reads it back as one."""
    from engine.serialization import Codec
    codec = Codec()
    task_id = new_task_id()

    def written(value) -> str:
        codec.registry._encoder_mode = True
        try:
            return codec._dumps(codec.registry.convert({"child": value}))
        finally:
            codec.registry._encoder_mode = False
    text = written(task_id)
    assert text == '{"child":{"value":"%s","typename":"UUID"}}' % task_id
    restored = codec.registry.restore(json.loads(text))
    assert restored == {"child": uuid.UUID(str(task_id))}
