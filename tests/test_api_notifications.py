"""The notification centre over HTTP: one's own notifications, unread first, marked read one
by one or all at once, and the e-mail preference."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.scheduler import Scheduler

from api_client import LiveServer
from procedures import SCREENED, Case, deploy_library, plan

PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"


@pytest.fixture
def api(engine):
    deploy_library(engine, ballots=True)          # the head's own ballot task
    server = LiveServer(engine)
    yield server
    server.stop()


def _two_tasks_for_the_head(engine) -> Case:
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-9")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=HEAD)
    case.do("party_opinion", {"party_opinion": "agree"})
    return case


def test_my_notifications_unread_first_and_marked_read(api, engine):
    case = _two_tasks_for_the_head(engine)
    listed = api.get("/notifications", HEAD).json()
    assert (listed["total"], listed["unread"], listed["page"]) == (2, 2, 1)
    newest, oldest = listed["items"]
    assert newest["id"] > oldest["id"] and newest["read_at"] is None
    [vote] = [t for t in case.open("leadership_vote") if HEAD in case.candidates(t)]
    assert newest["link"] == f"/tasks/{vote.id}" and newest["instance_id"] == case.id
    assert newest["title"].startswith("[ND73] Công việc mới: Thành viên tập thể lãnh đạo")
    assert newest["created_at"].endswith("+00:00")

    marked = api.post("/notifications/read", HEAD, json={"ids": [oldest["id"]]})
    assert marked.status_code == 200 and marked.json() == {"marked": 1, "unread": 1}
    listed = api.get("/notifications", HEAD).json()["items"]
    assert [n["id"] for n in listed] == [newest["id"], oldest["id"]]
    assert listed[1]["read_at"] is not None
    unread = api.get("/notifications", HEAD, params={"unread_only": "true"}).json()
    assert [n["id"] for n in unread["items"]] == [newest["id"]] and unread["total"] == 1
    page = api.get("/notifications", HEAD, params={"page": 2, "page_size": 1}).json()
    assert [n["id"] for n in page["items"]] == [oldest["id"]] and page["total"] == 2

    assert api.post("/notifications/read", HEAD, json={}).json() == {"marked": 1, "unread": 0}


def test_nobody_sees_or_marks_another_users_notifications(api, engine):
    _two_tasks_for_the_head(engine)
    [theirs, _] = api.get("/notifications", HEAD).json()["items"]
    assert api.get("/notifications", "laocai.sxd.pgd2").json()["items"] != []
    assert theirs["id"] not in [n["id"] for n in
                                api.get("/notifications", "laocai.sxd.pgd2").json()["items"]]
    refused = api.post("/notifications/read", "laocai.sxd.pgd2", json={"ids": [theirs["id"]]})
    assert refused.status_code == 404
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert api.get("/notifications", HEAD).json()["unread"] == 2        # nothing was marked
    assert api.post("/notifications/read", "admin", json={}).json()["marked"] == 0
    assert api.get("/notifications").status_code == 401


def test_email_preference(api):
    assert api.get("/me/notification-preference", HEAD).json() == {
        "mode": "immediate", "email": f"{HEAD}@demo.nd73.local"}
    changed = api.call("PUT", "/me/notification-preference", HEAD, json={"mode": "digest"})
    assert changed.status_code == 200 and changed.json()["mode"] == "digest"
    assert api.get("/me/notification-preference", HEAD).json()["mode"] == "digest"
    assert api.get("/me/notification-preference", PROPOSER).json()["mode"] == "immediate"
    bad = api.call("PUT", "/me/notification-preference", HEAD, json={"mode": "weekly"},
                   headers={"Accept-Language": "en"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "mode"
    assert bad.json()["title"] == "Invalid data"
    assert api.get("/me/notification-preference", HEAD).json()["mode"] == "digest"
    too_big = api.post("/notifications/read", HEAD, json={"ids": [2**40]})
    assert too_big.status_code == 422 and too_big.json()["errors"][0]["field"].startswith("ids")


def test_designers_upload_templates_like_bpmn(server, engine):
    # the library as the project ships it: the variant's kept dry-run scripts pass on it
    api = server
    bad = api.post("/definitions", "admin", data={"variant": "lao-cai"},
                   files={"files": ("reminder.txt", "Hạn: {{ task.due_at | date }\n".encode())})
    assert bad.status_code == 422
    assert [(p["file"], p["line"]) for p in bad.json()["problems"]] == [
        ("notifications/reminder.txt", 1)]
    subject = "[Lào Cai] Việc mới: {{ task.name }}"
    deployed = api.post("/definitions", "admin", data={"variant": "lao-cai"},
                        files={"files": ("task_available.subject.txt", subject.encode())})
    assert deployed.status_code == 201, deployed.text
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [item] = api.get("/notifications", HEAD).json()["items"]
    assert item["title"] == "[Lào Cai] Việc mới: Tiếp nhận, xem xét phạm vi và tính chất"
    assert item["body"].startswith("Kính gửi ")           # the other files were kept


def test_a_superior_head_told_of_an_overdue_step_may_open_it(api, engine, clock):
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-10")
    case.do("submit_plan", plan(), by=PROPOSER)
    [screening] = case.open("screening")
    assert api.get(f"/tasks/{screening.id}", "laocai.chutich").status_code == 404
    clock.set(datetime(2026, 1, 16, 10, 1, tzinfo=timezone.utc))   # reminded and escalated
    Scheduler(engine, owner="s1", smtp=None).run_due()
    [escalation] = [n for n in api.get("/notifications", "laocai.chutich").json()["items"]
                    if n["kind"] == "escalation"]
    assert escalation["link"] == f"/tasks/{screening.id}"
    assert api.get(f"/tasks/{screening.id}", "laocai.chutich").status_code == 200
    assert api.get(f"/instances/{case.id}", "laocai.chutich").status_code == 200
    assert api.post(f"/tasks/{screening.id}/complete", "laocai.chutich",
                    json={"data": {**SCREENED, "is_complex": False}}
                    ).status_code == 403   # see, not act
