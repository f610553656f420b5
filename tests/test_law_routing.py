"""Who decides a proposal from a public-service unit or from a state capital representative in
an enterprise (Art. 7 k.3–4; Cần Thơ: Kế hoạch 88/KH-UBND mục II.3): routing is data
(`[routing]` of variant.toml), the organisation built through the REST API as an
administrator would, the proposals started through it."""
from __future__ import annotations

import tomllib


from engine.org import DEFAULT_DEMO_PASSWORD

from conftest import PROJECT
from procedures import Case, plan

UNITS = {   # id suffix → (name, kind, parent suffix)
    "ttcds": ("Trung tâm Chuyển đổi số", "public_service_unit", ""),
    "ttcds.kt": ("Phòng Kỹ thuật", "division", "ttcds"),
    "sxd.ttkd": ("Trung tâm Kiểm định xây dựng", "public_service_unit", "sxd"),
    "ctdt": ("Công ty TNHH MTV Công trình đô thị", "enterprise", ""),
}
PEOPLE = {  # username suffix → (full name, unit suffix, position)
    "ttcds.giamdoc": ("Lê Văn Khoa", "ttcds", "head"),
    "ttcds.phogiamdoc": ("Trần Minh Luân", "ttcds", "deputy"),
    "ttcds.kt.truongphong": ("Phạm Thị Mơ", "ttcds.kt", "head"),
    "sxd.ttkd.giamdoc": ("Ngô Văn Nghĩa", "sxd.ttkd", "head"),
    "ctdt.daidienvon": ("Đặng Thị Oanh", "ctdt", "state_capital_representative"),
}
ADMINS = {"national": "admin", "can-tho": "cantho.quantri"}
PREFIX = {"national": "mau", "can-tho": "cantho"}


def build_units(server, variant: str) -> None:
    """The public-service units (one under the province, one under a department) and the
    enterprise with state capital, with their people, as the administrator adds them."""
    p, admin = PREFIX[variant], ADMINS[variant]
    for suffix, (name, kind, parent) in UNITS.items():
        saved = server.call("PUT", f"/org/{variant}/units/{p}.{suffix}", admin, json={
            "name": name, "kind": kind, "parent_id": f"{p}.{parent}" if parent else p})
        assert saved.status_code == 200, saved.text
    for suffix, (full_name, unit, position) in PEOPLE.items():
        saved = server.call("PUT", f"/org/{variant}/officials/{p}.{suffix}", admin, json={
            "full_name": full_name, "password": DEFAULT_DEMO_PASSWORD})
        assert saved.status_code == 200, saved.text
        added = server.post(f"/org/{variant}/officials/{p}.{suffix}/memberships", admin,
                            json={"unit_id": f"{p}.{unit}", "position": position})
        assert added.status_code == 200, added.text


def submitted(server, engine, variant: str, proposer: str) -> Case:
    started = server.post("/instances", proposer, json={"definition_key": "proposal",
                                                        "variant": variant})
    assert started.status_code == 201, started.text
    case = Case(engine, engine.runtime.get(started.json()["id"]))
    case.do("submit_plan", plan(), by=proposer)
    return case


def deciders(case: Case) -> tuple[str, list[str]]:
    """The route taken and who screens (the decider)."""
    route = case.data()["route"]
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    [screening] = case.open("screening")
    return route, case.candidates(screening)


def test_routing_is_a_setting_of_the_variant():
    national = tomllib.loads((PROJECT / "processes" / "national" / "variant.toml")
                             .read_text(encoding="utf-8"))["routing"]
    can_tho = tomllib.loads((PROJECT / "processes" / "can-tho" / "variant.toml")
                            .read_text(encoding="utf-8"))["routing"]
    assert national["via_home_affairs_for"] == []
    assert national["to_superior_for"] == ["head", "state_capital_representative"]
    assert set(can_tho["via_home_affairs_kinds"]) == {"department", "commune",
                                                      "public_service_unit", "enterprise"}
    assert "state_capital_representative" in can_tho["via_home_affairs_for"]
    source = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text(encoding="utf-8")
    assert '("department", "commune")' not in source       # no kind written in the procedure


def test_art7_can_tho_units_under_the_city_go_via_home_affairs_to_the_chairman(server, engine):
    build_units(server, "can-tho")
    # the director of a public-service unit under the city: a leader under its management
    case = submitted(server, engine, "can-tho", "cantho.ttcds.giamdoc")
    assert case.open_elements() == ["home_affairs_review"]
    assert deciders(case) == ("home_affairs", ["cantho.chutich"])
    # a state capital representative in an enterprise under the city
    case = submitted(server, engine, "can-tho", "cantho.ctdt.daidienvon")
    assert case.open_elements() == ["home_affairs_review"]
    assert deciders(case) == ("home_affairs", ["cantho.chutich"])


def test_art7_can_tho_managers_under_a_unit_go_to_its_head(server, engine):
    build_units(server, "can-tho")
    # a manager (viên chức quản lý) inside the unit: its director decides (mục II.3.b)
    case = submitted(server, engine, "can-tho", "cantho.ttcds.kt.truongphong")
    assert deciders(case) == ("head", ["cantho.ttcds.giamdoc"])
    # the leadership that votes is the unit's own
    assert case.data()["decision_unit"] == "cantho.ttcds"
    # the director of a unit under a department: the department's director (Art. 7 k.4)
    case = submitted(server, engine, "can-tho", "cantho.sxd.ttkd.giamdoc")
    assert deciders(case) == ("superior_head", ["cantho.sxd.giamdoc"])


def test_art7_national_units_and_representatives_go_to_the_superior_head(server, engine):
    build_units(server, "national")
    case = submitted(server, engine, "national", "mau.ttcds.giamdoc")
    assert deciders(case) == ("superior_head", ["mau.chutich"])
    case = submitted(server, engine, "national", "mau.ctdt.daidienvon")
    assert deciders(case) == ("superior_head", ["mau.chutich"])
    case = submitted(server, engine, "national", "mau.ttcds.kt.truongphong")
    assert deciders(case) == ("head", ["mau.ttcds.giamdoc"])
