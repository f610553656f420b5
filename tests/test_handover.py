"""A head's handover: when a new head (or acting head) takes office, the open tasks the one
before had *because of the position* (a lane's role found them as the unit's head) pass to
the new holder, at once for an appointment from today, on the first day for one from a later
day (the scheduler's round, on the engine's clock). Tasks that named them personally (their
own proposal) stay theirs. Each move is in the case's log and the new holder is told; the
administrator sees on the organisation's API which tasks moved, or will move."""
from __future__ import annotations

import re
import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from api.app import create_app
from api_client import LiveServer
from engine.org import DEFAULT_DEMO_PASSWORD
from engine.scheduler import Scheduler
from engine.store.models import Notification
from engine.workflow_engine import WorkflowEngine
from procedures import Case, as_user, deploy_library, plan
from test_membership_dates import local_midnight
from test_organisation import is_problem

ADMIN = "laocai.quantri"
HEAD = "laocai.sxd.giamdoc"            # head of the Department of Construction
NEW = "laocai.sxd.gd2"
PROPOSER = "laocai.sxd.qlxd.truongphong"


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine)
    server.call("PUT", f"/org/lao-cai/officials/{NEW}", ADMIN,
                json={"full_name": "Hoàng Thị Mai"}).raise_for_status()
    yield server
    server.stop()


def heads_work(engine):
    """A division's proposal the head screens (found through the role: the unit's head), and
    the head's own proposal, still with him to submit (named personally: the proposer)."""
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [screening] = case.open("screening")
    assert case.candidates(screening) == [HEAD] and screening.positions == "head"
    own = Case.start(engine, "lao-cai", "proposal", HEAD)
    [mine] = own.open("submit_plan")
    assert own.candidates(mine) == [HEAD] and mine.positions == ""
    return case, screening, own, mine


def told(engine, username: str) -> list[tuple[str, str | None]]:
    with engine.db.reading() as session:
        return [(n.kind, n.task_id) for n in session.scalars(
            select(Notification).where(Notification.username == username)
            .order_by(Notification.id))]


def handovers(api) -> list[dict]:
    listed = api.get("/org/lao-cai/handovers", ADMIN)
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


def test_a_head_appointed_from_today_takes_the_positions_tasks_not_the_personal_ones(
        api, engine):
    case, screening, own, mine = heads_work(engine)
    engine.tasks.claim(screening.id, as_user(engine, HEAD))
    appointed = api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
                         json={"unit_id": "laocai.sxd", "position": "head"})
    assert appointed.status_code == 200, appointed.text
    assert [(r["task_id"], r["from"], r["to"], r["claimed"])
            for r in appointed.json()["reassigned"]] == [(screening.id, HEAD, NEW, True)]
    [moved] = case.open("screening")
    assert moved.assignee == NEW and case.candidates(moved) == [NEW]
    # his own proposal stays his
    assert own.candidates(own.open("submit_plan")[0]) == [HEAD]
    [entry] = case.audit("task_reassigned")
    assert (entry.actor, entry.details["task_id"], entry.details["from"],
            entry.details["to"], entry.details["reason"]) == (
        ADMIN, screening.id, HEAD, NEW, "org_membership_ended")
    assert not own.audit("task_reassigned")
    assert ("task_assigned", screening.id) in told(engine, NEW)
    # the administrator sees the handover and what moved
    [handover] = handovers(api)
    assert (handover["from"], handover["to"], handover["unit_id"], handover["position"],
            handover["status"], handover["effective_on"]) == (
        HEAD, NEW, "laocai.sxd", "head", "done", "2026-01-05")
    assert [t["task_id"] for t in handover["tasks"]] == [screening.id]


def test_a_head_appointed_from_a_later_day_takes_the_tasks_open_on_that_day(
        api, engine, clock):
    case, screening, own, mine = heads_work(engine)
    appointed = api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
                         json={"unit_id": "laocai.sxd", "position": "head",
                               "valid_from": "2026-02-01"})
    assert appointed.status_code == 200 and appointed.json()["reassigned"] == []
    # a proposal screened before the day goes to the head in office, and will move too
    later = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    later.do("submit_plan", plan("Số hoá hồ sơ đất đai"), by=PROPOSER)
    [second] = later.open("screening")
    assert later.candidates(second) == [HEAD]
    engine.tasks.claim(second.id, as_user(engine, HEAD))
    [pending] = handovers(api)
    assert (pending["status"], pending["effective_on"], pending["from"], pending["to"]) == (
        "pending", "2026-02-01", HEAD, NEW)
    assert sorted(t["task_id"] for t in pending["tasks"]) == sorted([screening.id,
                                                                     second.id])
    scheduler = Scheduler(engine, owner="s1", smtp=None)
    # the last moment of 31/01 in Hà Nội: nothing moves
    clock.set(local_midnight(date(2026, 2, 1)) - timedelta(seconds=1))
    scheduler.run_due()
    assert case.candidates(case.open("screening")[0]) == [HEAD]
    assert handovers(api)[0]["status"] == "pending"
    # 01/02: the scheduler's round hands the position's open tasks over
    clock.advance(seconds=1)
    scheduler.run_due()
    assert case.candidates(case.open("screening")[0]) == [NEW]
    [claimed] = later.open("screening")
    assert claimed.assignee == NEW and later.candidates(claimed) == [NEW]
    assert own.candidates(own.open("submit_plan")[0]) == [HEAD]       # his own stays
    [entry] = case.audit("task_reassigned")
    assert (entry.actor, entry.details["from"], entry.details["to"],
            entry.details["reason"], entry.details["position"]) == (
        "scheduler", HEAD, NEW, "org_handover", "head")
    assert ("task_available", screening.id) in told(engine, NEW)
    assert ("task_assigned", second.id) in told(engine, NEW)
    [done] = handovers(api)
    assert done["status"] == "done" and done["done_at"]
    assert sorted((t["task_id"], t["to"]) for t in done["tasks"]) == sorted(
        [(screening.id, NEW), (second.id, NEW)])
    log = [e["action"] for e in api.get("/org/lao-cai/log", ADMIN).json()["items"]]
    assert "org_handover_planned" in log and "org_handover_done" in log
    # once: another round (or another scheduler) moves nothing again
    assert Scheduler(engine, owner="s2", smtp=None).run_handovers() == 0
    assert len(case.audit("task_reassigned")) == 1
    # the new head acts on it
    assert NEW in case.candidates(case.open("screening")[0])


def test_a_handover_whose_appointment_changed_before_its_day_moves_nothing(
        api, engine, clock):
    case, screening, _, _ = heads_work(engine)
    api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
             json={"unit_id": "laocai.sxd", "position": "head",
                   "valid_from": "2026-02-01"}).raise_for_status()
    # the appointment is withdrawn before its day
    ended = api.post(f"/org/lao-cai/officials/{NEW}/memberships/end", ADMIN,
                     json={"unit_id": "laocai.sxd", "position": "head"})
    assert ended.status_code == 200, ended.text
    clock.set(local_midnight(date(2026, 2, 1)))
    assert Scheduler(engine, owner="s1", smtp=None).run_handovers() == 1
    assert case.candidates(case.open("screening")[0]) == [HEAD]
    [cancelled] = handovers(api)
    assert cancelled["status"] == "cancelled" and cancelled["tasks"] == []


def test_an_unknown_official_or_an_impossible_date_is_refused_and_changes_nothing(
        api, engine):
    case, screening, _, _ = heads_work(engine)
    unknown = is_problem(api.post("/org/lao-cai/officials/laocai.khong.co/memberships",
                                  ADMIN, json={"unit_id": "laocai.sxd",
                                               "position": "head"}), 404)
    assert unknown["code"] == "user.not_found"
    for dates in ({"valid_from": "2026-02-30"}, {"valid_from": "01/02/2026"}):
        bad = is_problem(api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
                                  json={"unit_id": "laocai.sxd", "position": "head",
                                        **dates}), 422)
        assert "valid_from" in str(bad)
    backwards = is_problem(api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
                                    json={"unit_id": "laocai.sxd", "position": "head",
                                          "valid_from": "2026-03-01",
                                          "valid_to": "2026-02-01"}), 422)
    assert backwards["code"] == "org.ends_before_start"
    assert "01/02/2026" in backwards["detail"]
    assert engine.org.members("laocai.sxd", ["head"]) == [HEAD]
    assert case.candidates(case.open("screening")[0]) == [HEAD]
    assert handovers(api) == []
    # only the variant's administrators see the handovers
    is_problem(api.get("/org/lao-cai/handovers", HEAD), 403)
    is_problem(api.get("/org/lao-cai/handovers", "cantho.quantri"), 403)


def test_the_organisation_page_shows_the_handover_to_come_and_its_tasks(api, engine):
    _, screening, _, _ = heads_work(engine)
    api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
             json={"unit_id": "laocai.sxd", "position": "head",
                   "valid_from": "2026-02-01"}).raise_for_status()
    client = create_app(engine, SECRET_KEY="test-secret").test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert client.post("/login", data={"username": ADMIN, "password": DEFAULT_DEMO_PASSWORD,
                                       "csrf_token": token}).status_code == 302
    assert "/admin/org/lao-cai/handovers" in client.get("/admin/org/lao-cai").get_data(
        as_text=True)
    page = client.get("/admin/org/lao-cai/handovers")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'data-status="pending"' in text and "01/02/2026" in text
    assert HEAD in text and NEW in text and screening.name in text
    assert "Sẽ bàn giao vào ngày hiệu lực" in text


def test_a_head_the_hr_spreadsheet_appoints_from_a_later_day_takes_over_on_that_day(
        api, engine, clock):
    case, screening, own, _ = heads_work(engine)
    sheet = ("username,full_name,email,phone,unit_id,position,valid_from,valid_to,active\n"
             f"{NEW},Hoàng Thị Mai,,,laocai.sxd,head,01/02/2026,,1\n").encode()
    applied = api.post("/org/lao-cai/import", ADMIN, files={"file": ("hr.csv", sheet)},
                       data={"apply": "1"})
    assert applied.status_code == 200 and applied.json()["applied"], applied.text
    assert applied.json()["reassigned"] == []              # not before the first day
    assert engine.org.members("laocai.sxd", ["head"]) == [HEAD]
    assert case.candidates(case.open("screening")[0]) == [HEAD]
    [pending] = handovers(api)
    assert (pending["status"], pending["effective_on"], pending["to"]) == (
        "pending", "2026-02-01", NEW)
    clock.set(local_midnight(date(2026, 2, 1)))
    Scheduler(engine, owner="s1", smtp=None).run_due()
    assert engine.org.members("laocai.sxd", ["head"]) == [NEW]
    assert case.candidates(case.open("screening")[0]) == [NEW]
    assert own.candidates(own.open("submit_plan")[0]) == [HEAD]
    assert [t["task_id"] for t in handovers(api)[0]["tasks"]] == [screening.id]


def test_two_schedulers_racing_carry_a_handover_out_once(api, engine, database_url, clock):
    case, screening, _, _ = heads_work(engine)
    api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
             json={"unit_id": "laocai.sxd", "position": "head",
                   "valid_from": "2026-02-01"}).raise_for_status()
    clock.set(local_midnight(date(2026, 2, 1)))
    other = WorkflowEngine(database_url, clock=clock)      # a second scheduler process
    start = threading.Barrier(2)
    results: list[int] = []

    def run(each) -> None:
        start.wait()
        results.append(Scheduler(each, owner=f"s{id(each)}", smtp=None).run_handovers())
    try:
        threads = [threading.Thread(target=run, args=(e,)) for e in (engine, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        other.close()
    assert sorted(results) == [0, 1]
    assert [e.details["to"] for e in case.audit("task_reassigned")] == [NEW]
    assert case.candidates(case.open("screening")[0]) == [NEW]
    assert told(engine, NEW).count(("task_available", screening.id)) == 1


def test_an_appointment_re_dated_before_its_day_hands_over_on_the_new_day(api, engine, clock):
    case, _, _, _ = heads_work(engine)
    for day in ("2026-02-01", "2026-03-01"):
        api.post(f"/org/lao-cai/officials/{NEW}/memberships", ADMIN,
                 json={"unit_id": "laocai.sxd", "position": "head",
                       "valid_from": day}).raise_for_status()
    [pending] = handovers(api)
    assert pending["effective_on"] == "2026-03-01"
    clock.set(local_midnight(date(2026, 2, 1)))
    assert Scheduler(engine, owner="s1", smtp=None).run_handovers() == 0
    assert case.candidates(case.open("screening")[0]) == [HEAD]
    clock.set(local_midnight(date(2026, 3, 1)))
    assert Scheduler(engine, owner="s1", smtp=None).run_handovers() == 1
    assert case.candidates(case.open("screening")[0]) == [NEW]
