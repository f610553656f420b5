"""Requests built to trick the API: file names that are paths, content that is not what its
type says, bodies larger than allowed or not matching their Content-Type. Each gets a clear
problem (never a 5xx), and a refused deployment writes nothing."""
from __future__ import annotations

import io
import zipfile

import pytest
import requests
from sqlalchemy import func, select

from api_client import LiveServer
from conftest import PROJECT
from engine.store import Definition, Instance
from procedures import deploy_library

DESIGNER = "laocai.snv.chuyenvien"
COUNCIL = (PROJECT / "processes" / "national" / "council.bpmn").read_bytes()


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine, MAX_CONTENT_LENGTH=1024 * 1024)
    yield server
    server.stop()


def _definitions(engine) -> int:
    with engine.db.reading() as session:
        return session.scalar(select(func.count(Definition.id)))


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return response.json()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.bpmn", COUNCIL)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../council.bpmn", "../../etc/passwd.bpmn",
                                  "/etc/council.bpmn", "..\\..\\council.bpmn",
                                  "sub/council.bpmn", ".hidden.bpmn", "C:\\council.bpmn"])
def test_file_names_that_are_paths_are_refused(api, engine, name):
    before = _definitions(engine)
    body = _problem(api.post("/definitions", DESIGNER, data={"variant": "lao-cai"},
                             files={"files": (name, COUNCIL)}), 422)
    assert any("plain names" in p["message"] for p in body["problems"]), body
    assert _definitions(engine) == before


def test_nul_in_a_file_name_is_refused(api, engine):
    before = _definitions(engine)
    body = _problem(api.post("/definitions", DESIGNER, data={"variant": "lao-cai"},
                             files={"files": ("council.bpmn\x00.png", COUNCIL)}), 400)
    assert "NUL" in body["detail"]
    assert _definitions(engine) == before


@pytest.mark.parametrize("name, content, message", [
    ("council.bpmn", _zip(), "not well-formed XML"),
    ("council.bpmn", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not well-formed XML"),
    ("council.bpmn", "<?xml version='1.0' encoding='UTF-16'?><a/>".encode("utf-16"),
     "root element must be bpmn:definitions"),
    ("council.bpmn", b"", "not well-formed XML"),
    ("council.exe", b"MZ\x90\x00", "can be uploaded"),
    ("council_vote.schema.json", b'{"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/x"'
     b'}}}', "refers outside the form"),
])
def test_content_that_is_not_what_its_name_says_is_refused(api, engine, name, content, message):
    before = _definitions(engine)
    response = api.post("/definitions/validate", DESIGNER, data={"variant": "lao-cai"},
                        files={"files": (name, content, "application/octet-stream")})
    body = _problem(response, 422)
    assert any(message in p["message"] for p in body["problems"]), body
    assert _definitions(engine) == before


def test_media_types_that_do_not_match_the_body(api):
    url = f"{api.url}/api/v1"
    auth = {"Authorization": f"Bearer {api.token(DESIGNER)}"}
    # deployment wants multipart: JSON, a form and a multipart without boundary are refused
    _problem(requests.post(f"{url}/definitions", json={"variant": "lao-cai"}, headers=auth,
                           timeout=30), 415)
    _problem(requests.post(f"{url}/definitions", data=COUNCIL, timeout=30,
                           headers={**auth, "Content-Type": "application/xml"}), 415)
    response = requests.post(f"{url}/definitions", data=b"--x\r\n\r\n", timeout=30,
                             headers={**auth, "Content-Type": "multipart/form-data"})
    assert 400 <= response.status_code < 500, response.text[:200]
    # JSON endpoints: broken JSON, JSON sent as text, and a body that is not an object
    for data, content_type in ((b'{"definition_key": ', "application/json"),
                               (b'{"definition_key": "proposal"}', "text/plain"),
                               (b'["proposal"]', "application/json"),
                               (b'\xff\xfe\x00{', "application/json")):
        response = requests.post(f"{url}/instances", data=data, timeout=30,
                                 headers={**auth, "Content-Type": content_type})
        assert response.status_code in (400, 415, 422), (data, response.status_code)
        assert response.headers["Content-Type"].startswith("application/problem+json")


def test_oversized_bodies_are_refused_before_they_are_read(api, engine):
    auth = {"Authorization": f"Bearer {api.token(DESIGNER)}"}
    big = b"<x>" + b"a" * (2 * 1024 * 1024) + b"</x>"
    before = _definitions(engine)
    body = _problem(api.post("/definitions", DESIGNER, data={"variant": "lao-cai"},
                             files={"files": ("big.bpmn", big)}), 413)
    assert body["type"].endswith("payload-too-large")
    _problem(requests.post(f"{api.url}/api/v1/instances", timeout=30, headers={
        **auth, "Content-Type": "application/json"},
        data=b'{"definition_key": "proposal", "data": {"x": "' + b"a" * (2 * 1024 * 1024)
        + b'"}}'), 413)

    def chunks():       # no Content-Length: the limit holds for a streamed body too
        for _ in range(40):
            yield b"a" * 65536
    response = requests.post(f"{api.url}/api/v1/instances", data=chunks(), timeout=30,
                             headers={**auth, "Content-Type": "application/json"})
    assert response.status_code in (400, 413), response.status_code
    assert _definitions(engine) == before


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_in_a_json_body_are_refused(api, engine, constant):
    """Python's JSON parser reads NaN and the infinities; JSON has no such numbers (and
    PostgreSQL's JSON columns refuse them): refused before anything is read or written. The
    same words inside a string are text like any other."""
    before = _instances(engine)
    response = api.post("/instances", DESIGNER, headers={"Content-Type": "application/json"},
                        data=('{"definition_key": "proposal", "variant": "lao-cai", '
                              '"data": {"ratio": %s}}' % constant).encode())
    body = _problem(response, 400)
    assert body["detail"] == f"{constant} is not a JSON number"
    assert _instances(engine) == before
    named = api.post("/instances", DESIGNER, json={
        "definition_key": "nope", "variant": "lao-cai", "data": {"note": "NaN Infinity"}})
    assert named.status_code == 404, named.text


def _instances(engine) -> int:
    with engine.db.reading() as session:
        return session.scalar(select(func.count()).select_from(Instance))
