"""The REST API over a real HTTP server and database: every endpoint and error status."""
from __future__ import annotations

import time

import pytest
import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from api.auth import TOKEN_SALT

from api_client import LiveServer
from conftest import PROJECT
from procedures import SCREENED, deploy_library, leadership_meeting, on_day, plan

PROBLEM = "application/problem+json"


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine)
    yield server
    server.stop()


def is_problem(response, status, kind):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"].endswith("/" + kind) and body["status"] == status and body["title"]
    assert "Traceback" not in response.text
    return body


def start(api, user="laocai.sxd.qlxd.truongphong", variant="lao-cai", key="proposal", **kw):
    response = api.post("/instances", user, json={"definition_key": key, "variant": variant,
                                                  **kw})
    assert response.status_code == 201, response.text
    return response.json()


def open_task(api, user, instance_id, element_id):
    tasks = api.get("/tasks", user, params={"instance_id": instance_id}).json()["items"]
    matching = [t for t in tasks if t["element_id"] == element_id]
    assert matching, f"{user} sees no {element_id}: {[t['element_id'] for t in tasks]}"
    return matching[0]


def complete(api, user, instance_id, element_id, data):
    task = open_task(api, user, instance_id, element_id)
    response = api.post(f"/tasks/{task['id']}/complete", user, json={"data": data})
    assert response.status_code == 200, response.text
    return response.json()


# --- authentication --------------------------------------------------------------------
def test_token_and_me(api):
    response = api.post("/auth/token", json={"username": "laocai.sxd.giamdoc",
                                             "password": "nd73-demo"})
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    me = api.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me["username"] == "laocai.sxd.giamdoc"
    assert me["units"] == [{"unit_id": "laocai.sxd", "unit_name": "Sở Xây dựng",
                            "variant": "lao-cai", "position": "head"}]
    assert me["roles"] == {"admin_of": [], "designer_of": []}


def test_wrong_password_unknown_user_and_rate_limit(api):
    bad = api.post("/auth/token", json={"username": "laocai.chutich", "password": "x"})
    assert is_problem(bad, 401, "unauthenticated")["detail"] == "wrong username or password"
    is_problem(api.post("/auth/token", json={"username": "nobody", "password": "x"}), 401,
               "unauthenticated")
    for _ in range(4):
        api.post("/auth/token", json={"username": "laocai.chutich", "password": "x"})
    is_problem(api.post("/auth/token", json={"username": "laocai.chutich",
                                             "password": "nd73-demo"}), 429,
               "too-many-requests")
    # the same address may still sign in other users (it may be a proxy for many)
    assert api.post("/auth/token", json={"username": "laocai.pct1",
                                         "password": "nd73-demo"}).status_code == 200


def test_failures_under_a_name_do_not_lock_its_owner_out_of_a_device_they_used(api, clock):
    """The device cookie defence: the client the owner signed in from keeps its own count."""
    name, url = "laocai.chutich", f"{api.url}/api/v1/auth/token"
    owner = requests.Session()
    assert owner.post(url, json={"username": name, "password": "nd73-demo"},
                      timeout=30).status_code == 200
    assert owner.cookies.get("nd73_device")             # the owner's client is now trusted
    for _ in range(5):                                  # someone fails on purpose, often
        is_problem(api.post("/auth/token", json={"username": name, "password": "x"}), 401,
                   "unauthenticated")
    is_problem(api.post("/auth/token", json={"username": name, "password": "nd73-demo"}),
               429, "too-many-requests")                # untrusted clients are locked…
    assert owner.post(url, json={"username": name, "password": "nd73-demo"},
                      timeout=30).status_code == 200    # …the owner's device is not
    # a device's cookie is its user's only: shown with another name it counts for nothing
    other = owner.post(url, json={"username": "laocai.pct1", "password": "x"}, timeout=30)
    assert other.status_code == 401
    # the trusted device has its own five failures
    for _ in range(5):
        assert owner.post(url, json={"username": name, "password": "x"},
                          timeout=30).status_code == 401
    assert owner.post(url, json={"username": name, "password": "nd73-demo"},
                      timeout=30).status_code == 429
    # a forged device cookie is an untrusted client
    forged = requests.post(url, json={"username": name, "password": "nd73-demo"},
                           cookies={"nd73_device": "forged.value"}, timeout=30)
    assert forged.status_code == 429
    # no lock lasts: fifteen minutes after the last failure the owner signs in anywhere
    clock.advance(minutes=15, seconds=1)
    assert api.post("/auth/token", json={"username": name,
                                         "password": "nd73-demo"}).status_code == 200


def test_missing_forged_and_expired_tokens(api):
    is_problem(api.get("/me"), 401, "unauthenticated")
    is_problem(api.get("/me", headers={"Authorization": "Bearer forged.token.value"}), 401,
               "unauthenticated")
    other_key = URLSafeTimedSerializer("someone-elses-key", salt=TOKEN_SALT)
    is_problem(api.get("/me", headers={"Authorization": "Bearer " + other_key.dumps(
        {"u": "admin"})}), 401, "unauthenticated")

    class SignedTwoHoursAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 7200
    expired = URLSafeTimedSerializer("test-secret", salt=TOKEN_SALT,
                                     signer=SignedTwoHoursAgo).dumps({"u": "admin"})
    body = is_problem(api.get("/me", headers={"Authorization": f"Bearer {expired}"}), 401,
                      "unauthenticated")
    assert "expired" in body["detail"]


def test_titles_follow_accept_language(api):
    vi = api.get("/me").json()["title"]
    en = api.get("/me", headers={"Accept-Language": "en-US,en;q=0.9"}).json()["title"]
    assert vi == "Chưa đăng nhập hoặc phiên đã hết hạn" and en.startswith("Not signed in")


# --- people ------------------------------------------------------------------------------
def test_users_and_units_for_administrators_only(api):
    everything = api.get("/users", "admin", params={"page_size": 200}).json()
    assert everything["total"] > 100
    entry = next(u for u in everything["items"] if u["username"] == "laocai.sxd.pgd1")
    assert {"unit_id": "laocai.sxd", "position": "party_secretary"} in entry["memberships"]
    own = api.get("/users", "laocai.quantri", params={"page_size": 200}).json()["items"]
    assert own and all(u["username"].startswith("laocai.") for u in own)
    units = api.get("/org-units", "laocai.quantri", params={"page_size": 200}).json()
    assert {u["variant"] for u in units["items"]} == {"lao-cai"}
    sxd = next(u for u in units["items"] if u["id"] == "laocai.sxd")
    assert sxd == {"id": "laocai.sxd", "name": "Sở Xây dựng", "parent_id": "laocai",
                   "kind": "department", "variant": "lao-cai", "tags": []}
    is_problem(api.get("/users", "laocai.sxd.giamdoc"), 403, "forbidden")
    is_problem(api.get("/org-units", "laocai.sxd.giamdoc"), 403, "forbidden")


# --- definitions -------------------------------------------------------------------------
def test_definitions_list_and_detail(api):
    versions = api.get("/definitions", "laocai.sxd.giamdoc",
                       params={"variant": "lao-cai", "key": "proposal"}).json()
    assert [(v["key"], v["version"]) for v in versions] == [("proposal", 1)]
    detail = api.get(f"/definitions/{versions[0]['id']}", "laocai.sxd.giamdoc").json()
    assert "proposal.bpmn" in detail["bpmn"] and "<bpmn:definitions" in detail["bpmn"][
        "proposal.bpmn"]
    assert detail["forms"]["vote.schema.json"]["properties"]["vote"]["enum"] == [
        "for", "against"]
    assert detail["settings"]["routing"]["via_home_affairs_for"] == ["head"]
    report = api.get("/definitions", "admin", params={"variant": "lao-cai",
                                                      "key": "annual_report"}).json()[0]
    timers = api.get(f"/definitions/{report['id']}", "admin").json()["start_timers"]
    assert timers == [{"element_id": "cycle_opens", "kind": "StartCycle",
                       "expression": "report_cycle()"}]
    is_problem(api.get("/definitions/999999", "admin"), 404, "not-found")


def _upload(text: str, name: str = "proposal.bpmn"):
    return {"files": (name, text.encode(), "application/xml")}


def test_designer_validates_and_deploys_a_changed_task_name(api):
    original = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text()
    changed = original.replace('name="Quyết định phê duyệt hoặc từ chối"',
                               'name="Quyết định phê duyệt"')
    designer = "laocai.snv.chuyenvien"
    ok = api.post("/definitions/validate", designer, data={"variant": "lao-cai"},
                  files=_upload(changed))
    assert ok.status_code == 200 and "proposal" in ok.json()["processes"]
    deployed = api.post("/definitions", designer, data={"variant": "lao-cai"},
                        files=_upload(changed))
    assert deployed.status_code == 201, deployed.text
    versions = {p["key"]: (p["version"], p["created"]) for p in deployed.json()["processes"]}
    assert versions["proposal"] == (2, True) and versions["council"] == (1, False)
    again = api.post("/definitions", designer, data={"variant": "lao-cai"},
                     files=_upload(changed))
    assert again.status_code == 200 and not again.json()["created"]
    broken = changed.replace('sourceRef="decide"', 'sourceRef="nowhere"', 1)
    body = is_problem(api.post("/definitions/validate", designer, data={"variant": "lao-cai"},
                               files=_upload(broken)), 422, "invalid-definition")
    assert body["problems"] and all({"file", "element_id", "line", "message"} <= set(p)
                                    for p in body["problems"])


def test_deploy_rights_media_types_and_size(api):
    original = (PROJECT / "processes" / "national" / "council.bpmn").read_bytes()
    is_problem(api.post("/definitions", "cantho.snv.chuyenvien", data={"variant": "lao-cai"},
                        files={"files": ("council.bpmn", original)}), 403, "forbidden")
    is_problem(api.post("/definitions", "laocai.sxd.giamdoc", data={"variant": "lao-cai"},
                        files={"files": ("council.bpmn", original)}), 403, "forbidden")
    is_problem(api.post("/definitions", "admin", json={"variant": "lao-cai"}), 415,
               "unsupported-media-type")
    body = is_problem(api.post("/definitions", "admin", data={"variant": "lao-cai"},
                               files={"files": ("notes.txt", b"hello")}), 422,
                      "invalid-definition")
    assert body["problems"][0]["file"] == "notes.txt"
    huge = b"<x>" + b"a" * (9 * 1024 * 1024) + b"</x>"
    is_problem(api.post("/definitions", "admin", data={"variant": "lao-cai"},
                        files={"files": ("huge.bpmn", huge)}), 413, "payload-too-large")
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<d>&x;</d>')
    body = is_problem(api.post("/definitions/validate", "admin", data={"variant": "lao-cai"},
                               files={"files": ("xxe.bpmn", xxe)}), 422, "invalid-definition")
    assert "DTD" in body["problems"][0]["message"]


# --- instances and tasks -----------------------------------------------------------------
def test_a_complete_lao_cai_proposal_through_the_api(api, engine):
    proposer = "laocai.sxd.qlxd.truongphong"
    instance = start(api, proposer, business_key="LC-API-1")
    assert instance["status"] == "running" and instance["stage"] == "draft"
    assert instance["unit_id"] == "laocai.sxd.qlxd"
    complete(api, proposer, instance["id"], "submit_plan", plan())
    complete(api, "laocai.sxd.giamdoc", instance["id"], "screening",
             {**SCREENED, "is_complex": False})
    complete(api, "laocai.sxd.pgd1", instance["id"], "party_opinion", {"party_opinion": "agree"})
    # the head records the leadership meeting (Art. 8 k.1)
    complete(api, "laocai.sxd.giamdoc", instance["id"], "leadership_meeting", leadership_meeting(
        {v: "for" for v in ("laocai.sxd.giamdoc", "laocai.sxd.pgd1", "laocai.sxd.pgd2",
                            "laocai.sxd.pgd3")}, "2026-01-05"))
    complete(api, "laocai.sxd.giamdoc", instance["id"], "decide",
             {"decision": "approve"})
    on_day(engine, "2027-06-30")            # the work is reported done on the day it is
    complete(api, proposer, instance["id"], "implement", {"finished_on": "2027-06-30"})
    complete(api, proposer, instance["id"], "report_completion", {"result_summary": "Hoàn thành"})
    complete(api, "laocai.sxd.pgd1", instance["id"], "party_evaluation_opinion",
             {"party_opinion": "agree"})
    leaders = ["laocai.sxd.giamdoc", "laocai.sxd.pgd1", "laocai.sxd.pgd2", "laocai.sxd.pgd3"]
    complete(api, "laocai.sxd.giamdoc", instance["id"], "evaluate", {
        "meeting_date": "2027-06-30", "attendees": leaders[:3], "outcome": "completed",
        "member_assessments": [{"member": m, "assessment": "completed"} for m in leaders[:3]],
        "evaluation_note": "Tốt"})
    complete(api, "laocai.sxd.vp.chuyenvien", instance["id"], "notify_result",
             {})
    done = complete(api, "laocai.sxd.giamdoc", instance["id"], "recognition",
                    {"measures": ["commendation"]})
    assert (done["status"], done["stage"], done["latest_decision"]) == (
        "completed", "recognised", "completed")
    detail = api.get(f"/instances/{instance['id']}", proposer).json()
    assert detail["definition_version"] == 1 and detail["open_tasks"] == []
    assert "decide" in detail["completed_elements"] and detail["active_elements"] == []
    events = api.get(f"/instances/{instance['id']}/events", proposer,
                     params={"page_size": 200}).json()
    actions = [e["action"] for e in events["items"]]
    # eleven steps: the leadership meeting is one, recorded by its chair
    assert actions[0] == "instance_started" and actions.count("task_completed") == 11


def test_instance_detail_search_and_visibility(api, clock):
    first = start(api, "laocai.sxd.qlxd.truongphong", business_key="A")
    start(api, "laocai.sxd.qhkt.truongphong", business_key="B")
    detail = api.get(f"/instances/{first['id']}", "laocai.sxd.qlxd.truongphong").json()
    assert detail["active_elements"] == ["submit_plan"]
    assert detail["open_tasks"][0]["candidates"] == ["laocai.sxd.qlxd.truongphong"]
    assert detail["started_at"].endswith("+00:00")
    is_problem(api.get(f"/instances/{first['id']}", "laocai.sxd.qhkt.truongphong"), 404,
               "not-found")
    is_problem(api.get(f"/instances/{first['id']}", "cantho.quantri"), 404, "not-found")
    seen = api.get("/instances", "laocai.quantri", params={"variant": "lao-cai"}).json()
    assert seen["total"] == 2
    mine = api.get("/instances", "laocai.sxd.qlxd.truongphong").json()
    assert [i["business_key"] for i in mine["items"]] == ["A"]
    paged = api.get("/instances", "admin", params={"page_size": 1, "page": 2}).json()
    assert paged["total"] == 2 and len(paged["items"]) == 1
    past_the_end = api.get("/instances", "admin", params={"page_size": 1, "page": 3}).json()
    assert (past_the_end["total"], past_the_end["items"]) == (2, [])
    nothing = api.get("/instances", "admin", params={"status": "terminated"}).json()
    assert (nothing["total"], nothing["items"]) == (0, [])
    by_stage = api.get("/instances", "admin", params={"stage": "draft",
                                                      "started_by": "laocai.sxd.qhkt.truongphong"})
    assert [i["business_key"] for i in by_stage.json()["items"]] == ["B"]
    body = is_problem(api.get("/instances", "admin", params={"status": "sleeping"}), 422,
                      "invalid-data")
    assert body["errors"][0]["field"] == "status"
    is_problem(api.get("/instances", "admin", params={"created_from": "2026-13-45"}), 422,
               "invalid-data")
    is_problem(api.get("/instances", "admin", params={
        "created_from": "2026-02-01T00:00:00+07:00", "created_to": "2026-01-01T00:00:00Z"}),
        422, "invalid-data")


def test_starting_rules(api):
    is_problem(api.post("/instances", "laocai.sxd.giamdoc",
                        json={"definition_key": "nope", "variant": "lao-cai"}), 404,
               "not-found")
    is_problem(api.post("/instances", "laocai.sxd.giamdoc",
                        json={"definition_key": "proposal", "variant": "can-tho"}), 403,
               "forbidden")
    is_problem(api.post("/instances", "laocai.sxd.giamdoc",
                        json={"definition_key": "annual_report", "variant": "lao-cai"}), 403,
               "forbidden")
    is_problem(api.post("/instances", "laocai.sxd.giamdoc",
                        json={"definition_key": "proposal", "variant": "lao-cai",
                              "unit_id": "laocai.skhcn"}), 403, "forbidden")
    is_problem(api.post("/instances", "laocai.sxd.giamdoc", data="{not json",
                        headers={"Content-Type": "application/json"}), 400,
               "malformed-request")
    body = is_problem(api.post("/instances", "laocai.sxd.giamdoc", json={"variant": 5}), 422,
                      "invalid-data")
    assert {e["field"] for e in body["errors"]} == {"definition_key", "variant"}
    cycle = api.post("/instances", "laocai.quantri", json={
        "definition_key": "annual_report", "variant": "lao-cai", "unit_id": "laocai"})
    assert cycle.status_code == 201 and cycle.json()["stage"] == "reporting"


def test_inbox_claim_unclaim_assign_and_complete(api):
    report = api.post("/instances", "laocai.quantri", json={
        "definition_key": "annual_report", "variant": "lao-cai", "unit_id": "laocai"}).json()
    head, staff = "laocai.xa.chutich", "laocai.xa.congchuc"
    [task] = api.get("/tasks", head, params={"scope": "candidate"}).json()["items"]
    assert task["element_id"] == "submit_report" and task["due_at"]
    assert sorted(task["candidates"]) == [head, staff]
    detail = api.get(f"/tasks/{task['id']}", staff).json()
    assert detail["form_schema"]["title"] == "Báo cáo kết quả thực hiện của đơn vị"
    assert detail["data"]["reporting_unit"] == "laocai.xa"
    claimed = api.post(f"/tasks/{task['id']}/claim", staff).json()
    assert claimed["assignee"] == staff
    assert api.get("/tasks", head, params={"scope": "candidate"}).json()["total"] == 0
    assert api.get("/tasks", staff, params={"scope": "mine"}).json()["total"] == 1
    is_problem(api.post(f"/tasks/{task['id']}/claim", head), 409, "conflict")
    body = is_problem(api.post(f"/tasks/{task['id']}/complete", head,
                               json={"data": {"report": {"summary": "x"}}}), 403, "forbidden")
    assert staff in body["detail"]
    is_problem(api.post(f"/tasks/{task['id']}/unclaim", head), 403, "forbidden")
    assert api.post(f"/tasks/{task['id']}/unclaim", staff).json()["assignee"] is None
    assigned = api.post(f"/tasks/{task['id']}/assign", "laocai.quantri",
                        json={"username": head}).json()
    assert assigned["assignee"] == head
    is_problem(api.post(f"/tasks/{task['id']}/assign", head, json={"username": head}), 403,
               "forbidden")
    body = is_problem(api.post(f"/tasks/{task['id']}/assign", "laocai.quantri",
                               json={"username": "ghost"}), 422, "invalid-data")
    assert body["errors"][0]["field"] == "username"
    body = is_problem(api.post(f"/tasks/{task['id']}/complete", head,
                               json={"data": {"report": {"proposals_submitted": -1}}}), 422,
                      "invalid-data")
    assert {e["field"] for e in body["errors"]} == {"report.proposals_submitted",
                                                    "report.summary"}
    done = api.post(f"/tasks/{task['id']}/complete", head,
                    json={"data": {"report": {"summary": "Đã báo cáo"}}})
    assert done.status_code == 200 and done.json()["id"] == report["id"]
    is_problem(api.post(f"/tasks/{task['id']}/complete", head,
                        json={"data": {"report": {"summary": "again"}}}), 409, "conflict")
    is_problem(api.get(f"/tasks/{task['id']}", "cantho.xa.chutich"), 404, "not-found")
    unit_view = api.get("/tasks", "laocai.sxd.pgd3", params={"scope": "unit"}).json()
    assert {t["unit_id"] for t in unit_view["items"]} == {"laocai.sxd"}


def test_overdue_filters(api, clock):
    from datetime import timedelta
    report = api.post("/instances", "laocai.quantri", json={
        "definition_key": "annual_report", "variant": "lao-cai", "unit_id": "laocai"}).json()
    assert api.get("/tasks", "laocai.xa.chutich", params={"overdue": "true"}).json()[
        "total"] == 0
    clock.advance(timedelta(days=400))
    late = api.get("/tasks", "laocai.xa.chutich", params={"overdue": "true"}).json()
    assert late["total"] == 1 and late["items"][0]["overdue"] is True
    overdue = api.get("/instances", "laocai.quantri", params={"overdue": "true"}).json()
    assert [i["id"] for i in overdue["items"]] == [report["id"]]


def test_administrator_repairs(api):
    instance = start(api, "laocai.sxd.qlxd.truongphong")
    path = f"/instances/{instance['id']}"
    is_problem(api.post(path + "/suspend", "laocai.sxd.qlxd.truongphong", json={}), 403,
               "forbidden")
    is_problem(api.post(path + "/suspend", "cantho.quantri", json={}), 404, "not-found")
    assert api.post(path + "/suspend", "laocai.quantri", json={"reason": "kiểm tra"}).json()[
        "status"] == "suspended"
    is_problem(api.post(path + "/suspend", "laocai.quantri", json={}), 409, "invalid-state")
    assert api.post(path + "/resume", "laocai.quantri").json()["status"] == "running"
    is_problem(api.post(path + "/retry", "laocai.quantri", json={}), 409, "invalid-state")
    body = is_problem(api.post(path + "/migrate", "laocai.quantri",
                               json={"definition_id": instance["definition_id"]}), 409,
                      "migration-refused")
    assert body["reasons"]
    is_problem(api.post(path + "/migrate", "laocai.quantri", json={"definition_id": 0}), 422,
               "invalid-data")
    assert api.post(path + "/terminate", "laocai.quantri", json={}).json()["status"] == \
        "terminated"
    actions = [e["action"] for e in api.get(path + "/events", "laocai.quantri").json()["items"]]
    assert [a for a in actions if a.startswith("instance_")] == [
        "instance_started", "instance_suspended", "instance_resumed", "instance_terminated"]


def test_messages_by_key_and_by_id(api):
    proposer = "laocai.sxd.qlxd.truongphong"
    instance = start(api, proposer, business_key="LC-MSG")
    complete(api, proposer, instance["id"], "submit_plan", plan())
    complete(api, "laocai.sxd.giamdoc", instance["id"], "screening",
             {**SCREENED, "is_complex": False})
    complete(api, "laocai.sxd.pgd1", instance["id"], "party_opinion", {"party_opinion": "agree"})
    # the head records the leadership meeting (Art. 8 k.1)
    complete(api, "laocai.sxd.giamdoc", instance["id"], "leadership_meeting", leadership_meeting(
        {v: "for" for v in ("laocai.sxd.giamdoc", "laocai.sxd.pgd1", "laocai.sxd.pgd2",
                            "laocai.sxd.pgd3")}, "2026-01-05"))
    complete(api, "laocai.sxd.giamdoc", instance["id"], "decide", {"decision": "approve"})
    unreasoned = is_problem(api.post("/messages", "laocai.sxd.giamdoc", json={
        "name": "implementation_suspended", "correlation_key": "LC-MSG"}), 422, "invalid-data")
    assert unreasoned["errors"][0]["field"] == "suspension_reason"       # Art. 6: reasons
    sent = api.post("/messages", "laocai.sxd.giamdoc",
                    json={"name": "implementation_suspended", "correlation_key": "LC-MSG",
                          "payload": {"suspension_reason": "Chờ kinh phí"}})
    assert sent.status_code == 200 and sent.json()["stage"] == "suspended"
    is_problem(api.post("/messages", "laocai.sxd.giamdoc",
                        json={"name": "implementation_suspended",
                              "instance_id": instance["id"]}), 404, "not-found")
    is_problem(api.post("/messages", "cantho.chutich",
                        json={"name": "x", "correlation_key": "LC-MSG"}), 404, "not-found")
    body = is_problem(api.post("/messages", "laocai.sxd.giamdoc", json={"name": "x"}), 422,
                      "invalid-data")
    assert body["errors"][0]["field"] == "instance_id"


def test_openapi_document_and_docs(api):
    spec = api.get("/openapi.json").json()
    assert spec["info"]["title"] == "ND73 Workflow API"
    assert "/api/v1/tasks/{task_id}/complete" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    docs = api.get("/docs")
    assert docs.status_code == 200 and "/static/vendor/swagger-ui/" in docs.text
    bundle = requests.get(api.url + "/static/vendor/swagger-ui/swagger-ui-bundle.js",
                          timeout=10)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert requests.get(api.url + "/healthz", timeout=10).json() == {"status": "ok"}


def test_requests_build_no_schema_of_their_own(api, monkeypatch):
    # the schemas that check bodies and queries and shape answers are made when the routes
    # are declared (a few, nested ones, at their first use), not at every request
    import marshmallow
    proposer = "laocai.sxd.qlxd.truongphong"

    def requests_of_a_kind():
        instance = start(api, proposer)
        api.get("/instances", proposer, params={"status": "running", "page_size": 5})
        api.get("/definitions", proposer, params={"variant": "lao-cai"})
        api.get("/notifications", proposer)
        task = open_task(api, proposer, instance["id"], "submit_plan")
        is_problem(api.post(f"/tasks/{task['id']}/complete", proposer, json={"data": 5}), 422,
                   "invalid-data")
        complete(api, proposer, instance["id"], "submit_plan", plan())
        api.get(f"/instances/{instance['id']}", proposer)

    requests_of_a_kind()                # warm-up: nested schemas are made at first use
    made: list[str] = []
    original = marshmallow.Schema.__init__

    def counted(self, *args, **kwargs):
        made.append(type(self).__name__)
        original(self, *args, **kwargs)
    monkeypatch.setattr(marshmallow.Schema, "__init__", counted)
    requests_of_a_kind()
    assert made == []


def test_unknown_paths_and_methods_are_problems(api):
    is_problem(api.get("/nothing-here", "admin"), 404, "not-found")
    is_problem(api.call("DELETE", "/tasks", "admin"), 405, "method-not-allowed")


def test_nul_characters_are_refused_everywhere(api):
    is_problem(api.get("/instances", "admin", params={"variant": "lao\x00cai"}), 400,
               "malformed-request")
    is_problem(api.post("/auth/token", json={"username": "ad\u0000min", "password": "x"}), 400,
               "malformed-request")
    is_problem(api.post("/definitions/validate", "admin", data={"variant": "lao\x00"},
                        files={"files": ("a.bpmn", b"<x/>")}), 400, "malformed-request")
