"""Process definitions: versions, their BPMN and forms, validation and deployment."""
from __future__ import annotations

import json

from flask import request

from engine.clock import LOCAL_TZ, as_utc
from engine.deadlines import calendar_for
from engine.drafts import FolderInputs
from engine.dryrun import load_draft
from engine.repository import SETTINGS_SOURCE
from engine.sandbox import SandboxViolation, check_code
from engine.scripting import start_timers

from .. import catalogues, schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from . import dryrun
from .common import Blueprint, SECURITY, utc_or_none, engine

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
    version (201); when nothing changed the answer is 200. As ``nd73 deploy`` does, the
    variant's dry-run scripts are played first on what the upload would put in place: a
    failure refuses the deployment (422 ``deploy.dry_run_failed``, each failure in
    ``errors`` with its script, step and element) and nothing is deployed."""
    variant, uploads = _uploads()
    repository = engine().repository
    repository.validate_upload(variant, uploads)          # a malformed file is named first
    inputs = FolderInputs(*repository.upload_sources(variant, uploads))
    failures = dryrun.failing_scripts(variant, load=load_draft(engine(), variant, inputs))
    if failures:
        first = failures[0]
        raise ApiProblem(
            "invalid-data", f"nothing was deployed: the dry-run {first['script']} fails at "
            f"step {first['step'] or '-'}: {first['detail']}", code="deploy.dry_run_failed",
            params={"script": first["script"], "step": first["step"] or "-"},
            errors=[{"field": f["script"], "step": f["step"], "element_id": f["element_id"],
                     "code": f["code"], "params": f["params"], "message": f["message"],
                     "detail": f["detail"]} for f in failures])
    results = repository.deploy_upload(variant, uploads, current().username)
    created = any(r.created for r in results)
    body = {"created": created, "processes": [
        {"definition_id": r.definition_id, "key": r.key, "variant": r.variant,
         "version": r.version, "created": r.created} for r in results]}
    return body, 201 if created else 200


def _require_designer(variant: str) -> None:
    if not current().is_designer(variant):
        raise ApiProblem("forbidden", f"only designers of '{variant}' may deploy to it",
                         code="access.designer", params={"variant": variant})


@blp.route("/definitions/check-code", methods=["POST"])
@blp.arguments(schemas.CodeCheck)
@blp.response(200, schemas.CodeCheckResult)
@blp.doc(security=SECURITY)
@authenticated
def check_definition_code(args):
    """Check a script, a condition or a timer expression by the sandbox's rules, as
    deployment does, running nothing (the modeler's properties panel asks while typing)."""
    _require_designer(args["variant"])
    try:
        check_code(args["code"], args["mode"])
    except SandboxViolation as exc:
        detail = str(exc)
        words = catalogues.say("bpmn.code_refused", {"detail": detail})
        return {"valid": False, "message": f"{words}: {detail}" if words else detail,
                "detail": detail}
    return {"valid": True}


MAX_WORKING_DAYS = 3660


@blp.route("/variants/<string:variant>/working-days")
@blp.arguments(schemas.WorkingDaysArgs, location="query")
@blp.response(200, schemas.WorkingDaysOut)
@blp.doc(security=SECURITY)
@authenticated
def working_days(args, variant):
    """The close of office on the n-th working day after a day (today by default) on the
    variant's calendar (its days off and make-up working days over the public holidays):
    what a deadline or a timer of that many working days gives."""
    repository = engine().repository
    deployed = repository.latest_versions(variant)
    if not deployed:
        raise ApiProblem("not-found", f"variant '{variant}' has no deployed definition",
                         code="definition.not_found")
    settings = repository.settings(deployed[0])
    text = args["days"].strip()
    deadlines = settings.get("deadlines") or {}
    if text.isdigit() and int(text) <= MAX_WORKING_DAYS:
        days = int(text)
    elif isinstance(deadlines.get(text), int):
        days = deadlines[text]
    else:
        raise ApiProblem("invalid-data", f"'{text}' is neither a number of working days (at "
                         f"most {MAX_WORKING_DAYS}) nor a deadline of the variant",
                         errors=[{"field": "days", "message": "Không phải số ngày làm việc "
                                  "hay tên thời hạn của biến thể",
                                  "message_en": "Not a number of working days nor a deadline "
                                  "name of the variant"}])
    start = args.get("start") or engine().clock.now().astimezone(LOCAL_TZ).date()
    due = calendar_for(settings).add_working_days(start, days)
    return {"variant": variant, "days": days, "start": start, "due_at": as_utc(due),
            "due_local": due.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")}
