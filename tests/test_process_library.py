"""Every BPMN file shipped in processes/ parses, validates and renders (has DI)."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from engine.bpmn import build_processes
from engine.variants import load_variant

from conftest import PROJECT

BPMN_FILES = sorted((PROJECT / "processes").rglob("*.bpmn"))
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
FLOW_ELEMENTS = ("startEvent", "endEvent", "userTask", "scriptTask", "serviceTask", "task",
                 "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway",
                 "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
                 "callActivity", "subProcess", "sequenceFlow", "manualTask", "receiveTask",
                 "sendTask", "businessRuleTask")


def test_there_are_processes_to_check():
    assert BPMN_FILES


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_file_validates(path: Path):
    variant = load_variant(path.parent)
    processes = build_processes(variant.sources, settings=variant.settings)
    assert processes


@pytest.mark.parametrize("path", BPMN_FILES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_flow_element_has_diagram_interchange(path: Path):
    root = etree.parse(str(path)).getroot()
    drawn = {el.get("bpmnElement") for el in root.iterfind(".//bpmndi:BPMNShape", NS)}
    drawn |= {el.get("bpmnElement") for el in root.iterfind(".//bpmndi:BPMNEdge", NS)}
    missing = [el.get("id") for tag in FLOW_ELEMENTS
               for el in root.iterfind(f".//bpmn:{tag}", NS) if el.get("id") not in drawn]
    assert missing == []
