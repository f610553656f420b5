"""Files attached to forms: upload, then name the returned id in a form's attachment field."""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, request
from marshmallow import Schema, fields

from engine.errors import NotFound

from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine, utc_or_none

blp = Blueprint("files", __name__, description="Attachments of forms")


class FileOut(Schema):
    file_id = fields.String(required=True)
    name = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    uploaded_at = fields.DateTime(required=True)


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


@blp.route("/files", methods=["POST"])
@blp.response(201, FileOut)
@blp.doc(security=SECURITY, **_UPLOAD_DOC)
@authenticated
def upload():
    """Store a file (pdf, office documents, images, text); its id goes into a form's
    attachment field as ``{"name": ..., "file_id": ...}``."""
    if not request.mimetype.startswith("multipart/form-data"):
        raise ApiProblem("unsupported-media-type", "send multipart/form-data with a 'file'")
    upload_ = request.files.get("file")
    if upload_ is None:
        raise ApiProblem("invalid-data", "attach the file in the form field 'file'",
                         errors=[{"field": "file", "message": "Chưa có tệp",
                                  "message_en": "No file"}])
    row = engine().attachments.store(upload_.filename or "", upload_.read(),
                                     current().username)
    return {"file_id": row.id, "name": row.name, "content_type": row.content_type,
            "size": row.size, "sha256": row.sha256, "uploaded_at": utc_or_none(row.uploaded_at)}


def download(row) -> Response:
    """The file as a download, typed by its extension, never rendered by the browser."""
    return Response(row.content, mimetype=row.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.name)}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})


_DOWNLOAD_DOC = {"responses": {"200": {"description": "the file", "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}}


@blp.route("/files/<string:file_id>")
@blp.doc(security=SECURITY, **_DOWNLOAD_DOC)
@authenticated
def own_file(file_id):
    """A file one uploaded oneself (before a form naming it was sent)."""
    row = engine().attachments.get(file_id)
    if row.uploaded_by != current().username:
        raise ApiProblem("not-found", f"file {file_id} does not exist")
    return download(row)


@blp.route("/instances/<string:instance_id>/files/<string:file_id>")
@blp.doc(security=SECURITY, **_DOWNLOAD_DOC)
@authenticated
def instance_file(instance_id, file_id):
    """A file attached in an instance's forms, for those who may see the instance."""
    wf_engine = engine()
    try:
        detail = wf_engine.queries.detail(current(), instance_id)
    except NotFound:
        raise ApiProblem("not-found", f"instance {instance_id} does not exist") from None
    if not wf_engine.attachments.referenced_by(detail.data, file_id):
        raise ApiProblem("not-found", f"file {file_id} is not attached to this instance")
    return download(wf_engine.attachments.get(file_id))
