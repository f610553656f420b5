"""The stored state is the workflow exactly: after every committed step of every legal path of
the procedures (proposals, protection, the reporting cycles with their subprocesses), the
workflow kept in memory for the next step and the one rebuilt from the store (the snapshot
and the deltas written after it) serialize to the same state (engine.serialization), and
the events the kept one noted as waiting are those the rebuilt one has.

Each path runs with the engine's snapshot interval and with a snapshot every 2 deltas (so
snapshots, deltas and deltas after a snapshot all occur on every path). After every step the
instance has at most K delta rows, so a load reads its row and at most K more; an instance
that ended holds one snapshot and no deltas."""
from __future__ import annotations

import json

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, func, select, update

import test_reporting_cycles as reports
import test_procedures as paths
from engine.multi_instance import all_tasks
from engine.runtime.instances import STATE_SNAPSHOT_EVERY
from engine.runtime.projection import WaitingEvents
from engine.serialization import UnreadableState, digests, stored_state
from engine.store import Instance, InstanceStateDelta
from engine.workflow_cache import waiting_events_noted
from procedures import Case, deploy_library, plan


def _deltas(engine, instance_id: str) -> int:
    with engine.db.reading() as session:
        return session.scalar(select(func.count()).select_from(InstanceStateDelta)
                              .where(InstanceStateDelta.instance_id == instance_id))


@pytest.fixture(params=[STATE_SNAPSHOT_EVERY, 2], ids=lambda k: f"K{k}")
def checked(engine, monkeypatch, request):
    """The engine with the library deployed; every workflow a step keeps in memory is
    compared with the one its committed rows give."""
    deploy_library(engine)
    runtime, codec = engine.runtime, engine.codec
    limit = request.param
    monkeypatch.setattr(runtime, "state_snapshot_every", limit)
    compared: list[str] = []
    read: list[int] = []
    frozen_tasks: list[int] = []
    put = runtime._workflows.put
    load_state = codec.load_state

    def load_and_count(blob, spec, subprocess_specs, script_engine, deltas=()):
        read.append(len(deltas))
        return load_state(blob, spec, subprocess_specs, script_engine, deltas)

    def put_and_compare(instance_id, version, definition_id, workflow):
        put(instance_id, version, definition_id, workflow)
        stored = runtime.get(instance_id)
        assert stored.version == version
        reloaded = runtime.workflow(instance_id)
        assert json.loads(codec.state_json(reloaded)) == json.loads(codec.state_json(workflow))
        # the digests kept for the next save (the frozen tasks' from earlier saves) are
        # those of every part of the workflow as it is now
        assert stored_state(workflow).parts == digests(codec.state_parts(workflow))
        frozen_tasks.append(len(stored_state(workflow).frozen.tasks))
        # the events the save noted as waiting, which the next step starts from, are those
        # a walk of the stored workflow finds (none once the instance ended)
        noted = waiting_events_noted(workflow)
        walked = WaitingEvents.of([] if stored.status in ("completed", "terminated") else
                                  all_tasks(reloaded, state=TaskState.WAITING))
        assert {k: (v[1].__class__, v[2]) for k, v in noted.timers.items()} == \
            {k: (v[1].__class__, v[2]) for k, v in walked.timers.items()}
        assert {k: v[1].name for k, v in noted.messages.items()} == \
            {k: v[1].name for k, v in walked.messages.items()}
        # a load reads the instance's row and at most K delta rows, as many as the row counts
        assert read[-1] == _deltas(engine, instance_id) == stored.state_deltas <= limit
        if stored.status in ("completed", "terminated"):
            assert read[-1] == 0                  # compacted to one snapshot at the end
        compared.append(instance_id)
    monkeypatch.setattr(codec, "load_state", load_and_count)
    monkeypatch.setattr(runtime._workflows, "put", put_and_compare)
    engine.compared = compared
    engine.deltas_read = read
    engine.frozen_tasks = frozen_tasks
    return engine


PATHS = [
    (paths.test_ordinary_approval_to_recognition, ("national",)),
    (paths.test_ordinary_approval_to_recognition, ("can-tho",)),
    (paths.test_head_proposal_escalates_to_the_superior_head, ()),
    (paths.test_leaders_under_the_province_go_via_home_affairs_to_the_chairman,
     ("lao-cai", "laocai.xa.chutich")),
    (paths.test_can_tho_division_head_goes_to_the_agency_head, ()),
    (paths.test_rejection_with_reasons, ("national",)),
    (paths.test_rejected_vote_then_head_override_in_writing, ("national",)),
    (paths.test_tie_vote_follows_the_head, ("dak-lak", "against", "rejected")),
    (paths.test_complex_proposal_goes_to_the_evaluation_council,
     ("national", {"for": 4, "against": 1}, "recommend_approve")),
    (paths.test_complex_proposal_goes_to_the_evaluation_council,
     ("lao-cai", {"for": 2, "against": 3}, "recommend_reject")),
    (paths.test_implementation_suspended_resumed_then_terminated, ("national",)),
    (paths.test_suspension_review_can_terminate, ()),
    (paths.test_not_completed_goes_to_protection_and_is_exempted, ("national",)),
    (paths.test_damage_goes_to_protection_review_and_abuse_voids_protection, ("national",)),
    (paths.test_damage_without_abuse_allows_reduction, ()),
    (paths.test_standalone_protection_request, ()),
]

REPORTS = [
    (reports.test_consolidation_proceeds_when_a_unit_is_late_and_records_its_late_report,
     ("dak-lak",)),
    (reports.test_dak_lak_construction_st_plan_report_goes_office_to_science_department, ()),
    (reports.test_half_year_review_runs_the_same_pattern_on_its_own_dates, ("national",)),
    (reports.test_multi_year_review_sums_the_period_and_runs_every_five_years, ()),
    (reports.test_ad_hoc_report_is_started_by_an_administrator_with_its_own_dates, ()),
]


def _name(value):
    return getattr(value, "__name__", "")[5:] or None


@pytest.mark.parametrize("path, arguments", PATHS, ids=_name)
def test_every_step_of_a_proposal_reloads_to_the_same_state(checked, path, arguments):
    path(checked, *arguments)
    assert len(checked.compared) >= 2            # each step was compared
    assert any(checked.deltas_read)              # and loads applied deltas
    assert any(checked.frozen_tasks)             # and saves skipped frozen tasks


@pytest.mark.parametrize("path, arguments", REPORTS, ids=_name)
def test_every_step_of_a_reporting_cycle_reloads_to_the_same_state(checked, clock, path,
                                                                  arguments):
    path(checked, clock, *arguments)
    assert checked.compared                      # (a multi-year cycle may end in one step)
    with checked.db.reading() as session:
        ended = session.scalars(select(Instance.id).where(
            Instance.status.in_(("completed", "terminated")))).all()
    assert all(_deltas(checked, instance_id) == 0 for instance_id in ended)


def test_a_load_reads_delta_rows_only_when_the_row_counts_some(engine):
    """A workflow not in memory (another process, a restart) is read from the instance's
    row alone when the row counts no deltas; with deltas, the rows it counts, and a count
    that does not match the rows is refused rather than loaded as another state."""
    deploy_library(engine)
    proposer = "mau.sxd.qlxd.truongphong"
    case = Case.start(engine, "national", "proposal", proposer, business_key="DX-1")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)
    event.listen(engine.db.engine, "before_cursor_execute", seen)
    try:
        assert engine.runtime.get(case.id).state_deltas == 0     # started: a snapshot
        engine.runtime.workflow(case.id)
        assert not [s for s in statements if "instance_state_deltas" in s]
        case.do("submit_plan", plan(), by=proposer)
        assert engine.runtime.get(case.id).state_deltas == _deltas(engine, case.id) == 1
        statements.clear()
        fresh = engine.runtime.workflow(case.id)
        assert [s for s in statements if "instance_state_deltas" in s]
    finally:
        event.remove(engine.db.engine, "before_cursor_execute", seen)
    # the workflow keeps a digest of each part it was stored with, not the parts' text
    assert {len(d) for d in stored_state(fresh).parts.values()} == {16}
    with engine.db.transaction() as session:
        session.execute(update(Instance).where(Instance.id == case.id)
                        .values(state_deltas=2))
    with pytest.raises(UnreadableState):
        engine.runtime.workflow(case.id)
