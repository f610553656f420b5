"""Cần Thơ's registration of proposal contents (Kế hoạch 88/KH-UBND, mục II.3), a
procedure added as files only (processes/can-tho/registration.bpmn, its forms, settings
and notification templates): it runs through the REST API and the web app, its decisions
are recorded and counted in the city's annual report, and its proposer is told, all as
the files declare."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook

from api_client import LiveServer
from browser import chromium_page, sign_in
from engine.scheduler import SCHEDULER

from procedures import Case, as_user, deploy_library

DIVISION_HEAD = "cantho.sxd.qlxd.truongphong"     # under his agency: to its director
DIRECTOR = "cantho.sxd.giamdoc"                   # under the city: via Sở Nội vụ
HOME_AFFAIRS = "cantho.snv.giamdoc"
CHAIRMAN = "cantho.chutich"
REGISTRATION = {"title": "Một cửa số cấp phép xây dựng", "field_of_work": "chuyen_doi_so",
                "bottleneck": "Hồ sơ giấy đi qua ba phòng", "solution": "Tiếp nhận và "
                "luân chuyển hồ sơ cấp phép trên một cửa số duy nhất"}


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def server(engine, clock):
    clock.set(utc(2026, 3, 2, 2, 0))
    deploy_library(engine)
    live = LiveServer(engine)
    yield live
    live.stop()


def open_task(server, user, element_id, instance_id):
    listed = server.get(f"/tasks?scope=candidate&instance_id={instance_id}", user)
    assert listed.status_code == 200, listed.text
    tasks = [t for t in listed.json()["items"] if t["element_id"] == element_id]
    assert tasks, f"{user} has no open {element_id}: {listed.json()}"
    return tasks[0]


def kinds(server, user) -> list[str]:
    return [n["kind"] for n in server.get("/notifications", user).json()["items"]]


def test_a_registration_is_received_by_the_agency_head_through_the_api(server, engine):
    started = server.post("/instances", DIVISION_HEAD, json={
        "definition_key": "registration", "variant": "can-tho", "business_key": "DK-1"})
    assert started.status_code == 201, started.text
    case_id = started.json()["id"]
    task = open_task(server, DIVISION_HEAD, "register", case_id)
    assert server.post(f"/tasks/{task['id']}/complete", DIVISION_HEAD,
                       json={"data": REGISTRATION}).status_code == 200
    review = open_task(server, DIRECTOR, "review_registration", case_id)
    # working days: 02/03/2026 (Monday) + 5 → Monday 09/03, close of office
    assert review["due_at"].startswith("2026-03-09T")
    done = server.post(f"/tasks/{review['id']}/complete", DIRECTOR,
                       json={"data": {"registration_decision": "accept"}})
    assert done.status_code == 200, done.text
    case = Case(engine, engine.runtime.get(case_id))
    assert case.instance.stage == "approved" and case.instance.status == "completed"
    assert case.instance.latest_decision == "accept"
    assert case.decisions() == [("registration_decision", "accept", DIRECTOR)]
    assert "registration_accepted" in kinds(server, DIVISION_HEAD)
    assert "registration_returned" not in kinds(server, DIVISION_HEAD)


def test_a_city_leaders_registration_goes_via_home_affairs_and_a_return_needs_reasons(
        server, engine):
    started = server.post("/instances", DIRECTOR, json={
        "definition_key": "registration", "variant": "can-tho"})
    case_id = started.json()["id"]
    task = open_task(server, DIRECTOR, "register", case_id)
    server.post(f"/tasks/{task['id']}/complete", DIRECTOR, json={"data": REGISTRATION})
    forward = open_task(server, HOME_AFFAIRS, "home_affairs_receive", case_id)
    server.post(f"/tasks/{forward['id']}/complete", HOME_AFFAIRS,
                json={"data": {"dossier_complete": True, "review_note": "Trình"}})
    review = open_task(server, CHAIRMAN, "review_registration", case_id)
    refused = server.post(f"/tasks/{review['id']}/complete", CHAIRMAN,
                          json={"data": {"registration_decision": "return"}})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["review_note"]
    assert "lý do" in refused.json()["errors"][0]["message"]
    assert Case(engine, engine.runtime.get(case_id)).open_elements() == [
        "review_registration"]                                   # nothing was written
    returned = server.post(f"/tasks/{review['id']}/complete", CHAIRMAN, json={
        "data": {"registration_decision": "return", "review_note": "Bổ sung điểm nghẽn"}})
    assert returned.status_code == 200
    instance = engine.runtime.get(case_id)
    assert instance.stage == "rejected" and instance.latest_decision == "return"
    assert "registration_returned" in kinds(server, DIRECTOR)


def test_registrations_count_in_the_city_annual_report(server, engine, clock):
    for user in (DIVISION_HEAD, "cantho.sxd.qhkt.truongphong"):
        case = Case.start(engine, "can-tho", "registration", user)
        case.do("register", REGISTRATION, by=user)
        case.do("review_registration", {"registration_decision": "accept"}, by=DIRECTOR)
    clock.set(utc(2026, 11, 16, 1, 0))
    cycle = Case.start(engine, "can-tho", "annual_report", SCHEDULER,
                       data={"proposer_unit": "cantho"})
    prefilled = {t.unit_id: engine.runtime.task_data(t.id)["report"]
                 for t in cycle.open("submit_report")}
    assert prefilled["cantho.sxd"]["registrations"] == 2
    assert prefilled["cantho.sxd"]["proposals_submitted"] == 0
    for task in cycle.open("submit_report"):
        report = {**engine.runtime.task_data(task.id)["report"], "summary": "Đã rà soát"}
        user = Case(engine, cycle.instance).candidates(task)[0]
        engine.runtime.complete_task(task.id, {"report": report},
                                     principal=as_user(engine, user))
    cycle.do("consolidate", {"summary": "Tổng hợp", "document_number": "15/BC-SNV"})
    sheet = load_workbook(io.BytesIO(server.get(
        f"/reports/{cycle.id}.xlsx", "cantho.quantri").content)).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    header = next(r for r in rows if r[0] == "TT")
    column = header.index("Số nội dung đề xuất được đăng ký")
    [department] = [r for r in rows if r[1] == "Sở Xây dựng"]
    assert department[column] == 2


def test_an_official_registers_and_the_head_receives_it_in_the_web_app(server, engine):
    with chromium_page() as page:
        for user in (DIVISION_HEAD, DIRECTOR):
            sign_in(page, server, user)
            if user == DIVISION_HEAD:
                page.get_by_role("link", name="Tạo mới").click()
                page.locator("button[data-start='registration']").click()
                page.wait_for_url(re.compile(r".*/tasks/.+"))
                assert page.locator("h1").inner_text() == "Đăng ký nội dung đề xuất"
                page.locator("#f-title").fill(REGISTRATION["title"])
                page.locator("#f-field_of_work").select_option("chuyen_doi_so")
                page.locator("#f-bottleneck").fill(REGISTRATION["bottleneck"])
                page.locator("#f-solution").fill(REGISTRATION["solution"])
                page.get_by_role("button", name="Gửi").click()
                page.wait_for_url(re.compile(r".*/instances/.+"))
            else:
                page.get_by_role("link", name="Tiếp nhận đăng ký nội dung đề xuất").first.click()
                page.locator("#f-registration_decision").select_option("accept")
                page.get_by_role("button", name="Gửi").click()
                page.wait_for_url(re.compile(r".*/instances/.+"))
    [instance] = engine.queries.instances(engine.access.principal(DIVISION_HEAD),
                                          _by(DIVISION_HEAD)).items
    assert instance.definition_key == "registration" and instance.stage == "approved"


def _by(user):
    from engine.queries import InstanceFilters
    return InstanceFilters(started_by=user)
