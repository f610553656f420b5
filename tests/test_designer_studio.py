"""The designer studio: the modeler's properties panel writes the project's extension
namespace (processes/nd73.moddle.json) and the engine reads what it wrote; working days are
previewed on the variant's calendar; scripts and conditions are checked by the sandbox as
deployment checks them; the modeler speaks the page's language and the console stays clean.

The round trip runs the panel's own moddle code (api/web/src/nd73.js, bundled by esbuild for
node) on the national diagram; the browser tests drive the real modeler (Debian's chromium).
Screenshots land in tests/output/studio-*.png."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select
from playwright.sync_api import expect

from browser import CHROMIUM, chromium_page, page_complaints, sign_in
from engine import policy
from engine.clock import LOCAL_TZ, as_utc
from engine.store import Timer
from procedures import Case, deploy_library, to_decision

from conftest import PROJECT

WEB = PROJECT / "api" / "web"
ESBUILD = WEB / "node_modules" / ".bin" / "esbuild"
SHOTS = Path(__file__).parent / "output"
PROPOSER = "laocai.sxd.qlxd.truongphong"
DESIGNER = "laocai.snv.chuyenvien"
OTHER_DESIGNER = "cantho.snv.chuyenvien"
# The engine clock of the tests starts on Monday 05/01/2026 08:00 in Hà Nội: five working
# days later is Monday 12/01, seven (the national deadline) Wednesday 14/01.
FIVE_DAYS = datetime(2026, 1, 12, 17, 0, tzinfo=LOCAL_TZ)
SEVEN_DAYS = datetime(2026, 1, 14, 17, 0, tzinfo=LOCAL_TZ)
APPROVAL_FLOW = "flow_decision_gateway_to_record_approval"
NEW_CONDITION = 'decision in ("approve", "approve_with_conditions")'

needs_node = pytest.mark.skipif(not ESBUILD.exists() or not shutil.which("node"),
                                reason="the web assets are not installed (make install)")
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"chromium is not installed at {CHROMIUM}")


@pytest.fixture
def browser():
    with chromium_page(1400, 900) as page:
        yield page


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"studio-{name}.png"), full_page=True)


def deployed_condition(definition) -> str:
    root = etree.fromstring(definition.sources["proposal.bpmn"].encode())
    [flow] = root.iterfind(f".//bpmn:sequenceFlow[@id='{APPROVAL_FLOW}']", policy.XPATH_NS)
    return flow.findtext("bpmn:conditionExpression", namespaces=policy.XPATH_NS)


def decide_task(case: Case):
    """Bring a case from the leadership vote to the decision, and return the decision task."""
    case.vote({v: "for" for v in case.voters()})
    [task] = case.open("decide")
    return task


# --- the panel's moddle code → XML → engine ---------------------------------------------

def panel_writes(tmp_path, source: Path, *changes: str) -> bytes:
    """The XML the properties panel's code (api/web/src/nd73.js) writes when it sets the
    given ``element name=value`` properties on ``source``."""
    script = tmp_path / "roundtrip.mjs"
    subprocess.run([str(ESBUILD), str(WEB / "roundtrip.mjs"), "--bundle", "--platform=node",
                    "--format=esm", "--log-level=warning", f"--outfile={script}"], check=True)
    done = subprocess.run(["node", str(script), str(source), *changes], check=True,
                          capture_output=True, timeout=60)
    return done.stdout


@needs_node
def test_properties_set_with_the_panels_moddle_are_read_by_the_engine(engine, tmp_path):
    deploy_library(engine)
    running = to_decision(engine, "lao-cai", PROPOSER, business_key="LC-RUNNING")
    xml = panel_writes(tmp_path, PROJECT / "processes" / "national" / "proposal.bpmn",
                       "decide", "dueInWorkingDays=5", "decide", "legalBasis=Điều 8 khoản 1",
                       "decide", "dueDate=", "screening", "stage=under_review")
    assert b'<nd73:property name="dueInWorkingDays" value="5" />' in xml

    [deployed] = [r for r in engine.repository.deploy_upload(
        "lao-cai", {"proposal.bpmn": xml}, "laocai.snv.chuyenvien") if r.key == "proposal"]
    assert deployed.created and deployed.version == 2
    definition = engine.repository.latest("lao-cai", "proposal")
    spec, _ = engine.repository.specs(definition)
    decide = policy.element_properties(spec.task_specs["decide"])
    assert decide["dueInWorkingDays"] == "5" and decide["legalBasis"] == "Điều 8 khoản 1"
    assert decide["form"] == "head_decision.schema.json"          # the rest is kept
    assert "dueDate" not in decide                                 # an emptied one is removed
    assert policy.element_properties(spec.task_specs["screening"])["stage"] == "under_review"

    # a new case is due five working days after the decision opens; the running case keeps
    # its version and the national seven days
    fresh = to_decision(engine, "lao-cai", PROPOSER, business_key="LC-NEW")
    assert as_utc(decide_task(fresh).due_at) == FIVE_DAYS
    assert fresh.instance.definition_id == definition.id
    assert as_utc(decide_task(running).due_at) == SEVEN_DAYS
    assert running.instance.definition_id != definition.id


def test_the_working_day_helper_counts_on_the_variants_calendar(server):
    token = {"user": DESIGNER}
    answer = server.get("/variants/lao-cai/working-days?days=5", **token)   # from 05/01
    assert answer.status_code == 200, answer.text
    assert answer.json()["due_local"] == "12/01/2026 17:00"
    # a deadline name of the variant's settings; a start across Tết 2026 (16–20/02 off)
    answer = server.get("/variants/lao-cai/working-days?days=decision&start=2026-02-13",
                        **token)
    assert (answer.json()["days"], answer.json()["due_local"]) == (7, "03/03/2026 17:00")
    refused = server.get("/variants/lao-cai/working-days?days=soon", **token)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "days"
    assert server.get("/variants/nowhere/working-days?days=1", **token).status_code == 404


def test_scripts_and_conditions_are_checked_as_deployment_checks_them(server):
    def check(code, mode="eval", user=DESIGNER, variant="lao-cai"):
        return server.post("/definitions/check-code", user=user,
                           json={"variant": variant, "code": code, "mode": mode})

    assert check('decision == "approve"').json() == {"valid": True}
    refused = check("__import__('os').system('id')")
    assert refused.status_code == 200 and refused.json()["valid"] is False
    assert "_" in refused.json()["detail"]
    assert check("import os", mode="exec").json()["valid"] is False
    assert check("x = 1\ny = x + 1", mode="exec").json()["valid"] is True
    assert check("x = 1", user=OTHER_DESIGNER).status_code == 403


# --- the browser ----------------------------------------------------------------------------

@needs_chromium
def test_lao_cai_designer_sets_a_deadline_and_a_condition_in_the_panel(server, engine,
                                                                      browser):
    page = browser
    running = to_decision(engine, "lao-cai", PROPOSER, business_key="LC-RUNNING")
    sign_in(page, server, DESIGNER)
    page.goto(f"{server.url}/designer/lao-cai/proposal")
    page.wait_for_selector("#modeler[data-ready=true]")

    # the decision task: its form, stage and deadline as the engine reads them
    page.locator(".djs-element[data-element-id=decide]").click()
    panel = page.locator("#properties")
    expect(panel.locator(".bio-properties-panel-group-header-title",
                         has_text="Quy trình ND73")).to_be_visible()
    expect(panel.locator("#bio-properties-panel-nd73-form")).to_have_value(
        "head_decision.schema.json")
    expect(panel.locator("#bio-properties-panel-nd73-stage")).to_have_value("under_review")
    expect(panel.locator("#bio-properties-panel-nd73-dueDate")).to_have_value("decision_due")
    expect(panel.locator("[data-entry-id=nd73-decisionFields]")).to_contain_text(
        "Các trường của biểu mẫu: decision")             # the form's fields, to choose from
    panel.locator("#bio-properties-panel-nd73-dueInWorkingDays").fill("sớm")
    expect(panel.locator("[data-testid=working-day-preview]")).to_have_text(
        "Không phải số ngày làm việc hay tên thời hạn của biến thể")
    panel.locator("#bio-properties-panel-nd73-dueInWorkingDays").fill("5")
    expect(panel.locator("[data-testid=working-day-preview]")).to_have_text(
        "Hạn 12/01/2026 17:00 theo lịch làm việc của lao-cai")
    expect(panel.locator("[data-entry-id=nd73-dueInWorkingDays]")).to_contain_text(
        "decision = 7")                                  # the variant's deadlines, for reference
    shot(page, "decision-deadline")

    # its reminder (a non-interrupting boundary timer) fires on the same day
    box = page.locator("#modeler").bounding_box()       # away from the task's context pad
    page.mouse.click(box["x"] + box["width"] - 5, box["y"] + 5)
    page.locator(".djs-element[data-element-id=decide_reminder]").click()
    panel.locator("#bio-properties-panel-nd73-timerWorkingDays").fill("5")
    expect(panel.locator("[data-testid=working-day-preview]")).to_have_text(
        "Hạn 12/01/2026 17:00 theo lịch làm việc của lao-cai")
    expect(panel.locator("#bio-properties-panel-timerEventDefinitionValue")).to_have_value(
        "due_in_working_days(5)")

    # the approval branch's condition: refused by the sandbox next to the field, then fixed
    page.mouse.click(box["x"] + box["width"] - 5, box["y"] + 5)
    page.locator(f".djs-element[data-element-id={APPROVAL_FLOW}_label]").click()
    condition = panel.locator("#bio-properties-panel-nd73-code")
    expect(condition).to_have_value('decision == "approve"')
    condition.fill("__import__('os')")
    error = panel.locator("[data-entry-id=nd73-code] .bio-properties-panel-error")
    expect(error).to_contain_text("Biểu thức hoặc đoạn mã dùng cấu trúc không được phép")
    expect(page.locator(f"[data-problem={APPROVAL_FLOW}]")).to_have_count(1)   # on the flow
    shot(page, "condition-refused")
    condition.fill(NEW_CONDITION)
    expect(error).to_have_count(0)
    expect(page.locator(f"[data-problem={APPROVAL_FLOW}]")).to_have_count(0)

    page.get_by_role("button", name="Kiểm tra").click()
    page.wait_for_selector("#result.success")
    # deploying saves the draft and shows what changes, element by element, first
    page.get_by_role("button", name="Triển khai").click()
    page.wait_for_url(re.compile(r".*/designer/lao-cai/draft\?next=.*"))
    summary = page.locator("[data-testid=summary-diagram]")
    expect(summary.locator("tr[data-element=decide]")).to_contain_text("nd73:dueInWorkingDays")
    expect(summary.locator(f"tr[data-element={APPROVAL_FLOW}]")).to_contain_text("condition")
    page.get_by_role("button", name="Triển khai").click()
    page.wait_for_url(re.compile(r".*deployed=1"))
    page.wait_for_selector("#modeler[data-ready=true]")
    latest = engine.repository.latest("lao-cai", "proposal")
    assert latest.version == 2 and latest.deployed_by == DESIGNER
    spec, _ = engine.repository.specs(latest)
    assert policy.element_properties(spec.task_specs["decide"])["dueInWorkingDays"] == "5"
    assert deployed_condition(latest) == NEW_CONDITION

    # the panel reads back what was deployed
    page.locator(".djs-element[data-element-id=decide]").click()
    expect(panel.locator("#bio-properties-panel-nd73-dueInWorkingDays")).to_have_value("5")

    # a new case is due in five working days; the running case stays on its version
    fresh = to_decision(engine, "lao-cai", PROPOSER, business_key="LC-NEW")
    task = decide_task(fresh)
    assert as_utc(task.due_at) == FIVE_DAYS
    with engine.db.reading() as session:
        reminder = session.scalars(select(Timer.due_at).where(
            Timer.instance_id == fresh.id, Timer.element_id == "decide_reminder")).one()
    assert as_utc(reminder) == FIVE_DAYS
    assert as_utc(decide_task(running).due_at) == SEVEN_DAYS
    assert running.instance.definition_id != latest.id


def test_a_designer_of_another_province_cannot_touch_lao_cai(server, engine):
    from test_web_ui import web_session

    web, token = web_session(server, OTHER_DESIGNER)
    xml = (PROJECT / "processes" / "national" / "proposal.bpmn").read_bytes()
    answer = web.post(f"{server.url}/api/v1/definitions", data={"variant": "lao-cai"},
                      files={"files": ("proposal.bpmn", xml, "application/xml")},
                      headers={"X-CSRF-Token": token}, timeout=60)
    assert answer.status_code == 403 and answer.json()["code"] == "access.designer"
    assert web.get(f"{server.url}/designer/lao-cai/proposal", timeout=30).status_code == 403
    assert engine.repository.latest("lao-cai", "proposal").version == 1


@needs_chromium
def test_the_modeler_speaks_the_pages_language_and_the_console_stays_clean(server, browser):
    page = browser
    said = page_complaints(page)
    sign_in(page, server, DESIGNER)
    page.goto(f"{server.url}/designer/lao-cai/proposal")
    page.wait_for_selector("#modeler[data-ready=true]")
    palette = page.locator(".djs-palette")
    # the palette's tooltips (its entries' accessible names)
    assert palette.locator("[data-action='create.start-event']").get_attribute(
        "aria-label") == "Tạo sự kiện bắt đầu"
    expect(palette.get_by_role("button", name="Tạo công việc")).to_be_visible()
    page.locator(".djs-element[data-element-id=decide]").click()
    context_pad = page.locator(".djs-context-pad")
    expect(context_pad.locator("[data-action=delete]")).to_have_attribute("title", "Xoá")
    expect(page.locator("#properties")).to_contain_text("Hạn xử lý (ngày làm việc)")

    # a lane's role is chosen among the variant's roles
    box = page.locator("#modeler").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(-250, 0)                # scroll the lanes' headers out of the palette
    lane = page.locator(".djs-element[data-element-id=Lane_proposal_decider]").bounding_box()
    page.mouse.click(lane["x"] + 15, lane["y"] + lane["height"] / 2)
    role = page.locator("#bio-properties-panel-nd73-role")
    expect(role).to_have_value("decider")
    offered = role.locator("option").all_inner_texts()
    assert {"decider", "chairman", "home_affairs", "proposer", "head"} <= set(offered)
    page.get_by_role("button", name="Kiểm tra").click()
    page.wait_for_selector("#result.success")
    shot(page, "modeler-vi")

    # English pages stay English
    page.goto(f"{server.url}/")
    page.get_by_role("button", name="English").click()
    page.goto(f"{server.url}/designer/lao-cai/proposal")
    page.wait_for_selector("#modeler[data-ready=true]")
    assert page.locator(".djs-palette [data-action='create.start-event']").get_attribute(
        "aria-label") == "Create start event"
    page.locator(".djs-element[data-element-id=decide]").click()
    expect(page.locator("#properties")).to_contain_text("Due in working days")
    assert said == []


def test_every_word_of_the_modelers_provider_has_its_vietnamese():
    """The provider's own labels (api/web/src/studio.js) are all in the Vietnamese dictionary
    kept with the catalogues, none empty; the palette's and the context pad's too."""
    words = json.loads((PROJECT / "api" / "translations" / "vi" / "modeler.json").read_text(
        encoding="utf-8"))
    source = (WEB / "src" / "studio.js").read_text(encoding="utf-8")
    used = set(re.findall(r"translate\('([^']+)'", source))
    used |= set(re.findall(r"\badd\('\w+', '([^']+)'", source))
    used |= set(re.findall(r"field\('\w+', '([^']+)'", source))
    used |= set(re.findall(r"label: '([^']+)'", source))
    assert {"Form", "Stage", "Due in working days", "Legal basis", "Notifications"} <= used
    assert sorted(used - set(words)) == []
    assert [k for k, v in words.items() if not v.strip()] == []
    palette = ("Create start event", "Create task", "Create gateway", "Activate hand tool",
               "Append task", "Delete", "Change element")
    assert all(words[k] != k for k in palette)
