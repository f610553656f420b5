"""The leadership's vote is a meeting (Art. 8 k.1: the head chairs it): the chair or the
meeting's secretary records its date, who was present and each member's vote; the tally,
the rule applied and the result are part of the record, which the biên bản is made from.
The evaluation council's vote is a meeting too (Art. 8 k.2): its chair or secretary records
the members present and each one's opinion and vote, and the council's record gives the
tally, the rule and its recommendation. Online ballots stay a variant setting for both. One
scenario per rule, in every variant, through the REST API and the web app."""
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
from procedures import PREFIX, VARIANTS, as_user, council_meeting, deploy_library, \
    leadership_meeting, to_decision

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
    # each present member's row: their vote and their opinion, as the council's
    case.do("leadership_meeting", leadership_meeting(
        {chair: "for", deputies[0]: "for", deputies[1]: "for"}, "2026-03-03", "Ý kiến"),
        by=f"{p}.sxd.vp.chuyenvien")
    record = record_of(case)
    assert record["date"] == "2026-03-03" and record["chair"] == chair
    assert record["members"] == [
        *({"member": m, "present": True, "vote": "for", "opinion": f"Ý kiến của {m}"}
          for m in [chair, deputies[0], deputies[1]]),
        {"member": deputies[2], "present": False, "vote": None, "opinion": None}]
    assert (record["members_count"], record["present_count"], record["votes_for"],
            record["votes_against"], record["result"]) == (4, 3, 3, 0, "approved")
    assert "trên 50% tổng số thành viên" in record["rule"] and "khoản 1 Điều 8" in record["rule"]
    text = minutes(library, case, chair)
    assert any("Thời gian: 03/03/2026" in line for line in text), text
    assert any("3/4 thành viên" in line for line in text), text
    assert any(line.endswith("vắng mặt.") for line in text), text
    assert any(line.startswith("2. ") and line.endswith(f": tán thành; ý kiến: Ý kiến của "
                                                        f"{deputies[0]}.") for line in text), text
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
    record = leadership_meeting({chair: "for", deputies[0]: "for"}, "2026-03-04")
    errors = refused({**record, "meeting_attendees": [chair]})     # not recorded as present
    assert deputies[0] in errors["meeting_votes"]
    errors = refused({**record, "meeting_votes": record["meeting_votes"][:1]})   # one missing
    assert "mỗi người một lần" in errors["meeting_votes"]
    errors = refused({**record, "meeting_votes": record["meeting_votes"][:1] * 2})  # twice
    assert "mỗi người một lần" in errors["meeting_votes"]
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
    # ballots cast in an order of their own: each vote stays its member's, so a tie follows
    # the head who chairs
    tie = to_decision(engine, "dak-lak", "daklak.sxd.qlxd.truongphong", business_key="DX-T")
    votes = {deputies[0]: "against", deputies[1]: "against", chair: "for", deputies[2]: "for"}
    for member, vote in votes.items():          # the chair's ballot with a comment
        tie.do("leadership_vote", {"vote": vote, **({"vote_comment": "Cần thiết"}
                                                    if member == chair else {})}, by=member)
    record = record_of(tie)
    assert (record["votes_for"], record["result"], record["tie_carried"]) == (2, "approved", True)
    # the same rows as a recorded meeting's: member, vote, opinion (the ballot's comment)
    assert record["members"] == [{"member": m, "present": True, "vote": votes[m],
                                  "opinion": "Cần thiết" if m == chair else None}
                                 for m in [chair, *deputies]]


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
        assert set(errors) == {"meeting_date", "meeting_attendees", "meeting_votes"}
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
            fill_votes(page, {chair: "for", deputies[0]: "for", deputies[1]: "for",
                              deputies[2]: "against"}, {deputies[2]: "Chưa đủ kinh phí"})
            page.get_by_role("button", name="Gửi").click()
            page.wait_for_url(lambda url: f"/tasks/{task.id}" not in url)
            record = record_of(case)
            assert (record["present_count"], record["votes_for"], record["votes_against"],
                    record["result"]) == (4, 3, 1, "approved")
            assert [m["opinion"] for m in record["members"]] == [None, None, None,
                                                                 "Chưa đủ kinh phí"]
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
            fill_votes(page, {chair: "for", deputies[0]: "for", deputies[1]: "against"})
            page.get_by_role("button", name="Gửi").click()
            error = page.locator("[data-field=meeting_date] .error")
            assert "Ngày này chưa đến: không được sau hôm nay (04/03/2026)" in \
                error.inner_text()
            assert case.open_elements() == ["leadership_meeting"]
            # what was typed is kept; the date is corrected and the record sent
            rows = page.locator("[data-rows=meeting_votes] .row")
            assert rows.nth(1).locator("[name='meeting_votes.member']").input_value() == \
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


def fill_votes(page, votes: dict[str, str], opinions: dict[str, str] | None = None,
               field: str = "meeting_votes") -> None:
    """Each present member's row of a meeting's record (the leadership's ``meeting_votes``
    by default): member, vote, opinion."""
    rows = page.locator(f"[data-rows='{field}']")
    for index, (member, vote) in enumerate(votes.items()):
        if index:
            rows.locator("button.add-row").click()
        row = rows.locator(".row").nth(index)
        row.locator(f"[name='{field}.member']").fill(member)
        row.locator(f"[name='{field}.vote']").select_option(vote)
        if (opinions or {}).get(member):
            row.locator(f"[name='{field}.opinion']").fill(opinions[member])


def fill_list(page, field: str, values: list[str]) -> None:
    """Type usernames into a list field's rows, adding a row for each after the first."""
    rows = page.locator(f"[data-rows='{field}']")
    for index, value in enumerate(values):
        if index:
            rows.locator("button.add-row").click()
        rows.locator(f"input[name='{field}']").nth(index).fill(value)


# --- Art. 8 k.2: the evaluation council's vote is a meeting too ---------------------------------

def council_members(variant: str) -> list[str]:
    """Five people of the organisation who sit on the council: the first chairs it, the second
    is its secretary."""
    p = PREFIX[variant]
    return [f"{p}.chuyengia1", f"{p}.chuyengia2", f"{p}.chuyengia3", f"{p}.chuyengia4",
            f"{p}.skhcn.giamdoc"]


def council_case(engine, variant, business_key="DX-C"):
    """A complex proposal whose council the competent head has formed (after Sở Nội vụ's
    advice where the variant says so): its meeting is open."""
    case = to_decision(engine, variant, f"{PREFIX[variant]}.sxd.qlxd.truongphong",
                       complex_=True, business_key=business_key)
    members = council_members(variant)
    if case.open("advise_council"):
        case.do("advise_council", {"advised_members": members, "advice_note": "Đề nghị"})
    case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                             "council_members": members})
    assert case.open_elements() == ["council_meeting"]
    return case


def complete(server, user, case, element_id, data):
    """Complete the case's open task of ``element_id`` through the REST API, as ``user``."""
    [task] = case.open(element_id)
    return server.post(f"/tasks/{task.id}/complete", user, json={"data": data})


def council_minutes(engine, case, chair) -> list[str]:
    [meta] = [d for d in engine.documents.of_instance(case.id, principal=as_user(engine, chair))
              if d["template"] == "bien_ban_hop_hoi_dong.docx"]
    content = engine.documents.docx(meta["id"], principal=as_user(engine, chair))[1]
    return [p.text for p in docx.Document(io.BytesIO(content)).paragraphs if p.text.strip()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_k2_the_council_meeting_is_recorded_by_its_chair_or_secretary_an_absent_member_does_not_block(  # noqa: E501
        engine, clock, server, variant):
    clock.set(NOW)
    members = council_members(variant)
    chair, secretary = members[:2]
    case = council_case(engine, variant)
    [task] = case.open("council_meeting")
    assert case.candidates(task) == sorted([chair, secretary])     # named when it was formed
    assert case.instance.stage == "in_council"
    # another member of the council does not record the meeting: the task is not his to see
    assert complete(server, members[2], case, "council_meeting", council_meeting(
        {m: "for" for m in members}, "2026-03-03")).status_code == 404
    # the secretary records it: one member absent, and the meeting is not held up
    present = {chair: "for", secretary: "for", members[2]: "against", members[3]: "for"}
    answer = complete(server, secretary, case, "council_meeting",
                      council_meeting(present, "2026-03-03", "Nhận xét"))
    assert answer.status_code == 200, answer.text
    record = case.data()["council_record"]
    assert (record["mode"], record["date"], record["chair"], record["secretary"]) == (
        "meeting", "2026-03-03", chair, secretary)
    assert record["members"] == [
        *({"member": m, "present": True, "vote": v, "opinion": f"Nhận xét của {m}"}
          for m, v in present.items()),
        {"member": members[4], "present": False, "vote": None, "opinion": None}]
    assert (record["members_count"], record["present_count"], record["votes_for"],
            record["votes_against"], record["result"]) == (5, 4, 3, 1, "recommend_approve")
    assert "66,67%" in record["rule"] and "trên 50%" in record["rule"]
    assert "khoản 2 Điều 8" in record["rule"]
    assert case.data()["council_recommendation"] == "recommend_approve"
    # the biên bản is made from the record, signed by the chair
    text = council_minutes(engine, case, chair)
    assert any(line.startswith("Thời gian: 03/03/2026.") for line in text), text
    assert "Thành phần: 4/5 thành viên Hội đồng có mặt. Ý kiến và biểu quyết của từng " \
           "thành viên:" in text
    assert any(line.startswith("5. ") and line.endswith(": vắng mặt.") for line in text), text
    assert any(f"không tán thành; ý kiến: Nhận xét của {members[2]}." in line
               for line in text), text
    assert ("Kết quả: 3 phiếu tán thành, 1 phiếu không tán thành trên 4 phiếu biểu quyết của "
            "5 thành viên.") in text
    assert any(line.startswith("Nguyên tắc áp dụng: Hội đồng có kiến nghị khi số thành viên "
                               "biểu quyết đạt ít nhất 66,67%") for line in text), text
    assert "Kiến nghị của Hội đồng: phê duyệt đề xuất." in text
    # the council's recommendation done, the collective leadership meets
    assert case.open_elements() == ["leadership_meeting"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_k2_the_council_recommends_only_with_its_quorum_and_a_majority(library, variant):
    members = council_members(variant)
    few = council_case(library, variant, "DX-Q1")          # 3 of 5 present: below 2/3
    few.vote({members[0]: "for", members[1]: "for", members[2]: "for"}, "council_vote")
    record = few.data()["council_record"]
    assert (record["present_count"], record["result"]) == (3, "no_quorum")
    assert "chưa đủ số thành viên biểu quyết" in " ".join(council_minutes(library, few,
                                                                          members[0]))
    split = council_case(library, variant, "DX-Q2")        # 2 for, 2 against: not a majority
    split.vote({members[0]: "for", members[1]: "for", members[2]: "against",
                members[3]: "against"}, "council_vote")
    assert split.data()["council_record"]["result"] == "recommend_reject"
    assert split.open_elements() == ["leadership_meeting"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_k2_the_council_record_is_refused_with_unknown_people_non_members_or_a_future_date(
        engine, clock, server, variant):
    clock.set(NOW)
    members = council_members(variant)
    chair = members[0]
    outsider = f"{PREFIX[variant]}.sxd.pgd1"               # of the organisation, not the council
    case = council_case(engine, variant)

    def refused(data: dict) -> dict:
        answer = complete(server, chair, case, "council_meeting", data)
        assert answer.status_code == 422, answer.text
        return {e["field"]: e["message"] for e in answer.json()["errors"]}

    errors = refused(council_meeting({chair: "for", "ai.do": "for"}, "2026-03-04"))
    assert "ai.do" in errors["council_attendees"]
    assert "không phải là người trong tổ chức" in errors["council_attendees"]
    errors = refused(council_meeting({chair: "for", outsider: "for"}, "2026-03-04"))
    assert outsider in errors["council_attendees"]
    assert "Không phải thành viên Hội đồng" in errors["council_attendees"]
    record = council_meeting({chair: "for", members[1]: "for"}, "2026-03-04")
    errors = refused({**record, "council_attendees": [chair]})    # an absent member's vote
    assert members[1] in errors["council_opinions"]
    errors = refused({**record, "council_opinions": record["council_opinions"][:1]})
    assert "từng thành viên dự họp, mỗi người một lần" in errors["council_opinions"]
    errors = refused(council_meeting({chair: "for"}, "2026-03-05"))          # tomorrow
    assert set(errors) == {"council_meeting_date"}
    assert case.open_elements() == ["council_meeting"]                      # nothing recorded
    assert "council_record" not in case.data()


def test_art8_k2_online_council_ballots_are_a_variant_setting(engine, clock, server, tmp_path):
    clock.set(NOW)
    settings = (PROJECT / "processes" / "national" / "variant.toml").read_text(encoding="utf-8")
    assert 'council = "meeting"' in settings           # the product's default
    deploy_library(engine)
    folder = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes", folder)
    with (folder / "dak-lak" / "variant.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[meetings]\ncouncil = "ballots"\n')
    engine.repository.deploy_folder(folder / "dak-lak", "ci", PROJECT / "forms")
    members = council_members("dak-lak")
    case = to_decision(engine, "dak-lak", "daklak.sxd.qlxd.truongphong", complex_=True)
    case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                             "council_members": members})
    assert case.open_elements() == ["council_vote"] * 5         # one ballot per member
    assert case.voters("council_vote") == sorted(members)

    def ballot(member: str, vote: str) -> None:
        """The member's own ballot, through the REST API: their vote and their opinion."""
        [task] = [t for t in case.open("council_vote") if member in case.candidates(t)]
        answer = server.post(f"/tasks/{task.id}/complete", member, json={"data": {
            "vote": vote, "council_opinion": f"Ý kiến của {member}"}})
        assert answer.status_code == 200, answer.text

    # the members vote in an order of their own, not the order the council was formed in
    votes = dict(zip(members, ["for", "for", "against", "for", "against"]))
    for member in [members[3], members[0], members[2], members[1]]:
        ballot(member, votes[member])
    assert case.open_elements() == ["council_vote"]             # the fifth has not voted
    ballot(members[4], votes[members[4]])
    record = case.data()["council_record"]
    assert (record["mode"], record["date"], record["present_count"], record["votes_for"],
            record["votes_against"], record["result"]) == (
        "ballots", None, 5, 3, 2, "recommend_approve")
    # each member's opinion and vote, in the shape a recorded meeting gives
    assert record["members"] == [{"member": m, "present": True, "vote": votes[m],
                                  "opinion": f"Ý kiến của {m}"} for m in members]
    # the council's minutes give each member's vote and opinion
    text = council_minutes(engine, case, members[0])
    online = "Thời gian: ngày 04 tháng 3 năm 2026 (biểu quyết bằng phiếu trực tuyến)."
    assert any(line.startswith(online) for line in text), text
    for index, member in enumerate(members, 1):
        vote = {"for": "tán thành", "against": "không tán thành"}[votes[member]]
        assert any(line.startswith(f"{index}. ")
                   and line.endswith(f": {vote}; ý kiến: Ý kiến của {member}.")
                   for line in text), text
    assert ("Kết quả: 3 phiếu tán thành, 2 phiếu không tán thành trên 5 phiếu biểu quyết của "
            "5 thành viên.") in text
    # the leadership still meets (its own setting is unchanged)
    assert case.open_elements() == ["leadership_meeting"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"chromium is not at {CHROMIUM}")
def test_web_the_council_secretary_records_the_meeting_and_sees_the_tally_and_result(library):
    members = council_members("lao-cai")
    chair, secretary = members[:2]
    case = council_case(library, "lao-cai")
    [task] = case.open("council_meeting")
    server = LiveServer(library)
    try:
        with chromium_page(1280, 900) as page:
            sign_in(page, server, secretary)
            page.goto(f"{server.url}/tasks/{task.id}")
            assert page.get_by_role("heading", name="Ghi biên bản họp Hội đồng đánh giá") \
                .is_visible()
            page.locator("#f-council_meeting_date").fill("03/03/2026")
            present = {chair: "for", secretary: "for", members[2]: "against", members[3]: "for"}
            fill_list(page, "council_attendees", list(present))
            fill_votes(page, present, {member: f"Ý kiến {index + 1}"
                                       for index, member in enumerate(present)},
                       field="council_opinions")
            page.get_by_role("button", name="Gửi").click()
            page.wait_for_url(lambda url: f"/tasks/{task.id}" not in url)
            record = case.data()["council_record"]
            assert (record["present_count"], record["votes_for"], record["votes_against"],
                    record["result"]) == (4, 3, 1, "recommend_approve")
            assert record["members"][2]["opinion"] == "Ý kiến 3"
            # the case page lists the council's biên bản; its DOCX gives the tally and result
            page.goto(f"{server.url}/instances/{case.id}")
            row = page.locator("[data-testid=document]").filter(
                has_text="Biên bản họp Hội đồng đánh giá")
            with page.expect_download() as download:
                row.get_by_role("link", name="DOCX").click()
            content = Path(download.value.path()).read_bytes()
            text = [p.text for p in docx.Document(io.BytesIO(content)).paragraphs]
            assert ("Kết quả: 3 phiếu tán thành, 1 phiếu không tán thành trên 4 phiếu biểu "
                    "quyết của 5 thành viên.") in text
            assert "Kiến nghị của Hội đồng: phê duyệt đề xuất." in text
    finally:
        server.stop()
