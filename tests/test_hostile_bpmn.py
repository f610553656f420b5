"""The hostile corpus (tests/fixtures/hostile/): each file is one attack on the engine, with a
comment saying what it attacks and what must happen to it:

    EXPECT: refused | incident
    ELEMENT: the element the problem or incident names ('-': a line of the file, no element;
             '(file)': the file as a whole)
    MESSAGE: a regular expression the message must match

Refused files write nothing; the others are deployed and started, and the instance must stop
in an incident at that element, quickly, with that message. For every file, nothing leaves
the sandbox: the canary file the attacks try to create does not exist afterwards, and what
the instance stored is plain data.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import DefinitionInvalid
from engine.store import AuditEvent, Definition, Instance
from engine.variants import SourceFile

from conftest import ALICE

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
CORPUS = sorted(HOSTILE.glob("*.bpmn"))
FORMS = {p.name: p.read_bytes() for p in HOSTILE.glob("*.json")}   # forms the attacks name
HEADER = re.compile(r"ATTACK: (?P<attack>.+?)\n\s*EXPECT: (?P<expect>refused|incident)\n"
                    r"\s*ELEMENT: (?P<element>\S+)\n\s*MESSAGE: (?P<message>.+?) -->", re.S)
INCIDENT_SECONDS = 15   # a budget of 1 CPU second per evaluation, with room for a busy CI


def _expectation(path: Path) -> dict:
    head = path.read_bytes()[:2000].decode("utf-8", "replace")
    found = HEADER.search(head)
    assert found, f"{path.name} has no ATTACK/EXPECT/ELEMENT/MESSAGE comment"
    return found.groupdict()


def _content(path: Path, canary: Path) -> bytes:
    content = path.read_bytes().replace(b"CANARY", str(canary).encode())
    if path.name == "huge_attribute.bpmn":
        content = content.replace(b'"HUGE"', b'"' + b"A" * (3 * 1024 * 1024) + b'"')
    return content


def _counts(engine) -> tuple[int, int, int]:
    with engine.db.reading() as session:
        return tuple(session.scalar(select(func.count(model.id)))
                     for model in (Definition, Instance, AuditEvent))


def test_the_corpus_covers_every_kind_of_attack():
    names = {p.stem.split("_")[0] for p in CORPUS}
    assert {"xxe", "billion", "huge", "deep", "call", "escape", "loop", "bomb", "condition",
            "timer", "form"} <= names
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_hostile_file(engine, tmp_path, path):
    expected = _expectation(path)
    canary = tmp_path / "canary"
    source = SourceFile(path.name, _content(path, canary))
    before = _counts(engine)
    if expected["expect"] == "refused":
        with pytest.raises(DefinitionInvalid) as caught:
            engine.repository.deploy("national", [source], "designer", forms=FORMS)
        assert _counts(engine) == before, "a refused deployment must write nothing"
        problems = caught.value.problems
        matching = [p for p in problems if re.search(expected["message"], p.message)]
        assert matching, f"no problem matches {expected['message']!r}: {problems}"
        problem = matching[0]
        assert problem.file == path.name, problem
        if expected["element"] != "(file)":         # the file as a whole has no line
            assert problem.line, problem
        if expected["element"] not in ("-", "(file)"):
            assert problem.element_id == expected["element"], problem
    else:
        engine.repository.deploy("national", [source], "designer", forms=FORMS)
        started = time.monotonic()
        instance = engine.runtime.start("national", "hostile", principal=ALICE)
        assert time.monotonic() - started < INCIDENT_SECONDS
        failed = engine.runtime.get(instance.id)
        assert failed.status == "incident", f"{path.name}: {failed.status}"
        assert failed.incident_element == expected["element"]
        assert re.search(expected["message"], failed.incident_message), failed.incident_message
        assert "Traceback" not in failed.incident_message
        # what the instance stored is plain data, and it still loads
        json.dumps(engine.runtime.workflow(instance.id).data)
    assert not canary.exists(), f"{path.name} escaped the sandbox"
