"""Decree 73 procedures, one scenario per legal path, in every variant."""
from __future__ import annotations

import pytest

from engine.errors import InvalidData

from procedures import SCREENED, PREFIX, VARIANTS, Case, deploy_library, implement_and_evaluate, \
    plan, to_decision


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


@pytest.mark.parametrize("variant", VARIANTS)
def test_ordinary_approval_to_recognition(library, variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qlxd.truongphong"          # a division head: not the agency's head
    case = Case.start(library, variant, "proposal", proposer, business_key="DX-1")
    assert case.instance.stage == "draft"
    assert case.instance.unit_id == f"{p}.sxd.qlxd"
    [plan_task] = case.open("submit_plan")
    assert case.candidates(plan_task) == [proposer]
    case.do("submit_plan", plan(), by=proposer)

    [screening] = case.open("screening")
    assert case.candidates(screening) == [f"{p}.sxd.giamdoc"]
    assert case.instance.stage == "under_review"
    assert screening.due_at is not None
    case.do("screening", {**SCREENED, "is_complex": False}, by=f"{p}.sxd.giamdoc")
    case.do("party_opinion", {"party_opinion": "agree"}, by=f"{p}.sxd.pgd1")

    assert case.voters() == sorted([f"{p}.sxd.giamdoc", f"{p}.sxd.pgd1", f"{p}.sxd.pgd2",
                                    f"{p}.sxd.pgd3"])
    case.vote({f"{p}.sxd.giamdoc": "for", f"{p}.sxd.pgd1": "for", f"{p}.sxd.pgd2": "for",
               f"{p}.sxd.pgd3": "against"})
    assert case.data()["vote_result"] == "approved"
    case.do("decide", {"decision": "approve"},
            by=f"{p}.sxd.giamdoc")
    assert case.instance.stage == "implementing"
    assert case.instance.latest_decision == "approve"

    implement_and_evaluate(case, "completed", proposer)
    [recognition] = case.open("recognition")
    assert case.candidates(recognition) == [f"{p}.sxd.giamdoc"]
    case.do("recognition", {"measures": ["commendation", "early_salary_step"],
                            "months_early": 12})
    finished = case.instance
    assert (finished.status, finished.stage, finished.latest_decision) == (
        "completed", "recognised", "completed")
    decisions = case.decisions()
    record = case.data()["meeting_record"]            # the leadership meeting's record
    assert (record["votes_for"], record["votes_against"], record["present_count"]) == (3, 1, 4)
    assert ("decision", "approve", f"{p}.sxd.giamdoc") in decisions
    assert ("outcome", "completed", f"{p}.sxd.giamdoc") in decisions


def test_head_proposal_escalates_to_the_superior_head(library):
    proposer = "mau.sxd.giamdoc"
    case = to_decision(library, "national", proposer)
    assert case.data()["decider_role"] == "superior_head"
    assert case.voters() == ["mau.chutich", "mau.pct1", "mau.pct2"]
    case.vote({"mau.chutich": "for", "mau.pct1": "for", "mau.pct2": "against"})
    [decide] = case.open("decide")
    assert case.candidates(decide) == ["mau.chutich"]
    case.do("decide", {"decision": "approve"}, by="mau.chutich")
    assert case.instance.stage == "implementing"


@pytest.mark.parametrize("variant, proposer", [("lao-cai", "laocai.sxd.giamdoc"),
                                               ("lao-cai", "laocai.xa.chutich"),
                                               ("can-tho", "cantho.sxd.giamdoc"),
                                               ("can-tho", "cantho.sxd.pgd2")])
def test_leaders_under_the_province_go_via_home_affairs_to_the_chairman(library, variant,
                                                                          proposer):
    p = PREFIX[variant]
    case = Case.start(library, variant, "proposal", proposer, business_key="DX-2")
    case.do("submit_plan", plan(), by=proposer)
    [review] = case.open("home_affairs_review")
    assert case.candidates(review) == [f"{p}.snv.chuyenvien", f"{p}.snv.giamdoc"]
    assert case.instance.stage == "submitted"
    case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình Chủ tịch"})
    [screening] = case.open("screening")
    assert case.candidates(screening) == [f"{p}.chutich"]


def test_other_variants_keep_the_national_route_for_heads(library):
    case = Case.start(library, "dak-lak", "proposal", "daklak.sxd.giamdoc")
    case.do("submit_plan", plan(), by="daklak.sxd.giamdoc")
    assert case.open_elements() == ["screening"]
    [screening] = case.open("screening")
    assert case.candidates(screening) == ["daklak.chutich"]


def test_can_tho_division_head_goes_to_the_agency_head(library):
    case = Case.start(library, "can-tho", "proposal", "cantho.sxd.qhkt.truongphong")
    case.do("submit_plan", plan(), by="cantho.sxd.qhkt.truongphong")
    [screening] = case.open("screening")
    assert case.candidates(screening) == ["cantho.sxd.giamdoc"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_rejection_with_reasons(library, variant):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    case.vote({f"{p}.sxd.giamdoc": "against", f"{p}.sxd.pgd1": "against",
               f"{p}.sxd.pgd2": "for", f"{p}.sxd.pgd3": "against"})
    assert case.data()["vote_result"] == "rejected"
    with pytest.raises(InvalidData) as refused:
        case.do("decide", {"decision": "reject"}, by=f"{p}.sxd.giamdoc")
    assert refused.value.details["errors"][0]["field"] == "refusal_reasons"
    case.do("decide", {"decision": "reject", "refusal_reasons": "Đã có quy định điều chỉnh"},
            by=f"{p}.sxd.giamdoc")
    finished = case.instance
    assert (finished.status, finished.stage, finished.latest_decision) == (
        "completed", "rejected", "reject")


@pytest.mark.parametrize("variant", VARIANTS)
def test_rejected_vote_then_head_override_in_writing(library, variant):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    case.vote({f"{p}.sxd.giamdoc": "for", f"{p}.sxd.pgd1": "against",
               f"{p}.sxd.pgd2": "against", f"{p}.sxd.pgd3": "against"})
    with pytest.raises(InvalidData) as refused:
        case.do("decide", {"decision": "approve"}, by=f"{p}.sxd.giamdoc")
    [error] = refused.value.details["errors"]
    assert error["field"] == "override_reason" and "lý do" in error["message"]
    case.do("decide", {"decision": "approve", "override_reason": "Cấp bách, chịu trách nhiệm"},
            by=f"{p}.sxd.giamdoc")
    assert case.instance.stage == "implementing"
    assert ("decision", "approve", f"{p}.sxd.giamdoc") in case.decisions()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("head_vote, expected", [("for", "approved"), ("against", "rejected")])
def test_tie_vote_follows_the_head(library, variant, head_vote, expected):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    other = "against" if head_vote == "for" else "for"
    case.vote({f"{p}.sxd.giamdoc": head_vote, f"{p}.sxd.pgd1": other,
               f"{p}.sxd.pgd2": head_vote, f"{p}.sxd.pgd3": other})
    assert case.data()["vote_result"] == expected


@pytest.mark.parametrize("variant", ["national", "dak-lak", "lao-cai"])
def test_deputy_who_proposes_does_not_vote(library, variant):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.pgd2")
    assert case.data()["decider_role"] == "head"
    assert case.voters() == [f"{p}.sxd.giamdoc", f"{p}.sxd.pgd1", f"{p}.sxd.pgd3"]


def test_can_tho_deputy_goes_to_the_chairman_and_votes_with_the_city_leadership(library):
    case = to_decision(library, "can-tho", "cantho.sxd.pgd2")
    assert case.data()["decider_role"] == "chairman"
    assert case.voters() == ["cantho.chutich", "cantho.pct1", "cantho.pct2"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ballots, recommendation", [
    ({"for": 4, "against": 1}, "recommend_approve"),
    ({"for": 2, "against": 3}, "recommend_reject"),
])
def test_complex_proposal_goes_to_the_evaluation_council(library, variant, ballots,
                                                         recommendation):
    p = PREFIX[variant]
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong", complex_=True)
    if variant == "lao-cai":                 # Sở Nội vụ advises forming the council
        [advice] = case.open("advise_council")
        assert case.candidates(advice) == [f"{p}.snv.chuyenvien", f"{p}.snv.giamdoc"]
        case.do("advise_council", {"advised_members": [f"{p}.chuyengia1"],
                                   "advice_note": "Đề nghị thành phần"})
    [setup] = case.open("form_council")
    assert case.candidates(setup) == [f"{p}.sxd.giamdoc"]      # the competent head forms it
    assert case.instance.stage == "in_council"
    members = [f"{p}.chuyengia1", f"{p}.chuyengia2", f"{p}.chuyengia3",
               f"{p}.chuyengia4", f"{p}.skhcn.giamdoc"]
    with pytest.raises(InvalidData, match="từ 5 đến 9"):
        case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                                 "council_members": members[:3]})
    case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                             "council_members": members})
    assert case.voters("council_vote") == sorted(members)
    votes = ["for"] * ballots["for"] + ["against"] * ballots["against"]
    case.vote(dict(zip(members, votes)), "council_vote")
    assert case.data()["council_recommendation"] == recommendation
    assert case.open_elements() == ["leadership_meeting"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_implementation_suspended_resumed_then_terminated(library, variant):
    p = PREFIX[variant]
    proposer = f"{p}.sxd.qlxd.truongphong"
    case = to_decision(library, variant, proposer, business_key="DX-9")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve",
                       "implementers": [proposer, f"{p}.sxd.gt.truongphong"]})
    [implement] = case.open("implement")
    assert case.candidates(implement) == sorted([proposer, f"{p}.sxd.gt.truongphong"])
    case.send("implementation_suspended", {"suspension_reason": "Chờ kinh phí"})
    assert case.instance.stage == "suspended"
    assert case.open_elements() == ["suspension_review"]
    case.do("suspension_review", {"continue_decision": "resume", "continue_reason": "Đủ kinh phí"})
    assert case.open_elements() == ["implement"] and case.instance.stage == "implementing"
    case.send("implementation_terminated", {"termination_reason": "Không còn phù hợp"})
    finished = case.instance
    assert (finished.status, finished.stage) == ("completed", "terminated")


def test_suspension_review_can_terminate(library):
    case = to_decision(library, "national", "mau.sxd.qlxd.truongphong", business_key="DX-10")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    with pytest.raises(InvalidData):                      # Art. 6: a decision with reasons
        case.send("implementation_suspended")
    case.send("implementation_suspended", {"suspension_reason": "Chờ kinh phí"})
    case.do("suspension_review", {"continue_decision": "terminate", "continue_reason": "Dừng"})
    assert (case.instance.status, case.instance.stage) == ("completed", "terminated")


def _to_evaluation(library, variant="national"):
    proposer = f"{PREFIX[variant]}.sxd.qlxd.truongphong"
    case = to_decision(library, variant, proposer)
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    return case, proposer


@pytest.mark.parametrize("variant", VARIANTS)
def test_not_completed_goes_to_protection_and_is_exempted(library, variant):
    p = PREFIX[variant]
    case, proposer = _to_evaluation(library, variant)
    implement_and_evaluate(case, "not_completed", proposer)
    assert case.instance.stage == "protection_review"
    [request] = case.open("submit_protection_request")
    assert case.candidates(request) == [proposer]
    case.do("submit_protection_request",
            {"claimed_outcome": "not_completed", "facts": "Khách quan"}, by=proposer)
    case.do("assess", {"followed_policy": True, "pure_motives": True, "common_interest": True,
                       "abuse": False, "assessment": "Đúng chủ trương"}, by=f"{p}.sxd.giamdoc")
    case.do("protection_party_opinion", {"party_opinion": "agree"}, by=f"{p}.sxd.pgd1")
    with pytest.raises(InvalidData) as refused:
        case.do("decide_protection", {"protection_decision": "reduced",
                                      "protection_reasons": "x"}, by=f"{p}.sxd.giamdoc")
    assert refused.value.details["errors"][0]["field"] == "protection_decision"
    case.do("decide_protection", {"protection_decision": "excluded",
                                  "protection_reasons": "Điều 11"}, by=f"{p}.sxd.giamdoc")
    finished = case.instance
    assert (finished.status, finished.stage, finished.latest_decision) == (
        "completed", "closed", "excluded")


@pytest.mark.parametrize("variant", VARIANTS)
def test_damage_goes_to_protection_review_and_abuse_voids_protection(library, variant):
    case, proposer = _to_evaluation(library, variant)
    implement_and_evaluate(case, "damaged", proposer)
    case.do("submit_protection_request", {"claimed_outcome": "damaged", "facts": "Thiệt hại"},
            by=proposer)
    case.do("assess", {"followed_policy": True, "pure_motives": False, "common_interest": False,
                       "abuse": True, "assessment": "Có dấu hiệu vụ lợi"})
    case.do("protection_party_opinion", {"party_opinion": "disagree"})
    with pytest.raises(InvalidData, match="refused"):
        case.do("decide_protection", {"protection_decision": "reduced",
                                      "protection_reasons": "x"})
    case.do("decide_protection", {"protection_decision": "refused",
                                  "protection_reasons": "Điều 6"})
    assert case.instance.latest_decision == "refused"


def test_damage_without_abuse_allows_reduction(library):
    case, proposer = _to_evaluation(library)
    implement_and_evaluate(case, "damaged", proposer)
    case.do("submit_protection_request", {"claimed_outcome": "damaged", "facts": "Thiệt hại"},
            by=proposer)
    case.do("assess", {"followed_policy": True, "pure_motives": True, "common_interest": True,
                       "abuse": False, "assessment": "Khách quan"})
    case.do("protection_party_opinion", {"party_opinion": "agree"})
    case.do("decide_protection",
            {"protection_decision": "mitigated", "protection_reasons": "Art 11"})
    assert case.instance.stage == "closed"


def test_standalone_protection_request(library):
    proposer = "laocai.sxd.qhkt.truongphong"
    case = Case.start(library, "lao-cai", "protection", proposer)
    assert case.instance.stage == "protection_review"
    case.do("submit_protection_request", {"claimed_outcome": "not_completed", "facts": "x"},
            by=proposer)
    [assess] = case.open("assess")
    assert case.candidates(assess) == ["laocai.sxd.giamdoc"]


def test_plan_form_errors_name_each_field(library):
    proposer = "mau.sxd.qlxd.truongphong"
    case = Case.start(library, "national", "proposal", proposer)
    bad = plan(title="Ngắn"[:3], budget_vnd=-5, end_date="31/11/2026")
    del bad["no_harm"]
    with pytest.raises(InvalidData) as refused:
        case.do("submit_plan", bad, by=proposer)
    errors = {e["field"]: e for e in refused.value.details["errors"]}
    assert set(errors) == {"title", "budget_vnd", "end_date", "no_harm"}
    assert errors["no_harm"]["code"] == "form.required"
    assert (errors["budget_vnd"]["code"], errors["budget_vnd"]["params"]) == (
        "form.minimum", {"limit": 0})
    assert case.open_elements() == ["submit_plan"]


def test_a_form_accepts_only_its_own_fields(library):
    """A party secretary cannot reroute the decision by slipping a variable into the form."""
    proposer = "mau.sxd.qlxd.truongphong"
    case = Case.start(library, "national", "proposal", proposer)
    case.do("submit_plan", plan(), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": False}, by="mau.sxd.giamdoc")
    with pytest.raises(InvalidData) as refused:
        case.do("party_opinion", {"party_opinion": "agree", "decider_role": "party_committee"},
                by="mau.sxd.pgd1")
    assert refused.value.details["errors"] == [{
        "field": "decider_role", "code": "form.unknown_field", "params": {},
        "message": "This field is not part of the form"}]
    assert case.open_elements() == ["party_opinion"]
