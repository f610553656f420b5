"""Who may propose (Art. 2–3) and the screening of the Art. 5 k.1 conditions, as Decree
73/2023/NĐ-CP writes them: one scenario per rule, in every variant (each inherits the
national procedure and its `[proposers]` setting), through the REST API and the web app."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import InvalidData
from engine.store import AuditEvent, Instance

from browser import CHROMIUM, chromium_page, sign_in
from conftest import PROJECT
from procedures import PREFIX, SCREENED, VARIANTS, Case, deploy_library, plan


def counts(engine) -> tuple[int, int]:
    with engine.db.reading() as session:
        return (session.scalar(select(func.count()).select_from(Instance)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


def start(server, user: str, variant: str):
    return server.post("/instances", user, json={"definition_key": "proposal",
                                                 "variant": variant})


# --- Art. 2–3: only leaders and managers propose ----------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_art2_3_only_leaders_and_managers_may_propose(server, engine, variant):
    p = PREFIX[variant]
    for official in (f"{p}.sxd.qlxd.chuyenvien", f"{p}.xa.congchuc"):   # chuyên viên, công chức
        before = counts(engine)
        refused = start(server, official, variant)
        assert refused.status_code == 403, refused.text
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        problem = refused.json()
        assert (problem["rule"], problem["name"]) == ("start_rule", "proposer_position")
        assert "Articles 2 and 3" in problem["detail"]
        assert "Điều 2 và Điều 3" in problem["params"]["reason"]
        assert counts(engine) == before, f"{official}: something was written"
    # a division head (công chức lãnh đạo), a department's deputy, a commune's chairman
    for leader in (f"{p}.sxd.qlxd.truongphong", f"{p}.sxd.pgd2", f"{p}.xa.chutich"):
        started = start(server, leader, variant)
        assert started.status_code == 201, started.text


def test_art2_3_the_positions_that_may_propose_are_a_variant_setting(engine, tmp_path):
    settings = (PROJECT / "processes" / "national" / "variant.toml").read_text(encoding="utf-8")
    assert re.search(r'\[proposers\]\n(#.*\n)*positions = \["head", "deputy", "acting_head", '
                     r'"state_capital_representative"\]', settings)
    deploy_library(engine)
    staff = "laocai.sxd.qlxd.chuyenvien"
    with pytest.raises(Exception) as refused:
        Case.start(engine, "lao-cai", "proposal", staff)
    assert getattr(refused.value, "rule", None) == "start_rule"
    # a province that lets its staff propose says so in its own variant.toml
    folder = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes", folder)
    with (folder / "lao-cai" / "variant.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[proposers]\npositions = ["head", "deputy", "staff"]\n')
    engine.repository.deploy_folder(folder / "lao-cai", "ci", PROJECT / "forms")
    case = Case.start(engine, "lao-cai", "proposal", staff)
    assert case.open_elements() == ["submit_plan"]


# --- Art. 5 k.1: the screener checks each condition --------------------------------------------

def _screening(engine, variant, business_key="DX-5"):
    proposer = f"{PREFIX[variant]}.sxd.qlxd.truongphong"
    case = Case.start(engine, variant, "proposal", proposer, business_key=business_key)
    case.do("submit_plan", plan(), by=proposer)
    return case, proposer


def test_art5_the_plan_states_it_does_not_affect_other_localities(engine):
    deploy_library(engine)
    case, proposer = _screening(engine, "national")
    schema = engine.repository.form(engine.repository.latest("national", "proposal"),
                                    "proposal_plan.schema.json")
    assert "no_local_harm" in schema["required"]
    assert "địa phương, cơ quan khác" in schema["properties"]["no_local_harm"]["title"]
    again = Case.start(engine, "national", "proposal", proposer, business_key="DX-6")
    with pytest.raises(InvalidData) as refused:
        again.do("submit_plan", {k: v for k, v in plan().items() if k != "no_local_harm"},
                 by=proposer)
    assert [e["field"] for e in refused.value.details["errors"]] == ["no_local_harm"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_art5_screening_records_each_condition_and_returns_a_proposal_failing_one(engine,
                                                                                   variant):
    deploy_library(engine)
    case, proposer = _screening(engine, variant)
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    # the proposer's ticks are not the finding: the screener gives each condition
    with pytest.raises(InvalidData) as refused:
        case.do("screening", {"is_complex": False})
    assert {e["field"] for e in refused.value.details["errors"]} == set(SCREENED)
    # a condition not met needs its reason
    failing = {**SCREENED, "condition_no_local_harm": "not_met", "is_complex": False}
    with pytest.raises(InvalidData) as refused:
        case.do("screening", failing)
    [error] = refused.value.details["errors"]
    assert error["field"] == "condition_no_local_harm_note"
    assert "khoản 1 Điều 5" in error["message"]
    case.do("screening", {**failing, "condition_no_local_harm_note":
                          "Ảnh hưởng quy hoạch của xã lân cận"})
    # back to the proposer, the condition named, nothing sent on to the Party committee
    assert case.open_elements() == ["submit_plan"]
    assert case.data()["screening_failed"] == ["condition_no_local_harm"]
    [told] = [n for n in engine.notifications.list_for(proposer)
              if n["kind"] == "proposal_returned"]
    assert "Không ảnh hưởng đến sự phát triển của địa phương, cơ quan khác" in told["body"]
    assert "Ảnh hưởng quy hoạch của xã lân cận" in told["body"]
    # the revised plan is screened again and, every condition met, goes on
    case.do("submit_plan", plan(), by=proposer)
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    case.do("screening", {**SCREENED, "is_complex": False})
    [opinion] = case.open("party_opinion")
    assert engine.runtime.task_data(opinion.id)["screening_failed"] == []


# --- the web app: the refusal page -------------------------------------------------------------

@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"chromium is not at {CHROMIUM}")
def test_web_an_official_who_may_not_propose_is_told_the_rule(server, engine):
    staff = "laocai.sxd.qlxd.chuyenvien"
    with chromium_page(1280, 900) as page:
        sign_in(page, server, staff)
        before = counts(engine)                 # signing in is recorded; starting is not
        page.get_by_role("link", name="Tạo mới").click()
        page.locator("button[data-start='proposal']").click()
        heading = page.locator("h1")
        assert "403" in heading.inner_text()
        detail = page.locator("p.detail").inner_text()
        assert "Điều 2 và Điều 3 Nghị định số 73/2023/NĐ-CP" in detail
        assert "lãnh đạo, quản lý" in detail
    assert counts(engine) == before
