"""Deploying definitions: versions, idempotence, validation errors that name file, element
and line, and refusal of hostile XML without writing anything."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.variants import SourceFile, load_variant
from engine.errors import DefinitionInvalid, NotFound
from engine.store import AuditEvent, Definition

from conftest import PROJECT, bpmn_source


def _counts(engine) -> tuple[int, int]:
    with engine.db.reading() as session:
        return (session.scalar(select(func.count(Definition.id))),
                session.scalar(select(func.count(AuditEvent.id))))


def _refused(engine, source: SourceFile):
    before = _counts(engine)
    with pytest.raises(DefinitionInvalid) as caught:
        engine.repository.deploy("national", [source], "designer")
    assert _counts(engine) == before, "a refused deployment must write nothing"
    return caught.value.problems


def test_deploy_creates_version_with_hash_and_author(engine, clock):
    [result] = engine.repository.deploy("national", [bpmn_source()], "designer")
    assert result.created and result.version == 1 and result.key == "review"
    definition = engine.repository.get(result.definition_id)
    assert definition.variant == "national"
    assert len(definition.content_hash) == 64
    assert definition.deployed_by == "designer"
    assert definition.deployed_at.replace(tzinfo=None) == clock.now().replace(tzinfo=None)
    assert "review.bpmn" in definition.sources


def test_redeploying_identical_content_creates_nothing(engine):
    first = engine.repository.deploy("national", [bpmn_source()], "designer")
    before = _counts(engine)
    again = engine.repository.deploy("national", [bpmn_source()], "someone-else")
    assert _counts(engine) == before
    assert again[0].definition_id == first[0].definition_id and not again[0].created


def test_changed_content_creates_next_version_and_keeps_the_old(engine):
    engine.repository.deploy("national", [bpmn_source()], "designer")
    changed = bpmn_source(replace={'name="Quyết định"': 'name="Quyết định phê duyệt"'})
    [v2] = engine.repository.deploy("national", [changed], "designer")
    assert v2.created and v2.version == 2
    versions = engine.repository.versions("national", "review")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].content_hash != versions[1].content_hash


def test_same_process_in_two_variants_is_versioned_separately(engine):
    engine.repository.deploy("national", [bpmn_source()], "designer")
    [other] = engine.repository.deploy("lao-cai", [bpmn_source()], "designer")
    assert other.created and other.version == 1


def test_malformed_xml_names_file_and_line(engine):
    broken = SourceFile("broken.bpmn", b'<?xml version="1.0"?>\n<bpmn:definitions xmlns:bpmn='
                        b'"http://www.omg.org/spec/BPMN/20100524/MODEL">\n<bpmn:process id="p">'
                        b'\n</bpmn:definitions>\n')
    [problem] = _refused(engine, broken)
    assert problem.file == "broken.bpmn"
    assert problem.line == 4
    assert "well-formed" in problem.message


def test_xxe_is_refused(engine):
    xxe = SourceFile("xxe.bpmn", b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM '
                     b'"file:///etc/passwd">]>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/'
                     b'spec/BPMN/20100524/MODEL"><bpmn:documentation>&x;</bpmn:documentation>'
                     b'</bpmn:definitions>')
    [problem] = _refused(engine, xxe)
    assert "DTD" in problem.message and problem.file == "xxe.bpmn" and problem.line == 2


def test_billion_laughs_is_refused(engine):
    entities = "".join(f'<!ENTITY l{i} "&l{i-1};&l{i-1};&l{i-1};&l{i-1};">' for i in range(1, 10))
    bomb = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "ha">' + entities + ']>'
            '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&l9;'
            '</bpmn:definitions>')
    [problem] = _refused(engine, SourceFile("bomb.bpmn", bomb.encode()))
    assert "DTD" in problem.message


def test_oversized_file_is_refused(engine):
    padding = "<!--" + "x" * (2 * 1024 * 1024) + "-->"
    big = bpmn_source(replace={"<bpmn:message ": padding + "<bpmn:message "})
    [problem] = _refused(engine, big)
    assert "limit" in problem.message and problem.file == "review.bpmn"


def test_missing_start_event_names_process_and_line(engine):
    source = bpmn_source(replace={'<bpmn:startEvent id="start" name="Bắt đầu">\n      '
                                  '<bpmn:outgoing>f1</bpmn:outgoing>\n    </bpmn:startEvent>': "",
                                  '<bpmn:sequenceFlow id="f1" sourceRef="start" '
                                  'targetRef="submit" />': "",
                                  "<bpmn:incoming>f1</bpmn:incoming>": "",
                                  "<bpmn:flowNodeRef>start</bpmn:flowNodeRef>": ""})
    problems = _refused(engine, source)
    problem = next(p for p in problems if "no start event" in p.message)
    assert problem.element_id == "review" and problem.line == 10  # <bpmn:process id="review">


def test_unknown_called_process_is_named(engine):
    source = bpmn_source(replace={
        '<bpmn:userTask id="decide" name="Quyết định">': '<bpmn:callActivity id="decide" '
        'name="Hội đồng" calledElement="no_such_process">',
        '<bpmn:outgoing>f3</bpmn:outgoing>\n    </bpmn:userTask>':
        '<bpmn:outgoing>f3</bpmn:outgoing>\n    </bpmn:callActivity>'})
    problems = _refused(engine, source)
    problem = next(p for p in problems if "no_such_process" in p.message)
    assert problem.element_id == "decide" and problem.file == "review.bpmn" and problem.line


@pytest.mark.parametrize("script", [
    "x = ().__class__.__base__.__subclasses__()",
    "import os",
    "x = __import__('os')",
    "def f():\n    return 1",
    "f = lambda: 1",
])
def test_script_escape_is_refused_at_deployment(engine, script):
    source = bpmn_source(replace={'result = "approved"': script})
    problems = _refused(engine, source)
    problem = next(p for p in problems if p.element_id == "record")
    assert problem.file == "review.bpmn" and problem.line and problem.line > 1


def test_condition_escape_is_refused_at_deployment(engine):
    source = bpmn_source(replace={'decision == "approve"': "decision.__class__ == 1"})
    [problem] = _refused(engine, source)
    assert problem.element_id == "f_approve" and "__class__" in problem.message


def test_path_in_file_name_is_refused(engine):
    with pytest.raises(DefinitionInvalid) as caught:
        engine.repository.deploy("national", [bpmn_source(file_name="../evil.bpmn")], "x")
    assert "plain names" in caught.value.problems[0].message


def test_starting_unknown_process_is_not_found(engine, review):
    before = _counts(engine)
    with pytest.raises(NotFound) as caught:
        engine.runtime.start("national", "no_such_process", started_by="alice")
    assert "no_such_process" in caught.value.message
    assert _counts(engine) == before


def test_variant_extends_national_and_overrides_by_file_name(tmp_path):
    national = tmp_path / "national"
    national.mkdir()
    (national / "variant.toml").write_text('name = "national"\n')
    (national / "a.bpmn").write_text("national a")
    (national / "b.bpmn").write_text("national b")
    province = tmp_path / "lao-cai"
    province.mkdir()
    (province / "variant.toml").write_text('name = "lao-cai"\nextends = "national"\n')
    (province / "b.bpmn").write_text("lao-cai b")
    variant = load_variant(province)
    assert variant.name == "lao-cai"
    assert {s.name: s.content for s in variant.sources} == {"a.bpmn": b"national a",
                                                            "b.bpmn": b"lao-cai b"}


def test_every_shipped_variant_deploys(engine):
    for folder in sorted((PROJECT / "processes").iterdir()):
        if (folder / "variant.toml").exists():
            results = engine.repository.deploy_folder(folder, "ci")
            assert results and all(r.created for r in results)


def test_lane_naming_an_unknown_role_is_refused(engine):
    source = bpmn_source(replace={'<bpmn:lane id="Lane_head" name="head">':
                                  '<bpmn:lane id="Lane_head" name="Giám đốc Nguyễn Văn A">'})
    [problem] = _refused(engine, source)
    assert problem.element_id == "Lane_head" and "names no role" in problem.message


def test_stage_outside_the_vocabulary_is_refused(engine):
    source = bpmn_source(replace={
        '<spiffworkflow:property name="formJsonSchemaFilename" value="plan.schema.json" />':
        '<spiffworkflow:property name="formJsonSchemaFilename" value="plan.schema.json" />'
        '<spiffworkflow:property name="stage" value="almost_done" />'})
    [problem] = _refused(engine, source)
    assert problem.element_id == "submit" and "almost_done" in problem.message
