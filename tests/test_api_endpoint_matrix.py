"""Every endpoint of the OpenAPI document against untrusted callers: no token, forged tokens
(wrong key, tampered payload, 'alg: none', other schemes), an expired token, and signed-in
users who must not reach a case of another province or an administrator's function.

ROWS holds one row per operation; the test fails when an operation of the document has no
row, so a new endpoint cannot be added without saying who may call it. What each kind of
user may do on their own cases is the richer matrix of test_api_authorization.py.
"""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from sqlalchemy import select
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from api.auth import TOKEN_SALT
from api_client import LiveServer
from engine.store.models import Timer
from procedures import SCREENED, deploy_library, plan

PROPOSER = "laocai.sxd.qlxd.truongphong"
OUTSIDER = "cantho.sxd.giamdoc"        # a head of department, in another province
MISSING = "00000000-0000-4000-8000-000000000000"

# operation -> (request, status for OUTSIDER, status for PROPOSER, a plain official); a
# resource the caller may not see is not found (404), a function they may not use is 403
# A request is (path with {placeholders} of the case, keyword arguments for requests).
# None: the status depends on the data sent (the row still checks that no token means 401).
ROWS: dict[str, tuple[tuple[str, dict], int | None, int | None]] = {
    "POST /auth/token": (("/auth/token", {"json": {"username": OUTSIDER, "password": "x"}}),
                         401, 401),
    "GET /me": (("/me", {}), 200, 200),
    "GET /users": (("/users", {}), 403, 403),
    "GET /org-units": (("/org-units", {}), 403, 403),
    "GET /definitions": (("/definitions", {}), 200, 200),
    "POST /definitions": (("/definitions", {"data": {"variant": "lao-cai"},
                                            "files": {"files": ("x.bpmn", b"<x/>")}}), 403, 403),
    "GET /definitions/{definition_id}": (("/definitions/{definition_id}", {}), 200, 200),
    "POST /definitions/validate": (("/definitions/validate", {
        "data": {"variant": "lao-cai"}, "files": {"files": ("x.bpmn", b"<x/>")}}), 403, 403),
    "POST /definitions/check-code": (("/definitions/check-code", {
        "json": {"variant": "lao-cai", "code": "1 + 1"}}), 403, 403),
    # a variant's working calendar is no secret: any signed-in user may count on it
    "GET /variants/{variant}/working-days": (("/variants/lao-cai/working-days?days=5", {}),
                                             200, 200),
    # dry-runs: only the variant's designers
    "GET /variants/{variant}/dry-runs": (("/variants/lao-cai/dry-runs", {}), 403, 403),
    "POST /variants/{variant}/dry-runs": (("/variants/lao-cai/dry-runs", {
        "json": {"script": "tu_choi_qua_tet"}}), 403, 403),
    # a case's recorded path: its variant's designers who may see it (the proposer is none)
    "GET /instances/{instance_id}/dry-run-script": (("/instances/{instance_id}/dry-run-script",
                                                     {}), 404, 403),
    "POST /instances": (("/instances", {"json": {"definition_key": "proposal",
                                                 "variant": "lao-cai"}}), 403, None),
    "GET /instances": (("/instances", {}), 200, 200),
    "GET /instances/{instance_id}": (("/instances/{instance_id}", {}), 404, 200),
    "GET /instances/{instance_id}/events": (("/instances/{instance_id}/events", {}), 404, 200),
    "GET /instances/{instance_id}/dossier": (("/instances/{instance_id}/dossier", {}), 404, 200),
    # the PDF needs LibreOffice (503 without it): the proposer's answer is not asserted
    "GET /instances/{instance_id}/dossier.pdf": (("/instances/{instance_id}/dossier.pdf", {}),
                                                 404, None),
    "POST /instances/{instance_id}/suspend": (("/instances/{instance_id}/suspend",
                                               {"json": {}}), 404, 403),
    "POST /instances/{instance_id}/resume": (("/instances/{instance_id}/resume", {"json": {}}),
                                             404, 403),
    "POST /instances/{instance_id}/terminate": (("/instances/{instance_id}/terminate",
                                                 {"json": {}}), 404, 403),
    "POST /instances/{instance_id}/retry": (("/instances/{instance_id}/retry", {"json": {}}),
                                            404, 403),
    "POST /instances/{instance_id}/migrate": (("/instances/{instance_id}/migrate",
                                               {"json": {"definition_id": 1}}), 404, 403),
    "GET /tasks": (("/tasks", {}), 200, 200),
    "GET /tasks/{task_id}": (("/tasks/{task_id}", {}), 404, 404),
    "POST /tasks/{task_id}/claim": (("/tasks/{task_id}/claim", {}), 404, 404),
    "POST /tasks/{task_id}/unclaim": (("/tasks/{task_id}/unclaim", {}), 404, 404),
    "POST /tasks/{task_id}/assign": (("/tasks/{task_id}/assign",
                                      {"json": {"username": OUTSIDER}}), 404, 404),
    "POST /tasks/{task_id}/complete": (
        ("/tasks/{task_id}/complete", {"json": {"data": {**SCREENED, "is_complex": False}}}),
        404, 404),
    "POST /messages": (("/messages", {"json": {"name": "implementation_report",
                                               "correlation_key": "{business_key}"}}),
                       404, None),
    "GET /reports/{instance_id}.{file_format}": (("/reports/{instance_id}.xlsx", {}), 404, None),
    "GET /admin/timers": (("/admin/timers", {}), 403, 403),
    "POST /admin/timers/{timer_id}/fire": (("/admin/timers/{timer_id}/fire", {}), 404, 404),
    "GET /admin/outbox": (("/admin/outbox", {}), 403, 403),
    "POST /admin/outbox/{message_id}/retry": (("/admin/outbox/1/retry", {}), 404, 404),
    "POST /files": (("/files", {"files": {"file": ("a.pdf", b"%PDF-1.4\n")}}), None, None),
    "GET /files/{file_id}": (("/files/" + MISSING, {}), 404, 404),
    "GET /instances/{instance_id}/documents": (("/instances/{instance_id}/documents", {}),
                                               404, 200),
    "GET /documents/{document_id}": (("/documents/" + MISSING, {}), 404, 404),
    "GET /documents/{document_id}.docx": (("/documents/" + MISSING + ".docx", {}), 404, 404),
    "GET /documents/{document_id}.pdf": (("/documents/" + MISSING + ".pdf", {}), 404, 404),
    "POST /documents/{document_id}/corrections": (
        ("/documents/" + MISSING + "/corrections", {"json": {"reason": "x"}}), 404, 404),
    "GET /instances/{instance_id}/files/{file_id}": (
        ("/instances/{instance_id}/files/" + MISSING, {}), 404, 404),
    "GET /notifications": (("/notifications", {}), 200, 200),
    "POST /notifications/read": (("/notifications/read", {"json": {"ids": [1]}}), 404, 404),
    "GET /me/notification-preference": (("/me/notification-preference", {}), 200, 200),
    "PUT /me/notification-preference": (("/me/notification-preference",
                                         {"json": {"mode": "off"}}), None, None),
    "GET /org/{variant}/units": (("/org/lao-cai/units", {}), 403, 403),
    "PUT /org/{variant}/units/{unit_id}": (("/org/lao-cai/units/laocai.new", {"json": {
        "name": "Phòng mới", "kind": "division", "parent_id": "laocai.sxd"}}), 403, 403),
    "GET /org/{variant}/officials": (("/org/lao-cai/officials", {}), 403, 403),
    "PUT /org/{variant}/officials/{username}": (("/org/lao-cai/officials/laocai.new", {
        "json": {"full_name": "Người mới"}}), 403, 403),
    "POST /org/{variant}/officials/{username}/memberships": (
        ("/org/lao-cai/officials/laocai.sxd.pgd1/memberships",
         {"json": {"unit_id": "laocai.sxd", "position": "head"}}), 403, 403),
    "POST /org/{variant}/officials/{username}/memberships/end": (
        ("/org/lao-cai/officials/laocai.sxd.giamdoc/memberships/end",
         {"json": {"unit_id": "laocai.sxd", "position": "head"}}), 403, 403),
    "POST /org/{variant}/officials/{username}/move": (
        ("/org/lao-cai/officials/laocai.sxd.giamdoc/move",
         {"json": {"from_unit": "laocai.sxd", "to_unit": "laocai.snv", "position": "staff"}}),
        403, 403),
    "POST /org/{variant}/officials/{username}/active": (
        ("/org/lao-cai/officials/laocai.sxd.giamdoc/active", {"json": {"active": False}}),
        403, 403),
    "GET /org/{variant}/officials/{username}/open-work": (
        ("/org/lao-cai/officials/laocai.sxd.giamdoc/open-work", {}), 403, 403),
    "POST /org/{variant}/import": (("/org/lao-cai/import", {"files": {"file": (
        "o.csv", b"username,full_name,unit_id,position\n")}}), 403, 403),
    "GET /org/{variant}/export": (("/org/lao-cai/export", {}), 403, 403),
    "GET /org/{variant}/log": (("/org/lao-cai/log", {}), 403, 403),
    "GET /org/{variant}/handovers": (("/org/lao-cai/handovers", {}), 403, 403),
    "POST /org/{variant}/tasks/reassign": (("/org/lao-cai/tasks/reassign", {"json": {
        "task_ids": ["{task_id}"], "username": "laocai.sxd.pgd1"}}), 403, 403),
    # drafts: designers of the variant only
    "GET /variants/{variant}/draft": (("/variants/lao-cai/draft", {}), 403, 403),
    "POST /variants/{variant}/draft": (("/variants/lao-cai/draft", {}), 403, 403),
    "DELETE /variants/{variant}/draft": (("/variants/lao-cai/draft", {}), 403, 403),
    "GET /variants/{variant}/draft/files/{path}": (
        ("/variants/lao-cai/draft/files/variant.toml", {}), 403, 403),
    "PUT /variants/{variant}/draft/files/{path}": (
        ("/variants/lao-cai/draft/files/variant.toml", {"data": 'name = "lao-cai"\n'}),
        403, 403),
    "DELETE /variants/{variant}/draft/files/{path}": (
        ("/variants/lao-cai/draft/files/proposal.bpmn", {}), 403, 403),
    "GET /variants/{variant}/draft.zip": (("/variants/lao-cai/draft.zip", {}), 403, 403),
    "POST /variants/{variant}/draft.zip": (("/variants/lao-cai/draft.zip", {"files": {
        "file": ("d.zip", b"PK")}}), 403, 403),
    "GET /variants/{variant}/deployed.zip": (("/variants/lao-cai/deployed.zip", {}), 403, 403),
    "GET /variants/{variant}/draft/changes": (("/variants/lao-cai/draft/changes", {}),
                                              403, 403),
    "POST /variants/{variant}/draft/validate": (("/variants/lao-cai/draft/validate", {}),
                                                403, 403),
    "POST /variants/{variant}/draft/deploy": (("/variants/lao-cai/draft/deploy",
                                               {"json": {"revision": 1}}), 403, 403),
}
PUBLIC = {"POST /auth/token"}


@pytest.fixture(scope="module")
def case(tmp_path_factory, database_url):
    """One proposal of Lào Cai waiting for its screening, behind a live server."""
    from engine.clock import ManualClock
    from engine.workflow_engine import WorkflowEngine
    from conftest import empty_database

    engine = WorkflowEngine(database_url, clock=ManualClock(), script_time_limit=1.0)
    empty_database(engine.db)
    deploy_library(engine)
    server = LiveServer(engine)
    instance = server.post("/instances", PROPOSER, json={
        "definition_key": "proposal", "variant": "lao-cai"}).json()
    [task] = server.get("/tasks", PROPOSER, params={"instance_id": instance["id"]}).json()["items"]
    assert server.post(f"/tasks/{task['id']}/complete", PROPOSER,
                       json={"data": plan()}).status_code == 200
    [task] = server.get("/tasks", "laocai.sxd.giamdoc",
                        params={"instance_id": instance["id"]}).json()["items"]
    definition_id = engine.runtime.get(instance["id"]).definition_id
    with engine.db.reading() as session:
        timer_id = session.scalar(select(Timer.id).where(Timer.instance_id == instance["id"]))
    assert timer_id, "the screening step has a deadline timer"
    values = {"instance_id": instance["id"], "task_id": task["id"],
              "definition_id": definition_id, "timer_id": timer_id,
              "business_key": instance.get("business_key") or "MATRIX-NONE"}
    yield server, values
    server.stop()
    empty_database(engine.db)
    engine.close()


def _operations(server) -> list[str]:
    document = requests.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    return sorted(f"{method.upper()} {path.removeprefix('/api/v1')}"
                  for path, operations in document["paths"].items()
                  for method in operations if method != "parameters")


def _call(server, operation: str, values: dict, headers: dict):
    method = operation.split()[0]
    (path, kwargs), *_ = ROWS[operation]
    kwargs = json.loads(json.dumps({k: v for k, v in kwargs.items() if k != "files"}
                                   ).replace("{business_key}", values["business_key"])) | (
        {"files": kwargs["files"]} if "files" in kwargs else {})
    return requests.request(method, f"{server.url}/api/v1{path.format(**values)}",
                            headers=headers, timeout=60, **kwargs)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forged_tokens(server) -> dict[str, str]:
    valid = server.token(PROPOSER)
    payload, stamp, signature = valid.rsplit(".", 2)
    past = type("PastSigner", (TimestampSigner,),
                {"get_timestamp": lambda self: int(time.time()) - 10 * 24 * 3600})
    secret = server.app.config["SECRET_KEY"]
    return {
        "wrong key": URLSafeTimedSerializer("not-the-key", salt=TOKEN_SALT).dumps({"u": "admin"}),
        "tampered payload": f"{_b64({'u': 'admin'})}.{stamp}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'u': 'admin'})}.",
        "other salt": URLSafeTimedSerializer(secret, salt="other").dumps({"u": "admin"}),
        "expired": URLSafeTimedSerializer(secret, salt=TOKEN_SALT,
                                          signer=past).dumps({"u": PROPOSER}),
        "unknown user": URLSafeTimedSerializer(secret, salt=TOKEN_SALT).dumps({"u": "nobody"}),
        "not a dict": URLSafeTimedSerializer(secret, salt=TOKEN_SALT).dumps(["admin"]),
        "garbage": "a" * 5000,
    }


def test_every_operation_has_a_row(case):
    server, _ = case
    missing = [op for op in _operations(server) if op not in ROWS]
    assert missing == [], f"add these operations to ROWS: {missing}"


def _problem(response, status: int, operation: str, who: str):
    assert response.status_code == status, (operation, who, response.status_code,
                                            response.text[:300])
    if status >= 400:
        assert response.headers["Content-Type"].startswith("application/problem+json"), (
            operation, who)


def test_no_token_forged_or_expired_token_is_unauthenticated(case):
    server, values = case
    tokens = _forged_tokens(server)
    for operation in _operations(server):
        if operation in PUBLIC:
            continue
        attempts = {"no token": {}, "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
                    "empty bearer": {"Authorization": "Bearer "}}
        attempts |= {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
        for who, headers in attempts.items():
            response = _call(server, operation, values, headers)
            _problem(response, 401, operation, who)
            if who == "expired":
                assert "expired" in response.json()["detail"]
        # who calls is settled first: an invalid body does not describe itself to strangers
        method, path = operation.split()[0], ROWS[operation][0][0]
        response = requests.request(method, f"{server.url}/api/v1{path.format(**values)}",
                                    json={"unexpected": ["field"]}, timeout=60,
                                    params={"page_size": "not a number"})
        _problem(response, 401, operation, "no token, invalid body")


def test_users_of_another_province_and_plain_officials(case):
    server, values = case
    for operation in _operations(server):
        _, outsider, proposer = ROWS[operation]
        for who, expected in ((OUTSIDER, outsider), (PROPOSER, proposer)):
            headers = {} if operation in PUBLIC else {
                "Authorization": f"Bearer {server.token(who)}"}
            response = _call(server, operation, values, headers)
            assert response.status_code < 500, (operation, who, response.text[:300])
            if expected is not None:
                _problem(response, expected, operation, who)
            if who == OUTSIDER and response.status_code < 300:
                # nothing of the other province's case shows through a list or a document
                assert values["instance_id"] not in response.text, operation
                assert values["task_id"] not in response.text, operation
