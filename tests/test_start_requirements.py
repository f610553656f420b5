"""A start, a completion or a message that can never work is refused before anything is
written: a process that declares it is started for a unit (``startUnit``) is refused
without one (422 naming ``unit_id``); a cycle started by hand runs for the unit its timer
would use; a start event's or a message catch event's declared form is checked. Shown
through the REST API in every variant, and on the engine with a process of its own."""
from __future__ import annotations

import json
import tomllib
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from engine import policy
from engine.errors import DefinitionInvalid, Forbidden, InvalidData
from engine.scripting import start_timers
from engine.store import AuditEvent, Instance, OrgUnit

from api_client import LiveServer
from conftest import ALICE, BOB, PROJECT, bpmn_source
from procedures import VARIANTS, deploy_library

NS = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'


def variant_admin(variant: str) -> str:
    """The administrator of exactly this variant in its demo organisation (no unit)."""
    for folder in ("national", variant):
        users = tomllib.loads((PROJECT / "processes" / folder / "org.toml")
                              .read_text(encoding="utf-8"))["users"]
        for user in users:
            if user.get("admin_of") == [variant] and not user.get("memberships"):
                return user["username"]
    raise AssertionError(f"no administrator of {variant} in the demo organisation")


@pytest.fixture
def server(engine, clock):
    clock.set(datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc))
    deploy_library(engine)
    live = LiveServer(engine)
    yield live
    live.stop()


def counts(engine) -> tuple[int, int]:
    with engine.db.reading() as session:
        return (session.scalar(select(func.count()).select_from(Instance)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


def definitions(engine, variant: str, category: str):
    return [d for d in engine.repository.latest_versions(variant)
            if policy.category(d) == category]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_case_started_for_no_unit_is_refused_naming_unit_id(server, engine, variant):
    admin = variant_admin(variant)
    cases = [d for d in definitions(engine, variant, "case")
             if policy.start_unit_required(d)]
    assert cases, f"{variant} deploys no case process started for a unit"
    for definition in cases:
        before = counts(engine)
        refused = server.post("/instances", admin, json={
            "definition_key": definition.key, "variant": variant})
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert [e["field"] for e in problem["errors"]] == ["unit_id"], problem
        assert "unit_id" in problem["detail"]
        assert "đơn vị" in problem["errors"][0]["message"]        # Vietnamese first
        assert counts(engine) == before, f"{definition.key}: something was written"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_case_started_by_an_administrator_for_a_unit_runs(server, engine, variant):
    admin = variant_admin(variant)
    with engine.db.reading() as session:
        units = session.scalars(select(OrgUnit.id).where(OrgUnit.variant == variant)
                                .order_by(OrgUnit.id)).all()
    for definition in definitions(engine, variant, "case"):
        started = server.post("/instances", admin, json={
            "definition_key": definition.key, "variant": variant, "unit_id": units[-1]})
        if policy.start_rules(definition):
            # the procedure says who may start it (the proposal: Art. 2–3), and an
            # administrator holds no position in the unit
            assert started.status_code == 403, started.text
            assert started.json()["rule"] == "start_rule", started.json()
            continue
        assert started.status_code == 201, started.text
        assert started.json()["status"] == "running", started.json()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cycle_started_by_hand_runs_for_the_unit_its_timer_would_use(server, engine,
                                                                       variant):
    admin = variant_admin(variant)
    cycles = definitions(engine, variant, "reporting_cycle")
    assert cycles, f"{variant} deploys no reporting cycle"
    scheduled = [d for d in cycles if start_timers(engine.repository.specs(d)[0])]
    assert scheduled, f"{variant} schedules no reporting cycle"
    # the others (the ad-hoc report) are started for a unit given with their own dates
    assert {d.key for d in cycles} - {d.key for d in scheduled} == {"adhoc_report"}
    for definition in scheduled:
        started = server.post("/instances", admin, json={
            "definition_key": definition.key, "variant": variant})
        assert started.status_code == 201, started.text
        body = started.json()
        assert body["status"] == "running", body
        instance = engine.runtime.get(body["id"])
        assert instance.unit_id == engine.runtime.schedule_unit(definition)
        assert instance.unit_id is not None
        assert engine.runtime.open_tasks(instance.id), "the cycle opened no task"


def test_the_start_fields_are_described_in_the_openapi_document(server):
    document = server.get("/openapi.json", "admin").json()
    schema = document["components"]["schemas"]["InstanceCreate"]["properties"]
    for name in ("definition_key", "variant", "data", "business_key", "unit_id"):
        assert schema[name].get("description"), f"{name} is not described"
    assert "startUnit" in schema["unit_id"]["description"]


# --- declared start and message forms, on a process of its own ---------------------------
START_FORM = {"type": "object", "required": ["title"],
              "properties": {"title": {"type": "string", "minLength": 3}}}
REPORT_FORM = {"type": "object", "required": ["outcome"],
               "properties": {"outcome": {"type": "string", "enum": ["done", "failed"]}}}


def with_forms(start_unit: str = "optional"):
    form = '<nd73:properties><nd73:property name="form" value="{}" /></nd73:properties>'
    return bpmn_source(replace={
        NS: f'{NS} xmlns:nd73="{policy.NS}"',
        '<bpmn:process id="review" name="Xét duyệt" isExecutable="true">':
            '<bpmn:process id="review" name="Xét duyệt" isExecutable="true">'
            '<bpmn:extensionElements><nd73:properties>'
            f'<nd73:property name="startUnit" value="{start_unit}" />'
            '</nd73:properties></bpmn:extensionElements>',
        '<bpmn:startEvent id="start" name="Bắt đầu">':
            '<bpmn:startEvent id="start" name="Bắt đầu"><bpmn:extensionElements>'
            + form.format("start.schema.json")
            + '<nd73:validation field="title" when="title == \'test\'" '
              'message="Tên không được là test" /></bpmn:extensionElements>',
        '<bpmn:intermediateCatchEvent id="wait_report" name="Chờ báo cáo">':
            '<bpmn:intermediateCatchEvent id="wait_report" name="Chờ báo cáo">'
            '<bpmn:extensionElements>' + form.format("report.schema.json")
            + '</bpmn:extensionElements>'})


@pytest.fixture
def declared(engine):
    engine.repository.deploy("national", [with_forms()], "designer", forms={
        "start.schema.json": json.dumps(START_FORM).encode(),
        "report.schema.json": json.dumps(REPORT_FORM).encode(),
        "plan.schema.json": b'{"type": "object"}'})


def test_start_data_breaking_the_start_events_form_is_refused(engine, declared):
    before = counts(engine)
    with pytest.raises(InvalidData) as refused:
        engine.runtime.start("national", "review", principal=ALICE, data={"title": "x"})
    assert [e["field"] for e in refused.value.details["errors"]] == ["title"]
    with pytest.raises(InvalidData, match="Tên không được là test"):
        engine.runtime.start("national", "review", principal=ALICE,
                             data={"title": "test"})
    assert counts(engine) == before
    started = engine.runtime.start("national", "review", principal=ALICE,
                                   data={"title": "Một cửa số"})
    assert started.status == "running"


def test_a_message_breaking_the_catch_events_form_is_refused(engine, declared):
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"title": "Một cửa số"})
    [submit] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(submit.id, {"budget": 10, "months": 2}, principal=ALICE)
    [decide] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(decide.id, {"decision": "approve"}, principal=BOB)
    waiting = engine.runtime.get(instance.id)
    with pytest.raises(InvalidData) as refused:
        engine.runtime.send_message("implementation_report", {"outcome": "maybe"},
                                    principal=ALICE, instance_id=instance.id)
    assert [e["field"] for e in refused.value.details["errors"]] == ["outcome"]
    after = engine.runtime.get(instance.id)
    assert (after.version, after.status) == (waiting.version, "running")
    engine.runtime.send_message("implementation_report", {"outcome": "done"},
                                principal=ALICE, instance_id=instance.id)
    assert engine.runtime.get(instance.id).status == "completed"


def test_an_unknown_start_unit_declaration_is_refused_at_deployment(engine):
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy("national", [with_forms("sometimes")], "designer", forms={
            "start.schema.json": b"{}", "report.schema.json": b"{}",
            "plan.schema.json": b"{}"})
    assert "startUnit 'sometimes'" in str(refused.value.problems)


# --- who may start: a process's own start rule (nd73:startRule) ---------------------------
def with_start_rule(rule: str, inside: str = "process"):
    """The review process with a start rule under the process (or, wrongly, its start
    event)."""
    declared = f'<bpmn:extensionElements>{rule}</bpmn:extensionElements>'
    if inside == "process":
        where = {'<bpmn:process id="review" name="Xét duyệt" isExecutable="true">':
                 '<bpmn:process id="review" name="Xét duyệt" isExecutable="true">' + declared}
    else:
        where = {'<bpmn:startEvent id="start" name="Bắt đầu">':
                 '<bpmn:startEvent id="start" name="Bắt đầu">' + declared}
    return bpmn_source(replace={NS: f'{NS} xmlns:nd73="{policy.NS}"', **where})


ONLY_ALICE = ('<nd73:startRule name="only_alice" when="started_by != \'alice\'" '
              'message="Chỉ {{ \'alice\' }} được bắt đầu" messageEn="Only alice starts it" />')


def test_a_start_rule_refuses_whom_it_names_before_anything_is_written(engine):
    engine.repository.deploy("national", [with_start_rule(ONLY_ALICE)], "designer")
    before = counts(engine)
    with pytest.raises(Forbidden) as refused:
        engine.runtime.start("national", "review", principal=BOB)
    assert refused.value.rule == "start_rule"
    assert refused.value.details["name"] == "only_alice"
    assert refused.value.details["reason"] == "Chỉ alice được bắt đầu"
    assert refused.value.details["reason_en"] == "Only alice starts it"
    assert counts(engine) == before
    assert engine.runtime.start("national", "review", principal=ALICE).status == "running"


@pytest.mark.parametrize("rule, inside, problem", [
    ('<nd73:startRule name="x" message="m" />', "process", "start rule without 'when'"),
    ('<nd73:startRule when="True" message="m" />', "process", "start rule without 'name'"),
    ('<nd73:startRule name="x" when="__import__(\'os\')" message="m" />', "process", "import"),
    (ONLY_ALICE, "start", "belongs to a process"),
])
def test_a_start_rule_the_engine_cannot_use_is_refused_at_deployment(engine, rule, inside,
                                                                     problem):
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy("national", [with_start_rule(rule, inside)], "designer")
    assert problem in str(refused.value.problems)
