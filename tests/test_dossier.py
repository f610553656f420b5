"""The case file (hồ sơ) on every page and in the API: the plan laid out for reading (money in
đồng, dates dd/mm/yyyy), its attachments, each opinion, the vote's ballots and tally, who
(full name, position, unit) and when, the open step's deadline; to those who may see the
case only. In a real browser, a head sees it all before deciding, and the diagram zooms."""
from __future__ import annotations

import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import requests

from api_client import LiveServer
from browser import CHROMIUM, chromium_page, sign_in
from engine.org import DEFAULT_DEMO_PASSWORD
from procedures import SCREENED, Case, as_user, deploy_library, plan

SHOTS = Path(__file__).parent / "output"
PROPOSER = "laocai.sxd.qlxd.truongphong"      # Võ Thị Tâm, Phòng Quản lý xây dựng
HEAD = "laocai.sxd.giamdoc"                   # Đỗ Thanh Mai, Sở Xây dựng
STRANGER = "mau.chutich"                      # another province
TITLE = "Số hoá hồ sơ cấp phép xây dựng toàn trình"
DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")


@pytest.fixture
def server(engine):
    deploy_library(engine, ballots=True)          # each member's ballot: a collective step
    live = LiveServer(engine)
    yield live
    live.stop()


def at_decision(engine) -> Case:
    """A Lào Cai proposal with an attached file, screened, the Party committee's opinion
    given and the leadership's vote cast (three for, one against): the decision is open."""
    attached = engine.attachments.store("ke-hoach-chi-tiet.pdf", b"%PDF-1.4 plan", PROPOSER)
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(TITLE, attachments=[{"name": "ke-hoach-chi-tiet.pdf",
                                                     "file_id": attached.id}]), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False})
    case.do("party_opinion", {"party_opinion": "agree"})
    voters = case.voters()
    case.vote({voter: "against" if voter == voters[-1] else "for" for voter in voters})
    assert case.open_elements() == ["decide"]
    return case


def test_the_dossier_in_the_api(server, engine):
    case = at_decision(engine)
    answer = server.get(f"/instances/{case.id}/dossier", HEAD)
    assert answer.status_code == 200, answer.text
    dossier = answer.json()
    assert dossier["title"] == TITLE
    assert dossier["proposer"]["full_name"] == "Võ Thị Tâm"
    assert dossier["proposer"]["text"] == ("Võ Thị Tâm (Người đứng đầu, "
                                           "Phòng Quản lý xây dựng)")
    assert dossier["stage"]["label"] == "Đang xem xét"
    steps = {s["element_id"]: s for s in dossier["steps"]}
    assert list(steps) == ["submit_plan", "screening", "party_opinion", "leadership_vote"]

    # the plan: every field with its form's label, read as a Vietnamese reader expects
    the_plan = steps["submit_plan"]
    assert the_plan["name"] == "Lập và gửi kế hoạch đề xuất"
    assert the_plan["lane"]["label"] == "Người đề xuất"          # not "proposer"
    assert the_plan["form"]["title"] == "Kế hoạch đề xuất đổi mới, sáng tạo"
    assert the_plan["by"]["full_name"] == "Võ Thị Tâm"
    assert DATE.match(the_plan["at_text"].split()[0])
    shown = {f["name"]: f for f in the_plan["fields"]}
    assert shown["budget_vnd"]["label"] == "Kinh phí (đồng)"
    assert shown["budget_vnd"]["text"] == "450.000.000 đồng"
    assert shown["start_date"]["text"] == "01/12/2026"
    assert shown["field_of_work"]["text"] == "Chuyển đổi số"
    assert shown["common_interest"]["text"] == "Có"
    assert shown["title"]["text"] == TITLE
    [attached] = the_plan["attachments"]
    assert attached["name"] == "ke-hoach-chi-tiet.pdf"
    assert dossier["attachments"] == the_plan["attachments"]
    # the file downloads for the head, who sees the case
    download = server.get(f"/instances/{case.id}/files/{attached['file_id']}", HEAD)
    assert download.status_code == 200 and download.content == b"%PDF-1.4 plan"

    # the opinion, and the vote: who voted how and the tally
    opinion = steps["party_opinion"]
    assert opinion["fields"][0]["text"] == "Đồng ý"
    assert opinion["by"]["full_name"] == "Hồ Công Nam"
    assert opinion["lane"]["label"] == "Cấp ủy"
    vote = steps["leadership_vote"]
    assert vote["kind"] == "collective"
    tally = {c["text"]: c["count"] for c in vote["counts"]}
    assert tally == {"Tán thành": 3, "Không tán thành": 1}
    ballots = {b["by"]["full_name"]: b["fields"][0]["text"] for b in vote["members"]}
    assert ballots["Đỗ Thanh Mai"] in ("Tán thành", "Không tán thành")
    assert sorted(ballots.values()).count("Tán thành") == 3
    assert all(b["by"]["positions"] for b in vote["members"])

    # the step open now: its deadline, who may do it
    [now] = dossier["current"]
    assert now["name"] == "Quyết định phê duyệt hoặc từ chối"
    assert DATE.match(now["due_text"])
    assert [p["full_name"] for p in now["candidates"]] == ["Đỗ Thanh Mai"]
    assert "khoản 1 Điều 8" in now["legal_basis"]
    assert "laocai." not in " ".join(str(s.get("lane")) for s in dossier["steps"])

    # the proposer sees their own case's file; a stranger is told it does not exist
    assert server.get(f"/instances/{case.id}/dossier", PROPOSER).status_code == 200
    refused = server.get(f"/instances/{case.id}/dossier", STRANGER)
    assert refused.status_code == 404
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert server.get(f"/instances/{case.id}/dossier").status_code == 401

    # it is in the OpenAPI document
    document = requests.get(f"{server.url}/api/v1/openapi.json", timeout=30).json()
    assert "/api/v1/instances/{instance_id}/dossier" in document["paths"]


def _web(server, username: str) -> requests.Session:
    web = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      web.get(f"{server.url}/login", timeout=30).text).group(1)
    signed = web.post(f"{server.url}/login", data={
        "username": username, "password": DEFAULT_DEMO_PASSWORD, "csrf_token": token},
        allow_redirects=False, timeout=30)
    assert signed.status_code == 302
    return web


def test_task_and_case_pages_show_the_dossier(server, engine):
    case = at_decision(engine)
    [decide] = case.open("decide")
    web = _web(server, HEAD)
    page = web.get(f"{server.url}/tasks/{decide.id}", timeout=30).text
    for words in (TITLE, "450.000.000 đồng", "01/12/2026", "Chuyển đổi số",
                  "ke-hoach-chi-tiet.pdf", "Tán thành", "Võ Thị Tâm", "Hồ Công Nam",
                  "Tập thể lãnh đạo", "Cấp ủy"):
        assert words in page, words
    assert "Đề xuất đổi mới, sáng tạo · " not in page
    case_page = web.get(f"{server.url}/instances/{case.id}", timeout=30).text
    assert TITLE in case_page and "450.000.000 đồng" in case_page
    # people by name, not username, in the facts and the timeline
    facts = case_page.split('data-testid="facts"')[1].split("</dl>")[0]
    assert "Võ Thị Tâm" in facts and f">{PROPOSER}<" not in facts
    timeline = case_page.split('data-testid="timeline"')[1].split("</table>")[0]
    assert "Đỗ Thanh Mai" in timeline and f">{HEAD}<" not in timeline
    # the inbox and the proposer's list carry the plan's title
    inbox = web.get(f"{server.url}/", timeout=30).text
    assert TITLE in inbox
    mine = _web(server, PROPOSER).get(f"{server.url}/proposals", timeout=30).text
    assert TITLE in mine
    # a stranger's browser gets the not-found page, for the case file's PDF too
    stranger = _web(server, STRANGER)
    assert stranger.get(f"{server.url}/tasks/{decide.id}", timeout=30).status_code == 404
    refused = stranger.get(f"{server.url}/instances/{case.id}/dossier.pdf", timeout=30)
    assert refused.status_code == 404 and refused.headers["Content-Type"].startswith(
        "text/html")
    assert "Traceback" not in refused.text


pytestmark_browser = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                        reason=f"chromium is not installed at {CHROMIUM}")


@pytestmark_browser
def test_head_sees_the_case_file_before_deciding_and_zooms_the_diagram(server, engine):
    case = at_decision(engine)
    SHOTS.mkdir(exist_ok=True)
    with chromium_page(1280, 900) as page:
        sign_in(page, server, HEAD)
        page.get_by_role("link", name="Quyết định phê duyệt hoặc từ chối").first.click()
        page.wait_for_url(re.compile(r".*/tasks/.+"))
        dossier = page.locator("[data-testid=dossier]")
        assert dossier.is_visible()
        # the step's legal basis, as its diagram declares it
        assert "khoản 1 Điều 8" in page.locator("[data-testid=task-legal-basis]").inner_text()
        plan_step = dossier.locator("[data-element=submit_plan]")
        assert "450.000.000 đồng" in plan_step.locator("[data-field=budget_vnd]").inner_text()
        assert TITLE in plan_step.inner_text()
        assert plan_step.get_by_role("link", name="ke-hoach-chi-tiet.pdf").is_visible()
        tally = dossier.locator("[data-testid=tally]").inner_text()
        assert "Tán thành 3" in tally and "Không tán thành 1" in tally
        assert dossier.locator("[data-testid=ballots] tbody tr").count() == 4
        # the form to decide comes after what it decides on
        form_top = page.locator("[data-testid=task-form]").bounding_box()["y"]
        assert plan_step.bounding_box()["y"] < form_top
        page.screenshot(path=str(SHOTS / "dossier-decision-task.png"), full_page=True)

        # the case's diagram zooms with its buttons (and the wheel) and pans
        page.goto(f"{server.url}/instances/{case.id}")
        page.wait_for_selector("#diagram[data-ready=true]")
        viewbox = "document.querySelector('#diagram').getAttribute('data-viewbox')"
        transform = ("document.querySelector('#diagram svg g.viewport')"
                     ".getAttribute('transform')")
        drawn = page.evaluate(transform)
        before = page.evaluate(viewbox)
        page.get_by_role("button", name="Phóng to").click()
        page.wait_for_function(f"{viewbox} !== {before!r}")
        zoomed = page.evaluate(viewbox)
        assert zoomed != before and page.evaluate(transform) != drawn
        width = lambda box: float(box.split()[2])         # noqa: E731
        assert width(zoomed) < width(before)              # closer: less of it in view
        box = page.locator("#diagram").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 150, box["y"] + box["height"] / 2,
                        steps=5)
        page.mouse.up()
        page.wait_for_function(f"{viewbox} !== {zoomed!r}")
        assert page.evaluate(viewbox).split()[0] != zoomed.split()[0]   # dragged aside
        page.screenshot(path=str(SHOTS / "dossier-case-page.png"), full_page=True)
    assert as_user(engine, HEAD) is not None


def _png(bitmap) -> bytes:
    """A rendered page (RGB rows) as a PNG file, for a person to look at."""
    rows = bytes(bitmap.buffer)
    raw = b"".join(b"\x00" + rows[y * bitmap.stride:y * bitmap.stride + bitmap.width * 3]
                   for y in range(bitmap.height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", bitmap.width, bitmap.height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


@pytest.mark.skipif(not shutil.which("soffice"),
                    reason="LibreOffice is not installed (make office installs it)")
def test_the_dossier_as_one_pdf(server, engine):
    import pypdfium2

    case = at_decision(engine)
    answer = server.get(f"/instances/{case.id}/dossier.pdf", HEAD)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/pdf"
    assert "attachment" in answer.headers["Content-Disposition"]
    document = pypdfium2.PdfDocument(answer.content)
    text = "\n".join(document[i].get_textpage().get_text_range()
                     for i in range(len(document)))
    flat = " ".join(text.split())
    for words in (TITLE, "450.000.000 đồng", "01/12/2026", "Võ Thị Tâm", "Tán thành: 3",
                  "Không tán thành: 1", "ke-hoach-chi-tiet.pdf",
                  "Quyết định phê duyệt hoặc từ chối"):
        assert words in flat, words
    width, height = document[0].get_size()
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (210, 297)   # A4
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / "dossier-pdf-page1.png").write_bytes(_png(document[0].render(
        scale=1.5, rev_byteorder=True, force_bitmap_format=pypdfium2.raw.FPDFBitmap_BGR)))
    assert server.get(f"/instances/{case.id}/dossier.pdf", STRANGER).status_code == 404

    # the case page links to it, and the link downloads it for a signed-in official
    web = _web(server, PROPOSER)
    case_page = web.get(f"{server.url}/instances/{case.id}", timeout=30).text
    link = re.search(r'href="([^"]+dossier\.pdf)" data-testid="dossier-pdf"', case_page)
    assert link is not None
    download = web.get(f"{server.url}{link.group(1)}", timeout=120)
    assert download.status_code == 200 and download.content.startswith(b"%PDF")


def test_a_steps_legal_basis_and_a_title_nothing_declares(engine):
    """A step's ``legalBasis`` is shown on the step open now and, once done, on the step;
    a process whose forms mark no title is named by its business key."""
    from conftest import ALICE, BOB, bpmn_source
    from engine import policy

    decide = '<bpmn:userTask id="decide" name="Quyết định">'
    ns = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'
    engine.repository.deploy("national", [bpmn_source(replace={
        ns: f'{ns} xmlns:nd73="{policy.NS}"',
        decide: f'{decide}<bpmn:extensionElements><nd73:properties>'
                '<nd73:property name="legalBasis" value="Điều 8 khoản 1 Nghị định 73/2023/NĐ-CP" />'
                '<nd73:property name="decisionFields" value="decision" />'
                '</nd73:properties></bpmn:extensionElements>'})], "designer")
    instance = engine.runtime.start("national", "review", principal=ALICE,
                                    business_key="XD-7")
    [submit] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(submit.id, {"months": 4}, principal=ALICE)
    dossier = engine.dossiers.build(ALICE, instance.id)
    assert dossier["title"] == "XD-7"
    [now] = dossier["current"]
    assert (now["name"], now["legal_basis"]) == ("Quyết định",
                                                 "Điều 8 khoản 1 Nghị định 73/2023/NĐ-CP")
    assert dossier["steps"][0]["legal_basis"] is None
    [decide_task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(decide_task.id, {"decision": "approve"}, principal=BOB)
    done = engine.dossiers.build(ALICE, instance.id)
    assert [s["name"] for s in done["steps"]] == ["Nộp kế hoạch", "Quyết định"]
    assert done["steps"][1]["legal_basis"] == "Điều 8 khoản 1 Nghị định 73/2023/NĐ-CP"
    assert done["current"] == []


def test_the_council_and_the_decision_in_the_case_file(engine):
    """Through the council (a called process) to the decision: the council's members by name,
    its ballots counted apart from the leadership's, the implementers named, the decision
    read by its label."""
    deploy_library(engine, ballots=True)
    proposer = "laocai.sxd.qlxd.truongphong"
    case = Case.start(engine, "lao-cai", "proposal", proposer)
    case.do("submit_plan", plan(TITLE), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": True})
    case.do("party_opinion", {"party_opinion": "agree"})
    members = ["laocai.chuyengia1", "laocai.chuyengia2", "laocai.chuyengia3",
               "laocai.chuyengia4", "laocai.skhcn.giamdoc"]
    # in Lào Cai Sở Nội vụ advises the council's forming first
    case.do("advise_council", {"advised_members": members, "advice_note": "Đề xuất"})
    case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                             "council_members": members})
    case.vote({m: "for" for m in members}, "council_vote")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve",
                       "implementers": [proposer, "laocai.sxd.gt.truongphong"]})
    dossier = engine.dossiers.build(as_user(engine, proposer), case.id)
    people = engine.dossiers.people.of(members + [proposer, "laocai.sxd.gt.truongphong"])
    steps = dossier["steps"]
    kinds = [(s["element_id"], s["kind"]) for s in steps]
    assert ("council_vote", "collective") in kinds and ("leadership_vote", "collective") in kinds
    council = next(s for s in steps if s["element_id"] == "form_council")
    shown = {f["name"]: f["text"] for f in council["fields"]}
    assert shown["council_chair"] == people[members[0]]["text"]
    assert people[members[0]]["full_name"] in shown["council_members"]
    assert "laocai.chuyengia" not in " ".join(shown.values())
    council_vote = next(s for s in steps if s["element_id"] == "council_vote")
    assert len(council_vote["members"]) == 5
    assert council_vote["counts"][0]["count"] == 5
    decided = next(s for s in steps if s["element_id"] == "decide")
    shown = {f["name"]: f["text"] for f in decided["fields"]}
    assert shown["decision"] == "Phê duyệt" and "decision_number" not in shown
    assert shown["implementers"] == "; ".join(
        people[u]["text"] for u in (proposer, "laocai.sxd.gt.truongphong"))
    assert dossier["latest_decision"]["label"] == "Phê duyệt"
    assert [c["element_id"] for c in dossier["current"]] == ["implement"]
