"""Official documents: conversion to PDF, registers, rendering, issue with a step, rights."""
from __future__ import annotations

import io

import docx
import docx.table
import pytest

from engine.documents.convert import ConversionFailed, to_pdf


def _docx(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_docx_becomes_a_pdf_with_its_text():
    pdf = to_pdf(_docx("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"))
    assert pdf.startswith(b"%PDF-")
    import pypdfium2
    page = pypdfium2.PdfDocument(pdf)[0]
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in page.get_textpage().get_text_range()


def test_a_conversion_that_takes_too_long_is_refused_by_name():
    with pytest.raises(ConversionFailed, match="LibreOffice took longer than"):
        to_pdf(_docx("x"), timeout=0.01)


# --- issued with the steps of the national procedures -----------------------------------

from procedures import Case, as_user, deploy_library, implement_and_evaluate, plan  # noqa: E402,F401

DIRECTOR, DEPUTIES = "mau.sxd.giamdoc", ("mau.sxd.pgd1", "mau.sxd.pgd2", "mau.sxd.pgd3")
PROPOSER = "mau.sxd.qlxd.truongphong"


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def approved_case(engine, business_key="DX-1") -> Case:
    case = Case.start(engine, "national", "proposal", PROPOSER, business_key=business_key)
    case.do("submit_plan", plan(), by=PROPOSER)
    case.do("screening", {"is_complex": False}, by=DIRECTOR)
    case.do("party_opinion", {"party_opinion": "agree"})
    case.vote({DIRECTOR: "for", DEPUTIES[0]: "for", DEPUTIES[1]: "for", DEPUTIES[2]: "against"})
    case.do("decide", {"decision": "approve", "implementers": [PROPOSER]}, by=DIRECTOR)
    return case


def test_an_approval_issues_the_minutes_and_the_decision(library):
    case = approved_case(library)
    documents = library.documents.of_instance(case.id, principal=as_user(library, PROPOSER))
    assert [(d["kind"], d["reference"]) for d in documents] == [
        ("BB", "01/BB-SXD"), ("QĐ", "01/QĐ-SXD")]


def _text(content: bytes) -> list[str]:
    """The paragraphs of a DOCX, those of its tables' cells included, in reading order."""
    document = docx.Document(io.BytesIO(content))
    lines: list[str] = []
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append("".join(t.text or "" for t in block.iter(
                "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t")))
        elif tag == "tbl":
            table = docx.table.Table(block, document)
            for row in table.rows:
                for cell in row.cells:
                    lines.extend(p.text for p in cell.paragraphs)
    return [line for line in lines if line.strip()]
