"""Drafts of a variant's process folder (engine/drafts.py): what the designer studio edits,
saved apart from deploying; its files, the folder as a zip, what deploying it would change,
and the deployment itself. Only designers of the variant (403 for others)."""
from __future__ import annotations

import mimetypes

from flask import Response, request
from marshmallow import Schema, fields, validate

from engine import drafts as drafting

from .. import schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine, utc_or_none

blp = Blueprint("drafts", __name__, description="Drafts of a variant's processes (designers)")
ZIP = "application/zip"
BINARY = {"schema": {"type": "string", "format": "binary"}}


class RevisionArgs(Schema):
    revision = fields.Integer(validate=validate.Range(1, 2**31 - 1), metadata={
        "description": "The draft's revision the change was made on; a draft saved since "
                       "is refused with 409"})


class DeployArgs(Schema):
    revision = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1),
                              metadata={"description": "The revision whose changes were "
                                                       "reviewed"})


class DraftFileOut(Schema):
    path = fields.String(required=True)
    size = fields.Integer(required=True)


class DraftOut(Schema):
    variant = fields.String(required=True)
    revision = fields.Integer(required=True)
    created_by = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_by = fields.String(required=True)
    updated_at = fields.DateTime(required=True)
    files = fields.List(fields.Nested(DraftFileOut), required=True)


class ChangesOut(Schema):
    empty = fields.Boolean(required=True)
    diagrams = fields.List(fields.Dict(), required=True, metadata={
        "description": "per BPMN file: path, change, elements (id, name, kind, change, "
                       "details)"})
    forms = fields.List(fields.Dict(), required=True, metadata={
        "description": "per form: path, change, fields (field, change)"})
    settings = fields.List(fields.Dict(), required=True, metadata={
        "description": "per setting: key (section.key), change, before, after"})
    files = fields.List(fields.Dict(), required=True,
                        metadata={"description": "templates and documents: path, change"})


def draft_dict(draft: drafting.Draft) -> dict:
    return {"variant": draft.variant, "revision": draft.revision,
            "created_by": draft.created_by, "created_at": utc_or_none(draft.created_at),
            "updated_by": draft.updated_by, "updated_at": utc_or_none(draft.updated_at),
            "files": [{"path": p, "size": len(c)} for p, c in sorted(draft.files.items())]}


def _draft_or_deployed(variant: str) -> dict[str, bytes]:
    """What the studio shows: the draft, else the deployed folder (reading makes no draft)."""
    draft = engine().drafts.get(variant, current())
    return draft.files if draft is not None else engine().drafts.deployed_folder(variant,
                                                                                current())


def zip_response(files: dict[str, bytes], name: str) -> Response:
    """A variant's folder as ``<name>.zip`` to download (the API's and the pages' alike)."""
    return Response(drafting.to_zip(files), mimetype=ZIP,
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


def _zip_download(description: str, content: str):
    """The OpenAPI description of a folder answered as a zip."""
    def document(view):
        view = blp.doc(security=SECURITY, responses={"200": {"description": content,
                                                             "content": {ZIP: BINARY}}})(view)
        return blp.response(200, description=description, content_type=ZIP)(view)
    return document


@blp.route("/variants/<string:variant>/draft")
@blp.response(200, DraftOut)
@blp.doc(security=SECURITY)
@authenticated
def get_draft(variant):
    """The variant's draft (404 ``draft.none`` when there is none)."""
    draft = engine().drafts.get(variant, current())
    if draft is None:
        raise ApiProblem("not-found", f"variant '{variant}' has no draft", code="draft.none",
                         params={"variant": variant})
    return draft_dict(draft)


@blp.route("/variants/<string:variant>/draft", methods=["POST"])
@blp.response(200, DraftOut)
@blp.doc(security=SECURITY)
@authenticated
def open_draft(variant):
    """The variant's draft, made from its deployed folder when there is none."""
    return draft_dict(engine().drafts.open(variant, current()))


@blp.route("/variants/<string:variant>/draft", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=SECURITY)
@authenticated
def discard_draft(variant):
    """Drop the draft; the deployed processes stay as they are."""
    engine().drafts.discard(variant, current())
    return ""


@blp.route("/variants/<string:variant>/draft/files/<path:path>")
@blp.response(200, description="the file", content_type="application/octet-stream")
@blp.doc(security=SECURITY, responses={"200": {"description": "the file's content",
                                               "content": {"application/octet-stream": BINARY}}})
@authenticated
def get_draft_file(variant, path):
    """One file of the draft (``proposal.bpmn``, ``forms/…``, ``variant.toml``…), or of
    the deployed folder while there is no draft."""
    files = _draft_or_deployed(variant)
    if path not in files:
        raise ApiProblem("not-found", f"the draft of '{variant}' has no file '{path}'",
                         code="draft.no_file", params={"path": path})
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Response(files[path], mimetype=kind if kind.startswith("text/")
                    or path.endswith((".json", ".bpmn", ".toml")) else "application/octet-stream")


@blp.route("/variants/<string:variant>/draft/files/<path:path>", methods=["PUT"])
@blp.arguments(RevisionArgs, location="query")
@blp.response(200, DraftOut)
@blp.doc(security=SECURITY, requestBody={"required": True, "content": {
    "application/octet-stream": BINARY}})
@authenticated
def put_draft_file(args, variant, path):
    """Add or replace one file of the draft (the request's body is the file). A
    ``variant.toml`` is checked as deployment checks settings; a diagram must be safe,
    well-formed BPMN; each refusal names the file and the field."""
    draft = engine().drafts.put_file(variant, path, request.get_data(), current(),
                                     args.get("revision"))
    return draft_dict(draft)


@blp.route("/variants/<string:variant>/draft/files/<path:path>", methods=["DELETE"])
@blp.arguments(RevisionArgs, location="query")
@blp.response(200, DraftOut)
@blp.doc(security=SECURITY)
@authenticated
def remove_draft_file(args, variant, path):
    """Remove one file from the draft."""
    return draft_dict(engine().drafts.remove_file(variant, path, current(),
                                                  args.get("revision")))


@blp.route("/variants/<string:variant>/draft.zip")
@_zip_download("the draft as a zip", "the draft's folder")
@authenticated
def draft_zip(variant):
    """The draft's folder as a zip (the deployed folder while there is no draft)."""
    return zip_response(_draft_or_deployed(variant), f"{variant}-nhap")


@blp.route("/variants/<string:variant>/deployed.zip")
@_zip_download("the deployed folder as a zip", "the deployed folder")
@authenticated
def deployed_zip(variant):
    """The variant's deployed folder (the newest version of each process) as a zip."""
    return zip_response(engine().drafts.deployed_folder(variant, current()), variant)


@blp.route("/variants/<string:variant>/draft.zip", methods=["POST"])
@blp.arguments(RevisionArgs, location="query")
@blp.response(200, DraftOut)
@blp.doc(security=SECURITY, requestBody={"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}})
@authenticated
def upload_draft_zip(args, variant):
    """Replace the draft with a zip of the variant's folder. Every entry is checked before
    anything is saved: a path leaving the folder, a link, a zip bomb, malformed BPMN, bad
    TOML or JSON is refused (422) with the entry named."""
    engine().drafts.require_designer(variant, current())     # before reading the upload
    upload = request.files.get("file")
    if upload is None:
        raise ApiProblem("invalid-data", "attach the zip in the field 'file'",
                         errors=[{"field": "file", "message": "Chưa có tệp",
                                  "message_en": "No file"}])
    files = drafting.from_zip(upload.read())
    return draft_dict(engine().drafts.save(variant, files, current(), args.get("revision")))


@blp.route("/variants/<string:variant>/draft/changes")
@blp.response(200, ChangesOut)
@blp.doc(security=SECURITY)
@authenticated
def draft_changes(variant):
    """What deploying the draft would change: diagrams element by element (tasks,
    gateways, flows and their conditions), forms field by field, settings key by key."""
    return engine().drafts.changes(variant, current()).to_dict()


@blp.route("/variants/<string:variant>/draft/validate", methods=["POST"])
@blp.response(200, schemas.ValidationResult)
@blp.doc(security=SECURITY)
@authenticated
def validate_draft(variant):
    """Validate the draft as deployment does (422 listing every problem), deploying
    nothing."""
    built = engine().drafts.validate(variant, current())
    return {"valid": True, "processes": [p.key for p in built]}


@blp.route("/variants/<string:variant>/draft/deploy", methods=["POST"])
@blp.arguments(DeployArgs)
@blp.response(201, schemas.DeployResult)
@blp.alt_response(200, schema=schemas.DeployResult, description="nothing changed")
@blp.doc(security=SECURITY)
@authenticated
def deploy_draft(args, variant):
    """Deploy the draft's ``revision`` (the one reviewed; 409 when saved since): each
    changed process gets a new version (201), running cases stay on theirs; the draft is
    then gone."""
    results = engine().drafts.deploy(variant, current(), args["revision"])
    created = any(r.created for r in results)
    return {"created": created, "processes": [
        {"definition_id": r.definition_id, "key": r.key, "variant": r.variant,
         "version": r.version, "created": r.created} for r in results]}, 201 if created else 200
