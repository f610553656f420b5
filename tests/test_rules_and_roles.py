"""The rules of the decree as the procedures state them (the scripts and conditions of
processes/, run in the engine's sandbox), and the role resolution the variants declare."""
from __future__ import annotations

import pytest
from lxml import etree

from engine.errors import DefinitionInvalid
from engine.roles import role_problems
from engine.sandbox import Sandbox
from engine.variants import load_variant

from conftest import PROJECT, bpmn_source
from procedures import deploy_library

NATIONAL = load_variant(PROJECT / "processes" / "national").settings
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
      "nd73": "urn:nd73-workflow:bpmn:1.0"}
ROUTING_FILES = ("national/proposal.bpmn", "national/protection.bpmn",
                 "can-tho/registration.bpmn")


def element(path: str, element_id: str):
    root = etree.parse(str(PROJECT / "processes" / path)).getroot()
    [found] = root.xpath(f"//*[@id='{element_id}']")
    return found


def script(path: str, element_id: str, xpath: str = "bpmn:script") -> str:
    return element(path, element_id).find(xpath, NS).text


def run(code: str, data: dict, **functions) -> dict:
    settings = {**NATIONAL["council"], **NATIONAL["routing"], **NATIONAL["meetings"]}
    sandbox = Sandbox({"setting": lambda section, key: settings[key], **functions})
    sandbox.execute(code, data)
    return data


def tally(ballots: dict, chair: str) -> str:
    code = script("national/proposal.bpmn", "tally")
    cast = [{"member": m, "vote": v} for m, v in reversed(ballots.items())]   # order cast
    return run(code, {"voters": list(ballots), "ballots": cast,
                      "chair": chair, "leadership_mode": "ballots"})["vote_result"]


@pytest.mark.parametrize("ballots, head, expected", [
    ({"h": "for", "d1": "for", "d2": "against"}, "h", "approved"),        # 2 of 3
    ({"h": "against", "d1": "for", "d2": "for", "d3": "against"}, "h", "rejected"),  # tie
    ({"h": "for", "d1": "against", "d2": "for", "d3": "against"}, "h", "approved"),  # tie
    ({"h": "for", "d1": "against", "d2": "against"}, "h", "rejected"),
    ({"h": "abstain"}, "h", "rejected"),
])
def test_vote_needs_more_than_half_and_a_tie_follows_the_head(ballots, head, expected):
    assert tally(ballots, head) == expected


def test_blank_ballots_do_not_count():
    assert tally({"h": "for", "d1": "against", "d2": "abstain"}, "h") == "approved"


def test_the_proposer_does_not_vote_on_his_own_proposal():
    code = script("national/proposal.bpmn", "prepare_vote")
    members = {"agency": ["h", "d1", "d2"]}
    data = run(code, {"decider_role": "head", "decision_unit": "agency", "proposer_unit": "u",
                      "proposer": "d2"},
               members_of=lambda unit, *positions: members[unit] if "deputy" in positions
               else members[unit][:1], role_members=lambda role, proposer, unit: [])
    assert (data["voters"], data["chair"]) == (["h", "d1"], "h")


@pytest.mark.parametrize("path", ROUTING_FILES)
@pytest.mark.parametrize("positions, kind, via, expected", [
    ([], "department", [], ("head", "head")),
    (["head"], "department", [], ("superior_head", "superior_head")),
    (["head"], "department", ["head"], ("home_affairs", "chairman")),
    (["deputy"], "department", ["head"], ("head", "head")),
    (["deputy"], "department", ["head", "deputy"], ("home_affairs", "chairman")),
    (["head"], "province", ["head"], ("superior_head", "superior_head")),
])
def test_routing_of_proposals(path, positions, kind, via, expected):
    script_id = {"national/proposal.bpmn": "route", "national/protection.bpmn":
                 "protection_route", "can-tho/registration.bpmn": "registration_route"}[path]
    data = run(script(path, script_id), {"proposer": "p", "proposer_unit": "u"},
               positions_of=lambda user, unit: positions, agency_of=lambda unit: "a",
               agency_kind=lambda unit: kind, role_unit=lambda role, unit: f"unit of {role}",
               province_of=lambda unit: "unit of superior_head",   # the agency is under it
               setting=lambda section, key: {
                   "via_home_affairs_for": via, "via_home_affairs_kinds": ["department"],
                   "to_superior_for": ["head"]}.get(key, 0),
               deadline=lambda name: None, escalation=lambda name: None)
    assert data["decider_role"] == expected[1]
    if "decision_unit" in data:             # Art. 4: the Party committee at the decider's level
        assert data["decision_unit"] == f"unit of {expected[1]}"
    if "route" in data:
        assert data["route"] == expected[0]


@pytest.mark.parametrize("votes, expected", [
    (["for"] * 4 + ["against"], "recommend_approve"),
    (["for"] * 2 + ["against"] * 2, "recommend_reject"),       # 50 % is not a majority
    (["for"] * 3, "no_quorum"),                               # 3 of 5 < 2/3
    (["for"] * 4, "recommend_approve"),
])
@pytest.mark.parametrize("mode", ["meeting", "ballots"])
def test_council_quorum_and_majority(votes, expected, mode):
    members = ["m1", "m2", "m3", "m4", "m5"]
    code = script("national/council.bpmn", "council_tally")
    data = {"council_members": members, "council_mode": mode, "council_chair": "m1",
            "council_secretary": "m2"}
    if mode == "ballots":                  # each member's ballot, in the order cast
        data["council_ballots"] = [{"member": m, "vote": v, "opinion": "x"}
                                   for m, v in reversed(list(zip(members, votes)))]
    else:                                  # the members who cast a vote were present
        present = members[:len(votes)]
        data |= {"council_meeting_date": "2026-03-03", "council_attendees": present,
                 "council_opinions": [{"member": m, "vote": v, "opinion": "x"}
                                      for m, v in zip(present, votes)]}
    data = run(code, data)
    assert data["council_recommendation"] == expected
    record = data["council_record"]
    assert (record["result"], record["members_count"], record["present_count"],
            record["votes_for"]) == (expected, 5, len(votes), votes.count("for"))
    assert record["members"] == [              # the same rows from a meeting or from ballots
        {"member": m, "present": i < len(votes), "vote": votes[i] if i < len(votes) else None,
         "opinion": "x" if i < len(votes) else None} for i, m in enumerate(members)]


@pytest.mark.parametrize("size, refused", [(4, True), (5, False), (9, False), (10, True)])
def test_council_size_follows_the_settings(size, refused):
    [rule] = [r for r in element("national/council.bpmn", "form_council")
              .findall("*/nd73:validation", NS) if "min_size" in r.get("when")]
    members = [f"m{i}" for i in range(size)]
    sandbox = Sandbox({"setting": lambda section, key: NATIONAL[section][key]})
    assert sandbox.evaluate(rule.get("when"), {"council_members": members}) is refused


def test_outcome_mapping_and_protection_choices():
    code = script("national/proposal.bpmn", "route_result")
    no_deadlines = {"deadline": lambda name: None, "escalation": lambda name: None}
    assert run(code, {"outcome": "completed"}, **no_deadlines)["result_path"] == "recognition"
    for outcome in ("not_completed", "damaged"):
        assert run(code, {"outcome": outcome}, **no_deadlines)["result_path"] == "protection"
    choices = script("national/protection.bpmn", "decide_protection",
                     "bpmn:extensionElements/spiffworkflow:preScript")

    def allowed(outcome, abuse=False, met=True):
        return run(choices, {"outcome": outcome, "evaluation_on_record": True, "abuse": abuse,
                             "followed_policy": met, "pure_motives": met,
                             "common_interest": met})["protection_choices"]
    assert allowed("completed") == ["not_liable"]
    assert allowed("not_completed") == ["excluded", "refused"]
    assert allowed("damaged") == ["excluded", "exempted", "mitigated", "refused"]
    assert allowed("damaged", met=False) == ["refused"]
    assert allowed("damaged", abuse=True) == ["refused"]


@pytest.fixture
def org(engine):
    deploy_library(engine)
    return engine.org


@pytest.mark.parametrize("role, proposer, unit, expected", [
    ("head", "mau.sxd.qlxd.chuyenvien", "mau.sxd.qlxd", ["mau.sxd.giamdoc"]),
    ("leadership", "x", "mau.sxd.qlxd", ["mau.sxd.giamdoc", "mau.sxd.pgd1", "mau.sxd.pgd2",
                                         "mau.sxd.pgd3"]),
    ("superior_head", "mau.sxd.giamdoc", "mau.sxd", ["mau.chutich"]),
    ("party_committee", "x", "mau.sxd.gt", ["mau.sxd.pgd1"]),
    ("home_affairs", "x", "mau.xa", ["mau.snv.chuyenvien", "mau.snv.giamdoc"]),
    ("chairman", "x", "mau.sxd.gt", ["mau.chutich"]),
    ("office", "x", "mau.sxd.gt", ["mau.sxd.vp.chanhvp", "mau.sxd.vp.chuyenvien"]),
    ("office", "x", "mau.xa", ["mau.vpubnd.chanhvp", "mau.vpubnd.chuyenvien"]),
    ("council", "x", "mau.sxd", ["mau.chuyengia1", "mau.chuyengia2", "mau.chuyengia3",
                                 "mau.chuyengia4", "mau.chuyengia5", "mau.skhcn.giamdoc",
                                 "mau.snv.giamdoc"]),
    ("proposer", "mau.sxd.gt.truongphong", "mau.sxd.gt", ["mau.sxd.gt.truongphong"]),
])
def test_roles_resolve_through_the_org_tree(org, role, proposer, unit, expected):
    assert sorted(org.resolve(role, proposer=proposer, unit_id=unit,
                              settings=NATIONAL).usernames) == expected


def test_decider_role_and_assignee_come_from_the_data(org):
    resolution = org.resolve("decider", proposer="mau.sxd.giamdoc", unit_id="mau.sxd",
                             settings=NATIONAL, data={"decider_role": "superior_head"})
    assert resolution.usernames == ["mau.chutich"] and resolution.unit_id == "mau"
    ballot = org.resolve("leadership", proposer="p", unit_id="mau.sxd", settings=NATIONAL,
                         data={"voter": "mau.sxd.pgd2"}, assignee_from="voter")
    assert ballot.usernames == ["mau.sxd.pgd2"]
    implementers = org.resolve("implementer", proposer="p", unit_id="mau.sxd",
                               settings=NATIONAL, data={"implementers": []})
    assert implementers.usernames == ["p"]          # otherwise = "proposer"


def test_a_variant_changes_whom_a_lane_names_by_its_settings_alone(org):
    """The Party committee consulted is declared, so a province (or a correction of the
    law) moves it to the superior agency's committee without code."""
    own = org.resolve("party_committee", proposer="x", unit_id="mau.sxd.gt",
                      settings=NATIONAL)
    assert (own.usernames, own.unit_id) == (["mau.sxd.pgd1"], "mau.sxd")
    # the national declaration: the committee of the unit in the data field decision_unit
    decider_level = org.resolve("party_committee", proposer="x", unit_id="mau.sxd.gt",
                                settings=NATIONAL, data={"decision_unit": "mau"})
    assert decider_level.unit_id == "mau"
    moved = {**NATIONAL, "roles": {**NATIONAL["roles"], "party_committee": {
        "positions": ["party_secretary"], "unit": "superior_agency"}}}
    above = org.resolve("party_committee", proposer="x", unit_id="mau.sxd.gt",
                        settings=moved)
    assert above.unit_id == "mau" and above.usernames != own.usernames
    assert org.role_unit("superior_head", "mau.sxd", NATIONAL) == "mau"
    assert org.role_unit("head", "mau.sxd.gt", NATIONAL) == "mau.sxd"


def test_a_role_except_proposer_never_names_the_proposer(org):
    """Nobody gives an opinion, an assessment or a vote on their own proposal (Art. 4, 8,
    11): a role declared ``except_proposer`` leaves the proposer out, also when it is named
    through ``role_from``."""
    secretary = org.resolve("party_committee", proposer="mau.sxd.pgd1", unit_id="mau.sxd.gt",
                            settings=NATIONAL)
    assert "mau.sxd.pgd1" not in secretary.usernames
    plain = {**NATIONAL, "roles": {**NATIONAL["roles"], "party_committee": {
        "positions": ["party_secretary"], "unit": "agency"}}}
    assert org.resolve("party_committee", proposer="mau.sxd.pgd1", unit_id="mau.sxd.gt",
                       settings=plain).usernames == ["mau.sxd.pgd1"]
    assessor = org.resolve("assessor", proposer="mau.sxd.giamdoc", unit_id="mau.sxd",
                           settings=NATIONAL, data={"assessor_role": "head"})
    assert assessor.usernames == []
    assert role_problems({"roles": {"a": {"positions": ["head"], "except_proposer": "yes"}}},
                         "variant.toml")[0].message == "except_proposer must be true or false"


def test_a_lane_no_role_declares_names_the_position_of_its_name(org):
    assert org.resolve("deputy", proposer="x", unit_id="mau.sxd.gt",
                       settings={}).usernames == org.members("mau.sxd", ["deputy"])


def test_role_declarations_the_engine_cannot_read_are_refused_by_name():
    problems = role_problems({"roles": {
        "a": {"positions": ["head"], "unit": "ministry"},
        "b": {"unit": "agency"},
        "c": {"person": "someone"},
        "d": {"positions": ["head"], "colour": "red"},
        "e": {"role_from": "x", "otherwise_role": "nobody"}}}, "variant.toml")
    text = "\n".join(f"{p.file}: {p.message}" for p in problems)
    assert "roles.a: unit 'ministry' is not one of" in text
    assert "roles.b: names nobody" in text
    assert "roles.c: person can only be" in text
    assert "roles.d: 'colour' is not one of" in text
    assert "roles.e: otherwise_role 'nobody' is not a declared role" in text


def test_a_lane_naming_an_undeclared_role_is_refused_at_deployment(engine):
    lane = bpmn_source(replace={'<bpmn:lane id="Lane_head" name="head">':
                                '<bpmn:lane id="Lane_head" name="treasurer">'})
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy("national", [lane], "designer", settings=NATIONAL)
    [problem] = [p for p in refused.value.problems if "treasurer" in p.message]
    assert problem.element_id == "Lane_head"
    engine.repository.deploy("national", [lane], "designer", settings={
        **NATIONAL, "roles": {**NATIONAL["roles"], "treasurer": {"positions": ["head"]}}})


def test_escalation_goes_to_the_head_or_the_superior_head(org):
    assert org.heads_above("mau.sxd.qlxd.chuyenvien", "mau.sxd.qlxd") == ["mau.sxd.giamdoc"]
    assert org.heads_above("mau.sxd.giamdoc", "mau.sxd") == ["mau.chutich"]


def test_reporting_units_leave_out_the_consolidating_bodies(org):
    assert org.reporting_units("laocai", ("department", "commune"),
                               ("home_affairs", "office")) == ["laocai.skhcn", "laocai.sxd",
                                                               "laocai.xa"]


def test_a_subtree_is_listed_level_by_level_each_parent_s_units_by_id(org):
    units = org.subtree("mau")
    variant = units[0].variant
    everything = [u for u in org._tree().values() if u.variant == variant]
    expected, queue = ["mau"], ["mau"]
    while queue:
        parent = queue.pop(0)
        below = sorted(u.id for u in everything if u.parent_id == parent)
        expected += below
        queue += below
    assert [u.id for u in units] == expected and len(expected) > 5
    assert org.reporting_units("mau", ("commune",)) == [
        u for u in expected if org.unit(u).kind == "commune"]
