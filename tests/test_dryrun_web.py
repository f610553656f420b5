"""Dry-runs from the REST API and the designer's page: only designers of the variant, on the
deployed definitions, leaving the real database as it was. Screenshots land in
tests/output/dryrun-*.png."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from browser import CHROMIUM, chromium_page, sign_in
from engine.store import AuditEvent, HumanTask, Instance, Timer
from engine.store.models import Document, Notification
from conftest import PROJECT

DESIGNER = "laocai.snv.chuyenvien"
OTHER_DESIGNER = "cantho.snv.chuyenvien"
OFFICIAL = "laocai.sxd.qlxd.truongphong"
SHOTS = Path(__file__).parent / "output"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"chromium is not installed at {CHROMIUM}")


def counts(engine) -> dict[str, int]:
    with engine.db.reading() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t))
                for t in (Instance, HumanTask, Timer, Document, Notification, AuditEvent)}


def test_the_api_lists_and_runs_the_scripts_kept_with_the_variant(server, engine):
    listed = server.get("/variants/lao-cai/dry-runs", DESIGNER)
    assert listed.status_code == 200, listed.text
    [script] = listed.json()
    assert (script["name"], script["process"]) == ("tu_choi_qua_tet", "proposal")
    assert script["script"]["steps"][0]["task"] == "submit_plan"
    before = counts(engine)
    ran = server.post("/variants/lao-cai/dry-runs", DESIGNER, json={"script": "tu_choi_qua_tet"})
    assert ran.status_code == 200, ran.text
    body = ran.json()
    assert body["passed"] and body["end"] == "end_refused"
    [decide] = [t for t in body["tasks"] if t["element_id"] == "decide"]
    assert decide["due"] == "02/03/2026"
    assert decide["candidates"][0]["full_name"] == "Đỗ Thanh Mai"
    assert counts(engine) == before            # nothing written to the real database


@pytest.mark.parametrize("variant", ["..", "x" * 65, "lao cai", "lao-cai.toml",
                                     "Ṱ̺̺̕o͞ ̷i̲̬͇̪͙n̝̗͕v̟̜̘̦͟o̶̙̰̠kè͚̮̺̪̹̱̤ " * 40])
def test_a_name_no_variant_can_have_is_not_found_before_any_file_is_looked_for(server, variant):
    """The variant's name becomes a folder's: a path, a name too long for the file system
    (which refused it with a server error) or other characters are a variant that does
    not exist, for whoever asks."""
    # dots quoted too: the client would take ".." as a step up the path
    path = f"/variants/{quote(variant, safe='').replace('.', '%2E')}/dry-runs"
    for user in ("admin", DESIGNER):
        for answer in (server.get(path, user),
                       server.post(path, user, json={"script": "tu_choi_qua_tet"})):
            assert answer.status_code in (403, 404), answer.text
            if answer.status_code == 404:
                assert answer.json()["code"] == "variant.not_found", answer.text
    assert server.get(path, "admin").status_code == 404


def test_the_api_runs_a_script_on_the_draft_leaving_the_deployed_version_alone(server, engine):
    from procedures import as_user
    from engine.variants import SETTINGS_FILE

    args = {"script": "tu_choi_qua_tet", "draft": True}
    none = server.post("/variants/lao-cai/dry-runs", DESIGNER, json=args)
    assert none.status_code == 404 and none.json()["code"] == "draft.none", none.text
    designer = as_user(engine, DESIGNER)
    draft = engine.drafts.open("lao-cai", designer)
    settings = draft.files[SETTINGS_FILE].decode().replace("decision = 7", "decision = 5")
    assert settings != draft.files[SETTINGS_FILE].decode()
    engine.drafts.put_file("lao-cai", SETTINGS_FILE, settings.encode(), designer)
    before = counts(engine)
    ran = server.post("/variants/lao-cai/dry-runs", DESIGNER, json=args)
    assert ran.status_code == 200, ran.text
    [decide] = [t for t in ran.json()["tasks"] if t["element_id"] == "decide"]
    assert decide["due"] == "26/02/2026"          # five working days past the weekend and Tết
    assert not ran.json()["passed"]               # the script expects the deployed seven
    deployed = server.post("/variants/lao-cai/dry-runs", DESIGNER,
                           json={"script": "tu_choi_qua_tet"}).json()
    assert deployed["passed"]
    assert counts(engine) == before
    assert engine.repository.latest("lao-cai", "proposal").version == 1
    # another province's designer may not play Lào Cai's draft
    assert server.post("/variants/lao-cai/dry-runs", OTHER_DESIGNER,
                       json=args).status_code == 403


def test_the_api_runs_edited_choices_and_names_the_failing_step(server):
    steps = server.get("/variants/lao-cai/dry-runs", DESIGNER).json()[0]["script"]["steps"]
    steps[4] = {**steps[4], "data": {"decision": "reject"}}      # no reasons given
    ran = server.post("/variants/lao-cai/dry-runs", DESIGNER,
                      json={"script": "tu_choi_qua_tet", "steps": steps})
    assert ran.status_code == 200, ran.text
    [failure] = ran.json()["failures"]
    assert (failure["step"], failure["element_id"], failure["code"]) == (
        5, "decide", "dryrun.refused")
    assert "refusal_reasons" in failure["message"]
    bad = server.post("/variants/lao-cai/dry-runs", DESIGNER,
                      json={"script": "tu_choi_qua_tet", "starts_at": "31/11/2026"})
    assert bad.status_code == 422
    assert "31/11/2026" in bad.text
    missing = server.post("/variants/lao-cai/dry-runs", DESIGNER, json={"script": "nope"})
    assert missing.status_code == 404


def test_only_designers_of_the_variant_may_dry_run(server):
    for user in (OTHER_DESIGNER, OFFICIAL):
        assert server.get("/variants/lao-cai/dry-runs", user).status_code == 403
        refused = server.post("/variants/lao-cai/dry-runs", user,
                              json={"script": "tu_choi_qua_tet"})
        assert refused.status_code == 403
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert server.get("/variants/lao-cai/dry-runs").status_code == 401
    spec = server.get("/openapi.json").json()
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/variants/{variant}/dry-runs"])


@needs_chromium
def test_a_lao_cai_designer_dry_runs_and_sees_the_due_date_skip_the_weekend_and_tet(server):
    with chromium_page(1400, 900) as page:
        sign_in(page, server, DESIGNER)
        page.goto(f"{server.url}/designer")
        page.locator('[data-dryrun="lao-cai"]').click()
        expect(page.locator("h1")).to_contain_text("Chạy thử quy trình")
        expect(page.locator("#dryrun-script")).to_have_value("tu_choi_qua_tet")
        expect(page.locator("#dryrun-process")).to_have_value("proposal")
        expect(page.locator("#dryrun-process option")).to_contain_text(["council"])
        # the decision is made on time this once: the late wait is taken off the table
        page.get_by_label("Chờ 5", exact=True).select_option("")
        page.locator("#dryrun-run").click()
        expect(page.locator("#dryrun-outcome")).to_have_attribute("data-passed", "1")
        expect(page.locator("#dryrun-outcome")).to_contain_text("Từ chối bằng văn bản")
        decide = page.locator('#dryrun-tasks tr[data-element="decide"]')
        # voted Thursday 12/02/2026; the weekends and Tết (16–20/02) do not count
        expect(decide.locator("td").nth(2)).to_contain_text("12/02/2026")
        expect(decide.locator("td.due")).to_have_text("02/03/2026")
        expect(decide).to_contain_text("Đỗ Thanh Mai — Người đứng đầu, Sở Xây dựng")
        expect(page.locator('#dryrun-path li[data-element="end_refused"]')).to_have_count(1)
        expect(page.locator("#dryrun-documents")).to_contain_text("01/CV-SXD")
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "dryrun-lao-cai.png"), full_page=True)
        # a choice that breaks the procedure is named with its step
        page.get_by_label("Dữ liệu biểu mẫu (JSON) 5", exact=True).fill('{"decision": "reject"}')
        page.locator("#dryrun-run").click()
        expect(page.locator("#dryrun-outcome")).to_have_attribute("data-passed", "0")
        expect(page.locator("#dryrun-findings")).to_contain_text("Bước 5")
        expect(page.locator("#dryrun-findings")).to_contain_text("refusal_reasons")
        # a designer of another province cannot open Lào Cai's dry-runs
        sign_in(page, server, OTHER_DESIGNER)
        response = page.goto(f"{server.url}/designer/lao-cai/dry-run")
        assert response.status == 403


def test_a_deployment_through_the_api_is_refused_when_a_kept_script_fails(server, engine):
    """As ``nd73 deploy`` does: the scripts are played on what the upload would put in
    place, before anything is deployed; a failure refuses it naming the script and step."""
    xml = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text(encoding="utf-8")
    five_days = xml.replace('<nd73:property name="dueDate" value="decision_due" />',
                            '<nd73:property name="dueInWorkingDays" value="5" />')
    assert five_days != xml
    refused = server.post("/definitions", DESIGNER, data={"variant": "lao-cai"},
                          files={"files": ("proposal.bpmn", five_days.encode())})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["code"] == "deploy.dry_run_failed"
    assert problem["params"] == {"script": "lao-cai/dryrun/tu_choi_qua_tet.toml", "step": 5}
    assert "tu_choi_qua_tet.toml" in problem["detail"] and "step 5" in problem["detail"]
    [failure] = problem["errors"]
    assert (failure["field"], failure["step"], failure["element_id"]) == (
        "lao-cai/dryrun/tu_choi_qua_tet.toml", 5, "decide")
    assert "02/03/2026" in failure["message"] and "26/02/2026" in failure["message"]
    assert engine.repository.latest("lao-cai", "proposal").version == 1     # nothing deployed
    assert "dueInWorkingDays" not in engine.repository.latest("lao-cai", "proposal"
                                                              ).sources["proposal.bpmn"]
    # a change the scripts pass goes through
    longer = xml.replace('<bpmn:process id="proposal" name="',
                         '<bpmn:process id="proposal" name="(Lào Cai) ', 1)
    assert longer != xml
    deployed = server.post("/definitions", DESIGNER, data={"variant": "lao-cai"},
                           files={"files": ("proposal.bpmn", longer.encode())})
    assert deployed.status_code == 201, deployed.text
    assert "dry_run_warnings" not in deployed.json()
    assert engine.repository.latest("lao-cai", "proposal").version == 2


@needs_chromium
def test_the_draft_says_which_kept_script_a_deployment_would_break(server, engine):
    with chromium_page(1400, 900) as page:
        sign_in(page, server, DESIGNER)
        page.goto(f"{server.url}/designer/lao-cai/proposal")
        page.wait_for_selector("#modeler[data-ready=true]")
        page.locator(".djs-element[data-element-id=decide]").click()
        page.locator("#bio-properties-panel-nd73-dueInWorkingDays").fill("5")
        page.get_by_role("button", name="Triển khai").click()
        page.wait_for_url(re.compile(r".*/designer/lao-cai/draft\?next="))
        # before the designer confirms: the kept script played on the draft, step, element
        warnings = page.locator("[data-testid=dry-run-warnings]")
        expect(warnings).to_contain_text(
            "lao-cai/dryrun/tu_choi_qua_tet.toml · bước 5 [decide]")
        expect(warnings).to_contain_text("hạn dự kiến 02/03/2026, thực tế 26/02/2026")
        assert engine.repository.latest("lao-cai", "proposal").version == 1
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "dryrun-deploy-warning.png"), full_page=True)
        # the dry-run page plays the draft too, and says the same
        page.get_by_role("link", name="Chạy thử bản nháp").click()
        expect(page.locator("#dryrun-draft")).to_be_checked()
        page.locator("#dryrun-script").select_option("tu_choi_qua_tet")
        page.get_by_role("button", name="Mở kịch bản").click()
        expect(page.locator("#dryrun-draft")).to_be_checked()
        page.locator("#dryrun-run").click()
        expect(page.locator("#dryrun-result")).to_contain_text("26/02/2026")
        page.goto(f"{server.url}/designer/lao-cai/draft?next=/designer/lao-cai/proposal")
        # a warning, not a refusal (the browser's choice): the designer may still deploy
        page.locator("form.toolbar").get_by_role("button", name="Triển khai").click()
        page.wait_for_url(re.compile(r".*deployed=1"))
        assert engine.repository.latest("lao-cai", "proposal").version == 2


def test_a_recorded_case_replays_as_a_dry_run(server, engine):
    from procedures import SCREENED, Case, plan
    director = "laocai.sxd.giamdoc"       # a head: via Sở Nội vụ, where the designer works
    case = Case.start(engine, "lao-cai", "proposal", director, business_key="LC-REC")
    case.do("submit_plan", plan(), by=director)
    case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"},
            by=DESIGNER)
    case.do("screening", {**SCREENED, "is_complex": False})
    # only designers of the variant who may see the case
    assert server.get(f"/instances/{case.id}/dry-run-script", OTHER_DESIGNER).status_code \
        == 404
    assert server.get(f"/instances/{case.id}/dry-run-script", director).status_code == 403
    recorded = server.get(f"/instances/{case.id}/dry-run-script", DESIGNER)
    assert recorded.status_code == 200, recorded.text
    table = recorded.json()
    assert (table["process"], table["started_by"], table["title"]) == (
        "proposal", director, "LC-REC")
    assert [(s["task"], s["by"]) for s in table["steps"]] == [
        ("submit_plan", director), ("home_affairs_review", DESIGNER),
        ("screening", "laocai.chutich")]
    assert table["steps"][0]["data"]["title"] == plan()["title"]
    before = engine.runtime.get(case.id).version
    ran = server.post("/variants/lao-cai/dry-runs", DESIGNER, json=table)
    assert ran.status_code == 200, ran.text
    body = ran.json()
    assert body["passed"], body["failures"] + body["incidents"]
    assert body["stage"] == case.instance.stage
    assert [t["element_id"] for t in body["tasks"] if t["status"] == "open"] == \
        case.open_elements()
    assert engine.runtime.get(case.id).version == before       # the case itself untouched
    if Path(CHROMIUM).exists():          # the designer's page loads and replays it too
        with chromium_page(1400, 900) as page:
            sign_in(page, server, DESIGNER)
            page.goto(f"{server.url}/designer/lao-cai/dry-run")
            page.locator("#dryrun-instance").fill(case.id)
            page.get_by_role("button", name="Lấy đường đi").click()
            expect(page.get_by_label("Bước (mã) 2", exact=True)).to_have_value(
                "home_affairs_review")
            page.locator("#dryrun-run").click()
            expect(page.locator("#dryrun-outcome")).to_have_attribute("data-passed", "1")
            expect(page.locator('#dryrun-tasks tr[data-element="home_affairs_review"]')
                   ).to_contain_text("Vũ Đức Hải")


def test_the_drafts_page_plays_the_scripts_once_per_draft_until_asked_again(server, engine,
                                                                             monkeypatch):
    from api.routes import dryrun as routes
    from procedures import as_user
    from test_web_ui import web_session

    played: list[str] = []
    play = routes.run_script

    def counted(script, load):
        played.append(script.name)
        return play(script, load)

    monkeypatch.setattr(routes, "run_script", counted)
    designer = as_user(engine, DESIGNER)
    xml = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text(encoding="utf-8")
    five_days = xml.replace('<nd73:property name="dueDate" value="decision_due" />',
                            '<nd73:property name="dueInWorkingDays" value="5" />')
    engine.drafts.put_file("lao-cai", "proposal.bpmn", five_days.encode(), designer)
    web, _ = web_session(server, DESIGNER)
    url = f"{server.url}/designer/lao-cai/draft"

    first = web.get(url, timeout=120).text
    assert played == ["tu_choi_qua_tet"] and 'data-testid="dry-run-warnings"' in first
    again = web.get(url, timeout=120).text            # the same draft: not played again
    assert played == ["tu_choi_qua_tet"]
    assert 'data-testid="dry-run-warnings"' in again and "tu_choi_qua_tet.toml" in again
    asked = web.get(url, params={"rerun": "1"}, timeout=120).text      # *Chạy lại*
    assert played == ["tu_choi_qua_tet"] * 2 and 'data-testid="dry-run-warnings"' in asked
    assert 'data-testid="dry-run-again"' in asked

    # the draft changes: played again, on the new draft (the script passes on it)
    engine.drafts.put_file("lao-cai", "proposal.bpmn",
                           xml.replace('name="Đề xuất đổi mới, sáng tạo"',
                                       'name="Đề xuất đổi mới, sáng tạo (Lào Cai)"', 1).encode(),
                           designer)
    changed = web.get(url, timeout=120).text
    assert played == ["tu_choi_qua_tet"] * 3
    assert 'data-testid="dry-run-passed"' in changed
    web.get(url, timeout=120)
    assert played == ["tu_choi_qua_tet"] * 3
