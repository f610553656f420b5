"""Process definitions: versions, their BPMN and forms, validation and deployment."""
from __future__ import annotations

import json

from flask import request
from flask_smorest import Blueprint

from engine.repository import SETTINGS_SOURCE
from engine.scripting import start_timers

from .. import schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import SECURITY, utc_or_none, engine

blp = Blueprint("definitions", __name__, description="Process definitions (designers)")
MAX_FILES = 50


def _summary(d) -> dict:
    return {"id": d.id, "key": d.key, "variant": d.variant, "version": d.version,
            "name": d.name, "content_hash": d.content_hash,
            "deployed_at": utc_or_none(d.deployed_at), "deployed_by": d.deployed_by}


@blp.route("/definitions")
@blp.arguments(schemas.DefinitionArgs, location="query")
@blp.response(200, schemas.DefinitionOut(many=True))
@blp.doc(security=SECURITY)
@authenticated
def list_definitions(args):
    """Deployed versions, optionally of one variant and process id."""
    return [_summary(d) for d in engine().repository.versions(args.get("variant"),
                                                              args.get("key"))]


@blp.route("/definitions/<int:definition_id>")
@blp.response(200, schemas.DefinitionDetail)
@blp.doc(security=SECURITY)
@authenticated
def get_definition(definition_id):
    """One version: metadata, BPMN XML, forms and settings."""
    repository = engine().repository
    definition = repository.get(definition_id)
    sources = definition.sources
    spec, _ = repository.specs(definition)
    return {**_summary(definition),
            "bpmn": {n: t for n, t in sources.items() if n.endswith((".bpmn", ".dmn"))},
            "forms": {n[len("forms/"):]: json.loads(t) for n, t in sources.items()
                      if n.startswith("forms/")},
            "settings": json.loads(sources[SETTINGS_SOURCE]) if SETTINGS_SOURCE in sources
            else {},
            "start_timers": [{"element_id": e, "kind": k, "expression": x}
                             for e, k, x in start_timers(spec)]}


def _uploads() -> tuple[str, dict[str, bytes]]:
    if not request.mimetype.startswith("multipart/form-data"):
        raise ApiProblem("unsupported-media-type",
                         "send multipart/form-data with a 'variant' field and files")
    variant = (request.form.get("variant") or "").strip()
    if not variant or len(variant) > 64:
        raise ApiProblem("invalid-data", "the form field 'variant' is required",
                         errors=[{"field": "variant", "message": "Trường bắt buộc",
                                  "message_en": "Required"}])
    if not current().is_designer(variant):
        raise ApiProblem("forbidden", f"only designers of '{variant}' may deploy to it",
                         code="access.designer", params={"variant": variant})
    files = request.files.getlist("files") or list(request.files.values())
    if not files:
        raise ApiProblem("invalid-data", "attach at least one file in the field 'files'",
                         errors=[{"field": "files", "message": "Chưa có tệp",
                                  "message_en": "No file"}])
    if len(files) > MAX_FILES:
        raise ApiProblem("invalid-data", f"at most {MAX_FILES} files at once")
    uploads = {}
    for upload in files:
        uploads[upload.filename or "(unnamed)"] = upload.read()
    return variant, uploads


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["variant", "files"], "properties": {
        "variant": {"type": "string", "minLength": 1, "maxLength": 64},
        "files": {"type": "array", "minItems": 1, "maxItems": MAX_FILES,
                  "items": {"type": "string", "format": "binary"}}}}}}}}


@blp.route("/definitions/validate", methods=["POST"])
@blp.response(200, schemas.ValidationResult)
@blp.doc(security=SECURITY, **_UPLOAD_DOC)
@authenticated
def validate_definitions():
    """Validate uploaded files against the variant's deployed ones, deploying nothing."""
    variant, uploads = _uploads()
    built = engine().repository.validate_upload(variant, uploads)
    return {"valid": True, "processes": [p.key for p in built]}


@blp.route("/definitions", methods=["POST"])
@blp.response(201, schemas.DeployResult)
@blp.alt_response(200, schema=schemas.DeployResult, description="nothing changed")
@blp.doc(security=SECURITY, **_UPLOAD_DOC)
@authenticated
def deploy_definitions():
    """Deploy uploaded files over the variant's deployed ones: changed processes get a new
    version (201); when nothing changed the answer is 200."""
    variant, uploads = _uploads()
    results = engine().repository.deploy_upload(variant, uploads, current().username)
    created = any(r.created for r in results)
    body = {"created": created, "processes": [
        {"definition_id": r.definition_id, "key": r.key, "variant": r.variant,
         "version": r.version, "created": r.created} for r in results]}
    return body, 201 if created else 200
