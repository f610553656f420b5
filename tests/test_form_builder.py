"""The form builder: a variant's designer edits the fields of a form its processes use (key,
type, required, Vietnamese and English labels, choices, pattern, limits, order), sees it drawn
by the renderer officials get, and saves the variant's own copy, checked as deployment checks
it and refused with the field named.

Screenshots land in tests/output/form-builder-*.png."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import expect
from werkzeug.datastructures import MultiDict

from api.ui import form_fields
from api.ui.form_schema import FormProblems, fields_of, schema_of, schema_problems
from browser import CHROMIUM, chromium_page, page_complaints, sign_in
from engine.errors import InvalidData
from engine.forms import form_errors
from procedures import Case, as_user, plan

from conftest import PROJECT

FORMS = PROJECT / "forms"
PLAN_FORM = "proposal_plan.schema.json"
SHOTS = Path(__file__).parent / "output"
PROPOSER = "laocai.sxd.qlxd.truongphong"
DESIGNER = "laocai.snv.chuyenvien"
OTHER_DESIGNER = "cantho.snv.chuyenvien"
PHONE = {"key": "contact_phone", "origin": None, "kind": "text", "required": True,
         "label": "Số điện thoại liên hệ", "label_en": "Contact phone",
         "pattern": r"^0[0-9]{9}$", "min": None, "max": None, "choices": []}

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"chromium is not installed at {CHROMIUM}")


def plan_schema() -> dict:
    return json.loads((FORMS / PLAN_FORM).read_text(encoding="utf-8"))


def refused(base: dict, fields: list[dict]) -> list[tuple[str, str]]:
    with pytest.raises(FormProblems) as caught:
        schema_of(base, fields)
    return [(p["field"], p["code"]) for p in caught.value.problems]


# --- the model: schema → fields → schema ----------------------------------------------------

@pytest.mark.parametrize("path", sorted(FORMS.rglob("*.schema.json")),
                         ids=lambda p: str(p.relative_to(FORMS)))
def test_every_form_of_the_project_comes_back_unchanged_from_the_builder(path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema_of(schema, fields_of(schema)) == schema


def test_the_builders_edits_are_the_schema_the_engine_validates_with():
    base = plan_schema()
    fields = fields_of(base)
    assert [f["key"] for f in fields][:3] == ["title", "field_of_work", "necessity"]
    kinds = {f["key"]: f["kind"] for f in fields}
    assert (kinds["field_of_work"], kinds["budget_vnd"], kinds["start_date"],
            kinds["no_harm"], kinds["attachments"], kinds["necessity"]) == (
        "select", "money", "date", "confirm", "files", "textarea")

    # added first, relabelled, a choice added with its words, a limit changed, one removed
    fields.insert(0, dict(PHONE))
    work = next(f for f in fields if f["key"] == "field_of_work")
    work["choices"].append({"value": "moi_truong", "label": "Môi trường",
                            "label_en": "Environment"})
    budget = next(f for f in fields if f["key"] == "budget_vnd")
    budget["max"] = "5000000000"
    fields = [f for f in fields if f["key"] != "equipment"]
    fields.append({"key": "partners", "origin": None, "kind": "choices", "required": False,
                   "label": "Đơn vị phối hợp", "label_en": "Partners", "pattern": "",
                   "min": 1, "max": None, "choices": [
                       {"value": "snv", "label": "Sở Nội vụ", "label_en": "Home Affairs"},
                       {"value": "stc", "label": "Sở Tài chính", "label_en": ""}]})
    schema = schema_of(base, fields)

    assert list(schema["properties"])[0] == "contact_phone"
    assert "equipment" not in schema["properties"]
    assert schema["properties"]["contact_phone"] == {
        "type": "string", "title": "Số điện thoại liên hệ", "x-title-en": "Contact phone",
        "pattern": r"^0[0-9]{9}$"}
    assert "contact_phone" in schema["required"] and "people" not in schema["required"]
    assert schema["properties"]["field_of_work"]["enum"][-1] == "moi_truong"
    assert schema["properties"]["field_of_work"]["x-enum-labels-en"] == {
        "moi_truong": "Environment"}
    assert schema["properties"]["budget_vnd"]["maximum"] == 5000000000
    assert schema["properties"]["title"]["x-case-title"] is True        # kept, not edited
    # a type changed: the old type's rules go, the designer's notes stay
    changed = fields_of(base)
    changed[1]["kind"] = "text"                   # field_of_work, was a choice
    changed[0]["kind"] = "textarea"               # title, was a short text with limits
    retyped = schema_of(base, changed)["properties"]
    assert retyped["field_of_work"] == {"type": "string", "title": "Lĩnh vực",
                                        "x-title-en": "Field of work"}
    assert retyped["title"] == {"type": "string", "x-widget": "textarea", "title": "Tên đề xuất",
                                "x-title-en": "Title", "x-case-title": True, "minLength": 5,
                                "maxLength": 300}
    assert schema["properties"]["partners"] == {
        "type": "array", "title": "Đơn vị phối hợp", "x-title-en": "Partners",
        "uniqueItems": True, "minItems": 1, "items": {"type": "string", "enum": ["snv", "stc"]},
        "x-enum-labels": {"snv": "Sở Nội vụ", "stc": "Sở Tài chính"},
        "x-enum-labels-en": {"snv": "Home Affairs"}}
    assert schema_problems(schema) == []

    # what officials then submit is checked against it
    data = plan()
    data.pop("equipment", None)
    missing = form_errors(schema, data)
    assert [(e["field"], e["code"]) for e in missing] == [("contact_phone", "form.required")]
    wrong = form_errors(schema, {**data, "contact_phone": "12345"})
    assert [(e["field"], e["code"]) for e in wrong] == [("contact_phone", "form.pattern")]
    assert form_errors(schema, {**data, "contact_phone": "0912345678",
                                "partners": ["snv"]}) == []
    # and fields_of reads back what schema_of wrote
    assert schema_of(base, fields_of(schema)) == schema


def test_what_deployment_refuses_is_refused_naming_the_field():
    base = plan_schema()
    fields = fields_of(base)

    def with_phone(**changes):
        return [*fields, {**PHONE, **changes}]

    assert refused(base, with_phone(pattern="^(a+)+$")) == [
        ("contact_phone", "builder.pattern_backtracks")]
    assert refused(base, with_phone(pattern="^([0-9]|[0-9][0-9])*$")) == [
        ("contact_phone", "builder.pattern_backtracks")]
    assert refused(base, with_phone(pattern="[0-9")) == [
        ("contact_phone", "builder.pattern_invalid")]
    assert refused(base, with_phone(pattern="x" * 501)) == [
        ("contact_phone", "builder.pattern_long")]
    assert refused(base, with_phone(key="title")) == [("title", "builder.key_duplicate")]
    assert refused(base, with_phone(key="Số ĐT")) == [("Số ĐT", "builder.key_invalid")]
    assert refused(base, with_phone(key="")) == [(f"#{len(fields) + 1}",
                                                  "builder.key_invalid")]
    assert refused(base, with_phone(label=" ")) == [("contact_phone", "builder.label_missing")]
    assert refused(base, with_phone(min=10, max=5)) == [
        ("contact_phone", "builder.limits_reversed")]
    assert refused(base, with_phone(min=-1)) == [("contact_phone", "builder.limit_not_whole")]
    assert refused(base, with_phone(max="mười")) == [
        ("contact_phone", "builder.limit_not_number")]
    assert refused(base, with_phone(kind="date", pattern="^x$")) == [
        ("contact_phone", "builder.pattern_not_text")]
    assert refused(base, with_phone(kind="select", pattern="")) == [
        ("contact_phone", "builder.choices_missing")]
    assert refused(base, with_phone(kind="select", pattern="", choices=[
        {"value": "a", "label": "A", "label_en": ""},
        {"value": "a", "label": "B", "label_en": ""}])) == [
        ("contact_phone", "builder.choice_duplicate")]
    assert refused(base, with_phone(kind="script")) == [("contact_phone",
                                                         "builder.kind_invalid")]
    # a group cannot be made up by a page, only kept from the form
    assert refused(base, with_phone(kind="group", pattern="")) == [
        ("contact_phone", "builder.kind_invalid")]

    # a reference out of the document, hidden in a group the builder keeps as it is
    grouped = copy.deepcopy(base)
    grouped["properties"]["annex"] = {"type": "object", "title": "Phụ lục",
                                      "properties": {"x": {"$ref": "https://evil/x.json"}}}
    assert refused(grouped, fields_of(grouped)) == [("annex", "builder.ref_outside")]
    grouped["properties"]["annex"]["properties"]["x"] = {"type": 5}
    assert refused(grouped, fields_of(grouped)) == [("annex", "builder.schema_invalid")]


MILESTONES = {"key": "milestones", "origin": None, "kind": "rows", "required": True,
              "label": "Các mốc thực hiện", "label_en": "Milestones", "pattern": "",
              "min": 1, "max": 12, "choices": [], "columns": [
                  {**PHONE, "key": "step", "label": "Công việc", "label_en": "Step",
                   "pattern": "", "max": 200},
                  {**PHONE, "key": "due_on", "kind": "date", "label": "Hạn", "label_en": "Due",
                   "pattern": ""},
                  {**PHONE, "key": "cost", "kind": "money", "required": False,
                   "label": "Kinh phí", "label_en": "Cost", "pattern": "", "min": 0}]}


def test_repeated_rows_of_several_columns_are_built_drawn_and_read_back():
    base = plan_schema()
    schema = schema_of(base, [*fields_of(base), MILESTONES])
    rows = schema["properties"]["milestones"]
    assert rows == {"type": "array", "title": "Các mốc thực hiện", "x-title-en": "Milestones",
                    "minItems": 1, "maxItems": 12, "items": {
                        "type": "object", "required": ["step", "due_on"], "properties": {
                            "step": {"type": "string", "title": "Công việc",
                                     "x-title-en": "Step", "maxLength": 200},
                            "due_on": {"type": "string", "format": "date", "title": "Hạn",
                                       "x-title-en": "Due"},
                            "cost": {"type": "integer", "x-widget": "money", "minimum": 0,
                                     "title": "Kinh phí", "x-title-en": "Cost"}}}}
    assert fields_of(schema)[-1]["columns"][1]["kind"] == "date"
    assert schema_of(base, fields_of(schema)) == schema

    # the renderer draws rows and reads the posted cells back, row by row; an empty row
    # (the one left to type in) is dropped
    with Flask(__name__).app_context():
        posted = MultiDict([("milestones.step", "Khảo sát"), ("milestones.due_on", "15/03/2026"),
                            ("milestones.cost", "1.500.000"), ("milestones.step", "Thí điểm"),
                            ("milestones.due_on", "31/02/2026"), ("milestones.cost", ""),
                            ("milestones.step", ""), ("milestones.due_on", ""),
                            ("milestones.cost", "")])
        data, unreadable = form_fields.parse(schema, posted)
        assert data["milestones"] == [{"step": "Khảo sát", "due_on": "2026-03-15",
                                       "cost": 1500000}, {"step": "Thí điểm"}]
        assert unreadable == {"milestones.1.due_on": "form.unreadable_date"}
        [field] = [f for f in form_fields.build(schema, {}, {"milestones.1.due_on": "Sai"},
                                                posted) if f.path == "milestones"]
        assert field.kind == "rows" and len(field.value) == 2
        assert [c.value for c in field.value[1]] == ["Thí điểm", "31/02/2026", ""]
        assert [c.error for c in field.value[1]] == [None, "Sai", None]
        [field] = [f for f in form_fields.build(schema, {"milestones": data["milestones"][:1]})
                   if f.path == "milestones"]
        assert [c.value for c in field.value[0]] == ["Khảo sát", "15/03/2026", "1.500.000"]
        assert [c.path for c in field.children] == ["milestones.step", "milestones.due_on",
                                                    "milestones.cost"]
    # what the engine then refuses is named by row and column
    errors = form_errors({"type": "object", "properties": {"milestones": rows}},
                         {"milestones": [{"step": "Khảo sát"}]})
    assert [(e["field"], e["code"]) for e in errors] == [("milestones.0.due_on",
                                                          "form.required")]

    # columns: at least one, of the kinds a cell can hold, named by row field and column
    assert refused(base, [{**MILESTONES, "columns": []}]) == [
        ("milestones", "builder.columns_missing")]
    assert refused(base, [{**MILESTONES, "columns": [
        {**PHONE, "kind": "choices"}, {**PHONE, "key": "", "pattern": "[x"}]}]) == [
        ("milestones.contact_phone", "builder.kind_invalid"),
        ("milestones.#2", "builder.key_invalid"), ("milestones.#2", "builder.pattern_invalid")]


# --- the pages, through HTTP ----------------------------------------------------------------

def post_fields(web, token, url, fields, **more):
    return web.post(url, json={"fields": fields, **more}, timeout=60,
                    headers={"X-CSRF-Token": token})


def builder_data(web, url) -> dict:
    """What the builder's page hands its script (the fields, the draft's revision read)."""
    page = web.get(url, timeout=30)
    assert page.status_code == 200 and 'id="builder-data"' in page.text, page.text[:300]
    return json.loads(re.search(r'id="builder-data">(.*?)</script>', page.text, re.S)
                      .group(1))


def test_saving_puts_the_variants_own_copy_in_its_draft_and_refuses_in_vietnamese(server,
                                                                                    engine):
    from test_web_ui import web_session

    web, token = web_session(server, DESIGNER)
    url = f"{server.url}/designer/lao-cai/forms/{PLAN_FORM}"
    fields = builder_data(web, url)["fields"]
    assert fields == fields_of(plan_schema())

    # the preview is the officials' renderer drawing the draft
    preview = post_fields(web, token, url + "/preview", [*fields, PHONE])
    assert preview.status_code == 200 and preview.json()["valid"], preview.text
    assert 'data-field="contact_phone"' in preview.json()["html"]
    assert "Số điện thoại liên hệ" in preview.json()["html"]

    # a pattern that backtracks: refused, named, in Vietnamese, while typing and on saving;
    # nothing deployed
    checked = post_fields(web, token, url + "/preview",
                          [*fields, {**PHONE, "pattern": "^(\\d+)+$"}])
    assert checked.status_code == 200 and checked.json()["valid"] is False
    assert checked.json()["problems"][0]["field"] == "contact_phone"
    bad = post_fields(web, token, url, [*fields, {**PHONE, "pattern": "^(\\d+)+$"}])
    assert bad.status_code == 422
    [problem] = bad.json()["problems"]
    assert problem["field"] == "contact_phone"
    assert problem["message"].startswith("Trường “contact_phone”: mẫu kiểm tra lặp")
    assert engine.repository.latest("lao-cai", "proposal").version == 1
    assert post_fields(web, token, url, {"fields": "x"}).status_code == 422
    # a field the process records as its decision cannot go (nor be renamed)
    decision_url = f"{server.url}/designer/lao-cai/forms/head_decision.schema.json"
    decision_fields = fields_of(json.loads((FORMS / "head_decision.schema.json").read_text(
        encoding="utf-8")))
    gone = post_fields(web, token, decision_url,
                       [f for f in decision_fields if f["key"] != "decision"])
    assert gone.status_code == 422
    assert [(p["field"], p["params"]["element"]) for p in gone.json()["problems"]] == [
        ("decision", "proposal/decide")]
    assert "không thể xoá" in gone.json()["problems"][0]["message"]

    saved = post_fields(web, token, url, [*fields, PHONE])
    assert saved.status_code == 200, saved.text
    assert saved.json()["changed"] is True
    assert saved.json()["draft"] == "/designer/lao-cai/draft"
    # in the draft, not live: deploying is the draft's explicit step
    designer = as_user(engine, DESIGNER)
    draft = engine.drafts.get("lao-cai", designer)
    assert draft.revision == saved.json()["revision"]
    assert "contact_phone" in json.loads(draft.files[f"forms/{PLAN_FORM}"])["required"]
    assert engine.repository.latest("lao-cai", "proposal").version == 1
    # the builder opens the draft's copy again
    reopened = web.get(url, timeout=30).text
    assert '"key": "contact_phone"' in re.search(r'id="builder-data">(.*?)</script>',
                                                  reopened, re.S).group(1)
    [form] = engine.drafts.changes("lao-cai", designer).forms
    assert (form.path, form.fields[-1]) == (f"forms/{PLAN_FORM}",
                                            {"field": "contact_phone", "change": "added"})
    # saving the same again changes nothing
    again = post_fields(web, token, url, [*fields, PHONE])
    assert again.status_code == 200 and again.json()["changed"] is False
    assert engine.drafts.get("lao-cai", designer).revision == draft.revision
    assert any(r.key == "proposal" and r.version == 2
               for r in engine.drafts.deploy("lao-cai", designer))
    latest = engine.repository.latest("lao-cai", "proposal")
    assert latest.deployed_by == DESIGNER
    assert "contact_phone" in json.loads(latest.sources[f"forms/{PLAN_FORM}"])["required"]
    # the national file and the other variants are untouched
    for variant in ("national", "can-tho", "dak-lak"):
        other = engine.repository.latest(variant, "proposal")
        assert other.version == 1
        assert "contact_phone" not in other.sources[f"forms/{PLAN_FORM}"]
    assert "contact_phone" not in (FORMS / PLAN_FORM).read_text(encoding="utf-8")
    # the variant's copy, as a file to keep in its folder
    file = web.get(url + "/file", timeout=30)
    assert file.headers["Content-Disposition"] == f'attachment; filename="{PLAN_FORM}"'
    assert file.json() == json.loads(latest.sources[f"forms/{PLAN_FORM}"])

    # English pages say it in English, the form's own words in their English
    web.post(f"{server.url}/language", data={"lang": "en", "next": "/", "csrf_token": token},
             timeout=30)
    page = web.get(url, timeout=30).text
    assert "Save to the draft" in page and "Lưu vào bản nháp" not in page
    assert "Long text" in page and "Văn bản dài" not in page
    preview = post_fields(web, token, url + "/preview", [*fields, PHONE]).json()["html"]
    assert "Contact phone" in preview and "Số điện thoại liên hệ" not in preview
    [problem] = post_fields(web, token, url, [*fields, {**PHONE, "label": ""}]
                            ).json()["problems"]
    assert problem["message"] == "Field “contact_phone”: the Vietnamese label is missing"


def test_a_save_made_on_an_older_revision_of_the_draft_is_refused_naming_the_form(server,
                                                                                   engine):
    """Two designers (two windows) open the same form; the first saves; the second's save,
    made on what they read before it, is refused with 409 naming the form instead of
    overwriting it, and goes through once they reload."""
    from test_web_ui import web_session

    url = f"{server.url}/designer/lao-cai/forms/{PLAN_FORM}"
    first, first_token = web_session(server, DESIGNER)
    second, second_token = web_session(server, DESIGNER)
    first_read, second_read = builder_data(first, url), builder_data(second, url)
    assert first_read["revision"] == second_read["revision"] == 0      # no draft yet
    fields = first_read["fields"]

    saved = post_fields(first, first_token, url, [*fields, PHONE],
                        revision=first_read["revision"])
    assert saved.status_code == 200 and saved.json()["revision"] == 1, saved.text
    other = {**PHONE, "key": "contact_email", "label": "Thư điện tử", "label_en": "Email",
             "pattern": ""}
    late = post_fields(second, second_token, url, [*fields, other],
                       revision=second_read["revision"])
    assert late.status_code == 409, late.text
    [problem] = late.json()["problems"]
    assert problem["field"] == "(form)" and problem["params"]["form"] == PLAN_FORM
    assert problem["message"] == (f"Biểu mẫu “{PLAN_FORM}” đã được {DESIGNER} lưu vào bản "
                                  "nháp sau khi bạn mở (nay là lần lưu 1): hãy tải lại trang "
                                  "rồi sửa lại")
    designer = as_user(engine, DESIGNER)
    draft = engine.drafts.get("lao-cai", designer)
    kept = json.loads(draft.files[f"forms/{PLAN_FORM}"])["properties"]
    assert draft.revision == 1 and "contact_phone" in kept and "contact_email" not in kept

    reread = builder_data(second, url)
    assert reread["revision"] == 1
    again = post_fields(second, second_token, url, [*reread["fields"], other],
                        revision=reread["revision"])
    assert again.status_code == 200 and again.json()["revision"] == 2, again.text
    kept = json.loads(engine.drafts.get("lao-cai", designer).files[f"forms/{PLAN_FORM}"])
    assert {"contact_phone", "contact_email"} <= set(kept["properties"])


def test_a_designer_of_another_province_cannot_open_or_save_lao_cais_forms(server, engine):
    from test_web_ui import web_session

    web, token = web_session(server, OTHER_DESIGNER)
    url = f"{server.url}/designer/lao-cai/forms/{PLAN_FORM}"
    assert web.get(f"{server.url}/designer/lao-cai/forms", timeout=30).status_code == 403
    assert web.get(url, timeout=30).status_code == 403
    fields = [*fields_of(plan_schema()), PHONE]
    assert post_fields(web, token, url + "/preview", fields).status_code == 403
    assert post_fields(web, token, url, fields).status_code == 403
    assert web.get(url + "/file", timeout=30).status_code == 403
    assert engine.repository.latest("lao-cai", "proposal").version == 1
    # their own variant's forms are theirs to open; a form no process uses is not there
    assert web.get(f"{server.url}/designer/can-tho/forms/{PLAN_FORM}",
                   timeout=30).status_code == 200
    assert web.get(f"{server.url}/designer/can-tho/forms/nothing.schema.json",
                   timeout=30).status_code == 404
    # a proposer designs nothing
    web, token = web_session(server, PROPOSER)
    assert web.get(url, timeout=30).status_code == 403


# --- the browser ----------------------------------------------------------------------------

def add_phone_field(page):
    """On the builder's page: a new required field, the contact phone (PHONE's key and
    labels), as a designer adds it; its item in the list."""
    page.get_by_role("button", name="Thêm trường").click()
    item = page.locator("#builder-fields > li").last
    item.get_by_label("Tên trường (khoá)").fill(PHONE["key"])
    item.get_by_label("Nhãn (tiếng Việt)").fill(PHONE["label"])
    item.get_by_label("Nhãn (tiếng Anh)").fill(PHONE["label_en"])
    item.get_by_label("Bắt buộc").check()
    return item


@needs_chromium
def test_lao_cai_designer_adds_a_required_field_to_the_plan_form(server, engine):
    running = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-RUNNING")
    with chromium_page(1400, 900) as page:
        said = page_complaints(page)
        sign_in(page, server, DESIGNER)
        page.goto(f"{server.url}/designer")
        page.locator("[data-forms=lao-cai]").click()
        page.locator(f"[data-form='{PLAN_FORM}']").click()
        preview = page.locator("#form-preview")
        expect(preview.locator("[data-field=title]")).to_be_visible()

        item = add_phone_field(page)
        item.get_by_label("Mẫu kiểm tra (biểu thức chính quy)").fill("^(0[0-9]+)+$")
        # refused while typed, next to the field, in Vietnamese
        expect(item.locator(".builder-problem")).to_contain_text(
            "Trường “contact_phone”: mẫu kiểm tra lặp một phép lặp")
        item.get_by_label("Mẫu kiểm tra (biểu thức chính quy)").fill("^0[0-9]{9}$")
        expect(item.locator(".builder-problem")).to_be_hidden()
        phone = preview.locator("[data-field=contact_phone]")
        expect(phone).to_contain_text("Số điện thoại liên hệ")
        expect(phone.locator(".req")).to_have_count(1)        # drawn as required
        # moved to the top of the form
        for _ in range(len(fields_of(plan_schema()))):
            item.get_by_role("button", name="Chuyển lên").click()
            item = page.locator("#builder-fields > li[data-key=contact_phone]")
        expect(preview.locator(".field").first).to_have_attribute("data-field",
                                                                  "contact_phone")
        # repeated rows of several columns: a column of the milestones, in the preview
        page.get_by_role("button", name="Thêm trường").click()
        rows = page.locator("#builder-fields > li").last
        rows.get_by_label("Tên trường (khoá)").fill("milestones")
        rows.get_by_label("Kiểu").select_option("rows")
        rows.get_by_label("Nhãn (tiếng Việt)").first.fill("Các mốc thực hiện")
        column = rows.locator(".builder-columns li").first
        expect(column.locator(".builder-problem")).to_contain_text(
            "Trường “milestones.#1”: tên trường chỉ gồm chữ thường")
        column.get_by_label("Tên trường (khoá)").fill("step")
        column.get_by_label("Nhãn (tiếng Việt)").fill("Công việc")
        cell = preview.locator("[data-rows=milestones] [data-field='milestones.step']")
        expect(cell).to_contain_text("Công việc")
        preview.locator("[data-rows=milestones] .add-row").click()      # as officials add one
        expect(preview.locator("[data-rows=milestones] .row")).to_have_count(2)

        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "form-builder-lao-cai.png"), full_page=True)
        page.get_by_role("button", name="Lưu vào bản nháp").click()
        expect(page.locator("#builder-result")).to_contain_text("Đã lưu vào bản nháp")
        assert engine.repository.latest("lao-cai", "proposal").version == 1
        assert said == []          # the builder's page: no error, no failed request
        # deploying is the draft's step: its summary names the new field first
        page.get_by_role("link", name="Xem thay đổi và triển khai").click()
        expect(page.locator("[data-testid=summary-form]")).to_contain_text("contact_phone")
        page.locator("form.toolbar").get_by_role("button", name="Triển khai").click()
        expect(page.locator(".flash.success")).to_contain_text("proposal v2")

        # a new case's plan form asks for it: sent without, it is refused next to the field
        fresh = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-NEW")
        [task] = fresh.open("submit_plan")
        sign_in(page, server, PROPOSER)
        page.goto(f"{server.url}/tasks/{task.id}")
        form = page.locator("[data-testid=task-form]")
        expect(form.locator(".field").first).to_have_attribute("data-field", "contact_phone")
        form.locator("[data-rows=milestones] [name='milestones.step']").fill("Khảo sát")
        form.get_by_role("button", name="Gửi").click()
        expect(form.locator("[data-field=contact_phone] .error")).to_have_text(
            "Trường bắt buộc, chưa được điền")
        expect(form.locator("[name='milestones.step']").first).to_have_value("Khảo sát")
        page.screenshot(path=str(SHOTS / "form-builder-new-case.png"), full_page=True)

    latest = engine.repository.latest("lao-cai", "proposal")
    schema = json.loads(latest.sources[f"forms/{PLAN_FORM}"])
    assert list(schema["properties"])[0] == "contact_phone"
    assert "contact_phone" in schema["required"]
    assert engine.repository.latest("national", "proposal").version == 1

    # the new case runs the new version and requires the field; the running case does not
    assert fresh.instance.definition_id == latest.id
    [task] = fresh.open("submit_plan")
    with pytest.raises(InvalidData) as caught:
        engine.runtime.complete_task(task.id, plan(), principal=as_user(engine, PROPOSER))
    assert [(e["field"], e["code"]) for e in caught.value.details["errors"]] == [
        ("contact_phone", "form.required")]
    fresh.do("submit_plan", plan(contact_phone="0912345678"), by=PROPOSER)
    assert running.instance.definition_id != latest.id
    running.do("submit_plan", plan(), by=PROPOSER)
