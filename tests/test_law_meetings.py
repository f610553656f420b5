"""The leadership's vote is a meeting (Art. 8 k.1: the head chairs it): the chair or the
meeting's secretary records its date, who was present and each member's vote; the tally,
the rule applied and the result are part of the record, which the biên bản is made from.
Online ballots stay a variant setting. One scenario per rule, in every variant, through the
REST API and the web app."""
from __future__ import annotations

import io
import shutil
from datetime import datetime, timezone
from pathlib import Path

import docx
import pytest

from engine.errors import InvalidData

from api_client import LiveServer
from browser import CHROMIUM, chromium_page, sign_in
from conftest import PROJECT
from procedures import PREFIX, VARIANTS, as_user, deploy_library, leadership_meeting, \
    to_decision

NOW = datetime(2026, 3, 4, 3, 0, tzinfo=timezone.utc)       # Wednesday 04/03/2026, 10:00


@pytest.fixture
def library(engine, clock):
    clock.set(NOW)
    deploy_library(engine)
    return engine


def members(variant: str) -> tuple[str, list[str]]:
    """The chair (the department's head) and the deputies of the model department."""
    p = PREFIX[variant]
    return f"{p}.sxd.giamdoc", [f"{p}.sxd.pgd1", f"{p}.sxd.pgd2", f"{p}.sxd.pgd3"]


def meeting_case(library, variant, business_key="DX-M"):
    case = to_decision(library, variant, f"{PREFIX[variant]}.sxd.qlxd.truongphong",
                       business_key=business_key)
    assert case.open_elements() == ["leadership_meeting"]
    return case


def record_of(case) -> dict:
    [decide] = case.open("decide")
    return case.engine.runtime.task_data(decide.id)["meeting_record"]


def minutes(library, case, chair) -> list[str]:
    [meta] = [d for d in library.documents.of_instance(case.id, principal=as_user(library, chair))
              if d["template"] == "bien_ban_hop_lanh_dao.docx"]
    content = library.documents.docx(meta["id"], principal=as_user(library, chair))[1]
    return [p.text for p in docx.Document(io.BytesIO(content)).paragraphs if p.text.strip()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_the_meeting_is_recorded_by_its_chair_or_secretary_an_absent_member_does_not_block(
        library, variant):
    chair, deputies = members(variant)
    case = meeting_case(library, variant)
    [task] = case.open("leadership_meeting")
    p = PREFIX[variant]
    # the head who chairs, or the staff of the agency's office as the meeting's secretary
    assert case.candidates(task) == sorted([chair, f"{p}.sxd.vp.chanhvp",
                                            f"{p}.sxd.vp.chuyenvien"])
    # the secretary records it; one deputy is absent, and the meeting is not held up
    case.do("leadership_meeting", leadership_meeting(
        {chair: "for", deputies[0]: "for", deputies[1]: "for"}, "2026-03-03"),
        by=f"{p}.sxd.vp.chuyenvien")
    record = record_of(case)
    assert record["date"] == "2026-03-03" and record["chair"] == chair
    assert record["members"] == [
        {"member": chair, "present": True, "vote": "for"},
        {"member": deputies[0], "present": True, "vote": "for"},
        {"member": deputies[1], "present": True, "vote": "for"},
        {"member": deputies[2], "present": False, "vote": None}]
    assert (record["members_count"], record["present_count"], record["votes_for"],
            record["votes_against"], record["result"]) == (4, 3, 3, 0, "approved")
    assert "trên 50% tổng số thành viên" in record["rule"] and "khoản 1 Điều 8" in record["rule"]
    text = minutes(library, case, chair)
    assert any("Thời gian: 03/03/2026" in line for line in text), text
    assert any("3/4 thành viên" in line for line in text), text
    assert any(line.endswith("vắng mặt.") for line in text), text
    assert any(line.startswith("Nguyên tắc áp dụng: Đề xuất được thông qua khi có trên 50%")
               for line in text), text
    assert "Kết luận: đề xuất được thông qua." in text


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_more_than_half_of_all_members_not_of_those_present(library, variant):
    chair, deputies = members(variant)
    case = meeting_case(library, variant)
    case.vote({chair: "for", deputies[0]: "for"})         # 2 of 4: not more than half
    record = record_of(case)
    assert (record["votes_for"], record["members_count"], record["result"]) == (2, 4, "rejected")
    # the head may still approve in writing, with reasons (Art. 8 k.1)
    with pytest.raises(InvalidData):
        case.do("decide", {"decision": "approve"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_a_tie_follows_the_head_who_chairs(library, variant):
    chair, deputies = members(variant)
    carried = meeting_case(library, variant, "DX-T1")
    carried.vote({chair: "for", deputies[0]: "for", deputies[1]: "against",
                  deputies[2]: "against"})
    assert (record_of(carried)["result"], record_of(carried)["tie_carried"]) == ("approved", True)
    lost = meeting_case(library, variant, "DX-T2")
    lost.vote({chair: "against", deputies[0]: "against", deputies[1]: "for",
                deputies[2]: "for"})
    assert (record_of(lost)["result"], record_of(lost)["tie_carried"]) == ("rejected", False)


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_the_record_is_refused_with_unknown_people_or_a_future_date(library, variant):
    chair, deputies = members(variant)
    case = meeting_case(library, variant)
    stranger = f"{PREFIX[variant]}.xa.chutich"

    def refused(record: dict) -> dict:
        with pytest.raises(InvalidData) as error:
            case.do("leadership_meeting", record, by=chair)
        return {e["field"]: e["message"] for e in error.value.details["errors"]}

    errors = refused(leadership_meeting({chair: "for", stranger: "for"}, "2026-03-04"))
    assert stranger in errors["meeting_attendees"]
    assert "Không phải thành viên tập thể lãnh đạo" in errors["meeting_attendees"]
    errors = refused({**leadership_meeting({chair: "for"}, "2026-03-04"),
                      "meeting_for": [chair, deputies[0]]})        # not recorded as present
    assert deputies[0] in errors["meeting_for"]
    errors = refused({**leadership_meeting({chair: "for", deputies[0]: "for"}, "2026-03-04"),
                      "meeting_for": [chair]})                     # a member's vote missing
    assert "mỗi người một lần" in errors["meeting_for"]
    errors = refused(leadership_meeting({chair: "for"}, "2026-03-05"))     # tomorrow
    assert set(errors) == {"meeting_date"}
    assert case.open_elements() == ["leadership_meeting"]                  # nothing recorded


def test_art8_online_ballots_are_a_variant_setting(engine, clock, tmp_path):
    clock.set(NOW)
    settings = (PROJECT / "processes" / "national" / "variant.toml").read_text(encoding="utf-8")
    assert 'leadership = "meeting"' in settings
    deploy_library(engine)
    folder = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes", folder)
    with (folder / "dak-lak" / "variant.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[meetings]\nleadership = "ballots"\n')
    engine.repository.deploy_folder(folder / "dak-lak", "ci", PROJECT / "forms")
    chair, deputies = members("dak-lak")
    case = to_decision(engine, "dak-lak", "daklak.sxd.qlxd.truongphong")
    assert case.open_elements() == ["leadership_vote"] * 4        # one ballot per member
    case.vote({chair: "for", deputies[0]: "for", deputies[1]: "against", deputies[2]: "for"})
    record = record_of(case)
    assert (record["mode"], record["present_count"], record["votes_for"], record["result"]) == (
        "ballots", 4, 3, "approved")


def test_art8_the_meeting_record_through_the_api(library):
    chair, deputies = members("lao-cai")
    case = meeting_case(library, "lao-cai")
    [task] = case.open("leadership_meeting")
    server = LiveServer(library)
    try:
        answer = server.post(f"/tasks/{task.id}/complete", chair, json={"data": {
            **leadership_meeting({chair: "for", "laocai.xa.chutich": "for"}, "2026-03-04")}})
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["meeting_attendees"]
        assert "laocai.xa.chutich" in answer.json()["errors"][0]["message"]
        # a meeting that has not happened yet (tomorrow on the engine clock), and a username
        # that is nobody of the organisation, are refused, each naming its field
        answer = server.post(f"/tasks/{task.id}/complete", chair, json={"data": {
            **leadership_meeting({chair: "for", "khong.co.ai": "for"}, "2026-03-05")}})
        assert answer.status_code == 422, answer.text
        errors = {e["field"]: e for e in answer.json()["errors"]}
        assert set(errors) == {"meeting_date", "meeting_attendees", "meeting_for"}
        assert errors["meeting_date"]["code"] == "form.date_after_today"
        assert errors["meeting_date"]["message"] == (
            "Ngày này chưa đến: không được sau hôm nay (04/03/2026)")
        assert errors["meeting_attendees"]["code"] == "form.unknown_person"
        assert "“khong.co.ai” không phải là người trong tổ chức" in \
            errors["meeting_attendees"]["message"]
        assert case.open_elements() == ["leadership_meeting"]
        answer = server.post(f"/tasks/{task.id}/complete", chair, json={"data": {
            **leadership_meeting({chair: "for", deputies[0]: "against"}, "2026-03-04")}})
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    record = record_of(case)
    assert (record["votes_for"], record["votes_against"], record["result"],
            record["tie_carried"]) == (1, 1, "approved", True)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"chromium is not at {CHROMIUM}")
def test_web_the_head_records_the_meeting_and_sees_the_tally_and_result(library):
    chair, deputies = members("lao-cai")
    case = meeting_case(library, "lao-cai")
    [task] = case.open("leadership_meeting")
    server = LiveServer(library)
    try:
        with chromium_page(1280, 900) as page:
            sign_in(page, server, chair)
            page.goto(f"{server.url}/tasks/{task.id}")
            assert page.get_by_role("heading", name="Ghi biên bản họp tập thể lãnh đạo") \
                .is_visible()
            page.locator("#f-meeting_date").fill("03/03/2026")
            fill_list(page, "meeting_attendees", [chair, deputies[0], deputies[1], deputies[2]])
            fill_list(page, "meeting_for", [chair, deputies[0], deputies[1]])
            fill_list(page, "meeting_against", [deputies[2]])
            page.get_by_role("button", name="Gửi").click()
            page.wait_for_url(lambda url: f"/tasks/{task.id}" not in url)
            record = record_of(case)
            assert (record["present_count"], record["votes_for"], record["votes_against"],
                    record["result"]) == (4, 3, 1, "approved")
            # the case page lists the biên bản; its DOCX gives the tally, the rule, the result
            page.goto(f"{server.url}/instances/{case.id}")
            row = page.locator("[data-testid=document]").filter(
                has_text="Biên bản họp tập thể lãnh đạo")
            with page.expect_download() as download:
                row.get_by_role("link", name="DOCX").click()
            content = Path(download.value.path()).read_bytes()
            text = [p.text for p in docx.Document(io.BytesIO(content)).paragraphs]
            assert "Kết quả: 3 tán thành, 1 không tán thành trên tổng số 4 thành viên." in text
            assert "Kết luận: đề xuất được thông qua." in text
            assert any(line.startswith("Nguyên tắc áp dụng: Đề xuất được thông qua khi có trên "
                                       "50%") for line in text)
    finally:
        server.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"chromium is not at {CHROMIUM}")
def test_web_the_heads_office_records_the_meeting_and_the_case_moves_on(library):
    """The office's staff, as the meeting's secretary, records it in the web form: the date
    (a meeting not yet held is refused next to its field), the members present chosen from
    the organisation (one absent), each one's vote; the case goes on to the head's decision."""
    chair, deputies = members("dak-lak")
    secretary = "daklak.sxd.vp.chuyenvien"
    case = meeting_case(library, "dak-lak")
    [task] = case.open("leadership_meeting")
    server = LiveServer(library)
    try:
        with chromium_page(1280, 900) as page:
            sign_in(page, server, secretary)
            page.goto(f"{server.url}/tasks/{task.id}")
            attendees = page.locator("[data-rows=meeting_attendees] input").first
            assert attendees.get_attribute("list") == "people-directory"   # people offered
            offered = page.locator(f"#people-directory option[value='{deputies[0]}']")
            assert offered.text_content() == library.access.principal(deputies[0]).full_name
            page.locator("#f-meeting_date").fill("05/03/2026")             # tomorrow
            fill_list(page, "meeting_attendees", [chair, deputies[0], deputies[1]])
            fill_list(page, "meeting_for", [chair, deputies[0]])
            fill_list(page, "meeting_against", [deputies[1]])
            page.get_by_role("button", name="Gửi").click()
            error = page.locator("[data-field=meeting_date] .error")
            assert "Ngày này chưa đến: không được sau hôm nay (04/03/2026)" in \
                error.inner_text()
            assert case.open_elements() == ["leadership_meeting"]
            # what was typed is kept; the date is corrected and the record sent
            assert page.locator("[data-rows=meeting_for] input").nth(1).input_value() == \
                deputies[0]
            page.locator("#f-meeting_date").fill("04/03/2026")
            page.get_by_role("button", name="Gửi").click()
            page.wait_for_url(lambda url: f"/tasks/{task.id}" not in url)
    finally:
        server.stop()
    assert case.open_elements() == ["decide"]
    record = record_of(case)
    assert (record["date"], record["present_count"], record["votes_for"],
            record["votes_against"], record["result"]) == ("2026-03-04", 3, 2, 1, "rejected")
    assert {m["member"]: m["present"] for m in record["members"]}[deputies[2]] is False


def fill_list(page, field: str, values: list[str]) -> None:
    """Type usernames into a list field's rows, adding a row for each after the first."""
    rows = page.locator(f"[data-rows='{field}']")
    for index, value in enumerate(values):
        if index:
            rows.locator("button.add-row").click()
        rows.locator(f"input[name='{field}']").nth(index).fill(value)
