"""Official documents (Nghị định 30/2020/NĐ-CP) issued with the steps of the national
procedures: conversion to PDF, each kind read back part by part, registers under
concurrency, immutability and the audit chain, corrections, rights, and the proposer's
download from the case page.

One page of each PDF is rendered to tests/output/document-<template>.png for a person to
look at."""
from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
import zipfile
import zlib
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path

import docx
import docx.table
import pypdfium2
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError

from api_client import LiveServer
from engine.audit import verify
from engine.documents.convert import ConversionFailed, to_pdf
from engine.documents.registers import take_number
from engine.documents.service import json_safe
from engine.documents.render import (TemplateFailed, long_date, money, render,
                                     render_with_docxtpl)
from engine.errors import DefinitionInvalid, Forbidden, NotFound
from engine.repository import read_folder
from engine.store.models import Document, DocumentRegister
from engine.variants import SourceFile
from procedures import SCREENED, Case, as_user, deploy_library, implement_and_evaluate, plan

from conftest import PROJECT

OUTPUT = Path(__file__).parent / "output"
DIRECTOR, DEPUTIES = "mau.sxd.giamdoc", ("mau.sxd.pgd1", "mau.sxd.pgd2", "mau.sxd.pgd3")
PROPOSER = "mau.sxd.qlxd.truongphong"
STRANGER = "laocai.sxd.giamdoc"              # a head of department in another province
HEADER = ["UBND TỈNH MẪU", "SỞ XÂY DỰNG", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
          "Độc lập - Tự do - Hạnh phúc"]


def _docx(text_: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text_)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _lines(content: bytes) -> list[str]:
    """The paragraphs of a DOCX, those of its tables' cells included, in reading order."""
    document = docx.Document(io.BytesIO(content))
    lines: list[str] = []
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append("".join(t.text or "" for t in block.iter(
                "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t")))
        elif tag == "tbl":
            for row in docx.table.Table(block, document).rows:
                for cell in row.cells:
                    lines.extend(p.text for p in cell.paragraphs)
    return [line.strip() for line in lines if line.strip()]


def assert_in_order(lines: list[str], parts: list[str]) -> None:
    """Each part is found in a line after the line of the part before it."""
    at = -1
    for part in parts:
        found = next((i for i in range(at + 1, len(lines)) if part in lines[i]), None)
        assert found is not None, f"{part!r} not found after line {at}: {lines}"
        at = found


def _png(pdf: bytes) -> bytes:
    """The first page of a PDF as a grayscale PNG."""
    bitmap = pypdfium2.PdfDocument(pdf)[0].render(scale=1.2, grayscale=True)
    width, height, stride = bitmap.width, bitmap.height, bitmap.stride
    raw = bytes(bitmap.buffer)
    rows = b"".join(b"\x00" + raw[y * stride:y * stride + width] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


# --- conversion and formatting -------------------------------------------------------------

def test_a_docx_becomes_a_pdf_with_its_text():
    pdf = to_pdf(_docx("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"))
    assert pdf.startswith(b"%PDF-")
    page = pypdfium2.PdfDocument(pdf)[0]
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in page.get_textpage().get_text_range()


def test_a_conversion_that_takes_too_long_is_refused_by_name():
    with pytest.raises(ConversionFailed, match="LibreOffice took longer than"):
        to_pdf(_docx("x"), timeout=0.01)


def test_dates_and_amounts_are_written_as_nghi_dinh_30_asks():
    assert long_date("2026-03-05") == "ngày 05 tháng 3 năm 2026"
    assert long_date("2026-01-15") == "ngày 15 tháng 01 năm 2026"
    assert long_date("2026-02-09") == "ngày 09 tháng 02 năm 2026"
    assert long_date("2026-11-20") == "ngày 20 tháng 11 năm 2026"
    assert money(450000000) == "450.000.000 đồng"


def test_a_template_rendered_again_uses_its_compiled_code_with_each_render_s_own_names():
    template = _docx("{{ who|name }} – {{ amount|money }} – {{ text }}")
    first = render(template, {"who": "a", "amount": 5000, "text": "<b>&"}, str.upper)
    second = render(template, {"who": "b", "amount": 7, "text": "x"}, lambda u: u + "!")
    assert _lines(first) == ["A – 5.000 đồng – <b>&"]      # escaped in the XML, read back
    assert _lines(second) == ["b! – 7 đồng – x"]
    threads, found = [], {}
    for n in range(8):                 # at once in threads: each render sees its own names
        def one(n=n):
            found[n] = _lines(render(template, {"who": "u", "amount": n, "text": ""},
                                     lambda u, n=n: f"{u}{n}"))[0]
        threads.append(threading.Thread(target=one))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {n: f"u{n} – {n} đồng –" for n in range(8)}


# --- the prepared renderer against docxtpl --------------------------------------------------

TEMPLATES = sorted(PROJECT.glob("processes/*/documents/*.docx"))
DOC = {"parent_agency": "UBND TỈNH MẪU", "issuer_title": "GIÁM ĐỐC SỞ XÂY DỰNG",
       "agency": "SỞ XÂY DỰNG", "agency_name": "Sở Xây dựng", "reference": "12/QĐ-SXD",
       "place": "Mẫu", "date": "ngày 05 tháng 3 năm 2026", "date_short": "05/03/2026",
       "title": "Quyết định phê duyệt đề xuất", "kind": "QĐ",
       "bases": ["Nghị định 73/2023/NĐ-CP", "Quyết định 1 & 2 <bổ sung>"],
       "legal_basis": "Điều 8 Nghị định 73/2023/NĐ-CP",
       "earlier": ["Biên bản số 3/BB-SXD ngày 01/03/2026"],
       "recipients": ["Như Điều 3", "Lưu: VT"], "authority_lines": ["KT. GIÁM ĐỐC",
                                                                     "PHÓ GIÁM ĐỐC"],
       "signer_name": "Nguyễn Văn A", "case_unit": "Phòng Quản lý xây dựng",
       "correction": "Sửa số liệu", "replaces": "11/QĐ-SXD"}
SAMPLES = {
    "full": {
        "doc": DOC, "title": "Đề xuất <cải tiến> & \"thử\" 'nghiệm'", "proposer": PROPOSER,
        "requester": DIRECTOR, "content": "Dòng một\nDòng hai\tthụt\fTrang mới\aĐoạn mới",
        "implementers": [PROPOSER, DEPUTIES[0]], "start_date": "2026-03-01",
        "end_date": "2026-12-31", "people": "5 người", "equipment": "", "budget_vnd": 1500000,
        "override_reason": "Lý do {{ không phải thẻ }}",
        "council_chair": DIRECTOR, "council_secretary": DEPUTIES[0],
        "council_members": [DIRECTOR, *DEPUTIES], "council_ballots": [
            {"member": DIRECTOR, "vote": "for", "opinion": "Khả thi"}],
        "council_for": 2, "council_votes": ["for", "against", "for"],
        "council_recommendation": "recommend_approve",
        "meeting_record": {"date": "2026-03-02", "mode": "ballots", "chair": DIRECTOR,
                           "present_count": 3, "members_count": 4, "votes_for": 2,
                           "votes_against": 1, "rule": "quá nửa", "result": "approved",
                           "tie_carried": True,
                           "members": [{"member": DIRECTOR, "vote": "for", "present": True},
                                       {"member": DEPUTIES[0], "vote": "against",
                                        "present": True},
                                       {"member": DEPUTIES[1], "present": False}]},
        "council_record": {"mode": "meeting", "date": "2026-03-01", "chair": DIRECTOR,
                           "secretary": DEPUTIES[0], "members_count": 3, "present_count": 2,
                           "votes_for": 1, "votes_against": 1, "votes_cast": 2,
                           "rule": "quá nửa số phiếu biểu quyết", "result": "recommend_approve",
                           "members": [{"member": DIRECTOR, "present": True, "vote": "for",
                                        "opinion": "Khả thi"},
                                       {"member": DEPUTIES[0], "present": True,
                                        "vote": "against", "opinion": ""},
                                       {"member": DEPUTIES[1], "present": False}]},
        "recognised_people": [PROPOSER, DEPUTIES[2]], "recognised_organisations": ["Sở A"],
        "recognition_note": "Ghi chú", "measures": ["praise", "commendation", "other"],
        "months_early": 6, "protection_decision": "excluded",
        "protection_reasons": "Đúng quy định", "continue_reason": "",
        "termination_reason": "Không còn phù hợp", "suspension_reason": "Tạm dừng",
        "meeting_date": "2027-07-01", "outcome": "completed", "evaluation_note": "Tốt",
        "refusal_reasons": "Chưa đủ hồ sơ"},
}
# every value empty: lists, counts and texts (sections left out, loops that run no time)
SAMPLES["sparse"] = {key: type(value)() for key, value in SAMPLES["full"].items()}
SAMPLES["sparse"].update(doc={**DOC, "parent_agency": "", "correction": "", "replaces": "",
                              "bases": [], "earlier": [], "recipients": [],
                              "legal_basis": ""},
                         meeting_record={"members": []}, council_record={"members": []})


def _members(content: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as package:
        assert package.testzip() is None
        return [(name, package.read(name)) for name in package.namelist()]


def _names(username) -> str:
    return f"Ông {username}"


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_template_renders_to_docxtpl_s_document_part_by_part(sample):
    """The prepared renderer writes the members docxtpl writes, in its order, with the same
    bytes once inflated (the main document, core properties, styles, relationships...); the
    same data give the same DOCX, byte for byte."""
    assert len(TEMPLATES) >= 12
    for path in TEMPLATES:
        template = path.read_bytes()
        ours = render(template, SAMPLES[sample], _names)
        assert _members(ours) == _members(render_with_docxtpl(template, SAMPLES[sample],
                                                              _names)), path.name
        assert render(template, SAMPLES[sample], _names) == ours, path.name
        assert _lines(ours)[:2] == HEADER[:2] or sample == "sparse", path.name


def test_every_template_s_document_opens_and_converts_to_pdf():
    for path in TEMPLATES:
        content = render(path.read_bytes(), SAMPLES["full"], _names)
        lines = _lines(content)                            # python-docx reads it
        assert lines[:2] == HEADER[:2], path.name
        assert any("Đề xuất <cải tiến> & \"thử\" 'nghiệm'" in line for line in lines), path.name
        page = pypdfium2.PdfDocument(to_pdf(content))[0]
        assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in page.get_textpage().get_text_range(), \
            path.name


def _with_stories(core: bool = True) -> bytes:
    """A template with tags in its header, footer, core properties, a table with a row per
    item and a picture, as docxtpl renders them; without ``core``, no core properties."""
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "{{ doc.agency }} – {{ who|name }}"
    section.footer.paragraphs[0].text = "Trang cuối {{ amount|money }}"
    document.core_properties.title = "{{ doc.title }}"
    document.core_properties.author = "{{ who }}"
    document.add_paragraph("{{ text }}")
    table = document.add_table(rows=3, cols=2)
    table.cell(0, 0).text = "{%tr for p in people %}"
    table.cell(1, 0).text = "{{ p|name }}"
    table.cell(1, 1).text = "{{ loop.index }}"
    table.cell(2, 0).text = "{%tr endfor %}"
    document.add_picture(io.BytesIO(_png(to_pdf(_docx("x")))))
    out = io.BytesIO()
    document.save(out)
    if core:
        return out.getvalue()
    stripped = io.BytesIO()
    with zipfile.ZipFile(out) as source, zipfile.ZipFile(stripped, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "docProps/core.xml":
                continue
            if info.filename in ("_rels/.rels", "[Content_Types].xml"):
                data = re.sub(rb"<(Relationship|Override)[^>]*core[^>]*/>", b"", data)
            target.writestr(info, data)
    return stripped.getvalue()


def test_headers_footers_core_properties_tables_and_pictures_render_as_docxtpl_s():
    context = {"doc": {"agency": "SỞ & XÂY DỰNG", "title": "Quyết định"}, "who": "mau",
               "amount": 1500, "text": "a\nb", "people": ["x", "y"]}
    template = _with_stories()
    ours = render(template, context, _names)
    assert _members(ours) == _members(render_with_docxtpl(template, context, _names))
    document = docx.Document(io.BytesIO(ours))
    assert document.sections[0].header.paragraphs[0].text == "SỞ & XÂY DỰNG – Ông mau"
    assert document.sections[0].footer.paragraphs[0].text == "Trang cuối 1.500 đồng"
    assert document.core_properties.title == "Quyết định"
    assert [c.text for c in document.tables[0].columns[0].cells] == ["Ông x", "Ông y"]
    # a package the prepared path does not repeat is rendered by docxtpl itself
    # (python-docx gives such a package default core properties stamped with the time of
    # the render, so that stamp is left out of the comparison)
    bare = _with_stories(core=False)
    assert _unstamped(render(bare, context, _names)) == _unstamped(
        render_with_docxtpl(bare, context, _names))


def _unstamped(content: bytes) -> list[tuple[str, bytes]]:
    members = _members(content)
    assert any(b"<dcterms:modified" in data for name, data in members if name.endswith(
        "core.xml"))
    return [(name, re.sub(rb"<dcterms:modified[^<]*</dcterms:modified>", b"", data))
            for name, data in members]


def test_a_broken_template_fails_by_name_each_time_it_is_rendered():
    broken = _docx("{{ doc.reference ")
    for _ in range(2):
        with pytest.raises(TemplateFailed, match="TemplateSyntaxError"):
            render(broken, {}, _names)
    with pytest.raises(TemplateFailed, match="UndefinedError|TypeError"):
        render(_docx("{{ doc.reference.x.y }}"), {}, _names)


class _Level(IntEnum):
    HIGH = 3


class _Text(str):
    pass


def test_a_document_keeps_the_case_s_data_as_json_gives_it_back():
    """Plain values as they are (copies, not the task's own lists and objects), dates in
    ISO 8601, tuples as lists, keys as text, anything else as its text."""
    members = ["a", "b"]
    data = {"title": "Đề xuất", "count": 3, "share": 0.5, "done": True, "none": None,
            "members": members, "pair": ("x", 1), "on": date(2026, 3, 5),
            "at": datetime(2026, 3, 5, 8, 30, tzinfo=timezone.utc),
            "nested": {"rows": [{"level": _Level.HIGH, "amount": Decimal("1.50")}]},
            "keys": {1: "one", None: "none"}, "text": _Text("t")}
    kept = json_safe(data)
    assert kept == {"title": "Đề xuất", "count": 3, "share": 0.5, "done": True, "none": None,
                    "members": ["a", "b"], "pair": ["x", 1], "on": "2026-03-05",
                    "at": "2026-03-05T08:30:00+00:00",
                    "nested": {"rows": [{"level": 3, "amount": "1.50"}]},
                    "keys": {"1": "one", "null": "none"}, "text": "t"}
    assert type(kept["nested"]["rows"][0]["level"]) is int and type(kept["text"]) is str
    kept["members"].append("c")
    assert members == ["a", "b"]


# --- issued with the steps -------------------------------------------------------------------

@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def approved_case(engine, business_key="DX-1", proposer=PROPOSER) -> Case:
    case = Case.start(engine, "national", "proposal", proposer, business_key=business_key)
    case.do("submit_plan", plan(), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": False}, by=DIRECTOR)
    case.do("party_opinion", {"party_opinion": "agree"})
    case.vote({DIRECTOR: "for", DEPUTIES[0]: "for", DEPUTIES[1]: "for", DEPUTIES[2]: "against"})
    case.do("decide", {"decision": "approve", "implementers": [proposer]}, by=DIRECTOR)
    return case


def documents_of(engine, case: Case, who: str = DIRECTOR) -> dict[str, tuple[dict, bytes]]:
    """template → (metadata, DOCX) of the case's documents."""
    found = {}
    for meta in engine.documents.of_instance(case.id, principal=as_user(engine, who)):
        found[meta["template"]] = (meta, engine.documents.docx(
            meta["id"], principal=as_user(engine, who))[1])
    return found


def _look_at(engine, meta: dict, who: str = DIRECTOR) -> None:
    pdf = engine.documents.pdf(meta["id"], principal=as_user(engine, who))[1]
    assert pdf.startswith(b"%PDF-")
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / f"document-{meta['template'].removesuffix('.docx')}.png").write_bytes(_png(pdf))


def test_an_approval_issues_the_minutes_then_the_decision_numbered_in_their_registers(library):
    case = approved_case(library)
    documents = library.documents.of_instance(case.id, principal=as_user(library, PROPOSER))
    assert [(d["kind"], d["reference"], d["signer"]) for d in documents] == [
        ("BB", "01/BB-SXD", DIRECTOR), ("QĐ", "01/QĐ-SXD", DIRECTOR)]
    issued = documents_of(library, case)
    meta, content = issued["bien_ban_hop_lanh_dao.docx"]
    assert_in_order(_lines(content), HEADER + [
        "Số: 01/BB-SXD", "Mẫu, ngày 05 tháng 01 năm 2026", "BIÊN BẢN",
        "Họp tập thể lãnh đạo xem xét đề xuất “Số hoá hồ sơ cấp phép xây dựng”",
        "Chủ trì: Đỗ Thanh Mai", "1. Đỗ Thanh Mai: tán thành.",
        "4. Dương Xuân Phúc: không tán thành.",
        "Kết quả: 3 tán thành, 1 không tán thành trên tổng số 4 thành viên.",
        "Nguyên tắc áp dụng: Đề xuất được thông qua khi có trên 50% tổng số thành viên",
        "Kết luận: đề xuất được thông qua.",
        "Nơi nhận:", "- Các thành viên tập thể lãnh đạo;", "- Lưu: VT.", "GIÁM ĐỐC",
        "Đỗ Thanh Mai"])
    _look_at(library, meta)
    # the case file lists each document under the step that issued it: the minutes with the
    # vote whose tally the engine made, the decision with the decision
    steps = library.dossiers.build(as_user(library, PROPOSER), case.id)["steps"]
    issued_by_step = {s["element_id"]: [d["reference"] for d in s["documents"]]
                      for s in steps if s["documents"]}
    assert issued_by_step == {"leadership_meeting": ["01/BB-SXD"], "decide": ["01/QĐ-SXD"]}
    meta, content = issued["quyet_dinh_phe_duyet.docx"]
    assert meta["legal_basis"] == "khoản 1 Điều 8 Nghị định số 73/2023/NĐ-CP"
    assert_in_order(_lines(content), HEADER + [
        "Số: 01/QĐ-SXD", "Mẫu, ngày 05 tháng 01 năm 2026", "QUYẾT ĐỊNH",
        "Về việc phê duyệt đề xuất đổi mới, sáng tạo “Số hoá hồ sơ cấp phép xây dựng”",
        "GIÁM ĐỐC SỞ XÂY DỰNG", "Căn cứ Nghị định số 73/2023/NĐ-CP ngày 29 tháng 9 năm 2023",
        "Căn cứ khoản 1 Điều 8 Nghị định số 73/2023/NĐ-CP;",
        "Căn cứ Biên bản họp tập thể lãnh đạo số 01/BB-SXD ngày 05/01/2026;",
        "QUYẾT ĐỊNH:", "Điều 1. Phê duyệt đề xuất", "Điều 2. Tổ chức thực hiện:",
        "1. Người thực hiện: Võ Thị Tâm.",
        "2. Thời gian thực hiện: từ ngày 01/12/2026 đến ngày 30/06/2027.",
        "kinh phí: 450.000.000 đồng.", "Điều 3.", "Nơi nhận:", "- Như Điều 3;", "- Lưu: VT.",
        "GIÁM ĐỐC", "Đỗ Thanh Mai"])
    _look_at(library, meta)


def test_a_deputy_signs_for_the_head_and_a_refusal_is_answered_with_its_reasons(library):
    case = Case.start(library, "national", "proposal", PROPOSER, business_key="DX-2")
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {**SCREENED, "is_complex": False}, by=DIRECTOR)
    case.do("party_opinion", {"party_opinion": "agree"})
    case.vote({DIRECTOR: "against", DEPUTIES[0]: "against", DEPUTIES[1]: "for",
               DEPUTIES[2]: "against"})
    case.do("decide", {"decision": "reject", "refusal_reasons": "Chưa rõ nguồn kinh phí."},
            by=DIRECTOR)
    meta, content = documents_of(library, case)["van_ban_tra_loi.docx"]
    assert meta["reference"] == "01/CV-SXD"
    assert_in_order(_lines(content), HEADER + [
        "Số: 01/CV-SXD", "V/v trả lời đề xuất không được phê duyệt",
        "Mẫu, ngày 05 tháng 01 năm 2026", "Kính gửi: Võ Thị Tâm.",
        "Sở Xây dựng đã nhận Kế hoạch đề xuất “Số hoá hồ sơ cấp phép xây dựng”. Sau khi xem "
        "xét theo quy định, đề xuất không được phê duyệt, với các lý do sau:",
        "Chưa rõ nguồn kinh phí.", "Sở Xây dựng trả lời để Võ Thị Tâm được biết.",
        "Nơi nhận:", "GIÁM ĐỐC", "Đỗ Thanh Mai"])
    _look_at(library, meta)


def test_the_council_the_suspension_and_the_termination_issue_their_documents(library):
    proposer = "mau.sxd.qlxd.truongphong"
    case = Case.start(library, "national", "proposal", proposer, business_key="DX-3")
    case.do("submit_plan", plan(), by=proposer)
    case.do("screening", {**SCREENED, "is_complex": True}, by=DIRECTOR)
    case.do("party_opinion", {"party_opinion": "agree"})
    members = ["mau.chuyengia1", "mau.chuyengia2", "mau.chuyengia3", "mau.chuyengia4",
               "mau.skhcn.giamdoc"]
    case.do("form_council", {"council_chair": members[0], "council_secretary": members[1],
                             "council_members": members}, by=DIRECTOR)   # the decider
    case.vote(dict(zip(members, ["for", "for", "for", "against", "for"])), "council_vote")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"}, by=DIRECTOR)
    case.send("implementation_suspended", {"suspension_reason": "Chờ bố trí kinh phí"})
    case.do("suspension_review", {"continue_decision": "terminate",
                                  "continue_reason": "Không còn phù hợp"}, by=DIRECTOR)
    issued = documents_of(library, case)
    assert set(issued) >= {"quyet_dinh_thanh_lap_hoi_dong.docx", "bien_ban_hop_hoi_dong.docx",
                           "quyet_dinh_tam_dung.docx", "quyet_dinh_cham_dut.docx"}
    meta, content = issued["quyet_dinh_thanh_lap_hoi_dong.docx"]
    assert meta["legal_basis"] == "khoản 2 Điều 8 Nghị định số 73/2023/NĐ-CP"
    assert_in_order(_lines(content), [
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "QUYẾT ĐỊNH",
        "Về việc thành lập Hội đồng đánh giá đề xuất", "Căn cứ khoản 2 Điều 8",
        "Điều 1. Thành lập Hội đồng đánh giá", "Chủ tịch Hội đồng:", "Thư ký Hội đồng:",
        "Các thành viên:", "Điều 2.", "Điều 3.", "Nơi nhận:"])
    _look_at(library, meta)
    meta, content = issued["bien_ban_hop_hoi_dong.docx"]
    assert_in_order(_lines(content), [
        "BIÊN BẢN", "Họp Hội đồng đánh giá đề xuất", "Thư ký:", "1. ", "5. ",
        "Kết quả: 4 phiếu tán thành, 1 phiếu không tán thành trên 5 phiếu biểu quyết "
        "của 5 thành viên.",
        "Nguyên tắc áp dụng:", "Kiến nghị của Hội đồng: phê duyệt đề xuất.", "Nơi nhận:"])
    _look_at(library, meta)
    meta, content = issued["quyet_dinh_tam_dung.docx"]
    assert meta["signer"] == DIRECTOR          # the decider signs what the system received
    assert_in_order(_lines(content), [
        "QUYẾT ĐỊNH", "Về việc tạm dừng thực hiện đề xuất", "GIÁM ĐỐC SỞ XÂY DỰNG",
        "Điều 1. Tạm dừng thực hiện", "Lý do: Chờ bố trí kinh phí.", "Đỗ Thanh Mai"])
    _look_at(library, meta)
    meta, content = issued["quyet_dinh_cham_dut.docx"]
    assert meta["legal_basis"] == "Điều 6 Nghị định số 73/2023/NĐ-CP"
    assert_in_order(_lines(content), [
        "QUYẾT ĐỊNH", "Về việc chấm dứt thực hiện đề xuất", "Căn cứ Điều 6",
        "Căn cứ Quyết định tạm dừng thực hiện đề xuất số", "Điều 1. Chấm dứt thực hiện",
        "Lý do: Không còn phù hợp.", "Đỗ Thanh Mai"])
    _look_at(library, meta)


def test_evaluation_recognition_and_protection_issue_their_documents(library):
    case = approved_case(library, "DX-4")
    implement_and_evaluate(case, "completed", PROPOSER)
    case.do("recognition", {"measures": ["commendation", "early_salary_step"],
                            "months_early": 12}, by=DIRECTOR)
    issued = documents_of(library, case)
    meta, content = issued["thong_bao_ket_qua.docx"]
    assert meta["kind"] == "TB"
    assert_in_order(_lines(content), [
        "Số: 01/TB-SXD", "THÔNG BÁO", "Kết quả đánh giá việc thực hiện đề xuất",
        "Kết quả: hoàn thành.", "Nhận xét: Đánh giá", "Nơi nhận:"])
    _look_at(library, meta)
    for template, parts in {
        "to_trinh_cong_nhan.docx": ["Số: 01/TTr-SXD", "TỜ TRÌNH",
                                    "Về việc công nhận, khuyến khích Võ Thị Tâm",
                                    "- đề nghị cấp có thẩm quyền khen thưởng;",
                                    "- nâng bậc lương trước thời hạn;",
                                    "Nâng bậc lương trước thời hạn 12 tháng."],
        # recognised in 2027: the first decision of that year's register
        "quyet_dinh_cong_nhan.docx": ["Số: 01/QĐ-SXD", "QUYẾT ĐỊNH", "Căn cứ Điều 10",
                                      "Căn cứ Tờ trình công nhận, khuyến khích số 01/TTr-SXD",
                                      "Điều 1. Công nhận Võ Thị Tâm",
                                      "- đề nghị cấp có thẩm quyền khen thưởng;",
                                      "Việc khen thưởng do cấp có thẩm quyền xem xét"],
        "de_nghi_khen_thuong.docx": ["Số: 01/CV-SXD", "V/v đề nghị khen thưởng",
                                     "Kính gửi: Hội đồng Thi đua - Khen thưởng."],
    }.items():
        meta, content = issued[template]
        assert_in_order(_lines(content), HEADER + parts + ["Nơi nhận:", "Đỗ Thanh Mai"])
        _look_at(library, meta)

    protected = approved_case(library, "DX-5")
    implement_and_evaluate(protected, "not_completed", PROPOSER)
    protected.do("submit_protection_request", {"claimed_outcome": "not_completed",
                                               "facts": "Khách quan"}, by=PROPOSER)
    protected.do("assess", {"followed_policy": True, "pure_motives": True,
                            "common_interest": True, "abuse": False,
                            "assessment": "Đúng chủ trương"}, by=DIRECTOR)
    protected.do("protection_party_opinion", {"party_opinion": "agree"}, by=DEPUTIES[0])
    protected.do("decide_protection", {"protection_decision": "excluded",
                                       "protection_reasons": "Đã thực hiện đúng chủ trương"},
                 by=DIRECTOR)
    meta, content = documents_of(library, protected)["quyet_dinh_bao_ve.docx"]
    assert meta["legal_basis"] == "Điều 11 Nghị định số 73/2023/NĐ-CP"
    assert_in_order(_lines(content), HEADER + [
        "QUYẾT ĐỊNH", "Về việc bảo vệ cán bộ năng động, sáng tạo",
        "Căn cứ Điều 11 Nghị định số 73/2023/NĐ-CP;",
        "Điều 1. Võ Thị Tâm: được loại trừ trách nhiệm", "Lý do: Đã thực hiện đúng chủ trương",
        "Điều 2.", "Nơi nhận:", "Đỗ Thanh Mai"])
    _look_at(library, meta)


# --- immutability, audit chain, corrections, rights --------------------------------------------

def test_an_issued_document_is_immutable_and_its_hash_is_in_the_audit_chain(library):
    case = approved_case(library, "DX-6")
    issued = documents_of(library, case)
    meta, content = issued["quyet_dinh_phe_duyet.docx"]
    assert meta["sha256"] == hashlib.sha256(content).hexdigest()
    entries = {e.details["document_id"]: e for e in case.audit("document_issued")}
    assert entries[meta["id"]].details["sha256"] == meta["sha256"]
    assert entries[meta["id"]].details["reference"] == "01/QĐ-SXD"
    for statement in (update(Document).where(Document.id == meta["id"]).values(title="x"),
                      delete(Document).where(Document.id == meta["id"])):
        with pytest.raises(DatabaseError, match="immutable"):
            with library.db.transaction() as session:
                session.execute(statement)
    assert verify(library.db, case.id).ok


def test_a_correction_is_a_new_document_that_names_the_one_it_replaces(library):
    case = approved_case(library, "DX-7")
    original = documents_of(library, case)["quyet_dinh_phe_duyet.docx"][0]
    with pytest.raises(Forbidden):            # only its issuer or an administrator
        library.documents.correct(original["id"], "Sai tên", principal=as_user(
            library, PROPOSER))
    corrected = library.documents.correct(original["id"], "Sai thời gian thực hiện",
                                          principal=as_user(library, DIRECTOR))
    assert (corrected["reference"], corrected["replaces"]) == ("02/QĐ-SXD", original["id"])
    assert library.documents.get(original["id"], principal=as_user(
        library, PROPOSER))["replaced_by"] == corrected["id"]
    content = library.documents.docx(corrected["id"], principal=as_user(library, DIRECTOR))[1]
    assert_in_order(_lines(content), [
        "Số: 02/QĐ-SXD", "QUYẾT ĐỊNH",
        "(Văn bản này thay thế văn bản số 01/QĐ-SXD; lý do: Sai thời gian thực hiện)",
        "Căn cứ Quyết định phê duyệt đề xuất đổi mới, sáng tạo số 01/QĐ-SXD", "Điều 1."])
    with pytest.raises(Forbidden):
        library.documents.correct(original["id"], "Lần nữa",
                                  principal=as_user(library, DIRECTOR))
    [entry] = case.audit("document_corrected")
    assert entry.details["replaces"] == original["id"]
    assert entry.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert verify(library.db, case.id).ok


def test_a_stranger_is_told_the_documents_do_not_exist(library):
    case = approved_case(library, "DX-8")
    document = documents_of(library, case)["quyet_dinh_phe_duyet.docx"][0]
    stranger = as_user(library, STRANGER)
    with pytest.raises(NotFound):
        library.documents.of_instance(case.id, principal=stranger)
    for read in (library.documents.get, library.documents.docx, library.documents.pdf):
        with pytest.raises(NotFound):
            read(document["id"], principal=stranger)
    with pytest.raises(NotFound):
        library.documents.correct(document["id"], "x", principal=stranger)
    server = LiveServer(library)
    try:
        listed = server.get(f"/instances/{case.id}/documents", PROPOSER)
        assert listed.status_code == 200
        assert [d["reference"] for d in listed.json()] == ["01/BB-SXD", "01/QĐ-SXD"]
        pdf = server.get(f"/documents/{document['id']}.pdf", PROPOSER)
        assert (pdf.status_code, pdf.headers["Content-Type"]) == (200, "application/pdf")
        assert 'filename="01-QD-SXD.pdf"' in pdf.headers["Content-Disposition"]
        got = server.get(f"/documents/{document['id']}.docx", PROPOSER)
        assert hashlib.sha256(got.content).hexdigest() == document["sha256"] == \
            got.headers["X-Content-SHA256"]
        for path in (f"/instances/{case.id}/documents", f"/documents/{document['id']}",
                     f"/documents/{document['id']}.docx", f"/documents/{document['id']}.pdf"):
            refused = server.get(path, STRANGER)
            assert refused.status_code == 404, path
            assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert server.post(f"/documents/{document['id']}/corrections", STRANGER,
                           json={"reason": "x"}).status_code == 404
        assert server.post(f"/documents/{document['id']}/corrections", DIRECTOR,
                           json={"reason": ""}).status_code == 422
        made = server.post(f"/documents/{document['id']}/corrections", DIRECTOR,
                           json={"reason": "Sai số liệu"})
        assert (made.status_code, made.json()["reference"]) == (201, "02/QĐ-SXD")
    finally:
        server.stop()


# --- registers ---------------------------------------------------------------------------------

def test_fifty_clients_issuing_at_once_get_gapless_unique_numbers(engine):
    """50 threads take numbers from one register at once; every fifth transaction fails
    after taking its number, which it gives back: the committed numbers are 1..40."""
    barrier = threading.Barrier(50)
    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    class Abandoned(Exception):
        pass

    def client(i: int) -> None:
        try:
            barrier.wait()
            with engine.db.transaction() as session:
                number = take_number(session, "mau.sxd", 2026, "QĐ")
                if i % 5 == 0:
                    raise Abandoned()
            with lock:
                taken.append(number)
        except Abandoned:
            pass
        except BaseException as exc:     # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(taken) == list(range(1, 41))
    with engine.db.reading() as session:
        assert session.scalar(select(DocumentRegister.last_number)) == 40
        # another year and another kind start their own registers from 01
        assert session.execute(text("SELECT COUNT(*) FROM document_registers")).scalar() == 1
    with engine.db.transaction() as session:
        assert take_number(session, "mau.sxd", 2027, "QĐ") == 1
        assert take_number(session, "mau.sxd", 2026, "TB") == 1


def test_a_template_no_folder_provides_is_refused_at_deployment(engine):
    variant, forms = read_folder(PROJECT / "processes" / "national")
    sources = [SourceFile(s.name, s.content.replace(b"quyet_dinh_phe_duyet.docx",
                                                    b"khong_co.docx"))
               for s in variant.sources]
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.validate(sources, forms, variant.settings, variant.templates,
                                   variant.documents)
    assert any(p.code == "bpmn.document_template" and "khong_co.docx" in p.message
               for p in refused.value.problems)
    assert re.search("khong_co", str(refused.value.problems))


# --- the case page --------------------------------------------------------------------------

def test_the_proposer_downloads_the_approval_decision_from_the_case_page(library):
    from browser import CHROMIUM, chromium_page
    from engine.org import DEFAULT_DEMO_PASSWORD
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (make test installs it)")
    case = approved_case(library, "DX-9")
    decision = documents_of(library, case)["quyet_dinh_phe_duyet.docx"][0]
    server = LiveServer(library)
    try:
        with chromium_page(1280, 900) as page:
            page.goto(f"{server.url}/login")
            page.get_by_label("Tên đăng nhập").fill(PROPOSER)
            page.get_by_label("Mật khẩu").fill(DEFAULT_DEMO_PASSWORD)
            page.get_by_role("button", name="Đăng nhập").click()
            page.wait_for_url(re.compile(r".*/$"))
            page.goto(f"{server.url}/instances/{case.id}")
            section = page.get_by_test_id("documents")
            assert section.get_by_role("heading", name="Văn bản").is_visible()
            rows = section.get_by_test_id("document")
            assert rows.count() == 2
            row = section.locator("[data-reference='01/QĐ-SXD']")
            assert "Quyết định phê duyệt đề xuất đổi mới, sáng tạo" in row.inner_text()
            assert "Đỗ Thanh Mai" in row.inner_text()
            assert "05/01/2026" in row.inner_text()
            # the timeline says which article each step carried out
            decided = page.get_by_test_id("timeline").locator("tr", has_text="Quyết định phê "
                                                                        "duyệt hoặc từ chối")
            assert "Căn cứ: khoản 1 Điều 8 Nghị định số 73/2023/NĐ-CP" in \
                decided.first.inner_text()
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "web-case-documents.png"), full_page=True)
            with page.expect_download() as download:
                row.get_by_role("link", name="PDF").click()
            assert download.value.suggested_filename == "01-QD-SXD.pdf"
            pdf = Path(download.value.path()).read_bytes()
            text_ = pypdfium2.PdfDocument(pdf)[0].get_textpage().get_text_range()
            assert "QUYẾT ĐỊNH" in text_ and "Số: 01/QĐ-SXD" in text_
            with page.expect_download() as download:
                row.get_by_role("link", name="DOCX").click()
            content = Path(download.value.path()).read_bytes()
            assert hashlib.sha256(content).hexdigest() == decision["sha256"]
            # the proposer did not issue it: no correction offered
            assert row.get_by_test_id("correct-document").count() == 0
            # the case file lists the decision under the step that issued it
            decided_step = page.locator("[data-testid='dossier-step'][data-element='decide']")
            assert "01/QĐ-SXD · Quyết định phê duyệt" in decided_step.get_by_test_id(
                "step-documents").inner_text()
    finally:
        server.stop()


def test_the_signer_corrects_a_decision_from_the_case_page(library):
    from browser import CHROMIUM, chromium_page, sign_in
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (make test installs it)")
    case = approved_case(library, "DX-10")
    server = LiveServer(library)
    try:
        with chromium_page(1280, 900) as page:
            sign_in(page, server, DIRECTOR)
            page.goto(f"{server.url}/instances/{case.id}")
            row = page.locator("[data-testid='documents'] [data-reference='01/QĐ-SXD']")
            correction = row.get_by_test_id("correct-document")
            correction.locator("summary").click()
            correction.get_by_label("Lý do đính chính").fill("Sai thời gian thực hiện")
            correction.get_by_role("button", name="Ban hành văn bản đính chính").click()
            page.wait_for_url(re.compile(rf".*/instances/{case.id}#documents$"))
            assert "Đã ban hành văn bản số 02/QĐ-SXD đính chính văn bản số 01/QĐ-SXD" in \
                page.locator(".flash").inner_text()
            corrected = page.locator("[data-testid='documents'] [data-reference='02/QĐ-SXD']")
            assert "(văn bản đính chính)" in corrected.inner_text().lower()
            # the original, corrected once, offers no second correction
            assert row.get_by_test_id("correct-document").count() == 0
    finally:
        server.stop()
    [made] = [d for d in library.documents.of_instance(case.id, principal=as_user(
        library, DIRECTOR)) if d["reference"] == "02/QĐ-SXD"]
    assert made["correction_reason"] == "Sai thời gian thực hiện"
    assert verify(library.db, case.id).ok


def test_a_province_overrides_a_template_by_its_name(tmp_path):
    from engine.variants import load_variant
    (tmp_path / "national").symlink_to(PROJECT / "processes" / "national")
    province = tmp_path / "thu-nghiem"
    (province / "documents").mkdir(parents=True)
    (province / "variant.toml").write_text('name = "thu-nghiem"\nextends = "national"\n')
    own = _docx("Mẫu riêng của tỉnh: {{ doc.reference }}")
    (province / "documents" / "quyet_dinh_phe_duyet.docx").write_bytes(own)
    variant = load_variant(province)
    national = load_variant(PROJECT / "processes" / "national")
    assert variant.documents["quyet_dinh_phe_duyet.docx"] == own
    assert variant.documents["van_ban_tra_loi.docx"] == national.documents[
        "van_ban_tra_loi.docx"]


def test_a_template_that_cannot_be_rendered_stops_the_step_and_takes_no_number(library):
    from engine.errors import InvalidData
    variant, forms = read_folder(PROJECT / "processes" / "national")
    broken = {**variant.documents, "quyet_dinh_phe_duyet.docx": _docx("{{ doc.reference ")}
    library.repository.deploy("national", variant.sources, "ci", forms=forms,
                              settings=variant.settings, templates=variant.templates,
                              documents=broken)
    with pytest.raises(InvalidData) as refused:
        approved_case(library, "DX-10")
    assert refused.value.message_code == "document.template_failed"
    [case_id] = [d.instance_id for d in _all_documents(library)]
    with library.db.reading() as session:
        kinds = set(session.scalars(select(DocumentRegister.kind)))
    assert kinds == {"BB"}                          # the decision took no number
    assert library.runtime.get(case_id).stage == "under_review"
    assert [t.element_id for t in library.runtime.open_tasks(case_id)] == ["decide"]


def _all_documents(engine) -> list[Document]:
    with engine.db.reading() as session:
        return list(session.scalars(select(Document)))


class _RolledBack(Exception):
    pass


def test_documents_issued_for_two_instances_in_one_unit_of_work_list_only_their_own(library):
    """Timers fired together step several instances in one unit of work: a document lists
    the earlier documents of its own instance, not those the unit issued for another."""
    from engine.documents.service import DocumentIssuer
    from engine.listeners import Step
    from engine.store import Instance, appends
    cases = [approved_case(library, "DX-1"), approved_case(library, "DX-2")]
    issuer = next(listener for listener in library.runtime.listeners
                  if isinstance(listener, DocumentIssuer))
    with pytest.raises(_RolledBack):
        with library.db.transaction() as session:
            for case in cases:            # each decision issued once more, as by a step
                instance = session.get(Instance, case.id)
                workflow = library.runtime.workflow(case.id)
                [decide] = [t for t in workflow.tasks.values()
                            if t.task_spec.bpmn_id == "decide"]
                issuer.step_saving(Step(session, instance,
                                        library.repository.get(instance.definition_id),
                                        DIRECTOR, library.clock.now(), instance.stage, [],
                                        decide))
            issued = appends.pending(session, Document.__table__)
            raise _RolledBack
    assert [d["instance_id"] for d in issued] == [cases[0].id, cases[1].id]
    references = {case.id: {f"{d['title']} số {d['reference']}"
                            for d in library.documents.of_instance(
                                case.id, principal=as_user(library, DIRECTOR))}
                  for case in cases}
    for document in issued:
        earlier = document["context"]["doc"]["earlier"]
        assert len(earlier) == 2            # the instance's minutes and decision
        assert all(any(e.startswith(r) for r in references[document["instance_id"]])
                   for e in earlier), earlier


def test_a_list_of_people_in_a_document_is_named_from_one_read(library):
    """The ``name`` filter given a list (a decision's implementers, a board's members) reads
    the names it has not read yet in one statement; a name read once is not read again in
    the unit of work, and an unknown name is shown as it is."""
    from test_step_statements import statements
    with statements(library) as seen, library.db.reading() as session:
        names = library.documents._names(session)
        assert names([DIRECTOR, *DEPUTIES, "khong.co.ai"]) == ", ".join(
            [names(DIRECTOR), *[names(d) for d in DEPUTIES], "khong.co.ai"])
        read = [s for s in seen if "FROM users" in s]
        assert len(read) == 1
        assert names(DIRECTOR) == "Đỗ Thanh Mai"
        assert names([PROPOSER, [DIRECTOR, ""]]) == "Võ Thị Tâm, Đỗ Thanh Mai, "
        assert names(None) == ""
        assert len([s for s in seen if "FROM users" in s]) == 2    # the proposer alone
