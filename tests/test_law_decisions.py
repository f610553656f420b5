"""Decree 73/2023/NĐ-CP, the decisions around an approved proposal and the data its forms take:
who may suspend, continue or terminate it (Điều 6), the encouragement measures (Điều 10), the
people and dates a form names, and how notifications address officials. One scenario per
rule, through the API, in every variant it concerns."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api_client import LiveServer
from browser import CHROMIUM, chromium_page, sign_in
from conftest import PROJECT
from procedures import PREFIX, VARIANTS, Case, deploy_library, evaluation_meeting, \
    implement_and_evaluate, on_day, plan, to_decision
from test_documents import _lines, assert_in_order, documents_of


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine)
    yield server
    server.stop()


def _approved(engine, variant, proposer, business_key):
    case = to_decision(engine, variant, proposer, business_key=business_key)
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    assert case.open_elements() == ["implement"]
    return case


def _message(api, user, case, name, payload):
    return api.post("/messages", user, json={"name": name, "instance_id": case.id,
                                             "payload": payload})


def _told(api, user, case, words: str) -> list[dict]:
    """The notifications ``user`` got about ``case`` whose title says ``words``."""
    return [n for n in api.get("/notifications", user).json()["items"]
            if n["instance_id"] == case.id and words in n["title"]]


# --- Điều 6: suspending, continuing or terminating is the employing agency's decision -----

@pytest.mark.parametrize("variant", VARIANTS)
def test_art6_only_the_head_or_the_approver_suspends_continues_or_terminates(api, engine,
                                                                             variant):
    p = PREFIX[variant]
    proposer, head = f"{p}.sxd.qlxd.truongphong", f"{p}.sxd.giamdoc"
    case = _approved(engine, variant, proposer, f"{p.upper()}-A6")
    for sender in (proposer, f"{p}.sxd.pgd2"):        # the proposer, a deputy: not theirs
        refused = _message(api, sender, case, "implementation_suspended",
                           {"suspension_reason": "Tự dừng"})
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert body["code"] == "refused.message_sender" and "Điều 6" in body["detail"]
        assert case.open_elements() == ["implement"]            # nothing moved
    unreasoned = _message(api, head, case, "implementation_suspended",
                          {"suspension_reason": " "})
    assert unreasoned.status_code == 422
    assert unreasoned.json()["errors"][0]["field"] == "suspension_reason"
    sent = _message(api, head, case, "implementation_suspended",
                    {"suspension_reason": "Chờ bố trí kinh phí"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["stage"] == "suspended"
    [entry] = case.audit("message_received")
    assert entry.actor == head and entry.details["payload"]["suspension_reason"] == \
        "Chờ bố trí kinh phí"
    [told] = _told(api, proposer, case, "tạm dừng")
    assert "Chờ bố trí kinh phí" in told["body"]
    assert re.search(r"Quyết định tạm dừng thực hiện đề xuất số \d+/QĐ-\w+ ngày ", told["body"])
    assert told["body"].startswith("Kính gửi đồng chí ")
    # continuing is the head's decision too, with its reasons
    [review] = case.open("suspension_review")
    assert case.candidates(review) == [head]
    case.do("suspension_review", {"continue_decision": "resume",
                                   "continue_reason": "Đã có kinh phí"}, by=head)
    assert case.open_elements() == ["implement"]
    [told] = _told(api, proposer, case, "tiếp tục")
    assert "Đã có kinh phí" in told["body"]
    # the three decisions share one part of the templates (_implementation_decision.*)
    assert "đề xuất của đồng chí (hồ sơ " in told["body"]
    assert "được tiếp tục thực hiện." in told["body"]
    refused = _message(api, proposer, case, "implementation_terminated",
                       {"termination_reason": "Không làm nữa"})
    assert refused.status_code == 403
    ended = _message(api, head, case, "implementation_terminated",
                     {"termination_reason": "Không còn phù hợp"})
    assert ended.status_code == 200 and ended.json()["stage"] == "terminated"
    [told] = _told(api, proposer, case, "chấm dứt")
    assert "chấm dứt thực hiện." in told["body"]
    # the termination's reasons, and those of the earlier decision to continue
    assert "Lý do: Không còn phù hợp\n\nLý do: Đã có kinh phí" in told["body"]


def test_art6_when_the_head_proposed_the_approver_decides_not_the_head(api, engine):
    head = "mau.sxd.giamdoc"                         # the head's own proposal (Art. 7 k.4)
    case = _approved(engine, "national", head, "MAU-A6-HEAD")
    approver = case.audit("task_completed")[-1].actor
    assert approver == "mau.chutich"                  # the head of the superior agency
    refused = _message(api, head, case, "implementation_terminated",
                       {"termination_reason": "Tự chấm dứt"})
    assert refused.status_code == 403 and refused.json()["code"] == "refused.message_sender"
    ended = _message(api, approver, case, "implementation_terminated",
                     {"termination_reason": "Không còn phù hợp"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["stage"] == "terminated"


# --- bad input: people who are nobody of the organisation, dates in the wrong order --------

def _complete(api, user, case, element_id, data):
    tasks = api.get("/tasks", user, params={"instance_id": case.id}).json()["items"]
    [task] = [t for t in tasks if t["element_id"] == element_id]
    return api.post(f"/tasks/{task['id']}/complete", user, json={"data": data})


def _refused_field(response) -> dict:
    """The one field error of a 422: its field, and its words in Vietnamese."""
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    return error


@pytest.mark.parametrize("variant", VARIANTS)
def test_forms_refuse_unknown_people_and_dates_out_of_order(api, engine, variant):
    p = PREFIX[variant]
    proposer, head = f"{p}.sxd.qlxd.truongphong", f"{p}.sxd.giamdoc"
    # an end before the start (the plan, Art. 7)
    drafting = Case.start(engine, variant, "proposal", proposer, business_key=f"{p}-DATES")
    error = _refused_field(_complete(api, proposer, drafting, "submit_plan",
                                     plan(start_date="2026-12-01", end_date="2026-11-30")))
    assert error["field"] == "end_date"
    assert error["message"] == "Không được trước “Ngày bắt đầu” (01/12/2026)"
    # implementers: people of the organisation, never an unknown name nor another
    # province's official (their task would have nobody who can do it)
    case = to_decision(engine, variant, proposer, business_key=f"{p}-PEOPLE")
    case.vote({v: "for" for v in case.voters()})
    stranger = "cantho.sxd.giamdoc" if variant != "can-tho" else "mau.sxd.giamdoc"
    for nobody in ("khong.co.ai", stranger):
        error = _refused_field(_complete(api, head, case, "decide", {
            "decision": "approve", "implementers": [proposer, nobody]}))
        assert error["field"] == "implementers" and nobody in error["message"]
        assert "không phải là người trong tổ chức" in error["message"]
    colleague = f"{p}.sxd.qhkt.truongphong"
    assert _complete(api, head, case, "decide", {
        "decision": "approve", "implementers": [proposer, colleague]}).status_code == 200
    [implement] = case.open("implement")
    assert case.candidates(implement) == sorted([proposer, colleague])
    # a completion date the engine clock has not reached yet
    assert engine.clock.now().date().isoformat() < "2027-03-19"
    error = _refused_field(_complete(api, colleague, case, "implement",
                                     {"finished_on": "2027-03-19"}))
    assert error["field"] == "finished_on" and "chưa đến" in error["message"]
    on_day(engine, "2027-03-19")
    assert _complete(api, colleague, case, "implement",
                     {"finished_on": "2027-03-19"}).status_code == 200


@pytest.mark.parametrize("variant", VARIANTS)
def test_council_members_are_people_of_the_organisation(api, engine, variant):
    p = PREFIX[variant]
    case = to_decision(engine, variant, f"{p}.sxd.qlxd.truongphong", complex_=True,
                       business_key=f"{p}-COUNCIL")
    experts = [f"{p}.chuyengia{i}" for i in range(1, 6)]
    if case.open("advise_council"):                     # Lào Cai: Sở Nội vụ advises
        adviser = f"{p}.snv.giamdoc"
        error = _refused_field(_complete(api, adviser, case, "advise_council", {
            "advised_members": [*experts, "ai.do"], "advice_note": "Đề nghị"}))
        assert error["field"] == "advised_members" and "ai.do" in error["message"]
        case.do("advise_council", {"advised_members": experts, "advice_note": "Đề nghị"},
                by=adviser)
    [setup] = case.open("form_council")
    [former] = case.candidates(setup)
    error = _refused_field(_complete(api, former, case, "form_council", {
        "council_chair": "chu.tich.gia", "council_secretary": experts[1],
        "council_members": experts}))
    assert error["field"] == "council_chair" and "chu.tich.gia" in error["message"]
    error = _refused_field(_complete(api, former, case, "form_council", {
        "council_chair": experts[0], "council_secretary": experts[1],
        "council_members": [*experts[:4], "thanh.vien.ma"]}))
    assert error["field"] == "council_members" and "thanh.vien.ma" in error["message"]
    assert _complete(api, former, case, "form_council", {
        "council_chair": experts[0], "council_secretary": experts[1],
        "council_members": experts}).status_code == 200


# --- Điều 10: the measures, commendation proposed, implementers and organisations -----------

ART10_MEASURES = ["praise", "commendation", "priority_classification", "priority_planning",
                  "priority_appointment", "priority_reappointment", "priority_transfer",
                  "priority_rotation", "outstanding_achievement", "early_salary_step"]


def test_art10_the_form_offers_every_measure_of_the_decree():
    schema = json.loads((PROJECT / "forms" / "recognition.schema.json").read_text("utf-8"))
    measures = schema["properties"]["measures"]
    assert measures["items"]["enum"] == ART10_MEASURES
    labels = list(measures["x-enum-labels"].values())
    for term in ("Biểu dương", "xếp loại", "quy hoạch", "bổ nhiệm", "bổ nhiệm lại",
                 "điều động", "luân chuyển", "thành tích xuất sắc", "Nâng bậc lương"):
        assert any(label.endswith(term) or f"{term} " in label or f"{term}," in label
                   for label in labels), term
    # commendation is proposed to the competent authority, never granted by the head
    assert measures["x-enum-labels"]["commendation"] == "Đề nghị cấp có thẩm quyền khen thưởng"


@pytest.mark.parametrize("variant", VARIANTS)
def test_art10_implementers_and_organisations_are_recognised_and_commendation_proposed(
        api, engine, variant):
    p = PREFIX[variant]
    proposer, head = f"{p}.sxd.qlxd.truongphong", f"{p}.sxd.giamdoc"
    colleague = f"{p}.sxd.qhkt.truongphong"
    case = to_decision(engine, variant, proposer, business_key=f"{p}-A10")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve", "implementers": [proposer, colleague]}, by=head)
    implement_and_evaluate(case, "completed", proposer)
    # organisations are units chosen from the organisation (their ids), not typed names
    recognition = {"measures": ART10_MEASURES, "months_early": 12,
                   "recognised_people": [colleague],
                   "recognised_organisations": [f"{p}.sxd.qlxd"]}
    error = _refused_field(_complete(api, head, case, "recognition", {
        **recognition, "recognised_people": [colleague, "nguoi.la"]}))
    assert error["field"] == "recognised_people" and "nguoi.la" in error["message"]
    other = "laocai.sxd.qlxd" if variant != "lao-cai" else "daklak.sxd.qlxd"
    for unknown in ("Phòng Quản lý xây dựng", other):        # a typed name, another province's
        error = _refused_field(_complete(api, head, case, "recognition", {
            **recognition, "recognised_organisations": [f"{p}.sxd.qlxd", unknown]}))
        assert (error["field"], error["code"], error["params"]) == (
            "recognised_organisations", "form.unknown_unit", {"value": unknown})
        assert f"“{unknown}” không phải là cơ quan, đơn vị trong tổ chức" in error["message"]
    assert case.open_elements() == ["recognition"]
    assert _complete(api, head, case, "recognition", recognition).status_code == 200
    # the case file shows the unit by its name
    file = api.get(f"/instances/{case.id}/dossier", head).json()
    [step] = [s for s in file["steps"] if s.get("element_id") == "recognition"]
    [organisations] = [f for f in step["fields"] if f["name"] == "recognised_organisations"]
    assert (organisations["value"], organisations["text"], organisations["kind"]) == (
        [f"{p}.sxd.qlxd"], "Phòng Quản lý xây dựng", "list")
    assert case.instance.stage == "recognised"
    issued = documents_of(engine, case, head)
    colleague_name = engine.access.principal(colleague).full_name
    decision = _lines(issued["quyet_dinh_cong_nhan.docx"][1])
    assert_in_order(decision, [
        "Điều 1. Công nhận", "- biểu dương;", "- đề nghị cấp có thẩm quyền khen thưởng;",
        "- ưu tiên khi đánh giá, xếp loại chất lượng;", "- ưu tiên khi xem xét quy hoạch;",
        "- ưu tiên khi xem xét bổ nhiệm;", "- ưu tiên khi xem xét bổ nhiệm lại;",
        "- ưu tiên khi xem xét điều động;", "- ưu tiên khi xem xét luân chuyển;",
        "- xem xét là thành tích xuất sắc khi nâng ngạch, thăng hạng;",
        "- nâng bậc lương trước thời hạn;", "Nâng bậc lương trước thời hạn 12 tháng.",
        f"Cá nhân cùng được công nhận: {colleague_name}.",
        "Tập thể, tổ chức được công nhận: Phòng Quản lý xây dựng.",
        "Việc khen thưởng do cấp có thẩm quyền xem xét, quyết định theo đề nghị",
        "Điều 2."])
    proposal = _lines(issued["de_nghi_khen_thuong.docx"][1])
    assert_in_order(proposal, ["đề nghị cấp có thẩm quyền xem xét khen thưởng",
                               f"Cá nhân cùng được công nhận: {colleague_name}."])
    [told] = _told(api, proposer, case, "công nhận")
    assert "đề nghị cấp có thẩm quyền xem xét khen thưởng" in told["body"]
    assert told["body"].startswith("Kính gửi đồng chí ")


@pytest.mark.parametrize("variant", VARIANTS)
def test_forms_refuse_a_meeting_that_has_not_happened_yet(api, engine, variant):
    """The evaluation meeting's date, like every date of something that happened (a meeting,
    a report sent), is not later than today on the engine clock (``x-not-after: today``)."""
    p = PREFIX[variant]
    proposer, head = f"{p}.sxd.qlxd.truongphong", f"{p}.sxd.giamdoc"
    case = _approved(engine, variant, proposer, f"{p}-FUTURE")
    on_day(engine, "2027-06-30")
    case.do("implement", {"finished_on": "2027-06-30"}, by=proposer)
    case.do("report_completion", {"result_summary": "Xong"}, by=proposer)
    case.do("party_evaluation_opinion", {"party_opinion": "agree"})
    record = evaluation_meeting(case, "completed", "2027-07-01")      # tomorrow
    error = _refused_field(_complete(api, head, case, "evaluate", record))
    assert (error["field"], error["code"]) == ("meeting_date", "form.date_after_today")
    assert error["message"] == "Ngày này chưa đến: không được sau hôm nay (30/06/2027)"
    assert case.open_elements() == ["evaluate"]
    assert _complete(api, head, case, "evaluate", {**record, "meeting_date": "2027-06-30"}
                     ).status_code == 200


def test_forms_date_what_happened_no_later_than_today():
    """Every date a form records of something that happened carries ``x-not-after: today``."""
    happened = {"completion_notice": "finished_on", "leadership_meeting": "meeting_date",
                "evaluation": "meeting_date", "consolidated_report": "sent_on",
                "ministry_report": "ministry_sent_on"}
    for form, field in happened.items():
        schema = json.loads((PROJECT / "forms" / f"{form}.schema.json").read_text("utf-8"))
        assert schema["properties"][field]["x-not-after"] == "today", form
    # the leadership meeting needs no rule of its own for it any more
    bpmn = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text("utf-8")
    assert 'nd73:validation field="meeting_date"' not in bpmn


# --- notifications address officials as "Đồng chí" ----------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_notifications_address_officials_as_dong_chi(variant):
    """Every template a variant deploys (its own and those it inherits) greets the official as
    "đồng chí", itself or in the shared part it includes, and never as "Anh/Chị"; so does the
    message used when a kind has none."""
    from engine.notifications.templates import GENERIC
    folders = [PROJECT / "processes" / variant]
    if variant != "national":
        folders.append(PROJECT / "processes" / "national")
    bodies = {path.name: path.read_text("utf-8") for folder in reversed(folders)
              for path in sorted((folder / "notifications").glob("*"))
              if (folder / "notifications").is_dir()}
    assert bodies
    for name, text in bodies.items():
        assert "anh/chị" not in text.lower(), name
        if not name.endswith(".subject.txt"):
            text += "".join(bodies[part] for part in re.findall(r'include "(_\w+\.\w+)"', text))
            assert "Kính gửi đồng chí {{ user.full_name }}" in text, name
    assert "Kính gửi đồng chí" in GENERIC["txt"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_web_the_implementers_are_chosen_from_the_organisation(api, engine):
    proposer, head = "mau.sxd.qlxd.truongphong", "mau.sxd.giamdoc"
    case = to_decision(engine, "national", proposer, business_key="MAU-WEB-PEOPLE")
    case.vote({v: "for" for v in case.voters()})
    [decide] = case.open("decide")
    with chromium_page() as page:
        sign_in(page, api, head)
        page.goto(f"{api.url}/tasks/{decide.id}")
        field = page.locator("[data-field=implementers]")
        first = field.locator("input[name=implementers]").first
        assert first.get_attribute("list") == "people-directory"
        offered = page.locator("#people-directory option")
        assert offered.count() > 10
        assert page.locator("#people-directory option[value='mau.sxd.qlxd.truongphong']") \
            .count() == 1
        page.locator("select[name=decision]").select_option("approve")
        first.fill("khong.co.ai")
        page.get_by_role("button", name="Gửi").click()
        error = page.locator("[data-field=implementers] .error")
        assert "“khong.co.ai” không phải là người trong tổ chức" in error.inner_text()
        assert case.open_elements() == ["decide"]
        page.locator("[data-field=implementers] input[name=implementers]").first.fill(
            "mau.sxd.qlxd.truongphong")
        page.get_by_role("button", name="Gửi").click()
        page.wait_for_load_state()
    [implement] = case.open("implement")
    assert case.candidates(implement) == ["mau.sxd.qlxd.truongphong"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_web_rows_of_several_fields_people_and_units_are_drawn_and_submitted(api, engine):
    """The web form draws a list of rows ({member, assessment}) with a person picker in each
    row, rows added and removed, and a list of units chosen by name; it submits the JSON the
    form describes, and the case file shows the unit by its name."""
    proposer, head = "mau.sxd.qlxd.truongphong", "mau.sxd.giamdoc"
    case = _approved(engine, "national", proposer, "MAU-WEB-ROWS")
    on_day(engine, "2027-06-30")
    case.do("implement", {"finished_on": "2027-06-30"}, by=proposer)
    case.do("report_completion", {"result_summary": "Xong"}, by=proposer)
    case.do("party_evaluation_opinion", {"party_opinion": "agree"})
    members = case.data()["evaluation_members"]
    [evaluate] = case.open("evaluate")
    with chromium_page() as page:
        sign_in(page, api, head)
        page.goto(f"{api.url}/tasks/{evaluate.id}")
        page.locator("#f-meeting_date").fill("30/06/2027")
        attendees = page.locator("[data-rows=attendees]")
        rows = page.locator("[data-rows=member_assessments]")
        for index, member in enumerate(members):
            if index:
                attendees.locator("button.add-row").click()
                rows.locator("button.add-row").click()
            attendees.locator("input[name=attendees]").nth(index).fill(member)
            row = rows.locator(".row").nth(index)
            cell = row.locator("input[name='member_assessments.member']")
            assert cell.get_attribute("list") == "people-directory"      # a person picker
            cell.fill(member)
            row.locator("select[name='member_assessments.assessment']").select_option(
                "completed")
        # a row added by mistake is removed before sending
        rows.locator("button.add-row").click()
        rows.locator(".row").last.locator("input[name='member_assessments.member']").fill(
            "mau.chuyengia1")
        rows.locator(".row").last.locator("button.remove-row").click()
        assert rows.locator(".row").count() == len(members)
        page.locator("select[name=outcome]").select_option("completed")
        page.locator("textarea[name=evaluation_note]").fill("Hoàn thành tốt")
        page.get_by_role("button", name="Gửi").click()
        page.wait_for_url(lambda url: f"/tasks/{evaluate.id}" not in url)
        [notify] = case.open("notify_result")
        recorded = engine.runtime.task_data(notify.id)
        assert recorded["member_assessments"] == [{"member": m, "assessment": "completed"}
                                                  for m in members]
        assert recorded["attendees"] == members
        case.do("notify_result", {})
        [recognition] = case.open("recognition")
        page.goto(f"{api.url}/tasks/{recognition.id}")
        units = page.locator("[data-rows=recognised_organisations]")
        first = units.locator("select[name=recognised_organisations]").first
        offered = first.locator("option[value='mau.sxd.qhkt']")
        assert "Phòng Quy hoạch – Kiến trúc" in offered.inner_text()        # shown by name
        assert first.locator("option[value='laocai.sxd.qhkt']").count() == 0  # this province's
        first.select_option("mau.sxd.qhkt")
        units.locator("button.add-row").click()
        units.locator("select[name=recognised_organisations]").nth(1).select_option("mau.xa")
        page.get_by_label("Biểu dương").check()
        page.get_by_role("button", name="Gửi").click()
        page.wait_for_url(lambda url: f"/tasks/{recognition.id}" not in url)
        assert case.instance.stage == "recognised"
        page.goto(f"{api.url}/instances/{case.id}")
        assert "Phòng Quy hoạch – Kiến trúc; UBND xã Mẫu Sơn" in page.locator("body").inner_text()
    file = api.get(f"/instances/{case.id}/dossier", head).json()
    [step] = [s for s in file["steps"] if s.get("element_id") == "recognition"]
    [field] = [f for f in step["fields"] if f["name"] == "recognised_organisations"]
    assert field["value"] == ["mau.sxd.qhkt", "mau.xa"]
