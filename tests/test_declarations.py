"""The nd73 extension namespace: what a diagram declares reaches the engine (XML → built
spec → stored spec → running step), what it cannot understand is refused at deployment
naming the element, and the moddle descriptor modelers load describes the same
declarations the engine reads."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine import policy
from engine.errors import DefinitionInvalid, InvalidData
from engine.serialization import Codec
from engine.store import Decision

from conftest import ALICE, BOB, PROJECT, bpmn_source

NS = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'
DECIDE = '<bpmn:userTask id="decide" name="Quyết định">'


def declaring(extensions: str, process: str = ""):
    """The review fixture with nd73 declarations on its 'decide' task (and process)."""
    replace = {NS: f'{NS} xmlns:nd73="{policy.NS}"',
               DECIDE: f"{DECIDE}<bpmn:extensionElements>{extensions}"
                       "</bpmn:extensionElements>"}
    if process:
        replace['<bpmn:process id="review" name="Xét duyệt" isExecutable="true">'] = (
            '<bpmn:process id="review" name="Xét duyệt" isExecutable="true">'
            f"<bpmn:extensionElements>{process}</bpmn:extensionElements>")
    return bpmn_source(replace=replace)


DECLARED = (
    '<nd73:properties><nd73:property name="decisionFields" value="decision, months" />'
    '<nd73:property name="caseDecisionField" value="decision" />'
    '<nd73:property name="legalBasis" value="Điều 8 khoản 1" /></nd73:properties>'
    '<nd73:notification kind="review_done" to="proposer" when="decision == \'approve\'" '
    'title="Đã duyệt" />'
    '<nd73:validation field="note" when="decision == \'reject\' and not note" '
    'message="Từ chối phải có lý do ({{ decision }})" messageEn="Reasons needed" />')


def test_declarations_travel_with_the_stored_spec(engine):
    [deployed] = engine.repository.deploy(
        "national", [declaring(DECLARED, '<nd73:properties><nd73:property name="category" '
                                         'value="case" /></nd73:properties>')], "designer")
    definition = engine.repository.get(deployed.definition_id)
    spec, _ = Codec().load_spec(definition.spec)        # as another process reads it
    decide = spec.task_specs["decide"]
    assert policy.decision_fields(decide) == ("decision", "months")
    assert policy.case_decision_field(decide) == "decision"
    assert policy.element_properties(decide)["legalBasis"] == "Điều 8 khoản 1"
    [rule] = policy.notifications(decide)
    assert (rule.kind, rule.to, rule.on, rule.title) == ("review_done", "proposer",
                                                         "complete", "Đã duyệt")
    [check] = policy.validations(decide)
    assert (check.field, check.message_en) == ("note", "Reasons needed")
    assert policy.element_properties(spec.task_specs["submit"])["form"] == "plan.schema.json"
    assert policy.category(definition) == "case"


class Recorder:
    def __init__(self):
        self.steps = []

    def step_saving(self, step):
        self.steps.append(("saving", step.user_task and step.task_row.element_id,
                           dict(step.submitted), [t.task_spec.name for t in step.completed]))

    def step_saved(self, step):
        self.steps.append(("saved", [row.element_id for row, _, _ in step.opened]))


def test_a_step_runs_its_declarations_and_tells_every_listener(engine):
    engine.repository.deploy("national", [declaring(DECLARED)], "designer")
    recorder = Recorder()
    engine.runtime.listeners.append(recorder)
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    data={"budget": 120})
    [submit] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(submit.id, {"months": 4}, principal=ALICE)
    [decide] = engine.runtime.open_tasks(instance.id)
    with pytest.raises(InvalidData) as refused:
        engine.runtime.complete_task(decide.id, {"decision": "reject"}, principal=BOB)
    [error] = refused.value.details["errors"]
    assert (error["field"], error["message"]) == ("note", "Từ chối phải có lý do (reject)")
    engine.runtime.complete_task(decide.id, {"decision": "approve"}, principal=BOB)
    assert recorder.steps == [
        ("saving", None, {}, ["start"]), ("saved", ["submit"]),
        ("saving", "submit", {"months": 4}, []), ("saved", ["decide"]),
        ("saving", "decide", {"decision": "approve"}, ["gateway", "record"]),
        ("saved", [])]
    with engine.db.reading() as session:
        recorded = [(d.field, d.value, d.actor) for d in session.scalars(
            select(Decision).where(Decision.instance_id == instance.id))]
    assert recorded == [("decision", "approve", "bob")]     # months was not submitted here
    assert engine.runtime.get(instance.id).latest_decision == "approve"


@pytest.mark.parametrize("extensions, message", [
    ('<nd73:properties><nd73:property name="frm" value="x" /></nd73:properties>',
     "property 'frm' is not one the engine reads"),
    ('<nd73:notification kind="done" to="everyone" />', "recipients 'everyone'"),
    ('<nd73:notification kind="Done!" />', "notification kind 'Done!'"),
    ('<nd73:notification kind="done" on="later" />', "moment 'later'"),
    ('<nd73:notification kind="done" when="().__class__" />', "notification.when"),
    ('<nd73:validation field="note" when="x" />', "validation rule without 'message'"),
    ('<nd73:validation field="note" when="x" message="{{ __import__(\'os\') }}" />',
     "validation.message"),
])
def test_declarations_the_engine_cannot_use_are_refused_naming_the_element(engine, extensions,
                                                                          message):
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy("national", [declaring(extensions)], "designer")
    [problem] = refused.value.problems
    assert problem.element_id == "decide" and problem.line
    assert message in problem.message


def test_an_unknown_process_category_is_refused(engine):
    with pytest.raises(DefinitionInvalid, match="category 'weekly'"):
        engine.repository.deploy("national", [declaring(
            "", '<nd73:properties><nd73:property name="category" value="weekly" />'
                '</nd73:properties>')], "designer")


def test_the_moddle_descriptor_describes_what_the_engine_reads():
    descriptor = json.loads((PROJECT / "processes" / "nd73.moddle.json").read_text())
    assert (descriptor["uri"], descriptor["prefix"]) == (policy.NS, policy.PREFIX)
    attributes = {t["name"]: [p["name"] for p in t["properties"]]
                  for t in descriptor["types"]}
    assert attributes["Property"] == ["name", "value"]
    assert attributes["Notification"] == ["kind", "to", "on", "when", "title"]
    assert attributes["Validation"] == ["field", "when", "message", "messageEn"]
    assert tuple(attributes["Document"]) == policy.DOCUMENT_ATTRIBUTES
    documented = (PROJECT / "processes" / "README.md").read_text(encoding="utf-8")
    for name in policy.ELEMENT_PROPERTIES + policy.PROCESS_PROPERTIES:
        assert f"`{name}`" in documented, f"processes/README.md does not explain {name}"
