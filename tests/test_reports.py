"""A reporting cycle's pre-filled figures, checked against proposals made in the test, and
the consolidated report as xlsx and docx (API and command line)."""
from __future__ import annotations

import io
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from docx import Document
from openpyxl import load_workbook

from api_client import LiveServer
from conftest import PROJECT, child_environment
from engine.scheduler import SCHEDULER
from procedures import Case, as_user, deploy_library, implement_and_evaluate, to_decision


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def year_of_work(engine, clock):
    """Lào Cai, 2026: Sở Xây dựng completes one proposal and refuses one, another proposal
    is still a draft; Sở KH&CN approves one."""
    deploy_library(engine)
    clock.set(utc(2026, 3, 2, 2, 0))
    done = to_decision(engine, "lao-cai", "laocai.sxd.qlxd.truongphong", business_key="A",
                       start_date="2026-03-16", end_date="2026-06-30")
    done.vote({v: "for" for v in done.voters()})
    done.do("decide", {"decision": "approve"})
    implement_and_evaluate(done, "completed", "laocai.sxd.qlxd.truongphong",
                           finished_on="2026-06-30")   # the year the report covers
    done.do("recognition", {"measures": ["praise"]})
    refused = to_decision(engine, "lao-cai", "laocai.sxd.qhkt.truongphong", business_key="B")
    refused.vote({v: "against" for v in refused.voters()})
    refused.do("decide", {"decision": "reject", "refusal_reasons": "Chưa cần thiết"})
    Case.start(engine, "lao-cai", "proposal", "laocai.sxd.gt.truongphong")     # a draft
    science = to_decision(engine, "lao-cai", "laocai.skhcn.phogiamdoc", business_key="C")
    science.vote({v: "for" for v in science.voters()})
    science.do("decide", {"decision": "approve"})
    clock.set(utc(2026, 11, 16, 1, 0))
    cycle = Case.start(engine, "lao-cai", "annual_report", SCHEDULER,
                       data={"proposer_unit": "laocai"})
    return engine, cycle


def test_report_tasks_are_prefilled_with_what_the_engine_knows(year_of_work):
    engine, cycle = year_of_work
    prefilled = {t.unit_id: engine.runtime.task_data(t.id)["report"]
                 for t in cycle.open("submit_report")}
    assert prefilled["laocai.sxd"] == {
        "proposals_submitted": 2, "proposals_approved": 1, "proposals_refused": 1,
        "proposals_completed": 1, "recognitions": 1, "protection_decisions": 0,
        "overdue_steps": 0}
    assert prefilled["laocai.skhcn"]["proposals_submitted"] == 1
    assert prefilled["laocai.skhcn"]["proposals_approved"] == 1
    assert set(prefilled["laocai.xa"].values()) == {0}


def _consolidate(engine, cycle):
    for task in cycle.open("submit_report"):
        report = dict(engine.runtime.task_data(task.id)["report"], summary="Đã thực hiện")
        engine.runtime.complete_task(task.id, {"report": report},
                                     principal=as_user(engine, cycle.candidates(task)[0]))
    cycle.do("consolidate", {"summary": "Tổng hợp", "document_number": "125/BC-SNV"})


def test_consolidated_report_downloads_as_xlsx_and_docx(year_of_work):
    engine, cycle = year_of_work
    _consolidate(engine, cycle)
    server = LiveServer(engine)
    try:
        sheet_file = server.get(f"/reports/{cycle.id}.xlsx", "laocai.quantri")
        assert sheet_file.status_code == 200
        assert "attachment" in sheet_file.headers["Content-Disposition"]
        book = load_workbook(io.BytesIO(sheet_file.content))
        sheet = book.active
        cells = [[c.value for c in row] for row in sheet.iter_rows()]
        flat = [v for row in cells for v in row if v is not None]
        assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in flat and "Số: 125/BC-SNV" in flat
        assert "SỞ NỘI VỤ" in flat and "BÁO CÁO" in flat
        row = next(r for r in cells if r[1] == "Sở Xây dựng")
        assert row[2:9] == [2, 1, 1, 1, 1, 0, 0]
        total = next(r for r in cells if r[1] == "Tổng cộng")
        assert total[2:4] == [3, 2]
        document_file = server.get(f"/reports/{cycle.id}.docx", "laocai.quantri")
        document = Document(io.BytesIO(document_file.content))
        text = "\n".join(p.text for p in document.paragraphs)
        assert "BÁO CÁO" in text and "Nơi nhận:" in text
        table = document.tables[1]
        rows = [[c.text for c in r.cells] for r in table.rows]
        assert ["1", "Sở Khoa học và Công nghệ", "1", "1", "0", "0", "0", "0", "0"] in rows
        assert any(r[1] == "Sở Xây dựng" and r[2:5] == ["2", "1", "1"] for r in rows)
        assert server.get(f"/reports/{cycle.id}.pdf", "laocai.quantri").status_code == 404
        assert server.get(f"/reports/{cycle.id}.xlsx", "cantho.quantri").status_code == 404
    finally:
        server.stop()


def test_report_command_writes_the_file(year_of_work, tmp_path):
    engine, cycle = year_of_work
    _consolidate(engine, cycle)
    output = tmp_path / "bao-cao.xlsx"
    nd73 = Path(os.sys.executable).with_name("nd73")
    result = subprocess.run([str(nd73), "report", cycle.id, "-o", str(output)],
                            env={**child_environment(), "ND73_DATABASE_URL": engine.db.url},
                            cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sheet = load_workbook(output).active
    assert any(row[1].value == "Sở Xây dựng" for row in sheet.iter_rows(min_row=9))
