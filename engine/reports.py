"""Figures for reporting cycles (what the engine already knows, per unit and year) and the
consolidated report as documents: xlsx (openpyxl) and docx (python-docx) in the layout of a
Vietnamese administrative report.

What a figure counts is the variant's setting (``[[figures]]`` in variant.toml: cases of a
process started or ended in a stage, decisions recorded on a field, overdue steps), so the
figures follow the declarations of a province's diagrams, not names known here.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, func, or_, select

from . import policy
from .clock import LOCAL_TZ, Clock
from .deadlines import current_settings
from .errors import InvalidState, NotFound
from .multi_instance import all_tasks
from .org import Org
from .scripting import step_memo
from .store import Database, Decision, HumanTask, Instance, OrgUnit, TaskStatus


def figure_labels(settings: dict) -> dict[str, str]:
    """The figures a variant declares, key → label, in their order."""
    return {f["key"]: f.get("label") or f["key"] for f in settings.get("figures") or []}


def _year_range(year: int) -> tuple[datetime, datetime]:
    start = datetime(int(year), 1, 1, tzinfo=LOCAL_TZ).astimezone(timezone.utc)
    end = datetime(int(year) + 1, 1, 1, tzinfo=LOCAL_TZ).astimezone(timezone.utc)
    return start, end


class Figures:
    def __init__(self, db: Database, org: Org, clock: Clock):
        self.db = db
        self.org = org
        self.clock = clock

    def for_unit(self, unit_id: str, year: int) -> dict[str, int]:
        """The figures of one unit (with everything below it) for one calendar year.

        A reporting cycle asks this once per unit, thousands of times in one step: the
        counts of the whole year are taken once per step (``step_memo``) and summed here
        over the unit's subtree."""
        return self.for_units([unit_id], year)[str(unit_id)]

    def for_units(self, unit_ids, year: int) -> dict[str, dict[str, int]]:
        """The figures of several units (each with everything below it) for one year:
        one load of the tree and one grouped query per figure, not a tree walk and seven
        queries per unit; counts are taken per unit and summed over subtrees."""
        unit_ids = [str(u) for u in unit_ids]
        if not unit_ids:
            return {}
        figures = current_settings().get("figures") or []
        per_unit, children = step_memo(("unit_figures", int(year)),
                                       lambda: self._year_counts(int(year), figures))
        result = {}
        for unit in unit_ids:
            if unit not in children:
                raise NotFound(f"unit '{unit}' does not exist", code="unit.not_found",
                               params={"unit": unit}, unit_id=unit)
            totals = dict.fromkeys((f["key"] for f in figures), 0)
            stack = [unit]
            while stack:
                current = stack.pop()
                for name, count in per_unit.get(current, {}).items():
                    totals[name] += count
                stack.extend(children[current])
            result[unit] = totals
        return result

    def _year_counts(self, year: int, figures: list[dict]
                     ) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
        """Each unit's own counts for the year (without the units below it), and the
        children of every unit, from one load of the organisation tree; one grouped query
        per declared figure."""
        start, end = _year_range(year)
        per_unit: dict[str, dict[str, int]] = {}

        def add(name, rows):
            for unit, count in rows:
                counts = per_unit.setdefault(unit, {})
                counts[name] = counts.get(name, 0) + count

        with self.db.reading() as session:
            children: dict[str, list[str]] = {}
            for unit, parent in session.execute(select(OrgUnit.id, OrgUnit.parent_id)):
                children.setdefault(unit, [])
                if parent is not None:
                    children.setdefault(parent, []).append(unit)
            for figure in figures:
                add(figure["key"], session.execute(self._count(figure, start, end)))
        return per_unit, children

    def _count(self, figure: dict, start: datetime, end: datetime):
        """The query of one declared figure: (unit, count) rows for [start, end)."""
        count = figure["count"]
        if count == "cases_started":
            excluded = figure.get("except_stages") or []
            return (select(Instance.unit_id, func.count(Instance.id)).where(
                Instance.definition_key == figure["process"], Instance.started_at >= start,
                Instance.started_at < end,
                or_(Instance.stage.is_(None), Instance.stage.not_in(excluded)))
                .group_by(Instance.unit_id))
        if count == "cases_ended":
            return (select(Instance.unit_id, func.count(Instance.id)).where(
                Instance.definition_key == figure["process"],
                Instance.stage == figure["stage"], Instance.ended_at >= start,
                Instance.ended_at < end).group_by(Instance.unit_id))
        if count == "decisions":
            chosen = [Decision.field == figure["field"], Decision.at >= start,
                      Decision.at < end]
            if figure.get("value") is not None:
                chosen.append(Decision.value == str(figure["value"]).lower())
            return (select(Decision.unit_id, func.count(Decision.id)).where(*chosen)
                    .group_by(Decision.unit_id))
        if count == "overdue_steps":
            late = or_(HumanTask.completed_at > HumanTask.due_at,
                       and_(HumanTask.status == TaskStatus.OPEN,
                            HumanTask.due_at < self.clock.now()))
            return (select(Instance.unit_id, func.count(HumanTask.id)).join(
                Instance, Instance.id == HumanTask.instance_id).where(
                HumanTask.due_at.isnot(None), HumanTask.due_at >= start,
                HumanTask.due_at < end, late).group_by(Instance.unit_id))
        raise InvalidState(f"figure '{figure['key']}' counts '{count}', which is not known")

    def sandbox_functions(self) -> dict:
        return {"unit_figures": self.for_units, "unit_figures_of": self.for_unit}


# --- documents ---------------------------------------------------------------------------

@dataclass
class ReportContent:
    agency: str
    parent_agency: str
    number: str
    place: str
    date: datetime
    title: str
    year: int
    rows: list[tuple[str, dict]]          # unit name, figures/summary
    recipients: list[str]
    figures: dict[str, str]               # figure key → column label, in order


def report_content(engine, instance_id: str) -> ReportContent:
    """What a finished (or consolidating) reporting cycle says, ready for a document."""
    instance = engine.runtime.get(instance_id)
    definition = engine.repository.get(instance.definition_id)
    declared = policy.process_properties(definition)
    if declared.get("category") != "reporting_cycle":
        raise NotFound(f"instance {instance_id} is not a reporting cycle",
                       code="report.not_a_cycle")
    workflow = engine.runtime.workflow(instance_id)
    data: dict = {}
    for task in all_tasks(workflow):
        data.update(task.data)
    data.update(workflow.data)
    units = data.get("reporting_units") or []
    reports = data.get("reports") or []
    if not units:
        raise InvalidState("the reporting cycle has not opened yet",
                           code="report.not_open_yet")
    org = engine.org
    owner = data.get("proposer_unit") or instance.unit_id
    # who issues the report: "<unit tag>@province" (the province's unit with that tag) or
    # "<unit tag>@unit" (the cycle's own unit's), else the cycle's unit
    tag, _, level = (declared.get("reportIssuer") or "").partition("@")
    issuer = owner if level != "province" else org.province_of(owner).id
    consolidating = org.tagged(issuer, tag) if tag else None
    agency = (consolidating or org.unit(owner)).name
    province = org.province_of(owner).name
    # each report names its unit (the task's post-script); order of arrival does not matter
    by_unit = {r.get("unit"): r for r in reports if isinstance(r, dict)}
    rows = [(org.unit(unit).name, by_unit.get(unit, {})) for unit in units]
    when = (instance.ended_at or engine.clock.now())
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return ReportContent(
        agency=agency.upper(), parent_agency=province.upper(),
        number=str(data.get("document_number") or "…/BC"),
        place=province.replace("UBND tỉnh ", "").replace("UBND thành phố ", ""),
        date=when.astimezone(LOCAL_TZ),
        title=(declared.get("reportTitle") or definition.name or definition.key).replace(
            "{year}", str(data.get("report_year") or when.year)),
        year=int(data.get("report_year") or when.year), rows=rows,
        recipients=[r.strip() for r in (declared.get("reportRecipients") or "").split(";")
                    if r.strip()],
        figures=figure_labels(engine.repository.settings(definition)))


def _date_line(content: ReportContent) -> str:
    d = content.date
    return f"{content.place}, ngày {d.day:02d} tháng {d.month:02d} năm {d.year}"


def xlsx(content: ReportContent) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side

    book = Workbook()
    sheet = book.active
    sheet.title = f"Báo cáo {content.year}"
    bold, center = Font(bold=True), Alignment(horizontal="center", wrap_text=True)
    columns = ["TT", "Đơn vị", *content.figures.values(), "Đánh giá chung, kiến nghị"]
    last = len(columns)
    heading = [(content.parent_agency, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"),
               (content.agency, "Độc lập - Tự do - Hạnh phúc"),
               (f"Số: {content.number}", _date_line(content))]
    for row, (left, right) in enumerate(heading, start=1):
        sheet.cell(row, 1, left).font = bold
        sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=3)
        sheet.cell(row, 5, right).font = bold
        sheet.merge_cells(start_row=row, start_column=5, end_row=row, end_column=last)
        sheet.cell(row, 5).alignment = center
    sheet.cell(5, 1, "BÁO CÁO").font = Font(bold=True, size=14)
    sheet.merge_cells(start_row=5, start_column=1, end_row=5, end_column=last)
    sheet.cell(5, 1).alignment = center
    sheet.cell(6, 1, content.title).alignment = center
    sheet.merge_cells(start_row=6, start_column=1, end_row=6, end_column=last)
    thin = Side(style="thin")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    header_row = 8
    for col, name in enumerate(columns, start=1):
        cell = sheet.cell(header_row, col, name)
        cell.font, cell.alignment, cell.border = bold, center, box
    totals = {key: 0 for key in content.figures}
    for index, (unit, report) in enumerate(content.rows, start=1):
        values: list = [index, unit]
        for key in content.figures:
            value = int(report.get(key) or 0)
            totals[key] += value
            values.append(value)
        values.append(report.get("summary", ""))
        for col, value in enumerate(values, start=1):
            sheet.cell(header_row + index, col, value).border = box
    total_row = header_row + len(content.rows) + 1
    sheet.cell(total_row, 2, "Tổng cộng").font = bold
    for col, key in enumerate(content.figures, start=3):
        sheet.cell(total_row, col, totals[key]).font = bold
    sheet.cell(total_row + 2, 1, "Nơi nhận:").font = Font(bold=True, italic=True)
    for offset, recipient in enumerate(content.recipients, start=3):
        sheet.cell(total_row + offset, 1, f"- {recipient};")
    sheet.column_dimensions["B"].width = 34
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def docx(content: ReportContent) -> bytes:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    document = Document()
    style = document.styles["Normal"]
    style.font.name, style.font.size = "Times New Roman", Pt(13)
    head = document.add_table(rows=3, cols=2)
    for row, (left, right) in enumerate([
            (content.parent_agency, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"),
            (content.agency, "Độc lập - Tự do - Hạnh phúc"),
            (f"Số: {content.number}", _date_line(content))]):
        for col, text in enumerate((left, right)):
            paragraph = head.cell(row, col).paragraphs[0]
            paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
            run = paragraph.add_run(text)
            run.bold = row < 2
            run.italic = row == 2 and col == 1
    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run("BÁO CÁO")
    run.bold, run.font.size = True, Pt(14)
    subtitle = document.add_paragraph(content.title)
    subtitle.alignment = WD_ALIGN_PARAGRAPH.CENTER
    columns = ["TT", "Đơn vị", *content.figures.values()]
    table = document.add_table(rows=1, cols=len(columns))
    table.style = "Table Grid"
    for col, name in enumerate(columns):
        table.rows[0].cells[col].text = name
    totals = {key: 0 for key in content.figures}
    for index, (unit, report) in enumerate(content.rows, start=1):
        cells = table.add_row().cells
        cells[0].text, cells[1].text = str(index), unit
        for col, key in enumerate(content.figures, start=2):
            value = int(report.get(key) or 0)
            totals[key] += value
            cells[col].text = str(value)
    cells = table.add_row().cells
    cells[1].text = "Tổng cộng"
    for col, key in enumerate(content.figures, start=2):
        cells[col].text = str(totals[key])
    for unit, report in content.rows:
        if report.get("summary"):
            document.add_paragraph(f"{unit}: {report['summary']}")
    recipients = document.add_paragraph()
    recipients.add_run("Nơi nhận:").bold = True
    for recipient in content.recipients:
        document.add_paragraph(f"- {recipient};")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
