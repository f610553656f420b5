"""The organisation administered in the web app, in a real browser: an administrator imports
200 officials from the HR office's xlsx (a preview first), links one of them to the
province's identity provider and moves them to head the Department of Construction, and the
open screening task of a proposal follows the position to the new head, who signs in
through the provider (a real OpenID Connect provider on the loopback) and completes it;
bulk reassignment and assigning a task from the case page."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from openpyxl import Workbook

from browser import CHROMIUM, chromium_page, leave_and_forget, sign_in
from oidc_provider import ACCOUNTS, product_with_sso
from procedures import SCREENED, Case, plan

if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium is not installed at {CHROMIUM} (make test installs it)",
                allow_module_level=True)

SHOTS = Path(__file__).parent / "output"
ADMIN = "laocai.quantri"
HEAD = "laocai.sxd.giamdoc"
PROPOSER = "laocai.sxd.qlxd.truongphong"
NEW_HEAD = "laocai.sxd.nv001"
UNITS = ["laocai.sxd.qlxd", "laocai.sxd.qhkt", "laocai.sxd.gt", "laocai.sxd.vp",
         "laocai.snv", "laocai.skhcn", "laocai.xa"]


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-org-{name}.png"), full_page=True)


def hr_workbook(path: Path, count: int = 200) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(["username", "full_name", "email", "phone", "unit_id", "position",
                  "valid_from", "valid_to", "active"])
    for n in range(1, count + 1):
        sheet.append([f"laocai.sxd.nv{n:03d}", f"Cán bộ số {n}", f"nv{n:03d}@laocai.gov.vn",
                      f"0912{n:06d}", UNITS[n % len(UNITS)], "staff", "01/01/2025", None, 1])
    book.save(path)
    return path


@pytest.fixture
def sso_server(engine):
    with product_with_sso(engine) as (live, idp):
        yield live


def sign_in_through_the_provider(page, server, account) -> None:
    """The login page's single sign-on button, the provider's own sign-in page, and back."""
    leave_and_forget(page)
    page.goto(f"{server.url}/login")
    page.get_by_role("link", name="Đăng nhập qua hệ thống định danh (SSO)").click()
    page.wait_for_url(re.compile(r".*/interaction/.+"))
    page.get_by_label("Login").fill(account.login)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(server.url) + r"/$"))


def test_an_administrator_imports_officials_moves_a_head_and_the_task_follows(
        sso_server, engine, tmp_path):
    server = sso_server
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [task] = case.open("screening")
    assert case.candidates(task) == [HEAD]
    with chromium_page(1280, 900) as page:
        sign_in(page, server, ADMIN)
        page.goto(f"{server.url}/admin")
        page.get_by_role("link", name="Tổ chức bộ máy").click()
        page.wait_for_url(re.compile(r".*/admin/org/lao-cai$"))

        # a file with an error is refused whole, naming row and column
        broken = tmp_path / "broken.xlsx"
        book = Workbook()
        book.active.append(["username", "full_name", "unit_id", "position", "email"])
        book.active.append(["laocai.x1", "Người Một", "laocai.khong", "staff", "a@b.vn"])
        book.save(broken)
        page.get_by_label("Tệp xlsx hoặc CSV").set_input_files(str(broken))
        page.get_by_role("button", name="Xem trước").click()
        errors = page.locator("[data-testid=import-errors]").inner_text()
        assert "2" in errors and "unit_id" in errors and "Không có đơn vị “laocai.khong”" in errors
        assert page.get_by_role("button", name="Nhập tất cả").count() == 0

        # 200 officials: the preview, then all of them
        page.goto(f"{server.url}/admin/org/lao-cai")
        page.get_by_label("Tệp xlsx hoặc CSV").set_input_files(
            str(hr_workbook(tmp_path / "can-bo.xlsx")))
        page.get_by_role("button", name="Xem trước").click()
        preview = page.locator("[data-testid=import-preview]").inner_text()
        assert "Cán bộ mới: 200" in preview and "Chức vụ mới: 200" in preview
        shot(page, "import-preview")
        page.get_by_role("button", name="Nhập tất cả").click()
        assert "Đã nhập 200 dòng" in page.locator(".flash.success").inner_text()
        assert page.locator("[data-testid=officials] tbody tr").count() >= 200
        assert engine.org.members("laocai.sxd.qhkt", ["staff"])[:1] == ["laocai.sxd.nv001"]

        # the old head's open work shows the screening; the official moves to head the
        # department, and the task follows the position
        page.goto(f"{server.url}/admin/org/lao-cai/officials/{HEAD}")
        assert "Tiếp nhận, xem xét phạm vi và tính chất" in \
            page.locator("[data-testid=open-work]").inner_text()
        page.goto(f"{server.url}/admin/org/lao-cai/officials/{NEW_HEAD}")
        page.get_by_label("Tài khoản định danh (SSO) (sub)").fill(ACCOUNTS["nv001"].sub)
        page.locator("section.admin").get_by_role("button", name="Lưu").click()
        assert page.get_by_label("Tài khoản định danh (SSO) (sub)").input_value() == \
            ACCOUNTS["nv001"].sub
        move = page.locator("[data-testid=move-form]")
        move.get_by_label("Đến đơn vị").select_option("laocai.sxd")
        move.get_by_label("Chức vụ").select_option("head")
        shot(page, "official")
        move.get_by_role("button", name="Điều chuyển").click()
        assert "1 việc được chuyển" in page.locator(".flash.success").inner_text()
        assert engine.org.members("laocai.sxd", ["head"]) == [NEW_HEAD]
        assert case.candidates(case.open("screening")[0]) == [NEW_HEAD]
        page.goto(f"{server.url}/admin/org/lao-cai/log")
        log = page.locator("[data-testid=org-log]").inner_text()
        assert "org_official_moved" in log and "org_imported" in log

        # the new head signs in through the identity provider, finds the task and
        # completes it
        sign_in_through_the_provider(page, server, ACCOUNTS["nv001"])
        shot(page, "signed-in-through-the-provider")
        page.get_by_role("link", name="Tiếp nhận, xem xét phạm vi và tính chất").first.click()
        for condition in SCREENED:              # the head's own finding on Art. 5 k.1
            page.locator(f"#f-{condition}").select_option("met")
        page.get_by_label("Ghi chú").fill("Đủ điều kiện xem xét")
        page.get_by_role("button", name="Gửi").click()
        page.wait_for_url(re.compile(r".*/instances/.+"))
        assert "screening" not in case.open_elements()
        assert case.audit("task_completed")[-1].actor == NEW_HEAD

        # signing out ends the provider's session too: it asks for the password again
        page.get_by_role("button", name="Đăng xuất").click()
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(re.compile(re.escape(server.url) + r"/login$"))
        page.get_by_role("link", name="Đăng nhập qua hệ thống định danh (SSO)").click()
        page.wait_for_url(re.compile(r".*/interaction/.+"))
        assert page.get_by_label("Password").is_visible()


def test_bulk_reassignment_and_assigning_from_the_case_page(server, engine):
    cases = []
    for n in range(2):
        case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key=f"DX-{n}")
        case.do("submit_plan", plan(), by=PROPOSER)
        cases.append(case)
    with chromium_page(1280, 900) as page:
        sign_in(page, server, ADMIN)
        page.goto(f"{server.url}/admin/org/lao-cai/tasks")
        table = page.locator("[data-testid=bulk-tasks]")
        boxes = table.get_by_role("checkbox", name="Tiếp nhận, xem xét phạm vi và tính chất")
        assert boxes.count() == 2
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.get_by_label("Giao cho (tên đăng nhập)").fill("laocai.sxd.pgd1")
        page.get_by_role("button", name="Chuyển việc").click()
        assert "2 việc được chuyển" in page.locator(".flash.success").inner_text()
        for case in cases:
            assert case.open("screening")[0].assignee == "laocai.sxd.pgd1"

        # from the case page, one task to another deputy
        page.goto(f"{server.url}/instances/{cases[0].id}")
        assign = page.locator("[data-testid=assign-tasks]")
        assign.get_by_role("textbox").first.fill("laocai.sxd.pgd2")
        assign.get_by_role("button", name="Giao").first.click()
        assert cases[0].open("screening")[0].assignee == "laocai.sxd.pgd2"
        assign = page.locator("[data-testid=assign-tasks]")
        assign.get_by_role("textbox").first.fill("nobody.here")
        assign.get_by_role("button", name="Giao").first.click()
        assert page.locator(".flash.error").count() == 1
        assert cases[0].open("screening")[0].assignee == "laocai.sxd.pgd2"

        # an official who administers nothing has no such page
        sign_in(page, server, HEAD)
        response = page.goto(f"{server.url}/admin/org/lao-cai/tasks")
        assert response.status == 403
