"""The designer studio end to end, in a real browser: a designer of Lào Cai changes the
decision deadline from 7 to 5 working days in the settings editor, adds a required field to
the plan form in the form builder and changes a gateway condition in the modeler's panel —
all into the variant's draft —, dry-runs the draft (the due date skips a weekend and Tết),
deploys it after reading what changes, and a new case gets the change while a running case
stays on its version. A designer of another province cannot touch Lào Cai's draft.
Screenshots land in tests/output/scenario-*.png."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser import CHROMIUM, chromium_page, sign_in
from engine import policy
from engine.clock import as_utc
from engine.errors import InvalidData
from procedures import SCREENED, Case, as_user, plan, to_decision
from test_form_builder import add_phone_field
from test_designer_studio import (APPROVAL_FLOW, DESIGNER, FIVE_DAYS, NEW_CONDITION,
                                  OTHER_DESIGNER, PROPOSER, SEVEN_DAYS, decide_task,
                                  deployed_condition)

SHOTS = Path(__file__).parent / "output"
PLAN_FORM = "proposal_plan.schema.json"
PHONE = "0912345678"


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"scenario-{name}.png"), full_page=True)


def new_case_to_decision(engine) -> Case:
    """A proposal started after the deployment, its plan with the new required field."""
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-NEW")
    [task] = case.open("submit_plan")
    # the new version's form asks for the phone: refused without it
    with pytest.raises(InvalidData) as refused:
        engine.runtime.complete_task(task.id, plan(), principal=as_user(engine, PROPOSER))
    assert [(e["field"], e["code"]) for e in refused.value.details["errors"]] == [
        ("contact_phone", "form.required")]
    case.do("submit_plan", plan(contact_phone=PHONE), by=PROPOSER)
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    case.do("screening", {**SCREENED, "is_complex": False})
    case.do("party_opinion", {"party_opinion": "agree"})
    return case


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_lao_cai_designer_edits_dry_runs_and_deploys_a_draft(server, engine):
    from test_web_ui import web_session

    running = to_decision(engine, "lao-cai", PROPOSER, business_key="LC-RUNNING")
    designer = as_user(engine, DESIGNER)
    with chromium_page(1400, 900) as page:
        sign_in(page, server, DESIGNER)

        # 1. the settings editor: the decision deadline, 7 → 5 working days
        page.goto(f"{server.url}/designer")
        page.locator("[data-settings=lao-cai]").click()
        expect(page.locator("#setting-deadlines-decision")).to_have_value("7")
        page.locator("#setting-deadlines-decision").fill("5")
        page.get_by_role("button", name="Lưu bản nháp").first.click()
        expect(page.locator(".flash.success")).to_contain_text("Đã lưu bản nháp")

        # 2. the form builder: a required field of the plan form, into the same draft
        page.goto(f"{server.url}/designer/lao-cai/forms/{PLAN_FORM}")
        add_phone_field(page)
        expect(page.locator("#form-preview [data-field=contact_phone] .req")).to_have_count(1)
        page.get_by_role("button", name="Lưu vào bản nháp").click()
        expect(page.locator("#builder-result")).to_contain_text("Đã lưu vào bản nháp")

        # 3. the modeler's panel: the approval branch's condition
        page.goto(f"{server.url}/designer/lao-cai/proposal")
        page.wait_for_selector("#modeler[data-ready=true]")
        page.locator(f".djs-element[data-element-id={APPROVAL_FLOW}_label]").click()
        condition = page.locator("#properties #bio-properties-panel-nd73-code")
        expect(condition).to_have_value('decision == "approve"')
        condition.fill(NEW_CONDITION)
        page.locator("#save-draft").click()
        expect(page.locator("#result")).to_contain_text("Đã lưu bản nháp")
        # nothing is live yet: the draft holds the three changes
        assert engine.repository.latest("lao-cai", "proposal").version == 1
        draft = engine.drafts.get("lao-cai", designer)
        assert draft is not None and draft.revision == 3

        # 4. a dry-run of the draft: the decision, voted on Thursday 12/02/2026, is due five
        # working days later — past the weekend and Tết (16–20/02) — on Thursday 26/02
        page.goto(f"{server.url}/designer/lao-cai/draft")
        page.get_by_role("link", name="Chạy thử bản nháp").first.click()
        page.locator("#dryrun-script").select_option("tu_choi_qua_tet")
        page.get_by_role("button", name="Mở kịch bản").click()
        expect(page.locator("#dryrun-draft")).to_be_checked()
        data = page.locator("textarea[name=data-1]")        # the plan now needs the phone
        data.fill(json.dumps({**json.loads(data.input_value()), "contact_phone": PHONE},
                             ensure_ascii=False))
        page.locator("#dryrun-run").click()
        decide = page.locator("#dryrun-tasks tr[data-element=decide]")
        expect(decide.locator(".due")).to_contain_text("26/02/2026")
        expect(page.locator("#dryrun-tasks tr[data-element=submit_plan]")).to_be_visible()
        shot(page, "dry-run")
        # the real database is untouched by the dry-run
        assert engine.repository.latest("lao-cai", "proposal").version == 1

        # 5. a designer of another province cannot see, change, dry-run or deploy it
        outsider, token = web_session(server, OTHER_DESIGNER)
        for path in ("/designer/lao-cai/draft", "/designer/lao-cai/settings",
                     f"/designer/lao-cai/forms/{PLAN_FORM}", "/designer/lao-cai/dry-run",
                     "/designer/lao-cai/proposal", "/designer/lao-cai/draft.zip"):
            assert outsider.get(f"{server.url}{path}", timeout=30).status_code == 403, path
        tried = outsider.post(f"{server.url}/designer/lao-cai/draft", timeout=60,
                              data={"action": "deploy", "csrf_token": token})
        assert engine.repository.latest("lao-cai", "proposal").version == 1, tried.text
        answer = outsider.put(f"{server.url}/api/v1/variants/lao-cai/draft/files/variant.toml",
                              data=b'name = "lao-cai"\n', timeout=30,
                              headers={"X-CSRF-Token": token})
        assert answer.status_code == 403
        assert engine.drafts.get("lao-cai", designer).revision == 3

        # 6. the draft's page: what changes, element by element, field by field, key by key
        page.goto(f"{server.url}/designer/lao-cai/draft")
        row = page.locator("[data-testid=summary-settings] tr[data-key='deadlines.decision']")
        expect(row.locator("td").nth(2)).to_have_text("7")
        expect(row.locator("td").nth(3)).to_have_text("5")
        expect(page.locator("[data-testid=summary-form]")).to_contain_text("contact_phone")
        expect(page.locator(f"[data-testid=summary-diagram] tr[data-element={APPROVAL_FLOW}]")
               ).to_contain_text("condition")
        # the kept script, played on the draft, expected the old deadline: said, not refused
        expect(page.locator("[data-testid=dry-run-warnings]")).to_contain_text(
            "tu_choi_qua_tet.toml")
        shot(page, "summary")
        page.locator("form.toolbar").get_by_role("button", name="Triển khai").click()
        expect(page.locator(".flash.success")).to_contain_text("Đã triển khai: ")
    assert engine.drafts.get("lao-cai", designer) is None

    # 7. a new case gets the new version; the running one stays on its own
    latest = engine.repository.latest("lao-cai", "proposal")
    assert latest.version == 2 and latest.deployed_by == DESIGNER
    assert engine.repository.settings(latest)["deadlines"]["decision"] == 5
    assert deployed_condition(latest) == NEW_CONDITION
    spec, _ = engine.repository.specs(latest)
    assert policy.element_properties(spec.task_specs["decide"]).get("form") \
        == "head_decision.schema.json"
    fresh = new_case_to_decision(engine)
    assert fresh.instance.definition_id == latest.id
    assert as_utc(decide_task(fresh).due_at) == FIVE_DAYS
    assert running.instance.definition_id != latest.id
    assert as_utc(decide_task(running).due_at) == SEVEN_DAYS
    assert re.search(r"contact_phone", latest.sources[f"forms/{PLAN_FORM}"])
    assert engine.repository.latest("national", "proposal").version == 1
