"""Official documents issued with the steps of a case: list, metadata, downloads, corrections.

Whoever may see the case may see its documents (the engine checks it); a document of a case
the caller may not see is not found (404).
"""
from __future__ import annotations

from flask import Response

from .. import schemas
from ..auth import authenticated, current
from .common import Blueprint, SECURITY, engine

blp = Blueprint("documents", __name__, description="Official documents of cases")
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = "application/pdf"


def _file(meta: dict, content: bytes, mimetype: str, suffix: str) -> Response:
    name = engine().documents.file_name(meta, suffix)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if suffix == "docx":        # the hash the audit chain holds is the DOCX's
        headers["X-Content-SHA256"] = meta["sha256"]
    return Response(content, mimetype=mimetype, headers=headers)


@blp.route("/instances/<string:instance_id>/documents")
@blp.response(200, schemas.DocumentOut(many=True))
@blp.doc(security=SECURITY)
@authenticated
def of_instance(instance_id):
    """The documents issued in a case, oldest first."""
    return engine().documents.of_instance(instance_id, principal=current())


@blp.route("/documents/<string:document_id>")
@blp.response(200, schemas.DocumentOut)
@blp.doc(security=SECURITY)
@authenticated
def get(document_id):
    """A document's metadata: number, trích yếu, signer, SHA-256, correction links."""
    return engine().documents.get(document_id, principal=current())


@blp.route("/documents/<string:document_id>.docx")
@blp.response(200, description="the document as issued (DOCX)", content_type=DOCX)
@blp.doc(security=SECURITY, responses={"200": {"description": "the DOCX", "content": {
    DOCX: {"schema": {"type": "string", "format": "binary"}}}}})
@authenticated
def docx(document_id):
    """The document as issued: the DOCX whose SHA-256 the audit chain holds."""
    meta, content = engine().documents.docx(document_id, principal=current())
    return _file(meta, content, DOCX, "docx")


@blp.route("/documents/<string:document_id>.pdf")
@blp.response(200, description="the document as PDF", content_type=PDF)
@blp.doc(security=SECURITY, responses={
    "200": {"description": "the PDF", "content": {
        PDF: {"schema": {"type": "string", "format": "binary"}}}},
    "503": {"description": "the converter failed; try again later"}})
@authenticated
def pdf(document_id):
    """The document as PDF (LibreOffice; converted on the first download, then kept)."""
    meta, content = engine().documents.pdf(document_id, principal=current())
    return _file(meta, content, PDF, "pdf")


@blp.route("/documents/<string:document_id>/corrections", methods=["POST"])
@blp.arguments(schemas.CorrectionIn)
@blp.response(201, schemas.DocumentOut)
@blp.doc(security=SECURITY)
@authenticated
def correct(body, document_id):
    """Issue a correction: a new document with the next number of the same register that
    names the one it replaces, with the reason (its issuer or an administrator)."""
    return engine().documents.correct(document_id, body["reason"], principal=current())
