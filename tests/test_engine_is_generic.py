"""The engine does not know the decree: the engine (engine/) and the HTTP layer (api/)
name no process id, element id, lane or form field of the procedures in processes/ and
forms/. What a step records, whom it tells and what a report counts are declarations of
the definitions (engine/policy.py), so a province changes its procedures without Python."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from lxml import etree

PROJECT = Path(__file__).resolve().parents[1]
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NOT_ELEMENTS = {"definitions", "collaboration", "participant", "laneSet", "lane",
                "sequenceFlow", "incoming", "outgoing"}
# Words that are also the HTTP layer's own vocabulary (JSON members, query parameters,
# blueprint names), not the decree's: a form field may be called "title" too.
GENERIC = {"content", "title", "scope", "people", "reports", "start"}
# The start contract: the engine records who started a case and from which unit under
# these data names, which every procedure reads (see processes/README.md).
START_CONTRACT = {"proposer"}
# What a reporting cycle's data holds for its consolidated report (processes/README.md), and
# the organisation model's position that escalations go to (engine/org.py POSITIONS), which
# a lane may name too; "head" is also Alembic's newest revision, "attachments" a table.
CONTRACTS = {"reporting_units", "summary", "document_number", "head", "attachments"}


def decree_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for path in PROJECT.glob("processes/**/*.bpmn"):
        root = etree.parse(str(path)).getroot()
        for node in root.iter():
            if not isinstance(node.tag, str) or not node.tag.startswith(f"{{{BPMN}}}"):
                continue
            kind = etree.QName(node).localname
            if kind == "process":
                names[node.get("id")] = f"process id ({path.name})"
            elif kind == "lane" and node.get("name"):
                names[node.get("name")] = f"lane ({path.name})"
            elif node.get("id") and kind not in NOT_ELEMENTS \
                    and not kind.endswith("Definition"):
                names.setdefault(node.get("id"), f"element id ({path.name})")
    for path in PROJECT.glob("forms/**/*.schema.json"):
        for field in json.loads(path.read_text(encoding="utf-8")).get("properties", {}):
            names.setdefault(field, f"form field ({path.name})")
    return names


def test_the_engine_and_the_api_name_nothing_of_the_procedures():
    names = decree_names()
    assert {"proposal", "decide", "leadership", "decision", "vote"} <= set(names)
    files = [*sorted(p for p in (PROJECT / "engine").rglob("*.py")
                     if "migrations" not in p.parts),
             *sorted((PROJECT / "api").rglob("*.py"))]
    assert len(files) > 40
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in names \
                    and node.value not in GENERIC | START_CONTRACT | CONTRACTS:
                found.append(f"{path.relative_to(PROJECT)}:{node.lineno}: "
                             f"'{node.value}' is a {names[node.value]}")
    assert not found, "\n".join(found)


def test_the_check_sees_a_name_of_the_procedures(tmp_path):
    """The check itself fails when a procedure's name appears (it is not vacuous)."""
    names = decree_names()
    code = 'DECISIONS = ("vote", "decision")\nLANE = "reporting_unit"\n'
    hits = [n.value for n in ast.walk(ast.parse(code))
            if isinstance(n, ast.Constant) and n.value in names]
    assert sorted(hits) == ["decision", "reporting_unit", "vote"]
