"""The stored state is the workflow exactly: after every committed step of the national
procedures' legal paths, the workflow kept in memory for the next step and the one rebuilt
from the row serialize to the same state (engine.serialization)."""
from __future__ import annotations

import json

import pytest

import test_procedures as paths
from procedures import deploy_library


@pytest.fixture
def checked(engine, monkeypatch):
    """The engine with the library deployed; every workflow a step keeps in memory is
    compared with the one its committed row gives."""
    deploy_library(engine)
    runtime, codec = engine.runtime, engine.codec
    compared: list[str] = []
    put = runtime._workflows.put

    def put_and_compare(instance_id, version, definition_id, workflow):
        put(instance_id, version, definition_id, workflow)
        stored = runtime.get(instance_id)
        assert stored.version == version
        reloaded = runtime.workflow(instance_id)
        assert json.loads(codec.state_json(reloaded)) == json.loads(codec.state_json(workflow))
        compared.append(instance_id)
    monkeypatch.setattr(runtime._workflows, "put", put_and_compare)
    engine.compared = compared
    return engine


@pytest.mark.parametrize("path, arguments", [
    (paths.test_ordinary_approval_to_recognition, ()),
    (paths.test_rejection_with_reasons, ()),
    (paths.test_rejected_vote_then_head_override_in_writing, ()),
    (paths.test_complex_proposal_goes_to_the_evaluation_council,
     ({"for": 4, "against": 1}, "recommend_approve")),
    (paths.test_implementation_suspended_resumed_then_terminated, ()),
    (paths.test_not_completed_goes_to_protection_and_is_exempted, ()),
    (paths.test_damage_goes_to_protection_review_and_abuse_voids_protection, ()),
], ids=lambda value: getattr(value, "__name__", "")[5:] or None)
def test_every_step_reloads_to_the_same_state(checked, path, arguments):
    path(checked, "national", *arguments)
    assert len(checked.compared) >= 5            # each step was compared (submission to
    #                                              decision at least)
