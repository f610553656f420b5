"""The procedures as Decree 73/2023/NĐ-CP writes them: one scenario per rule, named after the
rule, in every variant it concerns (each variant inherits the national procedures unless it
overrides them; none of the provinces overrides these)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.errors import InvalidData

from conftest import PROJECT
from procedures import PREFIX, SCREENED, VARIANTS, Case, deploy_library, implement_and_evaluate, \
    on_day, plan, to_decision

ASSESSMENT = {"followed_policy": True, "pure_motives": True, "common_interest": True,
              "abuse": False, "assessment": "Đúng chủ trương, động cơ trong sáng"}


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def _approved(library, variant, proposer, business_key="DX-1"):
    case = to_decision(library, variant, proposer, business_key=business_key)
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    return case


def _choices_refused(case, by=None) -> list[str]:
    """The protection decisions the decider may take: those the form rule lists."""
    with pytest.raises(InvalidData) as refused:
        case.do("decide_protection", {"protection_decision": "no_such_choice",
                                      "protection_reasons": "x"}, by=by)
    [error] = refused.value.details["errors"]
    assert error["field"] == "protection_decision"
    return error


# --- Art. 11: outcome terms and the choices that follow the official evaluation -----------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("outcome, allowed", [
    ("not_completed", ["excluded", "refused"]),
    ("damaged", ["excluded", "exempted", "mitigated", "refused"]),
])
def test_art11_choices_follow_the_official_evaluation(library, variant, outcome, allowed):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qlxd.truongphong"
    case = _approved(library, variant, proposer)
    implement_and_evaluate(case, outcome, proposer)
    case.do("submit_protection_request", {"facts": "Khách quan"}, by=proposer)
    case.do("assess", ASSESSMENT, by=f"{p}.sxd.giamdoc")
    case.do("protection_party_opinion", {"party_opinion": "agree"}, by=f"{p}.sxd.pgd1")
    assert case.data()["protection_choices"] == allowed
    for choice in {"not_liable", "excluded", "exempted", "mitigated"} - set(allowed):
        with pytest.raises(InvalidData):
            case.do("decide_protection", {"protection_decision": choice,
                                          "protection_reasons": "x"}, by=f"{p}.sxd.giamdoc")
    # "loại trừ" is a choice in the damage case too (được xem xét loại trừ, miễn, giảm nhẹ)
    case.do("decide_protection", {"protection_decision": "excluded",
                                  "protection_reasons": "Điều 11"}, by=f"{p}.sxd.giamdoc")
    assert case.instance.latest_decision == "excluded"
    [notice] = [n for n in library.notifications.list_for(proposer)
                if n["kind"] == "protection_decided"]
    assert "được loại trừ trách nhiệm" in notice["body"]


def test_art11_terms_are_the_decree_words(library):
    schema = library.repository.form(
        library.repository.latest("national", "protection"), "protection_decision.schema.json")
    labels = schema["properties"]["protection_decision"]["x-enum-labels"]
    assert labels["not_liable"].startswith("Không bị xử lý trách nhiệm")
    assert labels["excluded"] == "Được loại trừ trách nhiệm"
    assert labels["exempted"].startswith("Được miễn trách nhiệm")
    assert labels["mitigated"].startswith("Được giảm nhẹ trách nhiệm")


# --- Art. 11 with Art. 9: the outcome is the evaluation on record, not the requester's claim ---

@pytest.mark.parametrize("variant", VARIANTS)
def test_art11_requester_claim_does_not_override_the_evaluation(library, variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qlxd.truongphong"
    case = _approved(library, variant, proposer)
    implement_and_evaluate(case, "damaged", proposer)
    # the requester claims the work was completed; the evaluation on record says damage
    case.do("submit_protection_request", {"claimed_outcome": "completed", "facts": "Đã xong"},
            by=proposer)
    with pytest.raises(InvalidData) as refused:
        case.do("assess", {**ASSESSMENT, "assessed_outcome": "completed"},
                by=f"{p}.sxd.giamdoc")
    assert refused.value.details["errors"][0]["field"] == "assessed_outcome"
    case.do("assess", ASSESSMENT, by=f"{p}.sxd.giamdoc")
    case.do("protection_party_opinion", {"party_opinion": "agree"}, by=f"{p}.sxd.pgd1")
    data = case.data()
    assert (data["outcome"], data["official_outcome"]) == ("damaged", "damaged")
    assert "not_liable" not in data["protection_choices"]
    with pytest.raises(InvalidData):
        case.do("decide_protection", {"protection_decision": "not_liable",
                                      "protection_reasons": "x"}, by=f"{p}.sxd.giamdoc")
    # the claim is no decision: reports and lists count only the evaluation's outcome
    fields = [(field, value) for field, value, _ in case.decisions()]
    assert ("outcome", "completed") not in fields and ("outcome", "damaged") in fields
    assert not [f for f in fields if f[0] == "claimed_outcome"]
    assert case.instance.latest_decision == "damaged"


@pytest.mark.parametrize("variant", VARIANTS)
def test_art11_standalone_request_takes_the_outcome_from_the_assessment(library, variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qhkt.truongphong"
    with pytest.raises(InvalidData):        # nothing slips in through the start data
        Case.start(library, variant, "protection", proposer, data={"outcome": "completed"})
    case = Case.start(library, variant, "protection", proposer)
    case.do("submit_protection_request", {"claimed_outcome": "completed", "facts": "x"},
            by=proposer)
    with pytest.raises(InvalidData) as refused:
        case.do("assess", ASSESSMENT, by=f"{p}.sxd.giamdoc")
    assert refused.value.details["errors"][0]["field"] == "assessed_outcome"
    case.do("assess", {**ASSESSMENT, "assessed_outcome": "not_completed"},
            by=f"{p}.sxd.giamdoc")
    case.do("protection_party_opinion", {"party_opinion": "agree"}, by=f"{p}.sxd.pgd1")
    assert case.data()["protection_choices"] == ["excluded", "refused"]


@pytest.mark.parametrize("variant", ["national", "dak-lak"])
def test_art11_head_who_is_the_proposer_never_assesses_his_own_case(library, variant):
    p = PREFIX[variant]
    head = f"{p}.sxd.giamdoc"
    case = Case.start(library, variant, "protection", head)
    case.do("submit_protection_request", {"facts": "x"}, by=head)
    [assess] = case.open("assess")
    assert case.candidates(assess) == [f"{p}.chutich"]      # the superior agency's head
    case.do("assess", {**ASSESSMENT, "assessed_outcome": "damaged"}, by=f"{p}.chutich")
    [opinion] = case.open("protection_party_opinion")
    assert head not in case.candidates(opinion)
    # the Party committee of the province, whose head decides
    assert case.candidates(opinion) == library.org.members(p, ("party_secretary",))
    case.do("protection_party_opinion", {"party_opinion": "agree"})
    [decide] = case.open("decide_protection")
    assert case.candidates(decide) == [f"{p}.chutich"]


# --- Art. 8 k.1: the written decision against the vote exists in one direction only -------

@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_head_may_approve_after_a_failed_vote_with_written_reasons(library, variant):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    case.vote({f"{p}.sxd.giamdoc": "for", f"{p}.sxd.pgd1": "against",
               f"{p}.sxd.pgd2": "against", f"{p}.sxd.pgd3": "against"})
    assert case.data()["vote_result"] == "rejected"
    with pytest.raises(InvalidData) as refused:
        case.do("decide", {"decision": "approve"}, by=f"{p}.sxd.giamdoc")
    assert refused.value.details["errors"][0]["field"] == "override_reason"
    case.do("decide", {"decision": "approve", "override_reason": "Cần thiết, khả thi"},
            by=f"{p}.sxd.giamdoc")
    assert case.instance.stage == "implementing"


@pytest.mark.parametrize("variant", VARIANTS)
def test_art8_head_cannot_refuse_a_proposal_the_collective_passed(library, variant):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    case.vote({f"{p}.sxd.giamdoc": "against", f"{p}.sxd.pgd1": "for",
               f"{p}.sxd.pgd2": "for", f"{p}.sxd.pgd3": "for"})
    assert case.data()["vote_result"] == "approved"
    with pytest.raises(InvalidData) as refused:
        case.do("decide", {"decision": "reject", "refusal_reasons": "Không đồng ý"},
                by=f"{p}.sxd.giamdoc")
    [error] = refused.value.details["errors"]
    assert error["field"] == "decision" and "Điều 8 khoản 1" in error["message"]
    assert case.open_elements() == ["decide"]
    case.do("decide", {"decision": "approve"},
            by=f"{p}.sxd.giamdoc")
    assert case.instance.latest_decision == "approve"


# --- Art. 4: the Party committee at the level of the one who decides ---------------------

@pytest.mark.parametrize("variant, proposer, decided_at", [
    ("national", "mau.sxd.qlxd.truongphong", "mau.sxd"),
    ("national", "mau.sxd.giamdoc", "mau"),                 # a head: the superior agency
    ("dak-lak", "daklak.sxd.giamdoc", "daklak"),
    ("lao-cai", "laocai.sxd.giamdoc", "laocai"),           # via Sở Nội vụ to the Chairman
    ("lao-cai", "laocai.sxd.qlxd.truongphong", "laocai.sxd"),
    ("can-tho", "cantho.sxd.pgd2", "cantho"),              # a leader under the city
    ("can-tho", "cantho.sxd.qhkt.truongphong", "cantho.sxd"),
])
def test_art4_party_committee_is_the_one_at_the_deciders_level(library, variant, proposer,
                                                                decided_at):
    case = Case.start(library, variant, "proposal", proposer)
    case.do("submit_plan", plan(), by=proposer)
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    case.do("screening", {**SCREENED, "is_complex": False})
    [opinion] = case.open("party_opinion")
    expected = [u for u in library.org.members(decided_at, ("party_secretary",))
                if u != proposer]
    assert expected and case.candidates(opinion) == sorted(expected)
    assert case.data()["decision_unit"] == decided_at


@pytest.mark.parametrize("variant", VARIANTS)
def test_art4_nobody_gives_an_opinion_or_a_vote_on_their_own_proposal(library, variant):
    p = PREFIX[variant]
    secretary = library.org.members(f"{p}.sxd", ("party_secretary",))[0]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong", complex_=True)
    # the council is never formed with the proposer in it
    members = [f"{p}.chuyengia1", f"{p}.chuyengia2", f"{p}.chuyengia3", f"{p}.chuyengia4",
               f"{p}.sxd.qlxd.truongphong"]
    if case.open("advise_council"):
        case.do("advise_council", {"advised_members": members[:4], "advice_note": "x"})
    with pytest.raises(InvalidData) as refused:
        case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                                 "council_members": members})
    assert "không tham gia hội đồng" in refused.value.details["errors"][0]["message"]
    # a party secretary who proposes neither opines nor votes on it
    own = Case.start(library, variant, "proposal", secretary, business_key="DX-OWN")
    own.do("submit_plan", plan(), by=secretary)
    if own.open("home_affairs_review"):
        own.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    own.do("screening", {**SCREENED, "is_complex": False})
    [opinion] = own.open("party_opinion")
    # the superior agency's committee stands in when he is the committee's secretary
    assert own.candidates(opinion) and secretary not in own.candidates(opinion)


# --- Art. 8 k.2: the council is formed by the competent head; Sở Nội vụ advises where the
# province says so; its size and deadline are settings --------------------------------------

@pytest.mark.parametrize("variant, proposer, advised, former", [
    ("national", "mau.sxd.qlxd.truongphong", False, "mau.sxd.giamdoc"),
    ("national", "mau.sxd.giamdoc", False, "mau.chutich"),
    ("dak-lak", "daklak.sxd.qlxd.truongphong", False, "daklak.sxd.giamdoc"),
    ("lao-cai", "laocai.sxd.qlxd.truongphong", True, "laocai.sxd.giamdoc"),
    ("lao-cai", "laocai.sxd.giamdoc", True, "laocai.chutich"),
    ("can-tho", "cantho.sxd.qlxd.truongphong", False, "cantho.sxd.giamdoc"),
    ("can-tho", "cantho.sxd.pgd2", True, "cantho.chutich"),       # a leader under the city
])
def test_art8_council_is_formed_by_the_competent_head(library, variant, proposer, advised,
                                                     former):
    p = PREFIX[variant]
    case = to_decision(library, variant, proposer, complex_=True)
    assert bool(case.open("advise_council")) is advised
    if advised:
        [advice] = case.open("advise_council")
        assert case.candidates(advice) == [f"{p}.snv.chuyenvien", f"{p}.snv.giamdoc"]
        with pytest.raises(InvalidData):
            case.do("advise_council", {"advised_members": [proposer], "advice_note": "x"})
        case.do("advise_council", {"advised_members": [f"{p}.chuyengia1"],
                                   "advice_note": "Đề nghị thành phần hội đồng"})
    [setup] = case.open("form_council")
    assert case.candidates(setup) == [former]
    # the council has its own deadline ([deadlines] council), not the decision's
    data = case.data()
    assert setup.due_at is not None and data["council_due"] != data["decision_due"]
    assert data["council_due"] > data["decision_due"]        # 20 working days against 7
    assert setup.due_at.replace(tzinfo=None) == data["council_due"].astimezone(
        timezone.utc).replace(tzinfo=None)


def test_art8_council_size_is_a_setting_not_the_decree(library):
    case = to_decision(library, "national", "mau.sxd.qlxd.truongphong", complex_=True)
    four = ["mau.chuyengia1", "mau.chuyengia2", "mau.chuyengia3", "mau.chuyengia4"]
    with pytest.raises(InvalidData) as refused:
        case.do("form_council", {"council_chair": four[0], "council_secretary": four[1],
                                 "council_members": four})
    message = refused.value.details["errors"][0]["message"]
    assert "từ 5 đến 9" in message and "thiết lập" in message and "Điều 8" not in message
    council = (PROJECT / "processes" / "national" / "council.bpmn").read_text(encoding="utf-8")
    assert "Draft 3" not in council and "min_size" in council
    settings = (PROJECT / "processes" / "national" / "variant.toml").read_text(encoding="utf-8")
    assert "Draft 3" in settings          # the default says where it comes from


# --- Art. 9: the completion report counts from the actual completion ----------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_art9_completion_report_is_due_5_working_days_after_the_actual_completion(
        library, variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qlxd.truongphong"
    case = _approved(library, variant, proposer)
    [implement] = case.open("implement")
    planned = case.data()["planned_end_due"]
    assert planned.date().isoformat() == "2027-06-30"          # the plan's end: a reminder
    with pytest.raises(InvalidData) as refused:                 # before the start date
        case.do("implement", {"finished_on": "2026-11-30"}, by=proposer)
    assert refused.value.details["errors"][0]["field"] == "finished_on"
    # finished early, on Friday 19/03/2027: 5 working days later is Friday 26/03/2027
    on_day(library, "2027-03-19")
    case.do("implement", {"finished_on": "2027-03-19"}, by=proposer)
    [report] = case.open("report_completion")
    assert case.candidates(report) == [proposer]
    due = report.due_at.replace(tzinfo=timezone.utc) if report.due_at.tzinfo is None \
        else report.due_at
    assert due == datetime(2027, 3, 26, 10, 0, tzinfo=timezone.utc)   # 17:00 local
    case.do("report_completion", {"result_summary": "Đã hoàn thành"}, by=proposer)
    assert case.open_elements() == ["party_evaluation_opinion"]


def test_art9_is_cited_not_art18(library):
    for path in ("national/variant.toml", "national/proposal.bpmn"):
        text = (PROJECT / "processes" / path).read_text(encoding="utf-8")
        assert "Art. 18" not in text and "Điều 18" not in text
    settings = (PROJECT / "processes" / "national" / "variant.toml").read_text(encoding="utf-8")
    assert "completion_report = 5   # Art. 9" in settings


# --- Art. 9: the evaluation is a leadership meeting, recording its causes ------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_art9_evaluation_is_a_leadership_meeting_without_the_deputy_who_proposed(library,
                                                                               variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.pgd2"                    # a deputy proposes
    case = to_decision(library, variant, proposer)
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    on_day(library, "2027-06-30")
    case.do("implement", {"finished_on": "2027-06-30"}, by=proposer)
    case.do("report_completion", {"result_summary": "Xong"}, by=proposer)
    case.do("party_evaluation_opinion", {"party_opinion": "agree"})
    members = case.data()["evaluation_members"]
    assert proposer not in members and members
    [evaluate] = case.open("evaluate")
    assert proposer not in case.candidates(evaluate)
    record = {"meeting_date": "2027-06-30", "attendees": members[:-1],   # one absent
              "member_assessments": [{"member": m, "assessment": "not_completed"}
                                     for m in members[:-1]],
              "outcome": "not_completed", "evaluation_note": "Họp đánh giá"}

    def refused_field(data):
        with pytest.raises(InvalidData) as refused:
            case.do("evaluate", data)
        return refused.value.details["errors"][0]["field"]
    assert refused_field({**record, "attendees": members + [proposer]}) == "attendees"
    assert refused_field({**record, "member_assessments": [
        {"member": proposer, "assessment": "completed"}]}) == "member_assessments"
    assert refused_field(record) == "subjective_causes"       # causes are needed for Art. 11
    case.do("evaluate", {**record, "objective_causes": "Thay đổi quy định",
                         "subjective_causes": "Chuẩn bị chưa kỹ"})
    data = case.data()
    assert (data["objective_causes"], data["subjective_causes"]) == (
        "Thay đổi quy định", "Chuẩn bị chưa kỹ")
    assert case.instance.latest_decision == "not_completed"


# --- Art. 6: suspending or terminating an approved proposal is a decision with reasons ----

@pytest.mark.parametrize("variant", VARIANTS)
def test_art6_suspension_and_termination_state_their_reasons(library, variant):
    p = PREFIX[variant]
    case = _approved(library, variant, f"{p}.sxd.qlxd.truongphong")
    for message, field in (("implementation_suspended", "suspension_reason"),
                           ("implementation_terminated", "termination_reason")):
        with pytest.raises(InvalidData) as refused:
            case.send(message, {field: "  "})
        assert refused.value.details["errors"][0]["field"] == field
        assert case.open_elements() == ["implement"]
    case.send("implementation_suspended", {"suspension_reason": "Chờ kinh phí"})
    assert case.instance.stage == "suspended"
    [review] = case.open("suspension_review")
    assert case.candidates(review) == [f"{p}.sxd.giamdoc"]      # the head decides
    assert case.data()["suspension_reason"] == "Chờ kinh phí"
