"""Drafts of a variant's process folder (engine/drafts.py): made from the deployed folder,
kept in the database, saved file by file or as a zip (each bad entry named), summarised
against the deployed folder element by element, field by field and key by key, and
deployed through the repository (new versions; running cases stay on theirs). Only the
variant's designers touch it."""
from __future__ import annotations

import io
import re
import zipfile

import pytest

from engine import drafts as drafting
from engine.clock import as_utc
from engine.errors import Conflict, DefinitionInvalid, Forbidden
from engine.workflow_engine import WorkflowEngine
from conftest import PROJECT
from procedures import as_user, deploy_library, to_decision
from test_designer_studio import (APPROVAL_FLOW, DESIGNER, FIVE_DAYS, NEW_CONDITION,
                                  OTHER_DESIGNER, PROPOSER, SEVEN_DAYS, decide_task,
                                  deployed_condition, needs_chromium)


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def designer(engine, name=DESIGNER):
    return as_user(engine, name)


def with_deadline(toml: bytes, days: int) -> bytes:
    text, count = re.subn(r"(?m)^decision = \d+$", f"decision = {days}", toml.decode())
    assert count == 1
    return text.encode()


def with_condition(bpmn: bytes, condition: str) -> bytes:
    text = bpmn.decode()
    pattern = (rf'(<bpmn:sequenceFlow id="{APPROVAL_FLOW}"[^>]*>\s*'
               r'<bpmn:conditionExpression[^>]*>)([^<]*)(<)')
    text, count = re.subn(pattern, lambda m: m[1] + condition.replace('"', "&#34;") + m[3],
                          text)
    assert count == 1
    return text.encode()


def test_a_draft_starts_as_the_deployed_folder_and_deploying_it_unchanged_changes_nothing(
        library):
    who = designer(library)
    assert library.drafts.get("lao-cai", who) is None
    draft = library.drafts.open("lao-cai", who)
    assert draft.revision == 1 and draft.created_by == DESIGNER
    assert {"proposal.bpmn", "council.bpmn", "variant.toml"} <= set(draft.files)
    assert any(p.startswith("forms/") for p in draft.files)
    assert any(p.startswith("notifications/") for p in draft.files)
    assert any(p.startswith("documents/") and p.endswith(".docx") for p in draft.files)
    assert b'via_home_affairs_for = [\n    "head",\n]' in draft.files["variant.toml"] \
        or b'via_home_affairs_for = ["head"]' in draft.files["variant.toml"]

    assert library.drafts.changes("lao-cai", who).empty
    results = library.drafts.deploy("lao-cai", who, draft.revision)
    assert results and not any(r.created for r in results)     # the same content hashes
    assert library.drafts.get("lao-cai", who) is None


def test_the_draft_survives_a_restart(library, database_url, clock):
    who = designer(library)
    draft = library.drafts.open("lao-cai", who)
    toml = with_deadline(draft.files["variant.toml"], 5)
    library.drafts.put_file("lao-cai", "variant.toml", toml, who, draft.revision)

    again = WorkflowEngine(database_url, clock=clock)
    try:
        kept = again.drafts.get("lao-cai", designer(again))
        assert kept.revision == 2 and kept.files["variant.toml"] == toml
    finally:
        again.close()


def test_a_save_on_an_older_revision_is_refused(library):
    who = designer(library)
    draft = library.drafts.open("lao-cai", who)
    library.drafts.put_file("lao-cai", "variant.toml",
                            with_deadline(draft.files["variant.toml"], 5), who, draft.revision)
    with pytest.raises(Conflict) as refused:
        library.drafts.put_file("lao-cai", "variant.toml",
                                with_deadline(draft.files["variant.toml"], 6), who,
                                draft.revision)
    assert refused.value.message_code == "draft.conflict"
    with pytest.raises(Conflict):
        library.drafts.deploy("lao-cai", who, draft.revision)


def test_the_zip_round_trip_keeps_every_file(library):
    who = designer(library)
    folder = library.drafts.deployed_folder("lao-cai", who)
    data = drafting.to_zip(folder)
    assert drafting.from_zip(data) == folder
    # a zip of the folder itself (lao-cai/…) with the demo organisation beside it
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w") as archive:
        for path, content in folder.items():
            archive.writestr(f"lao-cai/{path}", content)
        archive.writestr("lao-cai/org.toml", b"[units]\n")
    assert drafting.from_zip(nested.getvalue()) == folder
    saved = library.drafts.save("lao-cai", drafting.from_zip(data), who)
    assert saved.files == folder and library.drafts.changes("lao-cai", who).empty


def zipped(*entries: tuple[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return out.getvalue()


def refusal(data: bytes) -> list:
    with pytest.raises(DefinitionInvalid) as refused:
        drafting.from_zip(data)
    return [(p.file, p.code) for p in refused.value.problems]


def test_bad_zip_entries_are_refused_each_named(library):
    good = b'<?xml version="1.0"?><bpmn:definitions xmlns:bpmn=' \
           b'"http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"/>'
    assert refusal(zipped(("../evil.bpmn", good))) == [("../evil.bpmn", "draft.path_outside")]
    assert refusal(zipped(("/etc/passwd.bpmn", good))) == [("/etc/passwd.bpmn",
                                                            "draft.path_outside")]
    assert refusal(zipped(("forms/../../x.json", b"{}"))) == [("forms/../../x.json",
                                                              "draft.path_outside")]
    assert refusal(zipped(("run.sh", b"id"))) == [("run.sh", "draft.path_kind")]
    assert refusal(zipped(("proposal.bpmn", b"<bpmn:definitions"))) == [("proposal.bpmn",
                                                                         "bpmn.not_xml")]
    assert refusal(zipped(("variant.toml", b"[deadlines\ndecision = 5"))) == [
        ("variant.toml", "variant.toml")]
    assert refusal(zipped(("forms/plan.json", b"[1, 2"))) == [("forms/plan.json",
                                                               "draft.not_json")]
    bomb = zipped(("proposal.bpmn", b"<" + b" " * (3 * 1024 * 1024) + b"/>"))
    assert len(bomb) < 64 * 1024
    assert refusal(bomb) == [("proposal.bpmn", "draft.zip_bomb")]
    assert refusal(b"PK not a zip") == [("(zip)", "draft.not_zip")]
    # a DTD (entities, the billion laughs) is refused as deployment refuses it
    laughs = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert refusal(zipped(("council.bpmn", laughs))) == [("council.bpmn", "bpmn.dtd")]


def test_settings_are_checked_as_deployment_checks_them(library):
    who = designer(library)
    draft = library.drafts.open("lao-cai", who)
    bad = draft.files["variant.toml"].replace(b'unit_deadline = "30/11"',
                                              b'unit_deadline = "31/11"', 1)
    assert bad != draft.files["variant.toml"]
    with pytest.raises(DefinitionInvalid) as refused:
        library.drafts.put_file("lao-cai", "variant.toml", bad, who)
    [problem] = refused.value.problems
    assert problem.file == "lao-cai/variant.toml: reporting.unit_deadline"
    assert problem.code == "variant.no_day" and problem.params["value"] == "31/11"
    assert library.drafts.get("lao-cai", who).revision == draft.revision    # nothing written


def test_the_summary_names_what_changes_element_by_element_field_by_field_key_by_key(
        library):
    who = designer(library)
    draft = library.drafts.open("lao-cai", who)
    files = dict(draft.files)
    files["variant.toml"] = with_deadline(files["variant.toml"], 5)
    files["proposal.bpmn"] = with_condition(files["proposal.bpmn"], NEW_CONDITION)
    [plan] = [p for p in files if p.startswith("forms/") and "plan" in p][:1]
    schema = __import__("json").loads(files[plan])
    schema["properties"]["budget_source"] = {"type": "string", "title": "Nguồn kinh phí"}
    schema["required"] = [*schema.get("required", []), "budget_source"]
    files[plan] = __import__("json").dumps(schema, ensure_ascii=False).encode()
    library.drafts.save("lao-cai", files, who, draft.revision)

    changes = library.drafts.changes("lao-cai", who).to_dict()
    assert not changes["empty"]
    assert {"key": "deadlines.decision", "change": "changed", "before": 7, "after": 5} \
        in changes["settings"]
    [diagram] = changes["diagrams"]
    assert diagram["path"] == "proposal.bpmn" and diagram["change"] == "changed"
    [flow] = diagram["elements"]
    assert (flow["id"], flow["kind"], flow["change"], flow["details"]) == (
        APPROVAL_FLOW, "sequenceFlow", "changed", ["condition"])
    [form] = changes["forms"]
    assert form["path"] == plan and form["fields"] == [{"field": "budget_source",
                                                        "change": "added"}]


def test_deploying_the_draft_gives_new_cases_the_new_deadline_and_keeps_running_ones(
        library):
    running = to_decision(library, "lao-cai", PROPOSER, business_key="LC-RUNNING")
    who = designer(library)
    draft = library.drafts.open("lao-cai", who)
    draft = library.drafts.put_file("lao-cai", "variant.toml",
                                    with_deadline(draft.files["variant.toml"], 5), who,
                                    draft.revision)
    draft = library.drafts.put_file("lao-cai", "proposal.bpmn",
                                    with_condition(draft.files["proposal.bpmn"], NEW_CONDITION),
                                    who, draft.revision)
    assert [b.key for b in library.drafts.validate("lao-cai", who)]
    results = library.drafts.deploy("lao-cai", who, draft.revision)
    assert all(r.created for r in results)     # the settings travel with every process
    latest = library.repository.latest("lao-cai", "proposal")
    assert latest.version == 2 and latest.deployed_by == DESIGNER
    assert deployed_condition(latest) == NEW_CONDITION
    assert library.repository.settings(latest)["deadlines"]["decision"] == 5
    assert library.drafts.get("lao-cai", who) is None

    fresh = to_decision(library, "lao-cai", PROPOSER, business_key="LC-NEW")
    assert as_utc(decide_task(fresh).due_at) == FIVE_DAYS
    assert as_utc(decide_task(running).due_at) == SEVEN_DAYS
    assert running.instance.definition_id != latest.id


def test_a_draft_folder_that_extends_national_inherits_its_files(library):
    who = designer(library)
    # the province's own folder, as the repository keeps it, with a deadline of its own
    own = (PROJECT / "processes" / "lao-cai" / "variant.toml").read_bytes()
    library.drafts.save("lao-cai", {"variant.toml": own + b"\n[deadlines]\ndecision = 5\n"},
                        who)
    changes = library.drafts.changes("lao-cai", who)
    assert not changes.diagrams and not changes.forms
    assert [c.key for c in changes.settings if c.change == "changed"] == ["deadlines.decision"]


def test_only_designers_of_the_variant_touch_its_draft(library):
    other = designer(library, OTHER_DESIGNER)
    for call in (lambda: library.drafts.open("lao-cai", other),
                 lambda: library.drafts.get("lao-cai", other),
                 lambda: library.drafts.deployed_folder("lao-cai", other),
                 lambda: library.drafts.put_file("lao-cai", "variant.toml", b"", other),
                 lambda: library.drafts.deploy("lao-cai", other)):
        with pytest.raises(Forbidden):
            call()
    assert library.drafts.get("lao-cai", designer(library)) is None


# --- the REST API ------------------------------------------------------------------------

@pytest.fixture
def server(library):
    from api_client import LiveServer
    live = LiveServer(library)
    yield live
    live.stop()


def test_the_api_saves_a_draft_round_trips_its_zip_summarises_and_deploys_it(server, library):
    base = "/variants/lao-cai"
    assert server.get(f"{base}/draft", user=DESIGNER).json()["code"] == "draft.none"
    # reading shows the deployed folder and makes no draft
    assert server.get(f"{base}/draft.zip", user=DESIGNER).status_code == 200
    assert server.get(f"{base}/draft/files/proposal.bpmn", user=DESIGNER).status_code == 200
    assert server.get(f"{base}/draft", user=DESIGNER).status_code == 404
    opened = server.post(f"{base}/draft", user=DESIGNER)
    assert opened.status_code == 200 and opened.json()["revision"] == 1
    toml = server.get(f"{base}/draft/files/variant.toml", user=DESIGNER)
    assert toml.status_code == 200 and b"[deadlines]" in toml.content

    # 31/11 is refused naming the file and the field, in the reader's language
    refused = server.call("PUT", f"{base}/draft/files/variant.toml?revision=1", DESIGNER,
                          data=toml.content.replace(b'"30/11"', b'"31/11"', 1),
                          headers={"Accept-Language": "vi"})
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["problems"]
    assert problem["file"] == "lao-cai/variant.toml: reporting.unit_deadline"
    assert problem["code"] == "variant.no_day"

    saved = server.call("PUT", f"{base}/draft/files/variant.toml?revision=1", DESIGNER,
                        data=with_deadline(toml.content, 5))
    assert saved.status_code == 200 and saved.json()["revision"] == 2
    stale = server.call("PUT", f"{base}/draft/files/variant.toml?revision=1", DESIGNER,
                        data=with_deadline(toml.content, 6))
    assert stale.status_code == 409 and stale.json()["code"] == "draft.conflict"

    # download, upload back: the same folder, a new revision
    download = server.get(f"{base}/draft.zip", user=DESIGNER)
    assert download.headers["Content-Type"] == "application/zip"
    uploaded = server.post(f"{base}/draft.zip", user=DESIGNER,
                           files={"file": ("lao-cai.zip", download.content)})
    assert uploaded.status_code == 200 and uploaded.json()["revision"] == 3
    bad = server.post(f"{base}/draft.zip", user=DESIGNER,
                      files={"file": ("x.zip", zipped(("../../etc/cron.d/x.bpmn", b"<x/>")))})
    assert bad.status_code == 422
    assert bad.json()["problems"][0]["file"] == "../../etc/cron.d/x.bpmn"
    deployed = server.get(f"{base}/deployed.zip", user=DESIGNER)
    assert b"deadlines" in drafting.from_zip(deployed.content)["variant.toml"]

    changes = server.get(f"{base}/draft/changes", user=DESIGNER).json()
    assert changes["settings"] == [{"key": "deadlines.decision", "change": "changed",
                                    "before": 7, "after": 5}]
    assert server.post(f"{base}/draft/validate", user=DESIGNER).json()["valid"] is True
    stale = server.post(f"{base}/draft/deploy", user=DESIGNER, json={"revision": 2})
    assert stale.status_code == 409
    done = server.post(f"{base}/draft/deploy", user=DESIGNER, json={"revision": 3})
    assert done.status_code == 201 and done.json()["created"] is True
    assert library.repository.settings(
        library.repository.latest("lao-cai", "proposal"))["deadlines"]["decision"] == 5
    assert server.get(f"{base}/draft", user=DESIGNER).status_code == 404


def test_another_provinces_designer_gets_403_on_every_draft_endpoint(server, library):
    base = "/variants/lao-cai"
    for method, path, kw in (("GET", "/draft", {}), ("POST", "/draft", {}),
                             ("GET", "/draft.zip", {}), ("GET", "/deployed.zip", {}),
                             ("PUT", "/draft/files/variant.toml", {"data": b"x = 1"}),
                             ("GET", "/draft/changes", {}),
                             ("POST", "/draft/deploy", {"json": {"revision": 1}})):
        answer = server.call(method, base + path, OTHER_DESIGNER, **kw)
        assert answer.status_code == 403, (method, path, answer.text)
    assert library.drafts.get("lao-cai", designer(library)) is None


# --- the browser ----------------------------------------------------------------------------

@pytest.fixture
def browser():
    from browser import chromium_page
    with chromium_page(1400, 900) as page:
        yield page


@needs_chromium
def test_lao_cai_designer_changes_the_decision_deadline_in_the_settings_editor_and_deploys(
        server, library, browser):
    from browser import sign_in
    from playwright.sync_api import expect

    page = browser
    running = to_decision(library, "lao-cai", PROPOSER, business_key="LC-RUNNING")
    sign_in(page, server, DESIGNER)
    page.goto(f"{server.url}/designer")
    page.locator("[data-settings=lao-cai]").click()
    decision = page.locator("#setting-deadlines-decision")
    expect(decision).to_have_value("7")

    # an impossible date is refused next to its field, in Vietnamese, and nothing is saved
    page.locator("#setting-reporting-unit_deadline").fill("31/11")
    decision.fill("5")
    page.get_by_role("button", name="Lưu bản nháp").first.click()
    expect(page.locator("[data-error-for='reporting.unit_deadline']")).to_have_text(
        "'31/11' không phải ngày có thật: tháng 11 chỉ có 30 ngày")
    expect(page.locator("#setting-reporting-unit_deadline")).to_have_value("31/11")
    page.screenshot(path=str(PROJECT / "tests" / "output" / "drafts-settings-refused.png"),
                    full_page=True)
    assert library.drafts.get("lao-cai", designer(library)) is None

    page.locator("#setting-reporting-unit_deadline").fill("30/11")
    page.locator("#setting-deadlines-decision").fill("5")
    page.get_by_role("button", name="Lưu bản nháp").first.click()
    expect(page.locator(".flash.success")).to_contain_text("Đã lưu bản nháp")
    expect(page.locator("#setting-deadlines-decision")).to_have_value("5")

    # the draft's page sums up the change key by key before deploying
    page.get_by_role("link", name="← Bản nháp").click()
    row = page.locator("[data-testid=summary-settings] tr[data-key='deadlines.decision']")
    expect(row).to_contain_text("Thay đổi")
    expect(row.locator("td").nth(2)).to_have_text("7")
    expect(row.locator("td").nth(3)).to_have_text("5")
    expect(page.locator("[data-testid=summary-settings] tbody tr")).to_have_count(1)
    page.screenshot(path=str(PROJECT / "tests" / "output" / "drafts-summary.png"),
                    full_page=True)
    page.get_by_role("button", name="Triển khai").click()
    expect(page.locator(".flash.success")).to_contain_text("Đã triển khai: ")

    latest = library.repository.latest("lao-cai", "proposal")
    assert latest.version == 2 and latest.deployed_by == DESIGNER
    fresh = to_decision(library, "lao-cai", PROPOSER, business_key="LC-NEW")
    assert as_utc(decide_task(fresh).due_at) == FIVE_DAYS
    assert as_utc(decide_task(running).due_at) == SEVEN_DAYS
    assert running.instance.definition_id != latest.id


# --- the comparison with national --------------------------------------------------------

def test_compare_covers_settings_and_forms_and_shows_processes_only_in_the_variant(server):
    from test_web_ui import web_session

    web, _ = web_session(server, "admin")
    page = web.get(f"{server.url}/designer/can-tho/proposal/compare", timeout=60)
    assert page.status_code == 200
    # the same diagram, but Cần Thơ routes heads and deputies via Sở Nội vụ
    assert "Giống quy trình chung" not in page.text
    assert 'data-key="routing.via_home_affairs_for"' in page.text
    assert 'data-key="council.home_affairs_advises"' in page.text

    only = web.get(f"{server.url}/designer/dak-lak/department_report/compare", timeout=60)
    assert only.status_code == 200 and "Chỉ có ở biến thể" in only.text
    index = web.get(f"{server.url}/designer", timeout=60).text
    assert 'data-only-in-variant="department_report"' in index
    assert "/designer/dak-lak/department_report/compare" not in index
    # national against itself is the same
    same = web.get(f"{server.url}/designer/national/proposal/compare", timeout=60)
    assert "Giống quy trình chung" in same.text

    outsider, _ = web_session(server, OTHER_DESIGNER)
    assert outsider.get(f"{server.url}/designer/lao-cai/proposal/compare",
                        timeout=60).status_code == 403
    assert outsider.get(f"{server.url}/designer/lao-cai/draft", timeout=60).status_code == 403
    assert outsider.get(f"{server.url}/designer/lao-cai/settings",
                        timeout=60).status_code == 403


def test_the_studio_upload_takes_a_variant_toml(server, library):
    """POST /definitions (the modeler's upload) takes variant.toml beside BPMN files: laid
    over the deployed settings of the variant it extends, checked as deployment checks."""
    own = (PROJECT / "processes" / "lao-cai" / "variant.toml").read_bytes()
    bad = own.replace(b'unit_deadline = "30/11"', b'unit_deadline = "31/11"')
    refused = server.post("/definitions/validate", user=DESIGNER, data={"variant": "lao-cai"},
                          files={"files": ("variant.toml", bad)})
    assert refused.status_code == 422
    [problem] = refused.json()["problems"]
    assert (problem["file"], problem["code"]) == (
        "lao-cai/variant.toml: reporting.unit_deadline", "variant.no_day")

    nowhere = own.replace(b'extends = "national"', b'extends = "nowhere"')
    refused = server.post("/definitions/validate", user=DESIGNER, data={"variant": "lao-cai"},
                          files={"files": ("variant.toml", nowhere)})
    assert refused.json()["problems"][0]["code"] == "variant.extends_unknown"

    # a shorter decision deadline breaks the variant's kept dry-run script: nothing deployed
    shorter = server.post("/definitions", user=DESIGNER, data={"variant": "lao-cai"},
                          files={"files": ("variant.toml",
                                           own + b"\n[deadlines]\ndecision = 5\n")})
    assert shorter.status_code == 422 and shorter.json()["code"] == "deploy.dry_run_failed"
    assert library.repository.latest("lao-cai", "proposal").version == 1
    later = own.replace(b'consolidation_deadline = "10/12"', b'consolidation_deadline = "11/12"')
    assert later != own
    done = server.post("/definitions", user=DESIGNER, data={"variant": "lao-cai"},
                       files={"files": ("variant.toml", later)})
    assert done.status_code == 201, done.text
    assert library.repository.settings(library.repository.latest("lao-cai", "proposal"))[
        "reporting"]["consolidation_deadline"] == "11/12"
