"""Forms drawn from JSON Schemas and read back: every kind of field the process library
uses, as people type it (dd/mm/yyyy, 1.500.000), with unreadable input named by field."""
from __future__ import annotations

import json
from datetime import date

import flask_babel
import pytest
from flask import Flask, g
from werkzeug.datastructures import MultiDict

from api import catalogues
from engine.forms import date_order_errors, form_errors
from api.ui import form_fields
from conftest import PROJECT

FORMS = PROJECT / "forms"


def schema(name: str) -> dict:
    return json.loads((FORMS / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def vietnamese():
    app = Flask(__name__)
    catalogues.install(app)
    with app.test_request_context():
        g.lang = "vi"
        yield


def test_plan_fields_are_typed_from_the_schema():
    fields = {f.path: f for f in form_fields.build(schema("proposal_plan"), {})}
    assert fields["title"].kind == "text" and fields["title"].required
    assert fields["necessity"].kind == "textarea"
    assert fields["field_of_work"].kind == "select"
    assert ("chuyen_doi_so", "Chuyển đổi số") in fields["field_of_work"].options
    assert fields["start_date"].kind == "date"
    assert fields["budget_vnd"].kind == "money"
    assert fields["no_harm"].kind == "confirm"
    assert fields["attachments"].kind == "files"
    assert form_fields.files_fields(schema("proposal_plan")) == ["attachments"]


def test_values_are_shown_as_people_write_them():
    fields = {f.path: f for f in form_fields.build(
        schema("proposal_plan"), {"start_date": "2026-12-01", "budget_vnd": 1500000})}
    assert fields["start_date"].value == "01/12/2026"
    assert fields["budget_vnd"].value == "1.500.000"


def test_posted_plan_becomes_typed_json():
    data, unreadable = form_fields.parse(schema("proposal_plan"), MultiDict([
        ("title", "  Số hoá hồ sơ  "), ("start_date", "1/12/2026"), ("end_date", "2027-06-30"),
        ("budget_vnd", "1.500.000 ₫"), ("no_harm", "on"), ("necessity", ""),
        ("attachments.kept", "abc|ke-hoach.pdf")]),
        {"attachments": [{"name": "moi.pdf", "file_id": "def"}]})
    assert unreadable == {}
    assert data["title"] == "Số hoá hồ sơ"
    assert data["start_date"] == "2026-12-01" and data["end_date"] == "2027-06-30"
    assert data["budget_vnd"] == 1_500_000
    assert data["no_harm"] is True and data["common_interest"] is False
    assert "necessity" not in data                      # empty: the schema says required
    assert data["attachments"] == [{"name": "ke-hoach.pdf", "file_id": "abc"},
                                   {"name": "moi.pdf", "file_id": "def"}]


@pytest.mark.parametrize("text", ["31/02/2027", "29/02/2026", "12/13/2026", "hôm nay"])
def test_impossible_dates_are_named(text):
    data, unreadable = form_fields.parse(schema("proposal_plan"),
                                         MultiDict([("start_date", text)]))
    assert "start_date" not in data
    assert unreadable == {"start_date": "form.unreadable_date"}
    [vi] = form_fields.unreadable_messages(unreadable).values()
    assert "dd/mm/yyyy" in vi and "Ngày" in vi
    g.lang = "en"
    flask_babel.refresh()
    [en] = form_fields.unreadable_messages(unreadable).values()
    assert "dd/mm/yyyy" in en and "date" in en


def test_unreadable_money_and_numbers_are_named():
    _, unreadable = form_fields.parse(schema("proposal_plan"),
                                      MultiDict([("budget_vnd", "một triệu")]))
    assert "đồng" in form_fields.unreadable_messages(unreadable)["budget_vnd"]
    _, unreadable = form_fields.parse(schema("unit_report"),
                                      MultiDict([("report.overdue_steps", "2,5")]))
    assert form_fields.unreadable_messages(unreadable) == {
        "report.overdue_steps": "Cần nhập số nguyên"}


def test_groups_repeated_rows_and_choices():
    data, _ = form_fields.parse(schema("unit_report"), MultiDict([
        ("report.summary", "Tốt"), ("report.recognitions", "3")]))
    assert data == {"report": {"summary": "Tốt", "recognitions": 3}}
    data, _ = form_fields.parse(schema("council_setup"), MultiDict([
        ("council_members", "laocai.chuyengia1"), ("council_members", ""),
        ("council_members", " laocai.chuyengia2 ")]))
    assert data["council_members"] == ["laocai.chuyengia1", "laocai.chuyengia2"]
    data, _ = form_fields.parse(schema("recognition"), MultiDict([
        ("measures", "praise"), ("measures", "commendation")]))
    assert data["measures"] == ["praise", "commendation"]
    [group] = [f for f in form_fields.build(schema("unit_report"), {}) if f.kind == "group"]
    assert [c.path for c in group.children][:2] == ["report.proposals_submitted",
                                                   "report.proposals_approved"]


def test_rows_with_people_and_lists_of_units_are_drawn_and_read_back():
    units = [("mau", "UBND tỉnh Mẫu", 0), ("mau.sxd", "Sở Xây dựng", 1)]
    fields = {f.path: f for f in form_fields.build(
        schema("recognition"), {"recognised_organisations": ["mau.sxd", "Phòng cũ"]},
        units=units)}
    organisations = fields["recognised_organisations"]
    assert organisations.kind == "units" and organisations.value == ["mau.sxd", "Phòng cũ"]
    # offered by name, indented under their parent; a value that is no unit stays shown
    assert organisations.options == [("mau", "UBND tỉnh Mẫu"),
                                     ("mau.sxd", "\u00a0\u00a0Sở Xây dựng"),
                                     ("Phòng cũ", "Phòng cũ")]
    data, _ = form_fields.parse(schema("recognition"), MultiDict([
        ("measures", "praise"), ("recognised_organisations", "mau.sxd"),
        ("recognised_organisations", ""), ("recognised_organisations", "mau")]))
    assert data["recognised_organisations"] == ["mau.sxd", "mau"]
    [rows] = [f for f in form_fields.build(schema("evaluation"), {}) if f.kind == "rows"]
    assert [(c.path, c.kind) for c in rows.children] == [
        ("member_assessments.member", "person"), ("member_assessments.assessment", "select")]
    assert {"person", "people", "rows"} <= form_fields.kinds(
        form_fields.build(schema("evaluation"), {}))
    data, _ = form_fields.parse(schema("evaluation"), MultiDict([
        ("member_assessments.member", "mau.sxd.giamdoc"),
        ("member_assessments.assessment", "completed"),
        ("member_assessments.member", ""), ("member_assessments.assessment", ""),
        ("member_assessments.member", "mau.sxd.pgd1"),
        ("member_assessments.assessment", "damaged")]))
    assert data["member_assessments"] == [
        {"member": "mau.sxd.giamdoc", "assessment": "completed"},
        {"member": "mau.sxd.pgd1", "assessment": "damaged"}]


def test_a_boolean_left_unticked_is_false_only_when_its_box_was_on_the_page():
    data, _ = form_fields.parse(schema("screening"), MultiDict([("is_complex.present", "1")]))
    assert data["is_complex"] is False
    data, _ = form_fields.parse(schema("screening"), MultiDict())
    assert "is_complex" not in data


def test_engine_errors_land_on_their_fields_in_the_page_language():
    errors = [{"field": "report.summary", "code": "form.min_length", "params": {"limit": 10},
               "message": "At least 10 characters"},
              {"field": "note", "message": "Từ chối phải có lý do", "message_en": "Reasons needed"}]
    assert form_fields.field_messages(errors) == {"report.summary": "Cần ít nhất 10 ký tự",
                                                  "note": "Từ chối phải có lý do"}
    g.lang = "en"
    flask_babel.refresh()
    assert form_fields.field_messages(errors) == {"report.summary": "At least 10 characters",
                                                  "note": "Reasons needed"}


def test_a_confirmation_left_unticked_asks_to_tick_it():
    """"must be True" (Phải là True) says nothing to an official: the box asks to be ticked."""
    data, _ = form_fields.parse(schema("proposal_plan"), MultiDict([("no_harm.present", "1")]))
    errors = form_fields.field_messages(form_errors(schema("proposal_plan"), data))
    assert errors["no_harm"] == "Cần đánh dấu vào ô này để xác nhận"
    assert not any("True" in message for message in errors.values())


def test_an_error_code_the_catalogues_do_not_know_keeps_its_english_off_vietnamese_pages():
    errors = [{"field": "x", "code": "form.from_the_future", "message": "Must be shiny"}]
    assert form_fields.field_messages(errors) == {"x": "Yêu cầu chưa thực hiện được"}
    g.lang = "en"
    flask_babel.refresh()
    assert form_fields.field_messages(errors) == {"x": "Must be shiny"}


# --- dates in order: x-not-before / x-not-after, and strictly x-after / x-before ----------

DATED = {"type": "object", "properties": {
    "opens": {"type": "string", "format": "date", "title": "Ngày mở", "x-after": "today"},
    "closes": {"type": "string", "format": "date", "title": "Ngày đóng", "x-after": "opens",
               "x-not-after": "limit"},
    "held": {"type": "string", "format": "date", "title": "Ngày họp", "x-before": "today"},
    "signed": {"type": "string", "format": "date", "x-before": "held"}}}


@pytest.mark.parametrize("data, context, expected", [
    ({"opens": "2026-03-05"}, {}, []),                                   # after today
    ({"opens": "2026-03-04"}, {}, [("opens", "form.date_must_be_after_today", "04/03/2026",
                                    "today", "Ngày mở")]),              # today is not after
    ({"opens": "2026-03-05", "closes": "2026-03-05"}, {},
     [("closes", "form.date_must_be_after", "05/03/2026", "Ngày mở", "Ngày đóng")]),
    ({"opens": "2026-03-05", "closes": "2026-03-06"}, {}, []),
    ({"closes": "2026-03-05"}, {"opens": "2026-03-06"},                  # from the step's data
     [("closes", "form.date_must_be_after", "06/03/2026", "Ngày mở", "Ngày đóng")]),
    ({"closes": "2026-03-09"}, {"opens": "2026-03-06", "limit": "2026-03-08"},
     [("closes", "form.date_not_after", "08/03/2026", "limit", "Ngày đóng")]),
    ({"held": "2026-03-03"}, {}, []),
    ({"held": "2026-03-04"}, {}, [("held", "form.date_must_be_before_today", "04/03/2026",
                                   "today", "Ngày họp")]),
    ({"held": "2026-03-03", "signed": "2026-03-03"}, {},
     [("signed", "form.date_must_be_before", "03/03/2026", "Ngày họp", "signed")]),
    ({"opens": "không phải ngày", "closes": "2026-03-01"}, {}, []),      # the schema's to say
])
def test_dates_in_order_name_the_field_the_limit_and_what_it_is(data, context, expected):
    errors = date_order_errors(DATED, data, context, date(2026, 3, 4))
    assert [(e["field"], e["code"], e["params"]["limit"], e["params"]["other"],
             e["params"]["field"]) for e in errors] == expected
    for error in errors:                     # the English words for logs name the field too
        assert error["message"].startswith(f"{error['params']['field']}: must ")
