"""The web app in a real browser (Debian's chromium via Playwright) against a real HTTP server
and database: officials, process designers and administrators doing their work.

Screenshots of every page land in tests/output/web-*.png."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from browser import CHROMIUM, chromium_page, sign_in
from engine.clock import as_utc
from engine.org import DEFAULT_DEMO_PASSWORD
from engine.scheduler import SCHEDULER
from procedures import SCREENED, Case, plan

if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium is not installed at {CHROMIUM} (make test installs it)",
                allow_module_level=True)

SHOTS = Path(__file__).parent / "output"
PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"
DESIGNER = "laocai.snv.chuyenvien"
ADMIN = "laocai.quantri"


@pytest.fixture
def browser():
    with chromium_page(1280, 900) as page:
        yield page


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-{name}.png"), full_page=True)


def web_session(server, username: str) -> tuple[requests.Session, str]:
    """A signed-in session without a browser, and its page token."""
    web = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      web.get(f"{server.url}/login", timeout=30).text).group(1)
    signed = web.post(f"{server.url}/login", data={
        "username": username, "password": DEFAULT_DEMO_PASSWORD, "csrf_token": token},
        timeout=30, allow_redirects=False)
    assert signed.status_code == 302
    page = web.get(f"{server.url}/", timeout=30).text
    return web, re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def no_sideways_scroll(page) -> None:
    # a look during a navigation finds no document yet: the page's load is waited for
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), \
        f"{page.url} scrolls sideways"


def fill_plan(page, **overrides) -> None:
    values = {"title": "Số hoá hồ sơ cấp phép xây dựng", "start_date": "01/12/2026",
              "end_date": "30/06/2027", "budget_vnd": "450000000"} | overrides
    page.locator("#f-title").fill(values["title"])
    page.locator("#f-field_of_work").select_option("chuyen_doi_so")
    for name in ("necessity", "purpose_requirements", "bottleneck", "content", "scope",
                 "target_group", "feasibility", "expected_effectiveness"):
        page.locator(f"#f-{name}").fill(f"Nội dung {name}")
    page.locator("#f-start_date").fill(values["start_date"])
    page.locator("#f-end_date").fill(values["end_date"])
    page.locator("#f-budget_vnd").fill(values["budget_vnd"])
    for name in ("removes_unregulated_bottleneck", "common_interest", "urgent_need", "no_harm",
                 "no_local_harm"):
        page.locator(f"#f-{name}").check()


def test_official_submits_a_proposal_and_the_head_decides(server, engine, browser):
    page = browser
    sign_in(page, server, PROPOSER)
    shot(page, "inbox-empty")
    page.get_by_role("link", name="Tạo mới").click()
    shot(page, "start")
    page.locator("button[data-start='proposal']").click()
    page.wait_for_url(re.compile(r".*/tasks/.+"))
    assert page.get_by_role("heading", name="Lập và gửi kế hoạch đề xuất").is_visible()

    # an impossible date and a missing title: errors next to their fields, nothing sent
    fill_plan(page, title="", start_date="31/02/2027")
    page.locator("#f-attachments").set_input_files(
        [{"name": "ke-hoach.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 plan"}])
    page.get_by_role("button", name="Gửi").click()
    start_error = page.locator("[data-field='start_date'] p.error")
    assert "dd/mm/yyyy" in start_error.inner_text()
    assert page.locator("#f-start_date").get_attribute("aria-invalid") == "true"
    assert "bắt buộc" in page.locator("[data-field='title'] p.error").inner_text()
    assert page.locator("#f-start_date").input_value() == "31/02/2027"   # what was typed stays
    shot(page, "task-errors")
    [instance] = engine.queries.instances(engine.access.principal(PROPOSER),
                                          _filters(started_by=PROPOSER)).items
    assert instance.stage == "draft"                # still waiting for its plan

    page.locator("#f-title").fill("Số hoá hồ sơ cấp phép xây dựng")
    page.locator("#f-start_date").fill("01/12/2026")
    assert page.locator("[data-field='attachments'] input[type=checkbox]").is_checked()
    page.get_by_role("button", name="Gửi").click()
    page.wait_for_url(re.compile(r".*/instances/.+"))
    shot(page, "instance-official")
    data = Case(engine, engine.queries.instance(instance.id)).data()
    assert data["start_date"] == "2026-12-01" and data["budget_vnd"] == 450_000_000
    [attached] = data["attachments"]
    assert attached["name"] == "ke-hoach.pdf"
    assert engine.attachments.get(attached["file_id"]).content == b"%PDF-1.4 plan"
    assert "Tạo hồ sơ" in page.locator("[data-testid=timeline]").inner_text()

    # the head is told: the bell counts the new task and leads straight to it
    sign_in(page, server, HEAD)
    assert int(page.locator("[data-testid=unread]").inner_text()) >= 1
    page.locator(".bell").click()
    shot(page, "notifications")
    page.locator("[data-testid=notifications] li.unread .notification-link").first.click()
    page.wait_for_url(re.compile(r".*/tasks/.+"))
    assert page.get_by_role("heading", name="Tiếp nhận, xem xét phạm vi và tính chất").is_visible()
    # and finds the screening in the inbox, and decides
    page.get_by_role("link", name="Việc cần làm").click()
    inbox = page.locator("[data-testid=inbox]")
    assert "Tiếp nhận, xem xét phạm vi và tính chất" in inbox.inner_text()
    shot(page, "inbox-head")
    no_sideways_scroll(page)
    page.get_by_role("link", name="Tiếp nhận, xem xét phạm vi và tính chất").first.click()
    for condition in SCREENED:                  # the head's own finding on Art. 5 k.1
        page.locator(f"#f-{condition}").select_option("met")
    page.get_by_label("Ghi chú").fill("Đủ điều kiện xem xét")
    shot(page, "task-head")
    page.get_by_role("button", name="Gửi").click()
    page.wait_for_url(re.compile(r".*/instances/.+"))
    assert "Đã gửi" in page.locator(".flash.success").inner_text()
    case = Case(engine, engine.queries.instance(instance.id))
    assert case.data()["is_complex"] is False
    assert "screening" not in case.open_elements()

    # the proposer follows it: stage, timeline and the diagram with the current step marked
    sign_in(page, server, PROPOSER)
    page.get_by_role("link", name="Đề xuất của tôi").click()
    shot(page, "proposals")
    page.locator("[data-testid=proposals] a").first.click()
    page.wait_for_selector("#diagram[data-ready=true]")
    active = page.evaluate("[...document.querySelectorAll('#diagram .djs-element.active')]"
                           ".map(e => e.getAttribute('data-element-id'))")
    assert set(case.open_elements()) <= set(active)
    assert page.locator("#diagram .djs-element.done[data-element-id=screening]").count() == 1
    timeline = page.locator("[data-testid=timeline]").inner_text()
    # people by their names, not their usernames
    assert "Đỗ Thanh Mai" in timeline and HEAD not in timeline
    assert "Tiếp nhận, xem xét phạm vi và tính chất" in timeline
    shot(page, "instance-timeline")
    # the attachment downloads for those who see the case
    link = page.get_by_role("link", name="ke-hoach.pdf")
    assert link.count() == 0 or link.first.is_visible()


def _filters(**kw):
    from engine.queries import InstanceFilters
    return InstanceFilters(**kw)


def test_english_and_phone_width(server, engine, browser):
    page = browser
    Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-PHONE")
    sign_in(page, server, PROPOSER)
    # the language is switched by a form and a redirect: the page is waited for (a look
    # right after the click could still see the page before it)
    page.get_by_role("button", name="English").click()
    page.get_by_role("heading", name="Inbox").wait_for(timeout=10_000)
    assert page.get_by_role("heading", name="Inbox").is_visible()
    page.get_by_role("button", name="Tiếng Việt").click()
    page.get_by_role("heading", name=re.compile("Việc cần làm")).wait_for(timeout=10_000)
    assert page.get_by_role("heading", name=re.compile("Việc cần làm")).is_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    no_sideways_scroll(page)
    shot(page, "inbox-phone")
    with page.expect_navigation():
        page.locator("[data-testid=inbox] a").first.click()
    page.locator(".task-form").wait_for(timeout=10_000)
    no_sideways_scroll(page)
    shot(page, "task-phone")
    # keyboard: every input of the form has a label that names it
    unlabeled = page.evaluate("""[...document.querySelectorAll(
        '.task-form input:not([type=hidden]), .task-form select, .task-form textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.name)""")
    assert unlabeled == []


def test_designer_edits_validates_and_deploys_lao_cai(server, engine, browser):
    page = browser
    sign_in(page, server, DESIGNER)
    page.get_by_role("link", name="Thiết kế quy trình").click()
    shot(page, "designer")
    page.locator("a[data-edit='lao-cai/proposal']").click()
    page.wait_for_selector("#modeler[data-ready=true]")
    assert page.locator("[data-testid=versions] tbody tr").count() == 1

    # rename a task the way a designer does: double-click, type, click away
    page.locator(".djs-element[data-element-id=screening]").dblclick()
    editor = page.locator(".djs-direct-editing-parent")
    editor.wait_for()
    page.keyboard.press("Control+A")
    page.keyboard.type("Tiếp nhận và sàng lọc đề xuất")
    page.locator("h1").click()
    page.get_by_role("button", name="Kiểm tra").click()
    page.wait_for_selector("#result.success")
    assert "Hợp lệ" in page.locator("#result").inner_text()
    shot(page, "modeler-valid")
    page.get_by_role("button", name="Triển khai").click()
    # the draft's summary first: the renamed task, then the explicit deployment
    page.wait_for_url(re.compile(r".*/designer/lao-cai/draft\?next=.*"))
    assert "name" in page.locator(
        "[data-testid=summary-diagram] tr[data-element=screening]").inner_text()
    page.get_by_role("button", name="Triển khai").click()
    page.wait_for_url(re.compile(r".*deployed=1"))
    page.wait_for_selector("#modeler[data-ready=true]")
    versions = page.locator("[data-testid=versions] tbody tr")
    assert versions.count() == 2 and "v2" in versions.first.inner_text()
    assert DESIGNER in versions.first.inner_text()
    latest = engine.repository.latest("lao-cai", "proposal")
    assert latest.version == 2 and "Tiếp nhận và sàng lọc đề xuất" in latest.sources[
        "proposal.bpmn"]
    shot(page, "modeler-deployed")

    # the comparison with national marks the renamed task
    page.get_by_role("link", name="So sánh với quy trình chung").click()
    page.wait_for_selector("#mine[data-ready=true]")
    assert page.locator("#mine .djs-element.changed[data-element-id=screening]").count() == 1
    assert page.locator("#base .djs-element.changed[data-element-id=screening]").count() == 1
    assert page.locator(".legend li").all_inner_texts() == [
        "Thay đổi: Tiếp nhận và sàng lọc đề xuất screening"]
    shot(page, "compare")

    # an invalid diagram: a lane that names no role is refused, marked on the lane
    page.go_back()
    page.wait_for_selector("#modeler[data-ready=true]")
    modeler = page.locator("#modeler").bounding_box()
    page.mouse.move(modeler["x"] + modeler["width"] / 2, modeler["y"] + modeler["height"] / 2)
    page.mouse.wheel(-250, 0)                # scroll the lanes' headers out of the palette
    lane = page.locator(".djs-element[data-element-id=Lane_proposal_decider]").bounding_box()
    page.mouse.dblclick(lane["x"] + 15, lane["y"] + lane["height"] / 2)
    page.locator(".djs-direct-editing-parent").wait_for()
    page.keyboard.press("Control+A")
    page.keyboard.type("khong_co_vai_tro")
    page.locator("h1").click()
    page.get_by_role("button", name="Kiểm tra").click()
    page.wait_for_selector("#result.error")
    assert "khong_co_vai_tro" in page.locator("#result").inner_text()
    assert page.locator("[data-problem=Lane_proposal_decider]").count() == 1
    shot(page, "modeler-invalid")
    assert engine.repository.latest("lao-cai", "proposal").version == 2   # nothing deployed


def test_administrator_finds_an_overdue_case_and_suspends_it(server, engine, clock, browser):
    page = browser
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-LATE")
    case.do("submit_plan", plan(), by=PROPOSER)
    Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-FRESH")
    [screening] = case.open("screening")
    clock.set(as_utc(screening.due_at) + timedelta(days=1))

    sign_in(page, server, ADMIN)
    page.get_by_role("link", name="Quản trị").click()
    overdue = page.locator("[data-testid=overdue-tile] .n")
    assert overdue.inner_text() == "1"
    assert page.locator("svg.chart rect").count() >= 2
    shot(page, "dashboard")
    no_sideways_scroll(page)
    page.locator("[data-testid=overdue-tile]").click()
    results = page.locator("[data-testid=results] tbody tr")
    # the case carries its plan's title, with its business key beside it
    assert results.count() == 1 and "LC-LATE" in results.first.inner_text()
    shot(page, "search")
    results.first.get_by_role("link", name=plan()["title"]).click()
    page.wait_for_selector("#diagram[data-ready=true]")
    assert page.locator("#diagram .djs-element.active[data-element-id=screening]").count() == 1
    assert page.locator("#diagram .djs-element.done[data-element-id=submit_plan]").count() == 1
    shot(page, "instance-admin")
    page.get_by_label("Lý do", exact=True).first.fill("Chờ bổ sung hồ sơ")
    page.get_by_role("button", name="Tạm dừng").click()
    assert "Tạm dừng" in page.locator("[data-testid=status]").inner_text()
    assert engine.queries.instance(case.id).status == "suspended"
    shot(page, "instance-suspended")

    # the search filters of the API, with an impossible date named
    page.goto(f"{server.url}/admin/instances?status=suspended&created_from=31/02/2026")
    assert "dd/mm/yyyy" in page.locator("[data-testid=filters] p.error").inner_text()
    page.goto(f"{server.url}/admin/instances?status=suspended")
    assert page.locator("[data-testid=results] tbody tr").count() == 1


def test_forms_without_the_page_token_are_refused(server, engine):
    """A form posted from another site (no anti-forgery token) changes nothing."""
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-CSRF")
    web = requests.Session()
    login = web.get(f"{server.url}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    assert web.post(f"{server.url}/login", data={
        "username": ADMIN, "password": DEFAULT_DEMO_PASSWORD, "csrf_token": token},
        timeout=30, allow_redirects=False).status_code == 302
    forged = web.post(f"{server.url}/instances/{case.id}/suspend", data={"reason": "x"},
                      timeout=30)
    assert forged.status_code == 403 and "text/html" in forged.headers["Content-Type"]
    assert engine.queries.instance(case.id).status == "running"
    # the REST API with the session cookie: reads work, writes need the page's token
    assert web.get(f"{server.url}/api/v1/instances/{case.id}", timeout=30).status_code == 200
    refused = web.post(f"{server.url}/api/v1/instances/{case.id}/suspend", json={}, timeout=30)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    page = web.get(f"{server.url}/instances/{case.id}", timeout=30)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    done = web.post(f"{server.url}/api/v1/instances/{case.id}/suspend", json={},
                    headers={"X-CSRF-Token": token}, timeout=30)
    assert done.status_code == 200 and done.json()["status"] == "suspended"
    # pages send headers that keep them out of frames and scripts of other sites out
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    # signing in never sends people to another site
    evil = web.post(f"{server.url}/login", data={
        "username": ADMIN, "password": DEFAULT_DEMO_PASSWORD, "csrf_token": token,
        "next": "//evil.example/"}, timeout=30, allow_redirects=False)
    assert evil.headers["Location"] == "/"


def test_pages_check_who_may_act(server, engine):
    """Officials cannot open administrators' or designers' pages, nor others' cases."""
    case = Case.start(engine, "dak-lak", "proposal", "daklak.sxd.qhkt.truongphong",
                      business_key="DL-OTHER")
    web, _ = web_session(server, PROPOSER)
    for path in ("/admin", "/admin/instances", "/admin/cycles",
                 "/designer/lao-cai/proposal"):
        assert web.get(f"{server.url}{path}", timeout=30).status_code == 403, path
    other = web.get(f"{server.url}/instances/{case.id}", timeout=30)
    assert other.status_code == 404 and "Traceback" not in other.text
    signed_out = requests.get(f"{server.url}/admin", timeout=30, allow_redirects=False)
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]


def test_reporting_cycle_report_form_and_downloads(server, engine, browser):
    """A unit fills its report (a group of figures, pre-filled), and an administrator
    downloads the consolidated report from the cycles page."""
    page = browser
    cycle = Case.start(engine, "lao-cai", "annual_report", SCHEDULER,
                       data={"proposer_unit": "laocai"}, business_key="BC-2026")
    [report_task] = [t for t in cycle.open("submit_report") if t.unit_id == "laocai.sxd"]
    reporter = next(u for u in cycle.candidates(report_task) if u.startswith("laocai.sxd"))
    sign_in(page, server, reporter)
    page.goto(f"{server.url}/tasks/{report_task.id}")
    if page.get_by_role("button", name="Nhận xử lý").count():
        page.get_by_role("button", name="Nhận xử lý").click()
    assert page.locator("#f-report-proposals_submitted").input_value() == "0"
    page.locator("#f-report-proposals_submitted").fill("hai")
    page.get_by_role("button", name="Gửi").click()
    assert "số nguyên" in page.locator(
        "[data-field='report.proposals_submitted'] p.error").inner_text()
    assert page.locator("[data-field='report.summary'] p.error").count() == 1   # required
    shot(page, "report-form-errors")
    page.locator("#f-report-proposals_submitted").fill("2")
    page.locator("#f-report-summary").fill("Đã triển khai hai đề xuất")
    page.get_by_role("button", name="Gửi").click()
    page.wait_for_url(re.compile(r".*/instances/.+"))
    assert engine.queries.instance(cycle.id).status == "running"
    assert report_task.id not in {t.id for t in cycle.open("submit_report")}

    sign_in(page, server, ADMIN)
    page.goto(f"{server.url}/admin/cycles")
    row = page.locator("[data-testid=cycles] tbody tr", has_text="BC-2026")
    assert row.count() == 1
    shot(page, "cycles")
    with page.expect_download() as download:
        row.get_by_role("link", name="xlsx").click()
    assert download.value.suggested_filename.endswith(".xlsx")
    content = Path(download.value.path()).read_bytes()
    assert content[:2] == b"PK"                          # an Office Open XML package


def test_officials_start_proposals_and_protection_requests_only(server, engine):
    web, token = web_session(server, PROPOSER)
    page = web.get(f"{server.url}/start", timeout=30).text
    assert set(re.findall(r'data-start="(\w+)"', page)) == {"proposal", "protection"}
    protection = engine.repository.latest("lao-cai", "protection")
    started = web.post(f"{server.url}/start", data={"definition_id": protection.id,
                                                    "csrf_token": token}, timeout=30)
    assert started.status_code == 200 and "/tasks/" in started.url
    assert "Trình bày sự việc, chứng cứ" in started.text
    council = engine.repository.latest("lao-cai", "council")
    refused = web.post(f"{server.url}/start", data={"definition_id": council.id,
                                                    "csrf_token": token}, timeout=30)
    assert refused.status_code == 404
