"""Writes the official document templates of the national procedures
(processes/national/documents/*.docx) in the format of Nghị định 30/2020/NĐ-CP.

    .venv/bin/python tools/document_templates.py [OUT_DIR]

The templates are DOCX files with Jinja tags (docxtpl) that designers may open and change
in a word processor; this script makes them reproducibly, so that a change is reviewed
here. Layout (Nghị định 30/2020/NĐ-CP, Phụ lục I): A4, margins 20/20/30/15 mm, Times New
Roman 14 (13 for the header block, 12 for "Nơi nhận", 11 for its lines); the issuing agency
(with the governing body above it) left and the quốc hiệu with the underlined tiêu ngữ right;
số/ký hiệu left and địa danh, date right; the kind and trích yếu centred in bold; căn cứ in
italics; the content; "Nơi nhận" left and the signer's authority, position and name right.

What the engine gives every template is under ``doc`` (engine/documents/service.py):
parent_agency, agency, agency_name, issuer_title, reference, place, date, title, bases, legal_basis,
earlier, recipients, authority_lines, signer_name, case_unit, correction, replaces; the
case's data are at the top level. Filters: money, date, long_date, name, unit_name.
"""
from __future__ import annotations

import sys
import zipfile
from io import BytesIO
from pathlib import Path

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt

FONT = "Times New Roman"
OUT = Path(__file__).resolve().parents[1] / "processes" / "national" / "documents"
CENTER, JUSTIFY, LEFT = WD_ALIGN_PARAGRAPH.CENTER, WD_ALIGN_PARAGRAPH.JUSTIFY, WD_ALIGN_PARAGRAPH.LEFT
FIXED_TIME = (2026, 1, 1, 0, 0, 0)      # zip entries' time: the same bytes at every run


def _new() -> Document:
    document = Document()
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(2), Cm(2)
    section.left_margin, section.right_margin = Cm(3), Cm(1.5)
    style = document.styles["Normal"]
    style.font.name, style.font.size = FONT, Pt(14)
    style.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    style.paragraph_format.space_after = Pt(0)
    style.paragraph_format.space_before = Pt(0)
    document.core_properties.author = "ND73 Workflow"
    return document


def _para(where, text="", *, bold=False, italic=False, underline=False, size=None,
          align=None, before=0, after=0, indent=False):
    paragraph = where.add_paragraph()
    if align is not None:
        paragraph.alignment = align
    paragraph.paragraph_format.space_before = Pt(before)
    paragraph.paragraph_format.space_after = Pt(after)
    if indent:
        paragraph.paragraph_format.first_line_indent = Cm(1)
    if text:
        run = paragraph.add_run(text)
        run.bold, run.italic, run.underline = bold, italic, underline
        if size:
            run.font.size = Pt(size)
    return paragraph


def _no_borders(table) -> None:
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        element = OxmlElement(f"w:{edge}")
        element.set(qn("w:val"), "nil")
        borders.append(element)
    table._tbl.tblPr.append(borders)


def _widths(table, widths) -> None:
    """Column widths that Word and LibreOffice both keep (the grid and every cell)."""
    for column, width in zip(table.columns, widths):
        column.width = width
        for cell in column.cells:
            cell.width = width


def _cell(table, row, column):
    cell = table.cell(row, column)
    cell.paragraphs[0]._element.getparent().remove(cell.paragraphs[0]._element)
    return cell


def _header(document, letter: bool) -> None:
    table = document.add_table(rows=2, cols=2)
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    _no_borders(table)
    _widths(table, (Cm(6), Cm(10.5)))
    left, right = _cell(table, 0, 0), _cell(table, 0, 1)
    _para(left, "{%p if doc.parent_agency %}", align=CENTER)
    _para(left, "{{ doc.parent_agency }}", size=13, align=CENTER)
    _para(left, "{%p endif %}", align=CENTER)
    _para(left, "{{ doc.agency }}", bold=True, size=13, align=CENTER)
    _para(left, "_______", size=13, align=CENTER)
    _para(right, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", bold=True, size=12, align=CENTER)
    _para(right, "Độc lập - Tự do - Hạnh phúc", bold=True, underline=True, size=14,
          align=CENTER)
    left, right = _cell(table, 1, 0), _cell(table, 1, 1)
    _para(left, "Số: {{ doc.reference }}", size=13, align=CENTER, before=6)
    if letter:
        _para(left, "V/v {{ doc.title[:1]|lower }}{{ doc.title[1:] }}", size=12, align=CENTER)
    _para(right, "{{ doc.place }}, {{ doc.date }}", italic=True, size=14, align=CENTER,
          before=6)


def _title(document, kind: str, subject: str) -> None:
    _para(document, kind, bold=True, align=CENTER, before=18)
    _para(document, subject, bold=True, align=CENTER)
    _para(document, "_______", align=CENTER)


def _correction(document) -> None:
    _para(document, "{%p if doc.correction %}")
    _para(document, "(Văn bản này thay thế văn bản số {{ doc.replaces }}; lý do: "
                    "{{ doc.correction }})", italic=True, align=CENTER, before=6)
    _para(document, "{%p endif %}")


def _bases(document, proposal_by: str | None = None) -> None:
    _para(document, "{%p for basis in doc.bases %}")
    _para(document, "Căn cứ {{ basis }};", italic=True, align=JUSTIFY, indent=True, before=6)
    _para(document, "{%p endfor %}")
    _para(document, "{%p if doc.legal_basis %}")
    _para(document, "Căn cứ {{ doc.legal_basis }};", italic=True, align=JUSTIFY, indent=True,
          before=6)
    _para(document, "{%p endif %}")
    _para(document, "{%p for earlier in doc.earlier %}")
    _para(document, "Căn cứ {{ earlier }};", italic=True, align=JUSTIFY, indent=True, before=6)
    _para(document, "{%p endfor %}")
    if proposal_by:
        _para(document, proposal_by, italic=True, align=JUSTIFY, indent=True, before=6)


def _body(document, lines: list[str]) -> None:
    for line in lines:
        if line.startswith("{%p"):
            _para(document, line)
        elif line.startswith("!"):
            _para(document, line[1:], bold=True, align=CENTER, before=12, after=6)
        else:
            _para(document, line, align=JUSTIFY, indent=True, before=6)


def _signature(document) -> None:
    table = document.add_table(rows=1, cols=2)
    table.autofit = False
    _no_borders(table)
    _widths(table, (Cm(8), Cm(8.5)))
    left, right = _cell(table, 0, 0), _cell(table, 0, 1)
    _para(right, "", before=12)
    _para(left, "Nơi nhận:", bold=True, italic=True, size=12, before=18)
    _para(left, "{%p for recipient in doc.recipients %}")
    _para(left, "- {{ recipient }}{{ ';' if not loop.last else '.' }}", size=11)
    _para(left, "{%p endfor %}")
    _para(right, "{%p for line in doc.authority_lines %}")
    _para(right, "{{ line }}", bold=True, align=CENTER, before=0)
    _para(right, "{%p endfor %}")
    for _ in range(4):
        _para(right, "", align=CENTER)
    _para(right, "{{ doc.signer_name }}", bold=True, align=CENTER)


def decision(subject: str, proposal_by: str, articles: list[str]) -> Document:
    document = _new()
    _header(document, letter=False)
    _title(document, "QUYẾT ĐỊNH", subject)
    _correction(document)
    _para(document, "{{ doc.issuer_title }}", bold=True, align=CENTER, before=12, after=6)
    _bases(document, proposal_by)
    _body(document, ["!QUYẾT ĐỊNH:", *articles])
    _signature(document)
    return document


def paper(kind: str, subject: str | None, lines: list[str], *, letter=False,
          bases=True, to: str | None = None) -> Document:
    document = _new()
    _header(document, letter=letter)
    if subject is not None:
        _title(document, kind, subject)
    _correction(document)
    if to:
        _para(document, to, align=CENTER, before=12)
    if bases:
        _bases(document)
    _body(document, lines)
    _signature(document)
    return document


VOTE = "{'for': 'tán thành', 'against': 'không tán thành'}"
MEASURES = ("{'praise': 'biểu dương', 'commendation': 'đề nghị cấp có thẩm quyền khen thưởng', "
            "'priority_classification': 'ưu tiên khi đánh giá, xếp loại chất lượng', "
            "'priority_planning': 'ưu tiên khi xem xét quy hoạch', "
            "'priority_appointment': 'ưu tiên khi xem xét bổ nhiệm', "
            "'priority_reappointment': 'ưu tiên khi xem xét bổ nhiệm lại', "
            "'priority_transfer': 'ưu tiên khi xem xét điều động', "
            "'priority_rotation': 'ưu tiên khi xem xét luân chuyển', "
            "'outstanding_achievement': 'xem xét là thành tích xuất sắc khi nâng ngạch, "
            "thăng hạng', 'early_salary_step': 'nâng bậc lương trước thời hạn'}")
# Art. 10: the implementers and the organisations recognised with the proposer
RECOGNISED = [
    "{%p if recognised_people %}",
    "Cá nhân cùng được công nhận: {% for person in recognised_people %}{{ person|name }}"
    "{{ ', ' if not loop.last }}{% endfor %}.",
    "{%p endif %}",
    "{%p if recognised_organisations %}",
    "Tập thể, tổ chức được công nhận: {{ recognised_organisations|unit_name }}.",
    "{%p endif %}",
]
OUTCOMES = ("{'completed': 'hoàn thành', 'not_completed': 'không hoàn thành hoặc hoàn "
            "thành một phần', 'damaged': 'không hoàn thành và gây thiệt hại'}")
PROTECTION = ("{'not_liable': 'không bị xử lý trách nhiệm', 'excluded': 'được loại trừ "
              "trách nhiệm', 'exempted': 'được miễn trách nhiệm', 'mitigated': 'được giảm nhẹ "
              "trách nhiệm', 'refused': 'không thuộc trường hợp được bảo vệ'}")
EXECUTION = ("Điều 3. Quyết định này có hiệu lực kể từ ngày ký. {{ proposer|name }}, các cơ "
             "quan, đơn vị và cá nhân có liên quan chịu trách nhiệm thi hành Quyết định này.")

TEMPLATES = {
    # văn bản trả lời: a refusal with its reasons (Điều 8 khoản 1)
    "van_ban_tra_loi.docx": lambda: paper("", None, [
        "Kính gửi: {{ proposer|name }}.",
        "{{ doc.agency_name }} đã nhận Kế hoạch đề xuất “{{ title }}”. Sau khi xem xét "
        "theo quy định, đề xuất không được phê duyệt, với các lý do sau:",
        "{{ refusal_reasons }}",
        "{{ doc.agency_name }} trả lời để {{ proposer|name }} được biết.",
    ], letter=True, bases=False),
    # biên bản họp tập thể lãnh đạo (Điều 8 khoản 1): made from the meeting's record
    # (meeting_record: date, chair, each member present or absent with their vote, the tally,
    # the rule applied and the result)
    "bien_ban_hop_lanh_dao.docx": lambda: paper("BIÊN BẢN", "Họp tập thể lãnh đạo xem xét "
                                                "đề xuất “{{ title }}”", [
        "Thời gian: {{ meeting_record.date|date if meeting_record.date else doc.date }}"
        "{{ ' (biểu quyết bằng phiếu trực tuyến)' if meeting_record.mode == 'ballots' "
        "else '' }}. Chủ trì: {{ meeting_record.chair|name }}.",
        "Thành phần: {{ meeting_record.present_count }}/{{ meeting_record.members_count }} "
        "thành viên tập thể lãnh đạo có mặt. Biểu quyết của từng thành viên:",
        "{%p for m in meeting_record.members %}",
        "{{ loop.index }}. {{ m.member|name }}: {{ (" + VOTE + ".get(m.vote, 'không biểu "
        "quyết')) if m.present else 'vắng mặt' }}.",
        "{%p endfor %}",
        "Kết quả: {{ meeting_record.votes_for }} tán thành, {{ meeting_record.votes_against }} "
        "không tán thành trên tổng số {{ meeting_record.members_count }} thành viên.",
        "Nguyên tắc áp dụng: {{ meeting_record.rule }}.",
        "Kết luận: đề xuất {{ 'được thông qua' if meeting_record.result == 'approved' else "
        "'không được thông qua' }}{{ ' (số tán thành bằng số không tán thành, theo ý kiến của "
        "người đứng đầu chủ trì cuộc họp)' if meeting_record.tie_carried else '' }}.",
    ], bases=False),
    # biên bản họp hội đồng đánh giá (Điều 8 khoản 2): made from the council's record
    # (council_record: date, chair, secretary, each member present or absent with their
    # opinion and vote, the tally, the rule applied and the recommendation)
    "bien_ban_hop_hoi_dong.docx": lambda: paper("BIÊN BẢN", "Họp Hội đồng đánh giá đề xuất "
                                                "“{{ title }}”", [
        "Thời gian: {{ council_record.date|date if council_record.date else doc.date }}"
        "{{ ' (biểu quyết bằng phiếu trực tuyến)' if council_record.mode == 'ballots' "
        "else '' }}. Chủ tịch Hội đồng: {{ council_record.chair|name }}; Thư ký: "
        "{{ council_record.secretary|name }}.",
        "Thành phần: {{ council_record.present_count }}/{{ council_record.members_count }} "
        "thành viên Hội đồng có mặt. Ý kiến và biểu quyết của từng thành viên:",
        "{%p for m in council_record.members %}",
        "{{ loop.index }}. {{ m.member|name }}: {{ (" + VOTE + ".get(m.vote, 'không biểu "
        "quyết')) if m.present else 'vắng mặt' }}{{ ('; ý kiến: ' ~ m.opinion) if m.present "
        "and m.opinion else '' }}.",
        "{%p endfor %}",
        "Kết quả: {{ council_record.votes_for }} phiếu tán thành, "
        "{{ council_record.votes_against }} phiếu không tán thành trên "
        "{{ council_record.votes_cast }} phiếu biểu quyết của "
        "{{ council_record.members_count }} thành viên.",
        "Nguyên tắc áp dụng: {{ council_record.rule }}.",
        "Kiến nghị của Hội đồng: {{ {'recommend_approve': 'phê duyệt đề xuất', "
        "'recommend_reject': 'không phê duyệt đề xuất', 'no_quorum': 'chưa đủ số thành viên "
        "biểu quyết, chưa có kiến nghị'}.get(council_record.result, '') }}.",
    ], bases=False),
    "quyet_dinh_phe_duyet.docx": lambda: decision(
        "Về việc phê duyệt đề xuất đổi mới, sáng tạo “{{ title }}”",
        "Xét Kế hoạch đề xuất của {{ proposer|name }}.", [
            "Điều 1. Phê duyệt đề xuất đổi mới, sáng tạo “{{ title }}” của "
            "{{ proposer|name }}.",
            "Nội dung: {{ content }}",
            "Điều 2. Tổ chức thực hiện:",
            "1. Người thực hiện: {{ (implementers or [proposer])|name }}.",
            "2. Thời gian thực hiện: từ ngày {{ start_date|date }} đến ngày "
            "{{ end_date|date }}.",
            "3. Nguồn lực: nhân lực: {{ people or 'theo kế hoạch' }}; trang thiết bị: "
            "{{ equipment or 'theo kế hoạch' }}; kinh phí: {{ budget_vnd|money }}.",
            "{%p if override_reason %}",
            "Phê duyệt trái với kết quả biểu quyết của tập thể lãnh đạo, với lý do: "
            "{{ override_reason }}",
            "{%p endif %}",
            EXECUTION]),
    "quyet_dinh_thanh_lap_hoi_dong.docx": lambda: decision(
        "Về việc thành lập Hội đồng đánh giá đề xuất “{{ title }}”",
        "Xét tính chất phức tạp, phạm vi rộng của đề xuất.", [
            "Điều 1. Thành lập Hội đồng đánh giá đề xuất đổi mới, sáng tạo “{{ title }}” của "
            "{{ proposer|name }}, gồm:",
            "Chủ tịch Hội đồng: {{ council_chair|name }};",
            "Thư ký Hội đồng: {{ council_secretary|name }};",
            "Các thành viên: {{ council_members|name }}.",
            "Điều 2. Hội đồng có nhiệm vụ xem xét, cho ý kiến, biểu quyết và kiến nghị việc "
            "phê duyệt đề xuất; Hội đồng tự giải thể sau khi hoàn thành nhiệm vụ.",
            EXECUTION]),
    "quyet_dinh_tam_dung.docx": lambda: decision(
        "Về việc tạm dừng thực hiện đề xuất “{{ title }}”", "", [
            "Điều 1. Tạm dừng thực hiện đề xuất đổi mới, sáng tạo “{{ title }}” của "
            "{{ proposer|name }}.",
            "Lý do: {{ suspension_reason or 'theo yêu cầu của cơ quan có thẩm quyền' }}.",
            "Điều 2. Việc tiếp tục hoặc chấm dứt thực hiện đề xuất được xem xét, quyết định "
            "theo quy định tại Điều 6 Nghị định số 73/2023/NĐ-CP.",
            EXECUTION]),
    "quyet_dinh_cham_dut.docx": lambda: decision(
        "Về việc chấm dứt thực hiện đề xuất “{{ title }}”", "", [
            "Điều 1. Chấm dứt thực hiện đề xuất đổi mới, sáng tạo “{{ title }}” của "
            "{{ proposer|name }}.",
            "Lý do: {{ continue_reason or termination_reason or 'theo yêu cầu của cơ quan có "
            "thẩm quyền' }}.",
            "Điều 2. Kết quả đã thực hiện được đánh giá và xem xét bảo vệ theo quy định.",
            EXECUTION]),
    "thong_bao_ket_qua.docx": lambda: paper("THÔNG BÁO", "Kết quả đánh giá việc thực hiện "
                                            "đề xuất “{{ title }}”", [
        "Căn cứ kết quả họp đánh giá{{ ' ngày ' ~ (meeting_date|date) if meeting_date else "
        "'' }}, {{ doc.agency_name }} thông báo kết quả thực hiện đề xuất đổi mới, "
        "sáng tạo “{{ title }}” của {{ proposer|name }} như sau:",
        "Kết quả: " + "{{ " + OUTCOMES + ".get(outcome, outcome) }}.",
        "Nhận xét: {{ evaluation_note }}",
    ]),
    "to_trinh_cong_nhan.docx": lambda: paper("TỜ TRÌNH", "Về việc công nhận, khuyến khích "
                                             "{{ proposer|name }}", [
        "Đề xuất đổi mới, sáng tạo “{{ title }}” của {{ proposer|name }} đã được đánh giá "
        "hoàn thành. Kính trình xem xét công nhận, khuyến khích theo Điều 10 Nghị định số "
        "73/2023/NĐ-CP với các hình thức:",
        "{%p for measure in measures %}",
        "- " + "{{ " + MEASURES + ".get(measure, measure) }};",
        "{%p endfor %}",
        "{%p if months_early %}",
        "Nâng bậc lương trước thời hạn {{ months_early }} tháng.",
        "{%p endif %}",
        *RECOGNISED,
        "{{ recognition_note or '' }}",
    ]),
    "quyet_dinh_cong_nhan.docx": lambda: decision(
        "Về việc công nhận, khuyến khích cán bộ có đề xuất đổi mới, sáng tạo",
        "Xét kết quả đánh giá việc thực hiện đề xuất “{{ title }}”.", [
            "Điều 1. Công nhận {{ proposer|name }} có đề xuất đổi mới, sáng tạo “{{ title }}”"
            " được đánh giá hoàn thành, và áp dụng các hình thức khuyến khích:",
            "{%p for measure in measures %}",
            "- " + "{{ " + MEASURES + ".get(measure, measure) }};",
            "{%p endfor %}",
            "{%p if months_early %}",
            "Nâng bậc lương trước thời hạn {{ months_early }} tháng.",
            "{%p endif %}",
            *RECOGNISED,
            "{%p if 'commendation' in measures %}",
            "Việc khen thưởng do cấp có thẩm quyền xem xét, quyết định theo đề nghị của "
            "{{ doc.agency_name }}.",
            "{%p endif %}",
            "Điều 2. Kết quả này được ghi nhận trong hồ sơ cán bộ.",
            EXECUTION]),
    "de_nghi_khen_thuong.docx": lambda: paper("", None, [
        "Kính gửi: Hội đồng Thi đua - Khen thưởng.",
        "Đề xuất đổi mới, sáng tạo “{{ title }}” của {{ proposer|name }} đã được đánh giá "
        "hoàn thành. {{ doc.agency_name }} đề nghị cấp có thẩm quyền xem xét khen thưởng "
        "theo Điều 10 Nghị định số 73/2023/NĐ-CP.",
        *RECOGNISED,
        "{{ recognition_note or '' }}",
    ], letter=True, bases=False),
    "quyet_dinh_bao_ve.docx": lambda: decision(
        "Về việc bảo vệ cán bộ năng động, sáng tạo",
        "Xét đề nghị bảo vệ và kết quả đánh giá của cơ quan sử dụng cán bộ.", [
            "Điều 1. {{ (proposer or requester)|name }}: " + "{{ " + PROTECTION +
            ".get(protection_decision, protection_decision) }} đối với việc thực hiện đề "
            "xuất “{{ title }}”.",
            "Lý do: {{ protection_reasons }}",
            "Điều 2. Việc bảo vệ không áp dụng đối với các hành vi quy định tại Điều 6 Nghị "
            "định số 73/2023/NĐ-CP.",
            EXECUTION]),
}


def save(document: Document) -> bytes:
    """The DOCX bytes with fixed zip times, so the same template gives the same file."""
    raw = BytesIO()
    document.save(raw)
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(raw.getvalue())) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            info = zipfile.ZipInfo(item.filename, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, source.read(item.filename))
    return out.getvalue()


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    for name, make in TEMPLATES.items():
        (out / name).write_bytes(save(make()))
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
