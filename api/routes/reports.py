"""Consolidated reports of reporting cycles, as spreadsheets and documents."""
from __future__ import annotations

from flask import Response

from engine import reports

from ..auth import authenticated
from .common import Blueprint, SECURITY, engine, visible_instance

blp = Blueprint("reports", __name__, description="Reports of reporting cycles")
FORMATS = {
    "xlsx": (reports.xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "docx": (reports.docx,
             "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
}


@blp.route("/reports/<string:instance_id>.<string:file_format>")
@blp.response(200, description="the report file",
              content_type="application/octet-stream")
@blp.doc(security=SECURITY, responses={"200": {"description": "xlsx or docx file", "content": {
    FORMATS["xlsx"][1]: {"schema": {"type": "string", "format": "binary"}},
    FORMATS["docx"][1]: {"schema": {"type": "string", "format": "binary"}}}}})
@authenticated
def download(instance_id, file_format):
    """The consolidated report of a reporting cycle (``xlsx`` or ``docx``)."""
    if file_format not in FORMATS:
        from ..problems import ApiProblem
        raise ApiProblem("not-found", f"no report format '{file_format}'; use xlsx or docx")
    visible_instance(instance_id)
    render, mimetype = FORMATS[file_format]
    content = reports.report_content(engine(), instance_id)
    return Response(render(content), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="bao-cao-{content.year}.{file_format}"'})
