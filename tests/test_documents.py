"""Official documents: conversion to PDF, registers, rendering, issue with a step, rights."""
from __future__ import annotations

import io

import docx
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
